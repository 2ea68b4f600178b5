"""Pure loss math (no modules, no state): testable on tiny tensors without a model.

Each family keeps its functions in its own submodule (with ``__all__``), re-exported here.
"""

from podhl.losses.functional.pod import *  # noqa: F401,F403  (POD family: cosine, NaC, SC, POD, PEDCC-Loss)
from podhl.losses.functional.margin import *  # noqa: F401,F403  (normalized-classifier margin head)
from podhl.losses.functional.baselines import *  # noqa: F401,F403  (center, COT, A-Softmax, RegularFace, HML, MagFace...)

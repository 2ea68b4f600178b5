"""The public maths of every loss family, in one import: ``from podhl.losses.functional import sc_loss``.

Pure functions on tensors (no modules, no state), testable on tiny inputs; each family keeps its own
in ``podhl/losses/<family>/math.py`` beside its losses, with the equations in the docstrings.
"""

from podhl.losses.center.math import *  # noqa: F401,F403  (center loss, CCL; class_sums shared with HL)
from podhl.losses.hypersphere.math import *  # noqa: F401,F403  (Hypersphere Loss)
from podhl.losses.linear.math import *  # noqa: F401,F403  (COT, HML)
from podhl.losses.margin.lean_ce import *  # noqa: F401,F403  (margin softmax cross-entropy, one (B, C) buffer)
from podhl.losses.margin.math import *  # noqa: F401,F403  (margin heads: clamping, fallback, SphereFace, MagFace, RegularFace)
from podhl.losses.pod.math import *  # noqa: F401,F403  (POD family: cosine, NaC, SC, PEDCC-Loss)

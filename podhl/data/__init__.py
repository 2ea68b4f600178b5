"""Datasets: one module per family, each a builder ``build(...) -> DataBundle``; ``Loaders`` makes the per-rank loaders.

The dataset YAML's ``source`` node is instantiated by Hydra (``_target_`` is the registry).
"""

from podhl.data.bundle import DataBundle
from podhl.data.build import build_data
from podhl.data.loaders import Loaders

__all__ = ["DataBundle", "Loaders", "build_data"]

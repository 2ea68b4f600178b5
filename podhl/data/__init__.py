"""Datasets: one module per family, each a builder ``build(...) -> DataBundle``.

The dataset YAML's ``source`` node is instantiated by Hydra (``_target_`` is the registry).
"""

from podhl.data.bundle import DataBundle, build_data, build_loaders

__all__ = ["DataBundle", "build_data", "build_loaders"]

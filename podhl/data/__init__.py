"""Datasets: one module per family, each a builder ``build(...) -> DataBundle``; ``Loaders`` makes the per-rank loaders.

The dataset YAML's ``source`` node is instantiated by Hydra (``_target_`` is the registry).
"""

from podhl.data.build import build_data, build_detection_data
from podhl.data.bundle import DataBundle
from podhl.data.detection import DetectionBundle, collate_detection
from podhl.data.loaders import Loaders

__all__ = ["DataBundle", "DetectionBundle", "Loaders", "build_data", "build_detection_data", "collate_detection"]

"""podhl: train image classifiers with feature-space losses (POD Loss, Hypersphere Loss, baselines)."""

__version__ = "0.1.0"

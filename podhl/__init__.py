"""podhl: train image classifiers with feature-space losses (POD Loss, Hypersphere Loss, baselines)."""

from podhl import resolvers as _resolvers

__version__ = "0.1.0"

_resolvers.register()

"""podhl: train image classifiers with feature-space losses (POD Loss, Hypersphere Loss, baselines).

Layers (each imports only those below it): ``errors``, ``distributed``, ``checks``, ``pedcc`` →
``data``, ``models``, ``losses`` → ``tasks`` → ``engine`` → ``analysis``, ``runs`` → ``train`` (CLI).
"""

__version__ = "0.2.0"  # the one version source: pyproject.toml reads it ([tool.setuptools.dynamic])

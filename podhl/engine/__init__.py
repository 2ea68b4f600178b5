"""Training engine: one trainer for every experiment, plus checkpoints, seeding and run logs."""

from podhl.engine.trainer import Trainer

__all__ = ["Trainer"]

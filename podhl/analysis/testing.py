"""A minimal analysis used by the test suite to exercise the ``analysis`` hook."""

from __future__ import annotations


def count_test_samples(trainer) -> dict:
    """Number of test samples whose features the trainer can collect."""
    features, labels = trainer.collect_features("test")
    return {"num_test": int(labels.numel())}

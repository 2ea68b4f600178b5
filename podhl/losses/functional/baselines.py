"""Functional forms: baselines (see the family's loss modules for equations)."""

__all__: list[str] = []

"""Functional forms: margin (see the family's loss modules for equations)."""

__all__: list[str] = []

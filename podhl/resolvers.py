"""OmegaConf resolvers used by the configs (registered when ``podhl`` is imported)."""

from __future__ import annotations

from omegaconf import OmegaConf


def lookup(table, key):
    """``${podhl.lookup:${.table},${.key}}``: ``table[key]``, with a message naming the missing key."""
    if key not in table:
        raise KeyError(f"no entry for {key!r} in {dict(table)}; set the value explicitly (e.g. model.feat_dim=...)")
    return table[key]


def register() -> None:
    OmegaConf.register_new_resolver("podhl.lookup", lookup, replace=True)

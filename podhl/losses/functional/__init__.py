"""Pure loss math (no modules, no state): testable on tiny tensors without a model.

Each family keeps its functions in its own submodule and is re-exported here.
"""
# Families register below, one import line each.

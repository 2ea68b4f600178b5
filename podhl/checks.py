"""Parameter checks in one style: a bad value names the key, the value and what is allowed.

Used by every loss (and the data and model builders) so that a wrong YAML value stops the run
before any data is read, with a message such as ``lam must be in [0, inf), got -1``. The errors
are :class:`~podhl.errors.ConfigError` (a ``ValueError``), which the CLI reports with exit code 2.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from podhl.errors import ConfigError


def in_range(
    name: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """``value`` as a finite float in the interval,
    e.g. ``in_range("phi", phi, 0, 1, low_open=True, high_open=True)``."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    bad = not math.isfinite(number)
    bad = bad or (low is not None and (number < low or (low_open and number == low)))
    bad = bad or (high is not None and (number > high or (high_open and number == high)))
    if bad:
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        left = "(" if low_open or low is None else "["
        right = ")" if high_open or high is None else "]"
        raise ConfigError(f"{name} must be in {left}{lo}, {hi}{right}, got {value!r}")
    return number


def integer(name: str, value: Any, low: int | None = None, high: int | None = None) -> int:
    """``value`` as an int in [low, high] (bools and non-integral numbers are refused)."""
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and float(value).is_integer()
    ok = ok and (low is None or value >= low) and (high is None or value <= high)
    if not ok:
        lo = "-inf" if low is None else str(low)
        hi = "inf" if high is None else str(high)
        raise ConfigError(f"{name} must be an integer in [{lo}, {hi}], got {value!r}")
    return int(value)


def one_of(name: str, value: Any, allowed: Iterable[Any]) -> Any:
    """``value`` if it is one of ``allowed``."""
    allowed = tuple(allowed)
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")
    return value


def require(ok: bool, name: str, allowed: str, value: Any) -> None:
    """A check no helper above expresses: ``require(cond, "update_every", "1 unless center_update=batch", v)``."""
    if not ok:
        raise ConfigError(f"{name} must be {allowed}, got {value!r}")

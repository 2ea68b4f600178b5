"""Statistics over seeds for ``podhl-tables``: 95 % confidence intervals and tests against a reference row.

* A cell's CI is Student's t: mean ± t(0.975, n − 1) · std / √n (std with ddof = 1); none for n = 1.
* A row against the reference row (same column): when both hold the same seeds, each once, the
  runs are paired by seed: the differences d_i = a_i − b_i give mean(d) ± t(0.975, n − 1) · std(d) / √n
  and the paired t-test p-value (``scipy.stats.ttest_rel``). Otherwise Welch's test
  (``scipy.stats.ttest_ind(equal_var=False)``) and the Welch–Satterthwaite degrees of freedom for the CI,
  on **all** runs of both sides, also when some seeds are shared: pairing only the overlap would drop runs
  and change the question (our choice; the result's ``note`` says how many seeds were shared).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

LEVEL = 0.95
ROUNDING = 1e-9  # relative size below which a difference of two values is float rounding (our choice)


def t_quantile(df: float) -> float:
    from scipy import stats

    return float(stats.t.ppf(0.5 + LEVEL / 2, df))


def mean_ci(values: Sequence[float]) -> tuple[float, float] | None:
    """(low, high) of the 95 % Student-t interval of the mean; None for fewer than 2 values."""
    n = len(values)
    if n < 2:
        return None
    mean, half = statistics.fmean(values), t_quantile(n - 1) * statistics.stdev(values) / math.sqrt(n)
    return mean - half, mean + half


def compare(a: Sequence[tuple[str | None, float]], b: Sequence[tuple[str | None, float]]) -> dict[str, Any] | None:
    """Row ``a`` minus reference ``b``, each a list of (seed, value): diff, CI, p-value, which test.

    Paired by seed when both have the same seeds, each once (and at least 2); else Welch on all runs,
    with ``note`` saying why (seeds shared k of n, repeated seeds, or none recorded). None when either
    side has fewer than 2 runs."""
    from scipy import stats

    if len(a) < 2 or len(b) < 2:
        return None
    seeds_a, seeds_b = [s for s, _ in a], [s for s, _ in b]
    paired = (
        None not in seeds_a
        and len(set(seeds_a)) == len(seeds_a)
        and len(set(seeds_b)) == len(seeds_b)
        and set(seeds_a) == set(seeds_b)
    )
    if paired:
        ref = dict(b)
        xs = [v for _, v in sorted(a, key=lambda sv: str(sv[0]))]
        ys = [ref[s] for s, _ in sorted(a, key=lambda sv: str(sv[0]))]
        tiny = ROUNDING * max(abs(v) for v in xs + ys)  # below this a difference is float rounding
        d = [0.0 if abs(x - y) <= tiny else x - y for x, y in zip(xs, ys, strict=True)]
        diff = statistics.fmean(d)
        if statistics.pstdev(d) > tiny:
            low, high = mean_ci(d) or (diff, diff)
            p = float(stats.ttest_rel(xs, ys).pvalue)
            note = ""
        else:  # every seed gives the same difference: no spread, a zero-width interval (the t-test is undefined)
            low = high = diff
            p = 1.0 if diff == 0 else 0.0
            note = f"all {len(d)} differences equal"
        test = "paired"
    else:
        xs, ys = [v for _, v in a], [v for _, v in b]
        va, vb = statistics.variance(xs) / len(xs), statistics.variance(ys) / len(ys)
        diff = statistics.fmean(xs) - statistics.fmean(ys)
        se = math.sqrt(va + vb)
        if se > 0:
            df = (va + vb) ** 2 / (va**2 / (len(xs) - 1) + vb**2 / (len(ys) - 1))
            half = t_quantile(df) * se
            p = float(stats.ttest_ind(xs, ys, equal_var=False).pvalue)
        else:
            half, p = 0.0, (1.0 if diff == 0 else 0.0)
        low, high = diff - half, diff + half
        test = "welch"
    return {
        "note": note if paired else _unpaired_why(seeds_a, seeds_b),
        "scale": max(abs(v) for v in xs + ys),  # the values' size, for printing the differences
        "diff": diff,
        "low": low,
        "high": high,
        "p": p,
        "test": test,
        "significant": low > 0 or high < 0,
        "n": len(a) if paired else (len(a), len(b)),
    }


def _unpaired_why(seeds_a: Sequence[str | None], seeds_b: Sequence[str | None]) -> str:
    """Why two rows are not paired by seed, in words for the table."""
    if None in seeds_a or None in seeds_b:
        return "unpaired: a run without a recorded seed"
    if len(set(seeds_a)) < len(seeds_a) or len(set(seeds_b)) < len(seeds_b):
        return "unpaired: a seed occurs twice in one row"
    shared = len(set(seeds_a) & set(seeds_b))
    total = len(set(seeds_a) | set(seeds_b))
    return f"unpaired: {shared} of {total} seeds shared" if shared else "unpaired: no seed shared"

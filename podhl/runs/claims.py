"""Verdicts on the orderings the papers claim (``podhl-tables --claims``; the claims: ``paper_claims.yaml``).

Runs are grouped by loss (``loss`` of their overrides / metrics.json) and, for a claim made per dataset
or backbone (``per``), by each value of those keys the runs hold; runs that differ in another override
(a swept learning rate, say) are kept apart too, so a pair only ever compares runs that share every
other setting. A pair "A better than B" (a link of an ``order`` chain, or ``first`` against one of
``over``) gets :func:`podhl.runs.stats.compare` of A's runs against B's (paired by seed, else Welch on
all runs) and one verdict:

* **holds**: the 95 % CI of A − B lies above 0 (below 0 for a ``better: lower`` claim);
* **reversed**: it lies on the other side of 0;
* **not significant**: it contains 0;
* **too few runs**: fewer than 2 runs on a side (no CI).

A loss with two settings in one group (``loss.lam=0.1`` and ``1``) is not pooled: the pair says so.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from podhl.runs.reader import ABSENT, Run, varying_keys
from podhl.runs.stats import compare

CLAIMS = Path(__file__).with_name("paper_claims.yaml")
VERDICTS = ("holds", "not significant", "reversed", "too few runs", "ambiguous")


@lru_cache(maxsize=1)
def paper_claims() -> list[dict[str, Any]]:
    import yaml

    return list(yaml.safe_load(CLAIMS.read_text())["claims"])


def pairs(claim: dict[str, Any]) -> list[tuple[str, str]]:
    """(better, worse) pairs: adjacent links of ``order``, or ``first`` against each of ``over``."""
    if "order" in claim:
        order = list(claim["order"])
        return list(zip(order, order[1:], strict=False))
    return [(claim["first"], other) for other in claim["over"]]


def verdict(vs: dict[str, Any] | None, better: str = "higher") -> str:
    if vs is None:
        return "too few runs"
    low, high = (vs["low"], vs["high"]) if better == "higher" else (-vs["high"], -vs["low"])
    return "holds" if low > 0 else "reversed" if high < 0 else "not significant"


def _skip(claim: dict[str, Any], where: dict[str, str]) -> bool:
    unless = claim.get("unless") or {}
    return bool(unless) and all(where.get(k) in {str(v) for v in values} for k, values in unless.items())


def check_claims(
    runs: Sequence[Run],
    value: Callable[[Run, str | None], float | None],
    claims: Sequence[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """One result per (claim, group, metric, pair) the runs cover: both losses of the pair have runs there.

    ``value(run, metric)``: the run's number for ``metric`` (None: the number its table cell reads)."""
    claims = paper_claims() if claims is None else claims
    runs = [r for r in runs if r.status == "completed"]
    others = [k for k in varying_keys(runs) if k != "loss" and not k.startswith("loss.")]
    results = []
    for claim in claims:
        per = list(claim.get("per") or [])
        rest = [k for k in others if k not in per]
        groups: dict[tuple, dict[str, dict[str, list[Run]]]] = {}
        for run in runs:
            loss = run.lookup("loss")
            if loss is None:
                continue
            key = tuple((k, run.lookup(k) or ABSENT) for k in per) + tuple(
                (k, run.overrides.get(k, ABSENT)) for k in rest
            )
            setting = " ".join(f"{k}={v}" for k, v in sorted(run.overrides.items()) if k.startswith("loss."))
            groups.setdefault(key, {}).setdefault(loss, {}).setdefault(setting, []).append(run)
        for key, losses in groups.items():
            where = dict(key)
            if _skip(claim, where):
                continue
            for a, b in pairs(claim):
                if a not in losses or b not in losses:
                    continue
                for metric in claim.get("metrics") or [None]:
                    result = _pair(claim, where, a, b, losses[a], losses[b], metric, value)
                    if result is not None:
                        results.append(result)
    return results


def _pair(claim, where, a, b, runs_a, runs_b, metric, value) -> dict[str, Any] | None:
    result = {
        "id": claim["id"],
        "claim": claim["claim"],
        "source": claim["source"],
        "where": " ".join(f"{k}={v}" for k, v in where.items()),
        "pair": f"{a} > {b}" if claim.get("better", "higher") == "higher" else f"{a} < {b}",
        "metric": metric,
        "better": claim.get("better", "higher"),
        "vs": None,
    }
    if len(runs_a) > 1 or len(runs_b) > 1:
        several = [
            f"{loss} has {len(s)} settings ({'; '.join(s)})" for loss, s in ((a, runs_a), (b, runs_b)) if len(s) > 1
        ]
        return {**result, "verdict": "ambiguous", "why": ", ".join(several) + ": give one (--by, or fewer dirs)"}

    def seeded(rs: list[Run]) -> list[tuple[str | None, float]]:
        return [(r.seed, v) for r in rs if (v := value(r, metric)) is not None]

    side_a, side_b = seeded(next(iter(runs_a.values()))), seeded(next(iter(runs_b.values())))
    if not side_a or not side_b:
        return None  # the runs do not record this metric: the claim is not covered
    vs = compare(side_a, side_b)
    why = "" if vs is not None else f"n = {len(side_a)} vs {len(side_b)}"
    return {**result, "vs": vs, "n": (len(side_a), len(side_b)), "verdict": verdict(vs, result["better"]), "why": why}


def render_claims(results: Sequence[dict[str, Any]], metric_label: str, digits: int = 2) -> str:
    """Markdown: one row per verdict, then the claims' sources."""
    lines = ["**Claims of the papers** (podhl/runs/paper_claims.yaml)", ""]
    if not results:
        return "\n".join([*lines, "No claim of the papers is covered by these runs (no pair of its losses ran).", ""])
    lines += [
        "| claim | where | pair | metric | verdict | Δ (A − B) | 95 % CI | p | n | test |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        vs = r["vs"]
        metric = r["metric"] or metric_label
        if vs is None:
            nums = [r.get("why", ""), "—", "—", "—", "—"]
        else:
            n = str(vs["n"]) if vs["test"] == "paired" else "+".join(map(str, vs["n"]))
            test = "paired t" if vs["test"] == "paired" else "Welch"
            test += f" ({vs['note']})" if vs.get("note") else ""
            small = vs["scale"] < 1e-3  # a metric of tiny values (POD Table 5's variances): 3 significant digits
            nums = [f"{vs['diff']:+.3g}" if small else f"{vs['diff']:+.{digits}f}"]
            nums += [_interval(vs["low"], vs["high"], digits, small), f"{vs['p']:.3g}", n, test]
        verdict_text = f"**{r['verdict']}**" + (f" ({r['why']})" if r["verdict"] == "ambiguous" else "")
        lines.append(
            f"| {r['id']} | {r['where'] or '—'} | {r['pair']} | {metric} | {verdict_text} | " + " | ".join(nums) + " |"
        )
    lines += [
        "",
        "holds: the 95 % CI of A − B excludes 0 on the claimed side; reversed: on the other side; "
        "not significant: it contains 0. Paired by seed when both hold the same seeds, else Welch on all runs.",
        "",
    ]
    seen: dict[str, str] = {}
    for r in results:
        seen.setdefault(r["id"], f"- {r['id']}: {r['claim']} ({r['source']})")
    return "\n".join([*lines, *seen.values(), ""])


def _interval(low: float, high: float, digits: int, small: bool) -> str:
    return f"[{low:.3g}, {high:.3g}]" if small else f"[{low:.{digits}f}, {high:.{digits}f}]"


def claims_csv_rows(results: Sequence[dict[str, Any]], metric_label: str) -> list[dict[str, Any]]:
    rows = []
    for r in results:
        vs = r["vs"] or {}
        rows.append(
            {
                "id": r["id"],
                "where": r["where"],
                "pair": r["pair"],
                "metric": r["metric"] or metric_label,
                "verdict": r["verdict"],
                **{k: vs.get(k, "") for k in ("diff", "low", "high", "p", "test", "note")},
                "n": "" if not vs else vs["n"] if vs["test"] == "paired" else "+".join(map(str, vs["n"])),
                "source": r["source"],
            }
        )
    return rows

"""Compare a sweep's summary.md with a committed one, run by run (scripts/reproduce_results.sh).

    python scripts/compare_results.py docs/results/table4_digits/summary.md outputs/repro/table4_digits/summary.md

Runs are matched by their overrides; the first metric column (test_acc, or the task's primary metric) is
compared. Exit 1 when a committed run is missing, failed, or differs by more than --tol points.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def read_summary(path: Path) -> dict[str, dict[str, str]]:
    """overrides (tokens sorted) -> row (column name -> cell) of a summary.md table."""
    lines = [line.strip() for line in path.read_text().splitlines() if line.strip().startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[2:]:
        row = dict(zip(header, (c.strip() for c in line.strip("|").split("|")), strict=False))
        rows[" ".join(sorted(row["overrides"].split()))] = row
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("committed", type=Path, help="the committed summary.md")
    parser.add_argument("new", type=Path, help="the rerun's summary.md")
    parser.add_argument("--tol", type=float, default=0.01, help="allowed |difference| in the metric (points)")
    args = parser.parse_args(argv)
    committed, new = read_summary(args.committed), read_summary(args.new)
    metric = next(c for c in next(iter(committed.values())) if c not in ("job", "overrides", "status"))
    bad = 0
    for key, row in committed.items():
        got = new.get(key)
        if got is None or got.get("status", "completed") != "completed":
            print(f"MISSING  {key}: committed {row[metric]}, rerun {'absent' if got is None else got['status']}")
            bad += 1
            continue
        diff = float(got[metric]) - float(row[metric])
        if abs(diff) > args.tol + 1e-9:
            print(f"DIFFERS  {key}: committed {row[metric]}, rerun {got[metric]} ({diff:+.2f})")
            bad += 1
    print(f"{args.new}: {len(committed) - bad}/{len(committed)} committed {metric} values reproduced (tol {args.tol})")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

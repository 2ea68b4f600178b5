"""Which number of a run a table reads, and the protocol that produced it (the table header says it).

A run **with a validation split** (``metrics.json`` ``split.val_fraction`` > 0) whose best epoch was
chosen on it (``selected_by`` = ``val_acc``, ``val_loss``...) is read at that epoch: ``best_<primary>``
(``best_test_acc`` = test accuracy at the best-validation epoch); with a split but ``trainer.select=test``
or ``last``, at its last epoch (``<primary>``). A run **without one** is read the way the paper's authors read theirs,
as recorded per paper table in ``paper_values.json`` (``protocol``: ``best_test_acc`` = the best test
accuracy over epochs, ``test_acc`` = the last epoch's, with the authors' file and commit as the
source); outside a paper table the last epoch's ``<primary>`` (never a number chosen on the test set).
``--metric`` overrides both. A table whose runs differ in protocol, validation fraction or split
(``split.val_indices_sha256``) gets a warning.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from podhl.runs.reader import Run


def split_of(run: Run) -> dict[str, Any] | None:
    """The run's validation split (``metrics.json`` ``split``) when it has one (val_fraction > 0), else None."""
    split = run.metrics.get("split")
    if not isinstance(split, dict):
        return None
    try:
        fraction = float(split.get("val_fraction") or 0)
    except (TypeError, ValueError):
        return None
    return split if fraction > 0 else None


def validated(run: Run) -> bool:
    """A split, and the best epoch chosen on it (``selected_by`` a ``val_*`` column, or not recorded). A run with
    a split but ``trainer.select=test|last`` is not: its ``best_*`` numbers were chosen on test or are the last."""
    selected = run.metrics.get("selected_by")
    return split_of(run) is not None and (selected is None or str(selected).startswith("val"))


def primary(run: Run) -> str:
    return str(run.metrics.get("primary_metric") or "test_acc")


def cell_metric(run: Run, spec: dict[str, Any] | None, forced: str | None = None) -> str:
    """The metrics.json name a run's cell reads (module docstring)."""
    if forced:
        return forced
    if validated(run):
        return f"best_{primary(run)}"
    if split_of(run) is not None:  # a split, but the epoch was chosen on test or is the last: the last epoch's
        return primary(run)
    authors = (spec or {}).get("protocol") or {}
    return str(authors.get("metric") or primary(run))


def protocol_key(run: Run, spec: dict[str, Any] | None, forced: str | None = None) -> tuple[str, str]:
    """(kind, one-line description) of how the run's cell number was produced."""
    metric = cell_metric(run, spec, forced)
    split = split_of(run)
    if forced:
        kind = "validated" if split else "no validation split"
        return kind, f"{metric} (chosen by --metric; {_split_words(run, split)})"
    if validated(run):
        return "validated", f"validated ({_split_words(run, split)}); cells: {metric} (test at the selected epoch)"
    if split is not None:
        return "not selected on validation", f"split held out but not used to select ({_split_words(run, split)}); " + (
            f"cells: {metric} (last epoch)"
        )
    authors = (spec or {}).get("protocol")
    if authors and authors.get("metric"):
        return "authors'", f"authors' ({authors['describes']}, {authors['source']}); cells: {metric}"
    return "no validation split", f"no validation split; cells: {metric} (last epoch, not selected on test)"


def _split_words(run: Run, split: dict[str, Any] | None) -> str:
    if split is None:
        return "no validation split"
    sha = str(split.get("val_indices_sha256") or "")
    words = f"val_fraction={split.get('val_fraction')}"
    words += f", split {sha[:4]}…" if sha else ""
    selected = run.metrics.get("selected_by")
    return words + (f", selected by {selected}" if selected else "")


def protocol_lines(runs: Sequence[Run], spec: dict[str, Any] | None, forced: str | None = None) -> list[str]:
    """The header lines: ``protocol: ...`` (one per protocol present, with its run count when several)
    and a ``WARNING`` when the table mixes protocols or validation splits."""
    counts: dict[str, int] = {}
    kinds: set[str] = set()
    for run in runs:
        kind, words = protocol_key(run, spec, forced)
        kinds.add(kind)
        counts[words] = counts.get(words, 0) + 1
    if not counts:
        return []
    if len(counts) == 1:
        lines = [f"protocol: {next(iter(counts))}"]
    else:
        lines = [f"protocol ({n} run{'s' if n > 1 else ''}): {w}" for w, n in counts.items()]
    hashes = {str((split_of(r) or {}).get("val_indices_sha256")) for r in runs if split_of(r) is not None}
    if len(kinds) > 1:
        lines.append(
            "WARNING: this table mixes protocols (" + ", ".join(sorted(kinds)) + "): its numbers are not comparable "
            "across them; rerun with one protocol or compare within one"
        )
    elif len(counts) > 1 or len(hashes) > 1:
        lines.append(
            "WARNING: the runs do not share one validation split / selection "
            f"({len(hashes)} split hash{'es' if len(hashes) > 1 else ''})"
        )
    return lines

"""What ``er-grid query`` checks of its filters before reading rows: every
``--experiment``/``--dataset``/``--method``/``--attack``/``--eps`` value is one the store holds, and
every ``--by`` column a row column; a miss is one error naming the valid values."""

from __future__ import annotations

from .common import UsageError


def check_filters(root: str, results: str, filters: dict) -> None:
    """Refuse a filter value the store holds no rows for (a typo would otherwise drop out
    silently beside the values that match), naming the values there are. Read from the commit
    records' keys: no data file is opened."""
    from grid.report.metrics import WORST_CASE
    from grid.store import EXAMPLES_DIR, open_results

    if not filters:
        return
    keys = [c.key for c in open_results(root).commits(EXAMPLES_DIR, damaged="skip")]
    problems = []
    for name, wanted in filters.items():
        here = sorted({k[name] for k in keys if name in k})
        # worst_case is a row query computes, never a stored attack.
        absent = [w for w in wanted if w not in here and not (name == "attack" and w == WORST_CASE)]
        if absent:
            problems.append(f"--{name}: no rows for {_listed(absent)} (valid here: {_listed(here) or 'no rows at all'})")
    if problems:
        raise UsageError(f"{'; '.join(problems)} in {results}")


def _listed(values) -> str:
    return ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)


def check_by(by: list[str]) -> None:
    """``--by``: known row columns only, at least one; an unknown one is named with the valid ones."""
    from grid.store import ROW_SCHEMA

    if not by:
        raise UsageError("--by: give at least one column, e.g. --by dataset,method,attack,eps")
    unknown = [c for c in by if c not in ROW_SCHEMA.names]
    if unknown:
        raise UsageError(f"--by: unknown column(s) {', '.join(unknown)}; valid: {', '.join(ROW_SCHEMA.names)}")

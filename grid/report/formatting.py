"""Text helpers shared by every part of the report: missing values, numbers, accuracy cells and
markdown tables.

Used by the main report (:mod:`grid.report.tables`, :mod:`grid.report.markdown`,
:mod:`grid.report.settings`), the detection tables (:mod:`grid.report.detection_tables`), the paper
comparison (:mod:`grid.report.paper_values`), the sanity section (:mod:`grid.report.sanity`) and the figures,
so a number or a table is written the same way everywhere. Imports nothing heavy (no pandas).
"""

from __future__ import annotations

import json
from typing import Sequence

from grid.store.rows import present  # the one missing-value test, re-exported for the report


def num(value) -> str:
    """A number as the report writes ε, λ and bounds: shortest form (``0.3``, ``10``, ``0.005``)."""
    return f"{float(value):g}"


def json_or_text(value):
    """A stored JSON column value (attack configuration, library versions) decoded; the value
    itself where it is not JSON."""
    try:
        return json.loads(value)
    except (TypeError, ValueError):
        return value


def fmt_acc(mean, std, runs, n=None, planned=None, interval=None) -> str:
    """``mean ± std (lo–hi) [n=<examples> × <runs> seeds]`` in %: ``interval`` the 95% interval
    shown (:func:`cell_interval`); ``n`` counts distinct examples per run, so 360 examples over 3
    seeds read ``n=360 × 3 seeds``, not 1,080; a cell with fewer examples than planned says so."""
    if not present(mean):
        return "–"
    runs = int(runs)
    count = f"{runs} runs" if runs > 1 else "1 run"
    if present(n):
        n = int(n)
        if present(planned) and n < int(planned):
            count = f"n={n} of {int(planned)}" + (f" over {runs} runs" if runs > 1 else "") + ": incomplete"
        elif runs > 1 and n % runs == 0:
            count = f"n={n // runs} × {runs} seeds"
        elif runs > 1:
            count = f"n={n} over {runs} runs"
        else:
            count = f"n={n}"
    ci = ""
    if interval is not None and present(interval[0]) and present(interval[1]):
        ci = f" ({100 * interval[0]:.1f}–{100 * interval[1]:.1f})"
    if runs > 1 and present(std):
        return f"{100 * mean:.1f} ± {100 * std:.1f}{ci} [{count}]"
    return f"{100 * mean:.1f}{ci} [{count}]"


def cell_interval(row, prefix: str = "robust"):
    """The 95% interval a cell shows: the wider of its interval over examples (Wilson) and, where
    it has several runs, over seeds (t), so neither source of noise is hidden by the other. None
    where the row carries none (clean accuracy, hand-made tables)."""
    if prefix != "robust":
        return None
    found = [(lo, hi) for lo, hi in ((getattr(row, "robust_lo", None), getattr(row, "robust_hi", None)),
                                     (getattr(row, "seed_lo", None), getattr(row, "seed_hi", None)))
             if present(lo) and present(hi)]
    return max(found, key=lambda interval: interval[1] - interval[0]) if found else None


def mean_std(row, prefix: str = "robust") -> str:
    """``row``'s ``<prefix>_accuracy`` ± ``<prefix>_std`` (95% interval) [n × seeds] in % (:func:`fmt_acc`)."""
    return fmt_acc(getattr(row, f"{prefix}_accuracy"), getattr(row, f"{prefix}_std", float("nan")),
                   getattr(row, "runs", 1), getattr(row, "n", None), getattr(row, "n_planned", None),
                   cell_interval(row, prefix))


def markdown_table(header: Sequence[str], rows: Sequence[Sequence], rule: str = " --- ") -> str:
    """A markdown table; ``rule`` is the text of each cell of the line under the header
    (the detection tables use the compact ``---``)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(rule for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


#: The unit of every accuracy cell in the report, named in each accuracy column's header.
PCT = "%"


def frame_markdown(table, unit: str = "") -> str:
    """A frame of formatted cells as a markdown table, its index as the first column; ``unit``
    (e.g. :data:`PCT`), when given, is named in every column header after the index."""
    suffix = f" ({unit})" if unit else ""
    header = [table.index.name or "", *[f"{c}{suffix}" for c in table.columns]]
    rows = [[str(index), *[str(v) for v in values]] for index, values in zip(table.index, table.to_numpy())]
    return markdown_table(header, rows)

"""The paper's figures and tables, recomputed from the per-example result rows: the public entry.

Input is the frame :func:`grid.store.load` returns (one row per evaluated example), and
optionally the trial rows (:func:`grid.store.load_trials`) and detection rows
(:func:`grid.store.load_detection`). The work is split by job:

- :mod:`grid.report.metrics`: robust and clean accuracy per configuration over seeds, the
  per-example worst case over attacks, C&W at an RMS-ℓ2 bound (the definitions are there);
- :mod:`grid.report.tables`: the paper's layout (Tables 1–3 and the worst case with methods down
  and datasets across, Figures 3/4 as ε × method tables, the row labels they share);
- :mod:`grid.report.names`: display names and order of methods and datasets;
- :mod:`grid.report.formatting`: missing values, numbers, accuracy cells and markdown tables, shared
  with the detection tables, the paper comparison and the sanity section;
- :mod:`grid.report.markdown`: the markdown report, section by section
  (:mod:`grid.report.settings` closes it; :mod:`grid.report.detection_tables` lays out Tables 5–8);
- :mod:`grid.report.export`: the files ``er-grid report`` writes (markdown, HTML, JSON, figures).

This module re-exports the names callers and tests use, so ``from grid.report import …`` stays
the one import for the report's API.
"""

from __future__ import annotations

from .markdown import detection_tables, report_markdown
from .metrics import ACC_BY, WORST_CASE, cw_bounded, robust_accuracy
from .paper_values import CW_RMS_BOUND
from .tables import FIGURE4_METHODS, attack_table, cw_table, figure_table, pgd_curves, settings_table, worst_case_table

__all__ = [
    "ACC_BY", "CW_RMS_BOUND", "FIGURE4_METHODS", "WORST_CASE", "attack_table", "cw_bounded", "cw_table",
    "detection_tables", "figure_table", "pgd_curves", "report_markdown", "robust_accuracy", "settings_table",
    "worst_case_table",
]

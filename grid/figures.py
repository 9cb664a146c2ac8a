"""The paper's Figures 3 and 4 as PNG files, drawn from the per-example result rows.

Figure 3 (paper §4.1): accuracy under ℓ∞-PGD against the attack's ε, one panel per dataset,
one line per method (the paper's display names; one line per λ / training ε where a dataset ran
several). Figure 4 (paper §4.3): the same for E-CLA, VAE-CLA and ER-Classifier− only. Here each
panel is its own file: ``figure3_<dataset>.png`` and ``figure4_<dataset>.png``.

The numbers are those of :func:`grid.report.pgd_curves` (robust = correct clean and under PGD,
mean over seeds, in %); with several seeds a line carries ± one standard deviation error bars.
Figures are drawn on matplotlib's Agg canvas (no display, no pyplot global state) and written
atomically: a temporary name in the same folder, then ``os.replace``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from grid.report import FIGURE4_METHODS, dataset_name, method_name, pgd_curves

# (file stem prefix, methods drawn or None for all, title)
FIGURES = (
    ("figure3", None, "Figure 3: accuracy under ℓ∞-PGD"),
    ("figure4", FIGURE4_METHODS, "Figure 4: " + ", ".join(method_name(m) for m in FIGURE4_METHODS)),
)
MARKERS = ("o", "s", "^", "v", "D", "P", "X", "*", "<", ">")


def pgd_figure(curves: pd.DataFrame, dataset: str, methods: Optional[Sequence[str]] = None,
               title: str = "") -> Optional[Figure]:
    """One panel: accuracy (%) under PGD vs ε for ``dataset``, one line per configuration.

    curves: :func:`grid.report.pgd_curves`; methods: registry names to draw (None: all).
    Returns the figure (Agg canvas attached, ready for ``savefig``) or None when nothing is
    left to draw. Each configuration is one ``Line2D`` labelled with its paper row label whose
    y data are the mean accuracies in % at ascending ε; error bars (± std) are drawn as a
    separate, unlabelled artist and only where there are several runs.
    """
    mine = curves[curves["dataset"] == dataset]
    if methods is not None:
        mine = mine[mine["method"].isin(list(methods))]
    if mine.empty:
        return None
    fig = Figure(figsize=(6.0, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for i, (label, line) in enumerate(mine.groupby("label", sort=False)):
        line = line.sort_values("eps")
        x = line["eps"].to_numpy(dtype=float)
        y = 100 * line["robust_accuracy"].to_numpy(dtype=float)
        (drawn,) = ax.plot(x, y, marker=MARKERS[i % len(MARKERS)], markersize=4, label=label)
        if (line["runs"] > 1).any():
            yerr = 100 * line["robust_std"].fillna(0.0).to_numpy(dtype=float)
            ax.errorbar(x, y, yerr=yerr, fmt="none", ecolor=drawn.get_color(), capsize=3, label="_nolegend_")
    ax.set_xlabel("ε (ℓ∞, images in [0, 1])")
    ax.set_ylabel("accuracy under PGD (%)")
    ax.set_ylim(-2, 102)  # room for markers at 0 % and 100 %
    ax.grid(True, alpha=0.3)
    ax.set_title(f"{title} — {dataset_name(dataset)}" if title else dataset_name(dataset))
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def write_figures(df: pd.DataFrame, out_dir) -> list[Path]:
    """Write ``figure3_<dataset>.png`` and ``figure4_<dataset>.png`` for every dataset with PGD rows.

    df: example rows (``grid.store.load``); out_dir: a local folder (created if missing).
    Figure 4 is skipped for a dataset without any of E-CLA, VAE-CLA, ER-Classifier−; nothing is
    written without PGD rows. Returns the paths written, in dataset order, Figure 3 before 4.
    """
    curves = pgd_curves(df)
    if curves.empty:
        return []
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for dataset in dict.fromkeys(curves["dataset"]):
        for prefix, methods, title in FIGURES:
            fig = pgd_figure(curves, dataset, methods, title)
            if fig is not None:
                written.append(_save_png(fig, out / f"{prefix}_{dataset}.png"))
    return written


def _save_png(fig: Figure, path: Path) -> Path:
    # A reader (or a second report run) never sees a half-written PNG.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fig.savefig(tmp, format="png")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path

"""The paper's Figures 3 and 4 as multi-panel PNG (300 dpi) and PDF files, from the result rows.

Figure 3 (paper §4.1): accuracy under ℓ∞-PGD against the attack's ε, one panel per dataset,
one line per configuration (the paper's display names; λ / training ε join the label where a
dataset ran several). Figure 4 (paper §4.3): the same for E-CLA, VAE-CLA and ER-Classifier−,
titled with those of them that ran. Files: ``figure3.png``/``figure3.pdf`` and
``figure4.png``/``figure4.pdf``.

Styles are fixed by the configuration, never by drawing order, so a method looks the same in
every panel and every figure, whatever else the grid holds:

- colour and marker: one each per method (:data:`METHOD_COLORS`, the colour-blind-safe
  Okabe–Ito palette plus a grey, and :data:`METHOD_MARKERS`), so the marker tells two methods
  apart where colour vision does not; the pairs the paper compares (ER / Madry, ER− / E-CLA,
  ER-TRADES / TRADES) get hues far apart; an unknown method gets a light grey and a dot;
- line style: one per λ value (methods without λ are solid);
- marker fill: one per training ε of the method (full, open, half, …), so two training ε of
  one method and λ still differ.

PDFs embed TrueType (Type 42) fonts rather than matplotlib's default Type 3, which camera-ready
checks (IEEE PDF eXpress, ACM TAPS) reject.

The legend is shared by the panels and sits outside them (constrained layout, "outside
right"), so it never covers a line however many configurations there are. Numbers are those of
:func:`grid.report.tables.pgd_curves` (robust = correct clean and under PGD, mean over seeds, in %);
with several seeds a line carries ± one standard deviation error bars, and the legend's
title says so. Figures are drawn on matplotlib's Agg canvas (no display, no pyplot global
state) and written atomically (a temporary name in the same folder, then ``os.replace``:
:mod:`grid.common.files`).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Optional, Sequence

import pandas as pd
from matplotlib import rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from grid.common.files import write_bytes_atomic
from grid.store.rows import present

from .names import dataset_name, method_name, method_rank
from .tables import FIGURE4_METHODS, pgd_curves

DPI = 300
FORMATS = ("png", "pdf")
# Okabe & Ito's eight colour-blind-safe colours plus a mid grey, one per method, fixed. The
# paper's comparisons are drawn far apart in hue: ER vermillion / Madry blue, ER− reddish purple /
# E-CLA bluish green, ER-TRADES orange / TRADES sky blue. (Madry orange beside ER vermillion
# read as one hue.) Yellow, weakest on white, goes to RSE, never in a comparison.
METHOD_COLORS = {
    "none": "#000000", "madry": "#0072B2", "trades": "#56B4E9", "rse": "#F0E442", "er": "#D55E00",
    "er_minus": "#CC79A7", "er_trades": "#E69F00", "e_cla": "#009E73", "vae_cla": "#7F7F7F",
}
# The second cue: a marker shape per method, legible in greyscale and for every colour vision.
METHOD_MARKERS = {
    "none": "o", "madry": "s", "trades": "^", "rse": "D", "er": "v",
    "er_minus": "P", "er_trades": "X", "e_cla": "*", "vae_cla": "h",
}
OTHER_COLOR, OTHER_MARKER = "#BBBBBB", "."
LINE_STYLES = ("-", "--", ":", "-.", (0, (5, 1, 1, 1, 1, 1)), (0, (1, 3)), (0, (8, 2)))
FILL_STYLES = ("full", "none", "left", "bottom", "right", "top")
BAR_LEGEND = "error bars: ± 1 s.d. over seeds"
# Fonts embedded as TrueType (Type 42) in PDF and PostScript; read by savefig, set per save.
FONT_PARAMS = {"pdf.fonttype": 42, "ps.fonttype": 42}
PANEL_SIZE = (3.6, 3.0)  # inches per dataset panel; the legend adds its own width

# (file stem, methods drawn or None for all, title prefix)
FIGURES = (
    ("figure3", None, "Figure 3: accuracy under ℓ∞-PGD"),
    ("figure4", FIGURE4_METHODS, "Figure 4"),
)


class LineStyles:
    """Colour, line style and marker of each configuration, fixed across every figure.

    Built from the whole curve table (every dataset and method), so a λ value or training ε
    gets the same style everywhere. ``style(method, lam, train_eps)`` → matplotlib kwargs.
    """

    def __init__(self, curves: pd.DataFrame):
        self.lams = sorted({float(v) for v in curves["lam"].dropna()})
        self.train_eps = {}
        for method, group in curves.groupby("method"):
            self.train_eps[method] = sorted({float(v) for v in group["train_eps"].dropna()})

    def style(self, method: str, lam=None, train_eps=None) -> dict:
        linestyle = "-" if not present(lam) else LINE_STYLES[self.lams.index(float(lam)) % len(LINE_STYLES)]
        eps_list = self.train_eps.get(method, [])
        fill = FILL_STYLES[eps_list.index(float(train_eps)) % len(FILL_STYLES)] if present(train_eps) else "full"
        return {"color": METHOD_COLORS.get(method, OTHER_COLOR), "linestyle": linestyle,
                "marker": METHOD_MARKERS.get(method, OTHER_MARKER), "fillstyle": fill}


def figure_title(prefix: str, curves: pd.DataFrame, methods: Optional[Sequence[str]]) -> str:
    """``prefix`` plus, for a method subset, the display names of those that ran (paper order)."""
    if methods is None:
        return prefix
    ran = sorted(set(curves["method"]) & set(methods), key=method_rank)
    return f"{prefix}: {', '.join(method_name(m) for m in ran)}"


def pgd_figure(curves: pd.DataFrame, methods: Optional[Sequence[str]] = None, title: str = "",
               styles: Optional[LineStyles] = None) -> Optional[Figure]:
    """Accuracy (%) under PGD vs ε: one panel per dataset, one line per configuration.

    curves: :func:`grid.report.tables.pgd_curves`; methods: registry names to draw (None: all);
    styles: shared :class:`LineStyles` (default: built from ``curves``). Returns the figure
    (Agg canvas attached) or None when nothing is left to draw. In each panel every
    configuration is one ``Line2D`` labelled with its paper row label, y = mean accuracy in %
    at ascending ε; error bars (± std) are a separate, unlabelled artist, only where there are
    several runs. One legend (``fig.legends[0]``) outside the panels lists every configuration once.
    """
    mine = curves if methods is None else curves[curves["method"].isin(list(methods))]
    if mine.empty:
        return None
    styles = styles or LineStyles(curves)
    datasets = list(dict.fromkeys(mine["dataset"]))
    # Tall enough for the legend's entries (one per configuration) beside the panels.
    height = max(PANEL_SIZE[1], 0.6 + 0.17 * mine["label"].nunique())
    fig = Figure(figsize=(PANEL_SIZE[0] * len(datasets) + 2.4, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(datasets), squeeze=False)[0]
    handles: dict[str, Line2D] = {}
    bars = False
    for ax, dataset in zip(axes, datasets):
        panel = mine[mine["dataset"] == dataset]
        for label, line in panel.groupby("label", sort=False):
            line = line.sort_values("eps")
            first = line.iloc[0]
            style = styles.style(first["method"], first["lam"], first["train_eps"])
            x = line["eps"].to_numpy(dtype=float)
            y = 100 * line["robust_accuracy"].to_numpy(dtype=float)
            (drawn,) = ax.plot(x, y, markersize=3.5, linewidth=1.3, label=label, **style)
            handles.setdefault(label, drawn)
            if (line["runs"] > 1).any():
                yerr = 100 * line["robust_std"].fillna(0.0).to_numpy(dtype=float)
                ax.errorbar(x, y, yerr=yerr, fmt="none", ecolor=style["color"], capsize=2, linewidth=0.8,
                            label="_nolegend_")
                bars = True
        ax.set_title(dataset_name(dataset))
        ax.set_xlabel("ε (ℓ∞, images in [0, 1])")
        ax.set_ylim(-2, 102)  # room for markers at 0 % and 100 %
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("accuracy under PGD (%)")
    if title:
        fig.suptitle(title)
    # The bars say what they are where the reader looks up the lines: in the legend's title.
    fig.legend(list(handles.values()), list(handles), loc="outside right upper", fontsize="small", frameon=False,
               title=BAR_LEGEND if bars else None, title_fontsize="small")
    return fig


def write_figures(df: pd.DataFrame, out_dir) -> list[Path]:
    """Write ``figure3.{png,pdf}`` and ``figure4.{png,pdf}`` (one panel per dataset with PGD rows).

    df: example rows (``grid.store.load``); out_dir: a local folder (created if missing).
    Figure 4 is skipped when no dataset ran any of E-CLA, VAE-CLA, ER-Classifier−; nothing is
    written without PGD rows. Returns the paths written, Figure 3 before 4, PNG before PDF.
    """
    curves = pgd_curves(df)
    if curves.empty:
        return []
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    styles = LineStyles(curves)
    written = []
    for stem, methods, prefix in FIGURES:
        fig = pgd_figure(curves, methods, figure_title(prefix, curves, methods), styles)
        if fig is not None:
            written += save_figure(fig, out / stem)
    return written


def save_figure(fig: Figure, stem: Path) -> list[Path]:
    """``stem.png`` (300 dpi) and ``stem.pdf``, each written atomically; returns both paths."""
    return [_save(fig, stem.with_name(f"{stem.name}.{fmt}"), fmt) for fmt in FORMATS]


def _save(fig: Figure, path: Path, fmt: str) -> Path:
    # Rendered in memory, then written whole: a reader (or a second report run) never sees a
    # half-written file.
    buffer = io.BytesIO()
    with rc_context(FONT_PARAMS):  # not set globally: the caller's matplotlib stays as it was
        fig.savefig(buffer, format=fmt, dpi=DPI)
    return write_bytes_atomic(path, buffer.getvalue())

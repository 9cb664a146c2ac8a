"""Figures 3/4: plotted values equal the hand-computed accuracies; at the paper's full grid size
(15 method × λ configurations, four datasets) every line has its own colour/style pair, a method
keeps its colour across figures, the legend stays outside the panels, files are PNG (300 dpi)
and PDF. Figures 5/6: each PGD panel's title gives the ε its trial's codes were attacked at.
Runtime: ~8 s (two 4-panel figures saved twice, one small t-SNE figure)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.container import ErrorbarContainer
from matplotlib.image import imread

from grid.report.figures import DPI, METHOD_COLORS, METHOD_MARKERS, pgd_figure, write_figures
from grid.report import pgd_curves
from grid.store import CODES_SCHEMA, ROW_SCHEMA

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def pgd_rows(dataset: str, method: str, per_seed: dict, lam=None) -> list[dict]:
    """``per_seed``: seed → {ε: robust flags of examples 0, 1, ...}."""
    rows = []
    for seed, by_eps in per_seed.items():
        for eps, robust in by_eps.items():
            rows += [{
                "experiment": "unit", "trial_id": f"{dataset}-{method}-{lam}-{seed}", "dataset": dataset,
                "method": method, "train_eps": None, "lam": lam, "seed": seed, "epochs": 1, "attack": "pgd",
                "norm": "Linf", "eps": eps, "batch": 0, "sample_idx": i, "label": 0, "pred_clean": 0,
                "pred_adv": 0, "correct_clean": True, "correct_adv": bool(r),
            } for i, r in enumerate(robust)]
    return rows


@pytest.fixture
def df() -> pd.DataFrame:
    rows = (
        pgd_rows("mnist", "none", {0: {0.0: [1, 1, 1, 1], 0.1: [1, 1, 0, 0], 0.2: [0, 0, 0, 0]},
                                   1: {0.0: [1, 1, 1, 0], 0.1: [1, 0, 0, 0], 0.2: [0, 0, 0, 0]}})
        + pgd_rows("mnist", "e_cla", {0: {0.0: [1, 1, 1, 1], 0.1: [1, 1, 1, 0], 0.2: [1, 0, 0, 0]}})
        + pgd_rows("mnist", "er_minus", {0: {0.0: [1, 1, 1, 1], 0.1: [1, 1, 1, 1], 0.2: [1, 1, 0, 0]},
                                         1: {0.0: [1, 1, 1, 1], 0.1: [1, 1, 1, 0], 0.2: [1, 0, 0, 0]}},
                   lam=1.0)
        # digits has no Figure 4 method: no figure4_digits.png.
        + pgd_rows("digits", "madry", {0: {0.05: [1, 1, 1, 0], 0.1: [1, 1, 0, 0]}})
        # Other attacks are not in the PGD figures.
        + [{**r, "attack": "fgsm"} for r in pgd_rows("mnist", "none", {0: {0.1: [1, 1, 1, 1]}})]
    )
    frame = pd.DataFrame(rows)
    assert set(frame.columns) <= set(ROW_SCHEMA.names)
    return frame


def panel(fig, title: str):
    (ax,) = [ax for ax in fig.axes if ax.get_title() == title]
    return ax


def plotted(ax) -> dict[str, list[float]]:
    """Legend label → y data of each labelled line (error-bar caps are unlabelled)."""
    return {line.get_label(): [float(v) for v in line.get_ydata()]
            for line in ax.get_lines() if not line.get_label().startswith("_")}


def test_figure_lines_are_the_mean_accuracies_over_seeds(df):
    curves = pgd_curves(df)
    fig3 = pgd_figure(curves)
    assert [ax.get_title() for ax in fig3.axes] == ["MNIST", "digits"]  # one panel per dataset, paper order
    mnist = panel(fig3, "MNIST")
    assert plotted(mnist) == {  # in %, at ε 0, 0.1, 0.2, the paper's method order
        "No Defense": [87.5, 37.5, 0.0],
        "ER-Classifier−": [100.0, 87.5, 37.5],
        "E-CLA": [100.0, 75.0, 25.0],
    }
    assert list(mnist.get_lines()[0].get_xdata()) == [0.0, 0.1, 0.2]
    # Error bars only for the two-seed lines; ER-Classifier−: seeds 100/100, 100/75, 50/25 %,
    # so the bars span ± std = 0, ±17.68, ±17.68 points.
    bars = [c for c in mnist.containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == 2
    segments = bars[1].lines[2][0].get_segments()
    assert [round(float(s[1][1] - s[0][1]), 2) for s in segments] == [0.0, 35.36, 35.36]
    assert fig3.legends[0].get_title().get_text() == "error bars: ± 1 s.d. over seeds"  # the bars are labelled
    fig4 = pgd_figure(curves, methods=("e_cla", "vae_cla", "er_minus"))
    assert [ax.get_title() for ax in fig4.axes] == ["MNIST"]  # digits ran none of them
    assert list(plotted(fig4.axes[0])) == ["ER-Classifier−", "E-CLA"]


PAPER_CONFIGS = [(m, None) for m in ("none", "madry", "trades", "rse", "e_cla", "vae_cla")] + [
    (m, lam) for m in ("er", "er_minus", "er_trades") for lam in (1.0, 5.0, 10.0)]


def full_grid(methods=PAPER_CONFIGS) -> pd.DataFrame:
    """The paper's 15 configurations on four datasets, PGD at 5 ε, 4 examples each (synthetic)."""
    rows = []
    for d, dataset in enumerate(("mnist", "cifar10", "stl10", "tiny_imagenet")):
        for c, (method, lam) in enumerate(methods):
            flags = {round(0.01 * k, 2): [(c + k + d + i) % 3 > 0 for i in range(4)] for k in range(5)}
            rows += pgd_rows(dataset, method, {0: flags}, lam=lam)
    return pd.DataFrame(rows)


def test_full_grid_figures_are_distinct_legible_and_written_as_png_and_pdf(tmp_path):
    written = write_figures(full_grid(), tmp_path)
    assert [p.name for p in written] == ["figure3.png", "figure3.pdf", "figure4.png", "figure4.pdf"]
    for path in written:
        magic = path.read_bytes()[:8]
        assert magic == PNG_MAGIC if path.suffix == ".png" else magic.startswith(b"%PDF")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in written)  # no temp files

    curves = pgd_curves(full_grid())
    fig3, fig4 = pgd_figure(curves), pgd_figure(curves, methods=("e_cla", "vae_cla", "er_minus"))
    height, width, _ = imread(written[0]).shape
    assert (width, height) == tuple(round(v * DPI) for v in fig3.get_size_inches())
    colours = {}
    for fig in (fig3, fig4):
        fig.canvas.draw()
        (legend,) = fig.legends
        box = legend.get_window_extent()
        for ax in fig.axes:
            lines = [l for l in ax.get_lines() if not l.get_label().startswith("_")]
            styles = [(l.get_color(), str(l.get_linestyle()), l.get_marker(), l.get_fillstyle()) for l in lines]
            assert len(styles) == len(set(styles)), f"two lines look alike in {ax.get_title()}"
            # The legend box lies outside every panel (window extents in display pixels).
            assert not box.overlaps(ax.get_window_extent()), ax.get_title()
            for line in lines:
                colours.setdefault(line.get_label().split(" (")[0], set()).add(line.get_color())
        assert len(legend.get_texts()) == len(set(fig.axes[0].get_legend_handles_labels()[1]))
    assert len(fig3.axes) == 4 and len(fig3.legends[0].get_texts()) == 15
    # One colour per method in every panel of both figures.
    assert all(len(c) == 1 for c in colours.values()), colours
    assert colours["E-CLA"] == {METHOD_COLORS["e_cla"]}


def test_figure4_title_names_only_methods_that_ran(tmp_path):
    without_vae = [c for c in PAPER_CONFIGS if c[0] != "vae_cla"]
    curves = pgd_curves(full_grid(without_vae))
    from grid.report.figures import FIGURES, figure_title
    title = figure_title(FIGURES[1][2], curves, FIGURES[1][1])
    assert title == "Figure 4: ER-Classifier−, E-CLA"


def test_no_pgd_rows_writes_nothing(df, tmp_path):
    assert write_figures(df[df["attack"] != "pgd"], tmp_path / "none") == []
    assert not (tmp_path / "none").exists()


def code_rows(method: str, eps: float, rule: dict, n: int = 12, lam=None) -> list[dict]:
    """One trial's codes rows (``CODES_SCHEMA``), natural and adversarial, attacked at ``eps``."""
    from grid.common.fingerprint import canonical_json

    config = canonical_json({"attack": "pgd", "norm": "Linf", "eps": eps, "steps": 40, "eps_rule": rule})
    z = np.random.default_rng(len(method)).normal(size=(2, n, 4)).astype(np.float32)
    return [{"experiment": "unit", "trial_id": f"t-{method}", "dataset": "digits", "method": method,
             "train_eps": None, "lam": lam, "seed": 0, "sample_idx": i, "label": i % 3, "kind": kind,
             "pred": (i + (k and i % 2)) % 3, "code": z[k, i].tolist(), "attack_config": config,
             "checkpoint_hash": "abc"} for k, kind in enumerate(("natural", "adversarial")) for i in range(n)]


def test_each_pgd_panel_of_the_embedding_figure_names_its_eps():
    from grid.report.embedding_figure import attack_eps, embedding_figure
    from grid.report.markdown import ReportContext, embedding_section

    # Two methods attacked at different ε, as the "half" rule chooses them per trial.
    codes = pd.DataFrame(code_rows("e_cla", 0.125, {"rule": "half", "pgd_accuracy": 0.5, "n": 12})
                         + code_rows("er_minus", 0.3, {"rule": "train_eps"}, lam=5.0))
    assert set(codes.columns) == set(CODES_SCHEMA.names) - {"code_version", "created_at"}
    titles = [ax.get_title() for ax in embedding_figure(codes, "digits").axes]
    assert [t.splitlines()[1] for t in titles] == ["natural images", "PGD images, ε=0.125",
                                                   "natural images", "PGD images, ε=0.3"]
    assert titles[0].startswith("E-CLA") and titles[2].startswith("ER-Classifier− (λ=5)")
    mixed = pd.DataFrame(code_rows("e_cla", 0.1, {"rule": "given"}) + code_rows("e_cla", 0.2, {"rule": "given"})[:1])
    with pytest.raises(ValueError, match=r"attacked at several ε: \[0.1, 0.2\]"):
        attack_eps(mixed)
    caption = "\n".join(embedding_section(ReportContext(df=pd.DataFrame(), figures=["embedding_digits.png"])))
    assert "nearest 50%" in caption and "![embedding_digits](embedding_digits.png)" in caption


def test_pdfs_embed_truetype_fonts_not_type3(tmp_path):
    """Camera-ready checks reject Type 3 fonts; matplotlib writes them unless told otherwise.
    matplotlib's PDF writer keeps font dictionaries outside compressed streams, so the bytes show
    the font subtype directly."""
    import matplotlib

    before = matplotlib.rcParams["pdf.fonttype"]
    written = write_figures(full_grid(), tmp_path)
    pdfs = [p for p in written if p.suffix == ".pdf"]
    assert pdfs
    for pdf in pdfs:
        data = pdf.read_bytes()
        assert b"/Type3" not in data, pdf.name
        assert b"/TrueType" in data or b"/CIDFontType2" in data, pdf.name  # Type 42: TrueType outlines
    assert matplotlib.rcParams["pdf.fonttype"] == before  # set for the save only, not globally


def _relative_luminance(hex_colour: str) -> float:
    channels = [int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def test_each_method_has_its_own_colour_and_marker_and_compared_pairs_differ_in_hue():
    """The second cue: no two methods share a marker or a colour, so greyscale prints and
    colour-blind readers still tell them apart; the paper's compared pairs (ER / Madry,
    ER− / E-CLA, ER-TRADES / TRADES) are not neighbouring hues (Madry and ER were two oranges)."""
    import colorsys

    assert len(set(METHOD_COLORS.values())) == len(METHOD_COLORS)
    assert len(set(METHOD_MARKERS.values())) == len(METHOD_MARKERS) and set(METHOD_MARKERS) == set(METHOD_COLORS)

    def hue(method):
        c = METHOD_COLORS[method]
        return colorsys.rgb_to_hsv(*(int(c[i:i + 2], 16) / 255 for i in (1, 3, 5)))[0] * 360

    for a, b in (("er", "madry"), ("er_minus", "e_cla"), ("er_trades", "trades")):
        gap = abs(hue(a) - hue(b))
        assert min(gap, 360 - gap) > 60, (a, b, METHOD_COLORS[a], METHOD_COLORS[b])
    # Every compared method stays visible on a white page (WCAG contrast ≥ 1.5 against white).
    for method in ("er", "madry", "er_minus", "e_cla", "er_trades", "trades"):
        assert 1.05 / (_relative_luminance(METHOD_COLORS[method]) + 0.05) >= 1.5, method

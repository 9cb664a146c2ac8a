"""Figures 3/4 as PNG files: which files, valid PNGs, and plotted values equal the hand-computed accuracies."""

from __future__ import annotations

import pandas as pd
import pytest
from matplotlib.container import ErrorbarContainer
from matplotlib.image import imread

from grid.figures import pgd_figure, write_figures
from grid.report import pgd_curves
from grid.store import ROW_SCHEMA

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


def plotted(fig) -> dict[str, list[float]]:
    """Legend label → y data of each labelled line (error-bar caps are unlabelled)."""
    return {line.get_label(): [float(v) for v in line.get_ydata()]
            for line in fig.axes[0].get_lines() if not line.get_label().startswith("_")}


def test_figure_lines_are_the_mean_accuracies_over_seeds(df):
    curves = pgd_curves(df)
    fig3 = pgd_figure(curves, "mnist")
    assert plotted(fig3) == {  # in %, at ε 0, 0.1, 0.2, the paper's method order
        "No Defense": [87.5, 37.5, 0.0],
        "ER-Classifier−": [100.0, 87.5, 37.5],
        "E-CLA": [100.0, 75.0, 25.0],
    }
    assert list(fig3.axes[0].get_lines()[0].get_xdata()) == [0.0, 0.1, 0.2]
    # Error bars only for the two-seed lines; ER-Classifier−: seeds 100/100, 100/75, 50/25 %,
    # so the bars span ± std = 0, ±17.68, ±17.68 points.
    bars = [c for c in fig3.axes[0].containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == 2
    segments = bars[1].lines[2][0].get_segments()
    assert [round(float(s[1][1] - s[0][1]), 2) for s in segments] == [0.0, 35.36, 35.36]
    fig4 = pgd_figure(curves, "mnist", methods=("e_cla", "vae_cla", "er_minus"))
    assert list(plotted(fig4)) == ["ER-Classifier−", "E-CLA"]
    assert pgd_figure(curves, "digits", methods=("e_cla", "vae_cla", "er_minus")) is None


def test_write_figures_writes_valid_pngs_atomically(df, tmp_path):
    out = tmp_path / "figs"
    paths = write_figures(df, out)
    assert [p.name for p in paths] == ["figure3_mnist.png", "figure4_mnist.png", "figure3_digits.png"]
    for path in paths:
        assert path.read_bytes()[:8] == PNG_MAGIC
        height, width, _ = imread(path).shape
        assert (width, height) == (600, 420)
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in paths)  # no temp files left
    # A rerun replaces the files in place.
    assert write_figures(df, out) == paths and len(list(out.iterdir())) == 3


def test_no_pgd_rows_writes_nothing(df, tmp_path):
    assert write_figures(df[df["attack"] != "pgd"], tmp_path / "none") == []
    assert not (tmp_path / "none").exists()

"""The paper's Figures 5/6: t-SNE of the code z, natural and under PGD, for two methods side by side.

Paper §4.4: the code z = Q(x) of test images is projected to 2-D by t-SNE, and so is the code
of their ℓ∞-PGD adversarial images; the first two panels are E-CLA (natural, adversarial), the
last two ER-Classifier (natural, adversarial). In the adversarial panels an example the attack
misclassified is a down triangle, one it failed on a dot; colours are the true classes. Each
PGD panel's title gives the ε its codes were attacked at (read from the rows' ``attack_config``):
by default the ε where that trial's PGD accuracy is nearest 50% (``grid.spec.codes_plan``), so
two methods' panels may differ in ε.

One figure per dataset, ``embedding_<dataset>.png`` (300 dpi) and ``.pdf``, from the codes
table (:mod:`grid.stages.codes`). The pair is E-CLA vs ER-Classifier− when both ran, else the first
two methods with codes in the paper's order (:data:`PAIR_PREFERENCE`); a method alone gives a
two-panel figure. Per method one trial is drawn: the lowest (λ, training ε, seed), named in
the panel title. Natural and adversarial codes are projected separately, as in the paper, by
scikit-learn's ``TSNE`` (PCA initialisation, ``random_state=0``, perplexity 30 or less where
the subset is small), so the figure is the same on every run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from grid.store import ADVERSARIAL, NATURAL, load_codes
from grid.store.rows import present

from .figures import save_figure
from .formatting import num
from .names import dataset_name, method_name, method_rank

# Preferred pairs, first match wins: the paper's E-CLA vs ER-Classifier (without min-max).
PAIR_PREFERENCE = (("e_cla", "er_minus"), ("e_cla", "er"), ("none", "er_minus"), ("none", "er"))
PERPLEXITY = 30.0


def choose_pair(methods) -> list[str]:
    """The two methods to compare (see :data:`PAIR_PREFERENCE`), or fewer when fewer ran."""
    ran = set(methods)
    for pair in PAIR_PREFERENCE:
        if set(pair) <= ran:
            return list(pair)
    return sorted(ran, key=method_rank)[:2]


def chosen_trials(codes: pd.DataFrame) -> pd.DataFrame:
    """The rows of one trial per method of the chosen pair, in panel order."""
    pair = choose_pair(codes["method"].unique())
    keep = []
    for method in pair:
        trials = codes[codes["method"] == method][["trial_id", "lam", "train_eps", "seed"]].drop_duplicates()
        first = trials.sort_values(["lam", "train_eps", "seed", "trial_id"], na_position="first").iloc[0]
        keep.append(codes[codes["trial_id"] == first["trial_id"]])
    return pd.concat(keep, ignore_index=True)


def attack_eps(rows: pd.DataFrame) -> float:
    """The one ε a trial's code rows were attacked at: the ``eps`` of their ``attack_config``."""
    configs = {json.loads(config)["eps"] for config in rows["attack_config"].unique()}
    if len(configs) != 1:
        raise ValueError(f"codes of trial {rows['trial_id'].iloc[0]} were attacked at several ε: {sorted(configs)}")
    return float(configs.pop())


def project(codes: np.ndarray) -> np.ndarray:
    """(N, k) codes → (N, 2) t-SNE coordinates (deterministic: PCA init, random_state 0)."""
    from sklearn.manifold import TSNE

    n = len(codes)
    if n < 3:
        return np.zeros((n, 2))
    perplexity = min(PERPLEXITY, (n - 1) / 3)  # sklearn requires perplexity < n
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=0).fit_transform(codes)


def embedding_figure(codes: pd.DataFrame, dataset: str) -> Optional[Figure]:
    """The 2- or 4-panel t-SNE figure of ``dataset`` from code rows (:data:`grid.store.CODES_SCHEMA`)."""
    mine = codes[codes["dataset"] == dataset]
    if mine.empty:
        return None
    chosen = chosen_trials(mine)
    panels = [(trial_id, kind) for trial_id in dict.fromkeys(chosen["trial_id"]) for kind in (NATURAL, ADVERSARIAL)]
    fig = Figure(figsize=(3.2 * len(panels), 3.4), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    classes = int(mine["label"].max()) + 1
    cmap = "tab10" if classes <= 10 else "nipy_spectral"
    for ax, (trial_id, kind) in zip(axes, panels):
        rows = chosen[(chosen["trial_id"] == trial_id) & (chosen["kind"] == kind)].sort_values("sample_idx")
        xy = project(np.stack(rows["code"].map(lambda z: np.asarray(z, dtype=np.float32)).to_numpy()))
        labels = rows["label"].to_numpy()
        wrong = (rows["pred"].to_numpy() != labels) if kind == ADVERSARIAL else np.zeros(len(rows), dtype=bool)
        for marker, mask in (("o", ~wrong), ("v", wrong)):
            if mask.any():
                ax.scatter(xy[mask, 0], xy[mask, 1], c=labels[mask], cmap=cmap, vmin=0, vmax=max(classes - 1, 1),
                           marker=marker, s=8 if marker == "o" else 14, linewidths=0)
        first = rows.iloc[0]
        extras = [f"λ={num(first['lam'])}"] if present(first["lam"]) else []
        images = "natural images" if kind == NATURAL else f"PGD images, ε={num(attack_eps(rows))}"
        ax.set_title(f"{method_name(first['method'])}{' (' + ', '.join(extras) + ')' if extras else ''}\n{images}",
                     fontsize="medium")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"t-SNE of the code z — {dataset_name(dataset)} (▼ = misclassified under PGD)")
    return fig


def write_embedding_figures(results_root, out_dir) -> list[Path]:
    """``embedding_<dataset>.{png,pdf}`` for every dataset with stored codes; [] when there are none."""
    codes = load_codes(results_root)
    if codes.empty:
        return []
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    datasets = sorted(codes["dataset"].unique(), key=lambda d: (d not in ("mnist", "cifar10"), d))
    for dataset in datasets:
        fig = embedding_figure(codes, dataset)
        if fig is not None:
            written += save_figure(fig, out / f"embedding_{dataset}")
    return written

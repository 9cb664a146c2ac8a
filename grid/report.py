"""The paper's figures and tables, recomputed from the per-example result rows (pandas only).

Input is the frame :func:`grid.store.load` returns (one row per evaluated example; columns of
``grid.store.ROW_SCHEMA``), and optionally the trial table from :func:`grid.store.load_trials`.

Definitions used throughout:

- An example is *robust* under an attack when it is classified correctly both clean and under
  the attack (``correct_clean & correct_adv``), so robust accuracy ≤ clean accuracy, as in
  AutoAttack and RobustBench.
- ``worst_case`` is a pseudo-attack: for each trial, threat model (``norm``) and ε, an example
  counts robust only if it is robust under *every* attack run at that ε (AutoAttack's ensemble
  rule, here over whatever attacks the plan ran). It is computed on the examples that every one
  of those attacks evaluated, and only where at least two attacks were run; it is reported next
  to each attack alone.
- C&W (``cw_l2``) is unbounded: an example counts robust at an RMS-ℓ2 bound when it is correct
  clean and the attack failed or needed ``l2_rms`` above the bound (the paper's Table 2 uses
  0.005 on MNIST).
- Runs are seeds: trials that differ only in their seed are one configuration, reported as
  mean ± std (ddof=1) over runs with the number of runs. ``train_eps`` and ``lam`` always
  separate configurations, whatever ``by`` says.

Every accuracy carries ``n`` (examples behind it) and ``n_planned`` (the evaluation plan's
``eval_n`` per trial and (attack, ε), read from the rows' ``eval_subset`` fingerprint); a cell
with ``n < n_planned`` is printed as incomplete. The markdown report itself is built in
:mod:`grid.report_markdown` (section builders) and :mod:`grid.report_settings`.

Layout: :func:`report_markdown` prints Tables 1–3 and the worst case as the paper does, one
row per method under its display name (:data:`METHOD_NAMES`) and one column per dataset
(:data:`DATASET_NAMES`) at each ε the data hold (:func:`attack_table`, :func:`cw_table`,
:func:`worst_case_table`), each followed by the long per-configuration listing with clean
accuracy; Figures 3/4 as tables of ε × method (:func:`pgd_curves`, :func:`figure_table`;
``grid.figures`` draws the same numbers as PNG).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Callable, Iterable, Optional, Sequence

import pandas as pd

WORST_CASE = "worst_case"
DEFAULT_BY = ("dataset", "method", "attack", "eps")
# Trial settings other than the seed that change what a trial computes: never averaged over.
CONFIG_COLUMNS = ("train_eps", "lam")
# Columns that are constant within a trial (copied onto worst-case rows).
TRIAL_COLUMNS = ("experiment", "dataset", "method", "train_eps", "lam", "seed", "epochs")
CW_ATTACK, PGD_ATTACK, AUTOATTACK, RAYS = "cw_l2", "pgd", "autoattack", "rays"
CW_RMS_BOUND = 0.005  # the paper's Table 2 threshold on RMS ℓ2 (MNIST)
RESULT_COLUMNS = ("robust_accuracy", "robust_std", "clean_accuracy", "clean_std", "runs", "n", "n_planned")
# Grouping of the report's shared accuracy table: the threat model keeps an ℓ2 worst case apart
# from an ℓ∞ one at the same ε value.
ACC_BY = ("dataset", "method", "attack", "norm", "eps")

# The paper's display names, in the order of its tables (rows) and figures (lines); a method or
# dataset not listed keeps its registry name and sorts after these.
METHOD_NAMES = {
    "none": "No Defense", "madry": "Madry's Adv", "trades": "Trades", "rse": "RSE",
    "er": "ER-Classifier", "er_minus": "ER-Classifier−", "er_trades": "ER-Trades",
    "e_cla": "E-CLA", "vae_cla": "VAE-CLA",
}
DATASET_NAMES = {
    "mnist": "MNIST", "cifar10": "CIFAR10", "stl10": "STL10", "tiny_imagenet": "Tiny ImageNet",
    "digits": "digits",
}
# Figure 4: the embedding regulariser without adversarial training against its two ablations.
FIGURE4_METHODS = ("e_cla", "vae_cla", "er_minus")


# --------------------------------------------------------------------------- accuracy tables


def with_worst_case(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` plus ``attack == "worst_case"`` rows: one per (trial, norm, ε, example).

    Their ``correct_adv`` is True only where the example is robust under every attack of that
    trial, norm and ε; trial-level columns are copied, per-attack columns (l2, queries, ...)
    are left empty.
    """
    if df.empty:
        return df
    key = ["trial_id", "norm", "eps"]
    d = df[df["attack"] != WORST_CASE].assign(
        _robust=df["correct_clean"].astype(bool) & df["correct_adv"].astype(bool)
    )
    attacks_at = d.groupby(key, dropna=False)["attack"].nunique().rename("_attacks_at")
    per_example = d.groupby(key + ["sample_idx"], dropna=False).agg(
        _robust=("_robust", "all"),
        _attacks=("attack", "nunique"),
        correct_clean=("correct_clean", "first"),
        label=("label", "first"),
        pred_clean=("pred_clean", "first"),
        **({"eval_subset": ("eval_subset", "first")} if "eval_subset" in d.columns else {}),
    ).join(attacks_at, on=key)
    # Only examples every attack at this ε evaluated (a half-finished attack must not make
    # the ensemble look stronger or weaker), and only where there is an ensemble at all.
    keep = (per_example["_attacks"] == per_example["_attacks_at"]) & (per_example["_attacks_at"] >= 2)
    per_example = per_example[keep].reset_index()
    if per_example.empty:
        return df
    trial_cols = [c for c in TRIAL_COLUMNS if c in d.columns]
    trials = d[["trial_id", *trial_cols]].drop_duplicates("trial_id")
    worst = per_example.merge(trials, on="trial_id", how="left")
    worst["attack"] = WORST_CASE
    worst["correct_adv"] = worst["_robust"]
    worst = worst.drop(columns=["_robust", "_attacks", "_attacks_at"])
    return pd.concat([df, worst.reindex(columns=df.columns)], ignore_index=True)


def per_trial_accuracy(df: pd.DataFrame, by: Sequence[str] = DEFAULT_BY) -> pd.DataFrame:
    """One row per (trial, ``by`` group): robust and clean accuracy and example count ``n``."""
    _require(df, ["trial_id", "correct_clean", "correct_adv", *by])
    keys = ["trial_id", *_with_config(by, df)]
    d = df.assign(_robust=df["correct_clean"].astype(bool) & df["correct_adv"].astype(bool),
                  _clean=df["correct_clean"].astype(bool), _planned=planned_n(df),
                  _pair=df["attack"].astype(str) + "|" + df["eps"].astype(str))
    out = d.groupby(keys, dropna=False, sort=True).agg(
        robust_accuracy=("_robust", "mean"), clean_accuracy=("_clean", "mean"), n=("_robust", "size"),
        n_planned=("_planned", "max"), _pairs=("_pair", "nunique"),
    )
    # The plan asks for eval_n examples per (attack, ε); a group pooling several asks for more.
    out["n_planned"] = out["n_planned"] * out.pop("_pairs")
    return out.reset_index()


def planned_n(df: pd.DataFrame) -> pd.Series:
    """Per row, the evaluation plan's examples per (attack, ε): ``n`` of its ``eval_subset``
    fingerprint ("n=1000,seed=0"); NaN where the rows carry no fingerprint."""
    if "eval_subset" not in df.columns:
        return pd.Series(float("nan"), index=df.index)
    return pd.to_numeric(df["eval_subset"].astype(str).str.extract(r"n=(\d+)")[0], errors="coerce")


def robust_accuracy(
    df: pd.DataFrame, by: Sequence[str] = DEFAULT_BY, worst_case: bool = True
) -> pd.DataFrame:
    """Robust and clean accuracy per group, mean ± std over seeds.

    df: example rows (``grid.store.load``). by: grouping columns (``train_eps`` and ``lam``
    are added when absent, since they are different configurations, not runs).
    worst_case: add the ``worst_case`` pseudo-attack (see the module docstring); only when
    ``attack`` is in ``by``, since otherwise its rows would be averaged in with the attacks'.

    Returns columns ``by + [train_eps, lam] + robust_accuracy, robust_std, clean_accuracy,
    clean_std, runs, n``: accuracies in [0, 1] averaged over runs (trials), std with ddof=1
    (NaN for one run), ``runs`` the number of trials, ``n`` the examples over all runs.
    """
    by = list(by)
    if df.empty:
        return pd.DataFrame(columns=[*_with_config(by, df), *RESULT_COLUMNS])
    if worst_case and "attack" in by:
        df = with_worst_case(df)
    trials = per_trial_accuracy(df, by)
    keys = _with_config(by, df)
    out = trials.groupby(keys, dropna=False, sort=True).agg(
        robust_accuracy=("robust_accuracy", "mean"), robust_std=("robust_accuracy", "std"),
        clean_accuracy=("clean_accuracy", "mean"), clean_std=("clean_accuracy", "std"),
        runs=("trial_id", "nunique"), n=("n", "sum"), n_planned=("n_planned", lambda s: s.sum(min_count=1)),
    )
    return out.reset_index()


def cw_bounded(df: pd.DataFrame, bound: float = CW_RMS_BOUND, attack: str = CW_ATTACK) -> pd.DataFrame:
    """The C&W rows of ``df`` with ``correct_adv`` judged at RMS-ℓ2 ≤ ``bound``.

    An example is robust when it is correct clean and either the attack failed
    (``correct_adv``) or its adversarial example needs ``l2_rms > bound``. Misclassified clean
    examples stay not robust (their distortion is 0).
    """
    if not bound > 0:
        raise ValueError(f"bound: expected an RMS ℓ2 bound > 0, got {bound!r}")
    cw = df[df["attack"] == attack].copy()
    cw["correct_adv"] = cw["correct_clean"].astype(bool) & (
        cw["correct_adv"].astype(bool) | (cw["l2_rms"] > bound)
    )
    return cw


# --------------------------------------------------------------------------- paper layout


def method_name(method: str) -> str:
    """The paper's display name of a registry method name (``"er_minus"`` → ``"ER-Classifier−"``)."""
    return METHOD_NAMES.get(method, method)


def dataset_name(dataset: str) -> str:
    """The paper's display name of a registry dataset name (``"tiny_imagenet"`` → ``"Tiny ImageNet"``)."""
    return DATASET_NAMES.get(dataset, dataset)


@dataclass(frozen=True)
class RowLabels:
    """The paper-layout row label of every configuration (dataset, method, λ, train ε) in a frame.

    One row per method, named as in the paper. λ joins the label when some dataset ran the
    method at several λ (so a λ row lines up across datasets); train ε joins it only where one
    dataset ran several, since each dataset has its own ε scale (0.3 on MNIST, 0.03 on CIFAR10)
    and the paper's rows span them. :func:`settings_table` shows what an unlabelled row ran.
    """

    labels: dict  # (dataset, method, λ | None, train ε | None) -> label
    order: tuple  # labels in the paper's method order, then by λ and train ε

    @classmethod
    def of(cls, df: pd.DataFrame) -> "RowLabels":
        cols = ["dataset", "method", "lam", "train_eps"]
        configs = {_config_key(*values) for values in
                   df.reindex(columns=cols).drop_duplicates().itertuples(index=False)}
        per_pair = defaultdict(list)
        for config in configs:
            per_pair[config[:2]].append(config)
        lam_split = {method for (_, method), cs in per_pair.items() if len({c[2] for c in cs}) > 1}
        eps_split = {pair for pair, cs in per_pair.items() if len({c[3] for c in cs}) > 1}
        labels, rank = {}, {}
        for config in configs:
            dataset, method, lam, train_eps = config
            extras = []
            if method in lam_split and lam is not None:
                extras.append(f"λ={_num(lam)}")
            if (dataset, method) in eps_split and train_eps is not None:
                extras.append(f"train ε={_num(train_eps)}")
            label = method_name(method) + (f" ({', '.join(extras)})" if extras else "")
            labels[config] = label
            key = (_method_rank(method), _nan_low(lam), _nan_low(train_eps))
            rank[label] = min(rank.get(label, key), key)
        return cls(labels, tuple(sorted(rank, key=lambda label: (rank[label], label))))

    def label(self, dataset, method, lam=None, train_eps=None) -> str:
        return self.labels[_config_key(dataset, method, lam, train_eps)]


def paper_table(
    acc: pd.DataFrame, labels: RowLabels, column: Optional[Callable[[object], tuple]] = None,
) -> pd.DataFrame:
    """An accuracy table in the paper's layout: methods down, datasets across.

    acc: rows of :func:`robust_accuracy` for one attack (columns dataset, method, lam,
    train_eps, robust_accuracy, robust_std, runs, and ``eps`` unless ``column`` ignores it).
    labels: row labels of the configurations (:class:`RowLabels`). column: maps an acc row to
    ``(sort key, header)``; default one column per (dataset, ε), e.g. ``"MNIST ε=0.3"``.
    Returns a frame of formatted cells (``mean ± std [runs]`` in %, ``–`` where a method has no
    result), index = row labels in the paper's order, columns in dataset order.
    """
    column = column or _dataset_eps_column
    cells, headers = {}, {}
    for row in acc.itertuples(index=False):
        label = labels.label(row.dataset, row.method, getattr(row, "lam", None), getattr(row, "train_eps", None))
        key, header = column(row)
        headers[header] = key
        cells[(label, header)] = _mean_std(row)
    return _cell_frame(cells, labels.order, sorted(headers, key=lambda h: (headers[h], h)))


def attack_table(df: pd.DataFrame, attack: str, acc: Optional[pd.DataFrame] = None) -> Optional[pd.DataFrame]:
    """Robust accuracy under one attack in the paper's layout (Table 1: ``autoattack``, Table 3: ``rays``).

    One column per (dataset, ε) that the attack ran at. acc: :func:`robust_accuracy` of ``df``
    if already computed (it is reused, not recomputed). None when ``df`` has no ``attack`` rows.
    """
    if df.empty or not (df["attack"] == attack).any():
        return None
    if acc is None:
        acc = robust_accuracy(df[df["attack"] == attack], worst_case=False)
    return paper_table(acc[acc["attack"] == attack], RowLabels.of(df))


def cw_table(df: pd.DataFrame, bound: float = CW_RMS_BOUND) -> Optional[pd.DataFrame]:
    """Table 2: accuracy under C&W-ℓ2 at RMS ℓ2 ≤ ``bound`` (see :func:`cw_bounded`), one column per dataset.

    None when ``df`` has no ``cw_l2`` rows.
    """
    if df.empty or not (df["attack"] == CW_ATTACK).any():
        return None
    acc = robust_accuracy(cw_bounded(df, bound), by=["dataset", "method", "attack"], worst_case=False)
    return paper_table(acc, RowLabels.of(df), column=_dataset_column)


def worst_case_table(df: pd.DataFrame, acc: Optional[pd.DataFrame] = None) -> Optional[pd.DataFrame]:
    """Per-example worst case over the attacks run at each (dataset, threat model, ε), paper layout.

    See the module docstring for the rule. acc: :func:`robust_accuracy` of ``df`` with its
    worst case by :data:`ACC_BY` (with ``norm``), if already computed. None when no (trial, ε)
    ran two attacks or more.
    """
    if df.empty:
        return None
    if acc is None or "norm" not in acc.columns:
        acc = robust_accuracy(df, by=ACC_BY)
    worst = acc[acc["attack"] == WORST_CASE]
    if worst.empty:
        return None
    return paper_table(worst, RowLabels.of(df), column=_dataset_norm_eps_column)


def worst_case_attacks(df: pd.DataFrame) -> dict:
    """``{column header of worst_case_table: sorted attacks}``: which attacks each worst case is over."""
    out = {}
    real = df[df["attack"] != WORST_CASE]
    for (dataset, norm, eps), attacks in real.groupby(["dataset", "norm", "eps"])["attack"]:
        names = sorted(attacks.unique())
        if len(names) >= 2:
            out[_dataset_norm_eps_column_of(dataset, norm, eps)[1]] = names
    return out


def settings_table(df: pd.DataFrame) -> Optional[pd.DataFrame]:
    """λ and training ε behind each cell of the paper-layout tables (rows and columns as there).

    Cells ``"λ=1, train ε=0.3"``; None when no method has either setting (only ``none``,
    ``e_cla``, ...).
    """
    if df.empty:
        return None
    labels = RowLabels.of(df)
    cells, columns = {}, {}
    for (dataset, _, lam, train_eps), label in labels.labels.items():
        parts = ([f"λ={_num(lam)}"] if lam is not None else []) + (
            [f"train ε={_num(train_eps)}"] if train_eps is not None else [])
        if parts:
            cells[(label, dataset_name(dataset))] = ", ".join(parts)
            columns[dataset_name(dataset)] = _dataset_rank(dataset)
    if not cells:
        return None
    return _cell_frame(cells, labels.order, sorted(columns, key=lambda c: (columns[c], c)))


def pgd_curves(df: pd.DataFrame, attack: str = PGD_ATTACK) -> pd.DataFrame:
    """Figures 3/4 data: robust accuracy under PGD per (dataset, configuration, ε), long form.

    Columns dataset, method, lam, train_eps, eps, robust_accuracy, robust_std, runs, label
    (the configuration's paper row label, see :class:`RowLabels`); accuracies in [0, 1]; sorted
    by dataset and label in the paper's order, then ε. Empty when there are no ``attack`` rows.
    """
    columns = ["dataset", "method", "lam", "train_eps", "eps", "robust_accuracy", "robust_std", "runs", "n",
               "n_planned", "label"]
    pgd = df[df["attack"] == attack] if not df.empty else df
    if pgd.empty:
        return pd.DataFrame(columns=columns)
    acc = robust_accuracy(pgd, by=["dataset", "method", "attack", "eps"], worst_case=False)
    labels = RowLabels.of(df)  # the same row labels as the tables, whatever PGD covers
    acc["label"] = [labels.label(r.dataset, r.method, r.lam, r.train_eps) for r in acc.itertuples()]
    order = {label: i for i, label in enumerate(labels.order)}
    acc = acc.assign(_d=acc["dataset"].map(_dataset_rank), _l=acc["label"].map(order))
    return acc.sort_values(["_d", "dataset", "_l", "eps"])[columns].reset_index(drop=True)


def figure_table(curves: pd.DataFrame, dataset: str, methods: Optional[Sequence[str]] = None) -> pd.DataFrame:
    """One panel of Figure 3 (all methods) or 4 (``methods=FIGURE4_METHODS``) as a table.

    curves: :func:`pgd_curves`. Rows ε (ascending), columns configuration labels, cells
    ``mean ± std [runs]`` in %. Empty when the dataset has none of ``methods``.
    """
    mine = curves[curves["dataset"] == dataset]
    if methods is not None:
        mine = mine[mine["method"].isin(list(methods))]
    labels = list(dict.fromkeys(mine["label"]))
    eps_values = sorted(mine["eps"].unique())
    cells = {(r.eps, r.label): _mean_std(r) for r in mine.itertuples()}
    return pd.DataFrame([[cells.get((e, label), "–") for label in labels] for e in eps_values],
                        index=pd.Index([_num(e) for e in eps_values], name="ε"), columns=labels)


# --------------------------------------------------------------------------- markdown report


def report_markdown(df: pd.DataFrame, trials_df: Optional[pd.DataFrame] = None,
                    det_df: Optional[pd.DataFrame] = None, cw_bound: float = CW_RMS_BOUND, **options) -> str:
    """The paper's results as markdown; lives in :mod:`grid.report_markdown` (see there)."""
    from grid.report_markdown import report_markdown as build

    return build(df, trials_df, det_df, cw_bound=cw_bound, **options)


def detection_tables(det_df: Optional[pd.DataFrame]) -> str:
    """The paper's detection Tables 5–8 as a markdown section; '' when there are no rows.

    The layout (familiar-attack Table 5, cross-attack Tables 6–8) lives with the detection
    stage in :mod:`grid.detection_report`.
    """
    from grid.detection_report import detection_tables as tables

    text = tables(det_df)
    return f"## Detection (Tables 5–8)\n\n{text}" if text else ""


# --------------------------------------------------------------------------- helpers


def _with_config(by: Iterable[str], df: pd.DataFrame) -> list[str]:
    by = list(by)
    return by + [c for c in CONFIG_COLUMNS if c not in by and c in df.columns]


def _require(df: pd.DataFrame, columns: Iterable[str]) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"by/df: column(s) {missing} not in the frame; columns: {', '.join(df.columns)}")


def _labels(frame: pd.DataFrame) -> list[str]:
    """'method (λ=…, train ε=…)': λ where the method has one; train ε where a dataset has several."""
    several = frame.groupby(["dataset", "method"], dropna=False)["train_eps"].transform(
        lambda s: s.nunique(dropna=True) > 1)
    labels = []
    for (_, row), many in zip(frame.iterrows(), several):
        extras = []
        if _present(row["lam"]):
            extras.append(f"λ={_num(row['lam'])}")
        if many and _present(row["train_eps"]):
            extras.append(f"train ε={_num(row['train_eps'])}")
        labels.append(f"{row['method']} ({', '.join(extras)})" if extras else str(row["method"]))
    return labels


def _present(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _mean_std(row, prefix: str = "robust") -> str:
    """``row``'s ``<prefix>_accuracy`` ± ``<prefix>_std`` [runs; n] in %."""
    return _fmt_acc(getattr(row, f"{prefix}_accuracy"), getattr(row, f"{prefix}_std", float("nan")),
                    getattr(row, "runs", 1), getattr(row, "n", None), getattr(row, "n_planned", None))


def _fmt_acc(mean, std, runs, n=None, planned=None) -> str:
    """``mean ± std [runs; n=…]`` in %; a cell with fewer examples than planned says so."""
    if not _present(mean):
        return "–"
    runs = int(runs)
    count = ""
    if _present(n):
        count = f"; n={int(n)}"
        if _present(planned) and int(n) < int(planned):
            count += f" of {int(planned)}: incomplete"
    if runs > 1 and _present(std):
        return f"{100 * mean:.1f} ± {100 * std:.1f} [{runs}{count}]"
    return f"{100 * mean:.1f} [{runs}{count}]"


def _num(value) -> str:
    return f"{float(value):g}"


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _cell_frame(cells: dict, row_order: Sequence[str], columns: list[str]) -> pd.DataFrame:
    """``{(row label, column): text}`` as a frame: rows that have a cell, in ``row_order``; ``–`` gaps."""
    rows = [label for label in row_order if any((label, c) in cells for c in columns)]
    return pd.DataFrame([[cells.get((label, c), "–") for c in columns] for label in rows],
                        index=pd.Index(rows, name="method"), columns=columns)


def _frame_markdown(table: pd.DataFrame) -> str:
    """A frame of formatted cells as a markdown table, its index as the first column."""
    header = [table.index.name or "", *[str(c) for c in table.columns]]
    rows = [[str(index), *[str(v) for v in values]] for index, values in zip(table.index, table.to_numpy())]
    return _markdown_table(header, rows)


def _config_key(dataset, method, lam, train_eps) -> tuple:
    """Hashable configuration key; NaN and None (no λ / no training ε) both become None."""
    return (dataset, method, float(lam) if _present(lam) else None,
            float(train_eps) if _present(train_eps) else None)


def _nan_low(value) -> float:
    return float(value) if value is not None else -math.inf


def _method_rank(method: str) -> tuple:
    names = list(METHOD_NAMES)
    return (names.index(method), "") if method in METHOD_NAMES else (len(names), method)


def _dataset_rank(dataset: str) -> tuple:
    names = list(DATASET_NAMES)
    return (names.index(dataset), "") if dataset in DATASET_NAMES else (len(names), dataset)


def _dataset_column(row) -> tuple:
    return _dataset_rank(row.dataset), dataset_name(row.dataset)


def _dataset_eps_column(row) -> tuple:
    return (_dataset_rank(row.dataset), float(row.eps)), f"{dataset_name(row.dataset)} ε={_num(row.eps)}"


def _dataset_norm_eps_column(row) -> tuple:
    return _dataset_norm_eps_column_of(row.dataset, row.norm, row.eps)


def _dataset_norm_eps_column_of(dataset, norm, eps) -> tuple:
    # ℓ∞ is the paper's default threat model; another norm is named in the header.
    suffix = "" if norm == "Linf" else f" ({norm})"
    return (_dataset_rank(dataset), norm != "Linf", float(eps)), f"{dataset_name(dataset)} ε={_num(eps)}{suffix}"

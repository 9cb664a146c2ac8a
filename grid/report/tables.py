"""The paper's layout of the report's numbers: Tables 1–3 and the worst case with methods down
and datasets across, Figures 3/4 as ε × method tables, and the row labels they share.

Rows are methods under their display names in the paper's order, columns datasets in the
report's order (:mod:`grid.report.names`) at each ε the data hold (:func:`attack_table`,
:func:`cw_table`, :func:`worst_case_table`); :func:`settings_table` says what λ and training ε
each row ran. Figures 3/4: :func:`pgd_curves` (the numbers ``grid.report.figures`` draws) and
:func:`figure_table` (one panel as a table). Cells are ``mean ± std [n=… × seeds]`` in %
(:func:`grid.report.formatting.mean_std`); accuracies come from :mod:`grid.report.metrics`.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import pandas as pd

from grid.store.rows import present

from .formatting import mean_std, num
from .metrics import ACC_BY, WORST_CASE, cw_bounded, robust_accuracy
from .names import dataset_name, dataset_rank, method_name, method_rank
from .paper_values import CW_ATTACK, CW_READINGS, PAPER_ONLY_METHODS, PAPER_VALUES, PGD_ATTACK, CWReading

# Figure 4: the embedding regulariser without adversarial training against its two ablations.
FIGURE4_METHODS = ("e_cla", "vae_cla", "er_minus")


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
                extras.append(f"λ={num(lam)}")
            if (dataset, method) in eps_split and train_eps is not None:
                extras.append(f"train ε={num(train_eps)}")
            label = method_name(method) + (f" ({', '.join(extras)})" if extras else "")
            labels[config] = label
            key = (method_rank(method), _nan_low(lam), _nan_low(train_eps))
            rank[label] = min(rank.get(label, key), key)
        return cls(labels, tuple(sorted(rank, key=lambda label: (rank[label], label))))

    def label(self, dataset, method, lam=None, train_eps=None) -> str:
        return self.labels[_config_key(dataset, method, lam, train_eps)]


def config_labels(frame: pd.DataFrame) -> list[str]:
    """Labels of the per-configuration listings, one per row of ``frame`` (columns dataset,
    method, lam, train_eps): 'method (λ=…, train ε=…)' with the registry name, λ where the
    method has one, train ε where the dataset ran the method at several."""
    several = frame.groupby(["dataset", "method"], dropna=False)["train_eps"].transform(
        lambda s: s.nunique(dropna=True) > 1)
    labels = []
    for (_, row), many in zip(frame.iterrows(), several):
        extras = []
        if present(row["lam"]):
            extras.append(f"λ={num(row['lam'])}")
        if many and present(row["train_eps"]):
            extras.append(f"train ε={num(row['train_eps'])}")
        labels.append(f"{row['method']} ({', '.join(extras)})" if extras else str(row["method"]))
    return labels


def paper_table(
    acc: pd.DataFrame, labels: RowLabels, column: Optional[Callable[[object], tuple]] = None,
) -> pd.DataFrame:
    """An accuracy table in the paper's layout: methods down, datasets across.

    acc: rows of :func:`grid.report.metrics.robust_accuracy` for one attack (columns dataset,
    method, lam, train_eps, robust_accuracy, robust_std, runs, and ``eps`` unless ``column``
    ignores it). labels: row labels of the configurations (:class:`RowLabels`). column: maps an
    acc row to ``(sort key, header)``; default one column per (dataset, ε), e.g. ``"MNIST ε=0.3"``.
    Returns a frame of formatted cells (``mean ± std [runs]`` in %, ``–`` where a method has no
    result), index = row labels in the paper's order, columns in dataset order.
    """
    column = column or _dataset_eps_column
    cells, headers = {}, {}
    for row in acc.itertuples(index=False):
        label = labels.label(row.dataset, row.method, getattr(row, "lam", None), getattr(row, "train_eps", None))
        key, header = column(row)
        headers[header] = key
        cells[(label, header)] = mean_std(row)
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


def cw_table(df: pd.DataFrame, readings: Sequence[CWReading] = CW_READINGS,
             acc: Optional[pd.DataFrame] = None) -> Optional[pd.DataFrame]:
    """Table 2: accuracy under C&W-ℓ2 at each reading of the bound (see :func:`cw_bounded`).

    Columns: per dataset, one per reading (``"MNIST ℓ2/√N ≤ 0.005"``, ``"MNIST ℓ2/N ≤ 0.005"``),
    a named C&W setting other than the default appended (``"… (defensegan)"``), then
    ``"MNIST paper"`` where the paper's Table 2 has values for the dataset. Rows: every measured
    configuration (the undefended ``none`` included) in the paper's order, then the methods only
    the paper reports (Defense-GAN). acc: :func:`cw_accuracy` of ``df`` if already computed.
    None when ``df`` has no ``cw_l2`` rows.
    """
    if df.empty or not (df["attack"] == CW_ATTACK).any():
        return None
    if acc is None:
        acc = cw_accuracy(df, readings)
    labels = RowLabels.of(df)
    rank = {r.key: (i, r.header()) for i, r in enumerate(readings)}
    cells, columns = {}, {}
    for row in acc.itertuples(index=False):
        position, header = rank[row.reading]
        setting = f" ({row.cw_setting})" if row.cw_setting else ""
        column = f"{dataset_name(row.dataset)} {header}{setting}"
        columns[column] = (dataset_rank(row.dataset), 0, row.cw_setting, position)
        cells[(labels.label(row.dataset, row.method, row.lam, row.train_eps), column)] = mean_std(row)
    order = list(labels.order)
    for v in PAPER_VALUES:
        if v.attack != CW_ATTACK or v.dataset not in set(acc["dataset"]):
            continue
        column = f"{dataset_name(v.dataset)} paper"
        columns[column] = (dataset_rank(v.dataset), 1, "", 0)
        if v.method in PAPER_ONLY_METHODS:
            mine = [PAPER_ONLY_METHODS[v.method]]
            order += mine
        else:  # the paper's number beside each of our configurations of its method
            mine = [label for (dataset, method, _, _), label in labels.labels.items()
                    if (dataset, method) == (v.dataset, v.method)]
        for label in mine:
            cells[(label, column)] = f"{v.accuracy:.1f}"
    return _cell_frame(cells, order, sorted(columns, key=lambda c: (columns[c], c)))


def cw_accuracy(df: pd.DataFrame, readings: Sequence[CWReading] = CW_READINGS) -> pd.DataFrame:
    """Table 2's numbers: accuracy under C&W-ℓ2 per (dataset, configuration, C&W setting,
    reading), long form with a ``reading`` column (the :class:`CWReading` key) and ``cw_setting``."""
    parts = [robust_accuracy(cw_bounded(df, reading=r), by=["dataset", "method", "attack", "cw_setting"],
                             worst_case=False).assign(reading=r.key) for r in readings]
    return pd.concat(parts, ignore_index=True)


def worst_case_table(df: pd.DataFrame, acc: Optional[pd.DataFrame] = None) -> Optional[pd.DataFrame]:
    """Per-example worst case over the attacks run at each (dataset, threat model, ε), paper layout.

    See :mod:`grid.report.metrics` for the rule. acc: :func:`robust_accuracy` of ``df`` with its
    worst case by :data:`~grid.report.metrics.ACC_BY` (with ``norm``), if already computed.
    None when no (trial, ε) ran two attacks or more.
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
        parts = ([f"λ={num(lam)}"] if lam is not None else []) + (
            [f"train ε={num(train_eps)}"] if train_eps is not None else [])
        if parts:
            cells[(label, dataset_name(dataset))] = ", ".join(parts)
            columns[dataset_name(dataset)] = dataset_rank(dataset)
    if not cells:
        return None
    return _cell_frame(cells, labels.order, sorted(columns, key=lambda c: (columns[c], c)))


def pgd_curves(df: pd.DataFrame, attack: str = PGD_ATTACK) -> pd.DataFrame:
    """Figures 3/4 data: robust accuracy under PGD per (dataset, configuration, ε), long form.

    Columns dataset, method, lam, train_eps, eps, robust_accuracy, robust_std, runs, n,
    n_planned, the 95% intervals robust_lo/hi and seed_lo/hi, label (the configuration's paper row label, see :class:`RowLabels`); accuracies
    in [0, 1]; sorted by dataset and label in the paper's order, then ε. Empty when there are no
    ``attack`` rows.
    """
    columns = ["dataset", "method", "lam", "train_eps", "eps", "robust_accuracy", "robust_std", "runs", "n",
               "n_planned", "robust_lo", "robust_hi", "seed_lo", "seed_hi", "label"]
    pgd = df[df["attack"] == attack] if not df.empty else df
    if pgd.empty:
        return pd.DataFrame(columns=columns)
    acc = robust_accuracy(pgd, by=["dataset", "method", "attack", "eps"], worst_case=False)
    labels = RowLabels.of(df)  # the same row labels as the tables, whatever PGD covers
    acc["label"] = [labels.label(r.dataset, r.method, r.lam, r.train_eps) for r in acc.itertuples()]
    order = {label: i for i, label in enumerate(labels.order)}
    acc = acc.assign(_d=acc["dataset"].map(dataset_rank), _l=acc["label"].map(order))
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
    cells = {(r.eps, r.label): mean_std(r) for r in mine.itertuples()}
    return pd.DataFrame([[cells.get((e, label), "–") for label in labels] for e in eps_values],
                        index=pd.Index([num(e) for e in eps_values], name="ε"), columns=labels)


def _cell_frame(cells: dict, row_order: Sequence[str], columns: list[str]) -> pd.DataFrame:
    """``{(row label, column): text}`` as a frame: rows that have a cell, in ``row_order``; ``–`` gaps."""
    rows = [label for label in row_order if any((label, c) in cells for c in columns)]
    return pd.DataFrame([[cells.get((label, c), "–") for c in columns] for label in rows],
                        index=pd.Index(rows, name="method"), columns=columns)


def _config_key(dataset, method, lam, train_eps) -> tuple:
    """Hashable configuration key; NaN and None (no λ / no training ε) both become None."""
    return (dataset, method, float(lam) if present(lam) else None,
            float(train_eps) if present(train_eps) else None)


def _nan_low(value) -> float:
    return float(value) if value is not None else -math.inf


def _dataset_eps_column(row) -> tuple:
    return (dataset_rank(row.dataset), float(row.eps)), f"{dataset_name(row.dataset)} ε={num(row.eps)}"


def _dataset_norm_eps_column(row) -> tuple:
    return _dataset_norm_eps_column_of(row.dataset, row.norm, row.eps)


def _dataset_norm_eps_column_of(dataset, norm, eps) -> tuple:
    # ℓ∞ is the paper's default threat model; another norm is named in the header.
    suffix = "" if norm == "Linf" else f" ({norm})"
    return (dataset_rank(dataset), norm != "Linf", float(eps)), f"{dataset_name(dataset)} ε={num(eps)}{suffix}"

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
"""

from __future__ import annotations

import math
from typing import Iterable, Optional, Sequence

import pandas as pd

WORST_CASE = "worst_case"
DEFAULT_BY = ("dataset", "method", "attack", "eps")
# Trial settings other than the seed that change what a trial computes: never averaged over.
CONFIG_COLUMNS = ("train_eps", "lam")
# Columns that are constant within a trial (copied onto worst-case rows).
TRIAL_COLUMNS = ("experiment", "dataset", "method", "train_eps", "lam", "seed", "epochs")
CW_ATTACK, PGD_ATTACK, AUTOATTACK, RAYS = "cw_l2", "pgd", "autoattack", "rays"
CW_RMS_BOUND = 0.005  # the paper's Table 2 threshold on RMS ℓ2 (MNIST)
RESULT_COLUMNS = ("robust_accuracy", "robust_std", "clean_accuracy", "clean_std", "runs", "n")


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
                  _clean=df["correct_clean"].astype(bool))
    out = d.groupby(keys, dropna=False, sort=True).agg(
        robust_accuracy=("_robust", "mean"), clean_accuracy=("_clean", "mean"), n=("_robust", "size"),
    )
    return out.reset_index()


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
        runs=("trial_id", "nunique"), n=("n", "sum"),
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


# --------------------------------------------------------------------------- markdown report


def report_markdown(
    df: pd.DataFrame, trials_df: Optional[pd.DataFrame] = None, det_df: Optional[pd.DataFrame] = None,
    cw_bound: float = CW_RMS_BOUND,
) -> str:
    """The paper's results as markdown: Figure 3/4 data, Tables 1–3, trial summary, detection.

    df: example rows; trials_df: trial rows (``grid.store.load_trials``) or None;
    det_df: detection rows for Tables 5–8 (see :func:`detection_tables`) or None.
    Cells are accuracy in % as ``mean ± std [runs]``.
    """
    parts = ["# ER-Grid results", "",
             "Accuracy in %, `mean ± std [runs]` over seeds; robust = correct clean and under attack. "
             "`worst case` = robust under every attack run at that ε (per example).", ""]
    parts += _pgd_curves(df)
    parts += _attack_table(
        df, AUTOATTACK, "Table 1: AutoAttack (ℓ∞)", with_worst_case_column=True,
    )
    parts += _cw_table(df, cw_bound)
    parts += _attack_table(df, RAYS, "Table 3: RayS black-box (ℓ∞)", extra="queries")
    if trials_df is not None:
        parts += _trial_summary(trials_df)
    detection = detection_tables(det_df)
    if detection:
        parts += [detection, ""]
    return "\n".join(parts).rstrip() + "\n"


def detection_tables(det_df: Optional[pd.DataFrame]) -> str:
    """Hook for the paper's detection Tables 5–8 (issue 5), markdown; '' when there are no rows.

    The detection stage owns the real layout (familiar-attack Table 5, cross-attack Tables 6–8);
    until it replaces this function, its rows are listed as they are.
    """
    if det_df is None or det_df.empty:
        return ""
    header = list(det_df.columns)
    rows = [[_cell(v) for v in record] for record in det_df.itertuples(index=False)]
    return "\n".join(["## Detection (Tables 5–8)", "", _markdown_table(header, rows)])


def _pgd_curves(df: pd.DataFrame) -> list[str]:
    out = ["## Figures 3/4: PGD (ℓ∞) accuracy vs ε", ""]
    pgd = df[df["attack"] == PGD_ATTACK] if not df.empty else df
    if pgd.empty:
        return out + ["_no PGD rows_", ""]
    acc = robust_accuracy(pgd, by=["dataset", "method", "attack", "eps"], worst_case=False)
    for dataset, group in acc.groupby("dataset", sort=True):
        labels = _labels(group)
        eps_values = sorted(group["eps"].unique())
        header = ["method", *[f"ε={_num(e)}" for e in eps_values]]
        rows = []
        for label, sub in group.assign(row_label=labels).groupby("row_label", sort=True):
            by_eps = {row.eps: _mean_std(row) for row in sub.itertuples()}
            rows.append([label, *[by_eps.get(e, "–") for e in eps_values]])
        out += [f"### {dataset}", "", _markdown_table(header, rows), ""]
    return out


def _attack_table(df: pd.DataFrame, attack: str, title: str, with_worst_case_column: bool = False,
                  extra: Optional[str] = None) -> list[str]:
    out = [f"## {title}", ""]
    if df.empty or not (df["attack"] == attack).any():
        return out + [f"_no {attack} rows_", ""]
    acc = robust_accuracy(df, by=["dataset", "method", "attack", "eps"], worst_case=with_worst_case_column)
    keys = ["dataset", "method", "train_eps", "lam", "eps"]
    mine = acc[acc["attack"] == attack]
    header = ["dataset", "method", "ε", "clean", attack]
    if with_worst_case_column:
        # pandas merges NaN keys (λ/train ε of methods without them) as equal, as needed here.
        worst = acc[acc["attack"] == WORST_CASE][keys + ["robust_accuracy", "robust_std", "runs"]]
        mine = mine.merge(worst.rename(columns={"robust_accuracy": "wc_accuracy", "robust_std": "wc_std",
                                                "runs": "wc_runs"}), on=keys, how="left")
        header.append("worst case")
    if extra == "queries":
        queries = df[df["attack"] == attack].groupby(keys, dropna=False)["queries"].mean()
        mine = mine.merge(queries.rename("mean_queries").reset_index(), on=keys, how="left")
        header.append("mean queries")
    mine = mine.assign(row_label=_labels(mine))
    rows = []
    for row in mine.sort_values(["dataset", "row_label", "eps"]).itertuples():
        cells = [row.dataset, row.row_label, _num(row.eps), _mean_std(row, "clean"), _mean_std(row)]
        if with_worst_case_column:
            cells.append(_fmt_acc(row.wc_accuracy, row.wc_std, row.wc_runs))
        if extra == "queries":
            q = row.mean_queries
            cells.append(f"{q:.0f}" if _present(q) and q >= 0 else "–")
        rows.append(cells)
    return out + [_markdown_table(header, rows), ""]


def _cw_table(df: pd.DataFrame, bound: float) -> list[str]:
    out = [f"## Table 2: C&W (ℓ2), robust at RMS ℓ2 ≤ {_num(bound)}", ""]
    if df.empty or not (df["attack"] == CW_ATTACK).any():
        return out + [f"_no {CW_ATTACK} rows_", ""]
    cw = cw_bounded(df, bound)
    acc = robust_accuracy(cw, by=["dataset", "method", "attack"], worst_case=False)
    acc = acc.assign(row_label=_labels(acc))
    header = ["dataset", "method", "clean", f"C&W, RMS ℓ2 ≤ {_num(bound)}"]
    rows = [[r.dataset, r.row_label, _mean_std(r, "clean"), _mean_std(r)]
            for r in acc.sort_values(["dataset", "row_label"]).itertuples()]
    return out + [_markdown_table(header, rows), ""]


def _trial_summary(trials_df: pd.DataFrame) -> list[str]:
    out = ["## Trials: clean accuracy and wall time", ""]
    if trials_df.empty:
        return out + ["_no trial rows_", ""]
    keys = ["dataset", "method", *CONFIG_COLUMNS]
    agg = trials_df.groupby(keys, dropna=False, sort=True).agg(
        robust_accuracy=("clean_accuracy", "mean"), robust_std=("clean_accuracy", "std"),
        runs=("trial_id", "nunique"), wall=("wall_seconds", "mean"),
    ).reset_index()
    agg = agg.assign(row_label=_labels(agg))
    header = ["dataset", "method", "clean accuracy", "mean wall time (min)"]
    rows = [[r.dataset, r.row_label, _mean_std(r), f"{r.wall / 60:.1f}"]
            for r in agg.sort_values(["dataset", "row_label"]).itertuples()]
    return out + [_markdown_table(header, rows), ""]


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
    """``row``'s ``<prefix>_accuracy`` ± ``<prefix>_std`` [runs] in %."""
    return _fmt_acc(getattr(row, f"{prefix}_accuracy"), getattr(row, f"{prefix}_std", float("nan")),
                    getattr(row, "runs", 1))


def _fmt_acc(mean, std, runs) -> str:
    if not _present(mean):
        return "–"
    runs = int(runs)
    if runs > 1 and _present(std):
        return f"{100 * mean:.1f} ± {100 * std:.1f} [{runs}]"
    return f"{100 * mean:.1f} [{runs}]"


def _num(value) -> str:
    return f"{float(value):g}"


def _cell(value) -> str:
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.4g}"
    return str(value).replace("|", "\\|")


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)

"""Accuracies behind the report, from the per-example result rows (pandas only).

Input is the frame :func:`grid.store.load` returns (one row per evaluated example; columns of
``grid.store.ROW_SCHEMA``). Definitions:

- An example is *robust* under an attack when it is classified correctly both clean and under
  the attack (``correct_clean & correct_adv``), so robust accuracy ≤ clean accuracy, as in
  AutoAttack and RobustBench.
- ``worst_case`` is a pseudo-attack: for each trial, threat model (``norm``) and ε, an example
  counts robust only if it is robust under *every* attack run at that ε (AutoAttack's ensemble
  rule, here over whatever attacks the plan ran). It is computed on the examples that every one
  of those attacks evaluated, and only where at least two attacks were run; it is reported next
  to each attack alone.
- C&W (``cw_l2``) is unbounded: an example counts robust at a bound when it is correct clean and
  the attack failed or needed a distortion above the bound. Table 2's bound is read two ways
  (:data:`grid.report.paper_values.CW_READINGS`): RMS ℓ2, the stored ``l2_rms`` (ℓ2/√N), and ℓ2
  per input value, ``l2`` / N, N the dataset's number of input values
  (``er_core.dataset_info.info(name).shape``); rows of different named C&W settings (the
  ``preset`` in their ``attack_config``, see :func:`cw_setting`) are kept apart.
- Runs are seeds: trials that differ only in their seed are one configuration, reported as
  mean ± std (ddof=1) over runs with the number of runs. ``train_eps`` and ``lam`` always
  separate configurations, whatever ``by`` says.

Every accuracy carries ``n`` (examples behind it), ``n_planned`` (the evaluation plan's
``eval_n`` per trial and (attack, ε), read from the rows' ``eval_subset`` fingerprint) and its
95% intervals (:mod:`grid.report.intervals`): ``robust_lo``/``robust_hi`` over the examples
(Wilson), ``seed_lo``/``seed_hi`` over the runs (t; NaN for one run).
"""

from __future__ import annotations

import json
import math
from typing import Iterable, Optional, Sequence

import numpy as np
import pandas as pd

from er_core.dataset_info import info

from .intervals import t_interval, wilson
from .paper_values import CW_ATTACK, CW_RMS, CWReading

WORST_CASE = "worst_case"
DEFAULT_BY = ("dataset", "method", "attack", "eps")
# Trial settings other than the seed that change what a trial computes: never averaged over.
CONFIG_COLUMNS = ("train_eps", "lam")
# Columns that are constant within a trial (copied onto worst-case rows).
TRIAL_COLUMNS = ("experiment", "dataset", "method", "train_eps", "lam", "seed", "epochs")
RESULT_COLUMNS = ("robust_accuracy", "robust_std", "clean_accuracy", "clean_std", "runs", "n", "n_planned",
                  "robust_lo", "robust_hi", "seed_lo", "seed_hi")
# Grouping of the report's shared accuracy table: the threat model keeps an ℓ2 worst case apart
# from an ℓ∞ one at the same ε value.
ACC_BY = ("dataset", "method", "attack", "norm", "eps")


def with_worst_case(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` plus ``attack == "worst_case"`` rows: one per (trial, norm, ε, example).

    Their ``correct_adv`` is True only where the example is robust under every attack of that
    trial, norm and ε; trial-level columns are copied, per-attack columns (l2, queries, ...)
    are left empty.
    """
    worst = worst_case_rows(df)
    return df if worst is None else pd.concat([df, worst], ignore_index=True)


def worst_case_rows(df: pd.DataFrame) -> Optional[pd.DataFrame]:
    """The ``worst_case`` rows :func:`with_worst_case` adds to ``df`` (its columns), or None."""
    if df.empty:
        return None
    key = ["trial_id", "norm", "eps"]
    d = df[df["attack"] != WORST_CASE].assign(
        _robust=df["correct_clean"].astype(bool) & df["correct_adv"].astype(bool)
    )
    attacks_at = d.groupby(key, dropna=False)["attack"].nunique().rename("_attacks_at")
    copied = [c for c in ("correct_clean", "label", "pred_clean", "eval_subset") if c in d.columns]
    per_example = d.groupby(key + ["sample_idx"], dropna=False).agg(
        _robust=("_robust", "all"),
        _attacks=("attack", "nunique"),
        **{c: (c, "first") for c in copied},
    ).join(attacks_at, on=key)
    # Only examples every attack at this ε evaluated (a half-finished attack must not make
    # the ensemble look stronger or weaker), and only where there is an ensemble at all.
    keep = (per_example["_attacks"] == per_example["_attacks_at"]) & (per_example["_attacks_at"] >= 2)
    per_example = per_example[keep].reset_index()
    if per_example.empty:
        return None
    trial_cols = [c for c in TRIAL_COLUMNS if c in d.columns]
    trials = d[["trial_id", *trial_cols]].drop_duplicates("trial_id")
    worst = per_example.merge(trials, on="trial_id", how="left")
    worst["attack"] = WORST_CASE
    worst["correct_adv"] = worst["_robust"]
    worst = worst.drop(columns=["_robust", "_attacks", "_attacks_at"])
    return worst.reindex(columns=df.columns)


def per_trial_accuracy(df: pd.DataFrame, by: Sequence[str] = DEFAULT_BY) -> pd.DataFrame:
    """One row per (trial, ``by`` group): robust and clean accuracy and example count ``n``."""
    _require(df, ["trial_id", "correct_clean", "correct_adv", "attack", "eps", *by])
    keys = ["trial_id", *_with_config(by, df)]
    d = df.assign(_robust=df["correct_clean"].astype(bool) & df["correct_adv"].astype(bool),
                  _clean=df["correct_clean"].astype(bool), _planned=planned_n(df))
    # Counted per (attack, ε) first: the plan asks for eval_n examples per (attack, ε), so a
    # group pooling several asks for that many times more.
    per_pair = d.groupby(list(dict.fromkeys([*keys, "attack", "eps"])), dropna=False, sort=False).agg(
        _robust_examples=("_robust", "sum"), _clean_examples=("_clean", "sum"), n=("_robust", "size"),
        n_planned=("_planned", "max"))
    out = per_pair.groupby(keys, dropna=False, sort=True).agg(
        _robust_examples=("_robust_examples", "sum"), _clean_examples=("_clean_examples", "sum"), n=("n", "sum"),
        n_planned=("n_planned", "max"), _pairs=("n", "size"))
    out.insert(0, "robust_accuracy", out["_robust_examples"] / out["n"])
    out.insert(1, "clean_accuracy", out.pop("_clean_examples") / out["n"])
    out["n_planned"] = out["n_planned"] * out.pop("_pairs")
    out["_robust_examples"] = out.pop("_robust_examples")
    return out.reset_index()


def planned_n(df: pd.DataFrame) -> pd.Series:
    """Per row, the evaluation plan's examples per (attack, ε): ``n`` of its ``eval_subset``
    fingerprint ("n=1000,seed=0"); NaN where the rows carry no fingerprint."""
    if "eval_subset" not in df.columns:
        return pd.Series(float("nan"), index=df.index)
    # Parsed once per distinct fingerprint (a grid has one or a few, over millions of rows).
    subsets = pd.Series(pd.unique(df["eval_subset"].dropna()), dtype=object)
    parsed = pd.to_numeric(subsets.astype(str).str.extract(r"n=(\d+)")[0], errors="coerce")
    planned = df["eval_subset"].map(dict(zip(subsets, parsed)))
    if isinstance(planned.dtype, pd.CategoricalDtype):  # rows read with categorical strings
        planned = planned.astype(float if planned.isna().any() else planned.cat.categories.dtype)
    return planned


def robust_accuracy(
    df: pd.DataFrame, by: Sequence[str] = DEFAULT_BY, worst_case: bool = True
) -> pd.DataFrame:
    """Robust and clean accuracy per group, mean ± std over seeds.

    df: example rows (``grid.store.load``). by: grouping columns (``train_eps`` and ``lam``
    are added when absent, since they are different configurations, not runs).
    worst_case: add the ``worst_case`` pseudo-attack (see the module docstring); only when
    ``attack`` is in ``by``, since otherwise its rows would be averaged in with the attacks'.

    Returns columns ``by + [train_eps, lam] + robust_accuracy, robust_std, clean_accuracy,
    clean_std, runs, n, n_planned``: accuracies in [0, 1] averaged over runs (trials), std with
    ddof=1 (NaN for one run), ``runs`` the number of trials, ``n`` the examples over all runs.
    """
    parts = [trial_accuracy(part, by, worst_case) for part in trial_batches(df)]
    return runs_accuracy(parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True), by, df.columns)


# Rows handed to trial_accuracy at once: a few trials of the paper grid. Its worst case copies
# what it is given, so a large store is taken a few trials at a time.
BATCH_ROWS = 100_000


def trial_batches(df: pd.DataFrame, rows: Optional[int] = None):
    """``df`` itself when it holds at most ``rows`` rows (default :data:`BATCH_ROWS`), else its
    rows a few whole trials at a time."""
    rows = rows or BATCH_ROWS
    if len(df) <= rows or "trial_id" not in df.columns:
        yield df
        return
    batch, size = [], 0
    for positions in df.groupby("trial_id", sort=False, observed=True).indices.values():
        batch.append(positions)
        size += len(positions)
        if size >= rows:
            yield df.take(np.sort(np.concatenate(batch)))
            batch, size = [], 0
    if batch:
        yield df.take(np.sort(np.concatenate(batch)))


def trial_accuracy(df: pd.DataFrame, by: Sequence[str] = DEFAULT_BY, worst_case: bool = True) -> pd.DataFrame:
    """:func:`per_trial_accuracy` with the worst case (as :func:`robust_accuracy` adds it): the
    part of :func:`robust_accuracy` that reads rows. Each trial's rows give its own groups, so
    the rows can come a few trials at a time and the results be concatenated."""
    by = list(by)
    if df.empty:
        return pd.DataFrame(columns=["trial_id", *_with_config(by, df), "robust_accuracy", "clean_accuracy", "n",
                                     "n_planned", "_robust_examples"])
    worst = worst_case_rows(df) if worst_case and "attack" in by else None
    if worst is None:
        return per_trial_accuracy(df, by)
    # The worst-case rows form groups of their own (their attack is worst_case): counted apart,
    # without a copy of every row beside them.
    return pd.concat([per_trial_accuracy(df, by), per_trial_accuracy(worst, by)], ignore_index=True)


def runs_accuracy(trials: pd.DataFrame, by: Sequence[str], columns) -> pd.DataFrame:
    """:func:`robust_accuracy` from :func:`trial_accuracy` rows: mean ± std over runs, the
    examples behind each cell and their intervals. ``columns``: the example rows' columns
    (whether ``train_eps`` and ``lam`` are there to keep configurations apart)."""
    keys = _with_config(by, columns)
    if trials.empty:
        return pd.DataFrame(columns=[*keys, *RESULT_COLUMNS])
    # Runs in one order whatever order the trials came in: the sums over runs are the same bits.
    trials = trials.sort_values(["trial_id", *keys], kind="stable", ignore_index=True)
    out = trials.groupby(keys, dropna=False, sort=True).agg(
        robust_accuracy=("robust_accuracy", "mean"), robust_std=("robust_accuracy", "std"),
        clean_accuracy=("clean_accuracy", "mean"), clean_std=("clean_accuracy", "std"),
        runs=("trial_id", "nunique"), n=("n", "sum"), n_planned=("n_planned", lambda s: s.sum(min_count=1)),
        _robust_examples=("_robust_examples", "sum"),
        _per_run=("robust_accuracy", list),
    )
    # 95% intervals (grid.report.intervals): over the examples behind the cell, and over its runs.
    examples = [wilson(k, n) for k, n in zip(out["_robust_examples"], out["n"])]
    # An accuracy lies in [0, 1]: a t interval from two or three runs can reach past it.
    seeds = [tuple(min(1.0, max(0.0, v)) if v == v else v for v in t_interval(values))
             for values in out.pop("_per_run")]
    out = out.drop(columns="_robust_examples")
    out["robust_lo"], out["robust_hi"] = [lo for lo, _ in examples], [hi for _, hi in examples]
    out["seed_lo"], out["seed_hi"] = [lo for lo, _ in seeds], [hi for _, hi in seeds]
    return out.reset_index()


def cw_bounded(df: pd.DataFrame, bound: Optional[float] = None, attack: str = CW_ATTACK,
               reading: CWReading = CW_RMS) -> pd.DataFrame:
    """The C&W rows of ``df`` with ``correct_adv`` judged at ``reading``'s bound (``bound`` instead
    where given), plus ``cw_setting`` (:func:`cw_setting`).

    An example is robust when it is correct clean and either the attack failed
    (``correct_adv``) or its adversarial example's distortion (:func:`cw_distortion`) exceeds the
    bound; on the bound is inside the threat model. Misclassified clean examples stay not robust
    (their distortion is 0).
    """
    bound = reading.bound if bound is None else bound
    if isinstance(bound, bool) or not isinstance(bound, (int, float)) or not bound > 0:
        raise ValueError(f"bound: expected a {reading.symbol} bound > 0, got {bound!r}")
    cw = df[df["attack"] == attack].copy()
    cw["correct_adv"] = cw["correct_clean"].astype(bool) & (
        cw["correct_adv"].astype(bool) | (cw_distortion(cw, reading) > bound)
    )
    cw["cw_setting"] = cw_setting(cw)
    return cw


def cw_distortion(df: pd.DataFrame, reading: CWReading) -> pd.Series:
    """Per row, the distortion ``reading`` bounds: its ``column``, divided by the number of input
    values of the row's dataset where ``reading.per_value`` (ℓ2 / N)."""
    if reading.column not in df.columns:
        raise ValueError(f"reading {reading.key!r}: column {reading.column!r} not in the rows")
    values = df[reading.column].astype(float)
    if not reading.per_value:
        return values
    return values / df["dataset"].map(input_values).astype(float)


def input_values(dataset: str) -> int:
    """N, the number of values of one input of ``dataset`` (C·H·W: 784 on MNIST)."""
    try:
        return math.prod(info(dataset).shape)
    except ValueError as err:
        raise ValueError(f"ℓ2 per input value needs the dataset's shape: {err}") from err


def cw_setting(df: pd.DataFrame) -> pd.Series:
    """Per row, the named C&W settings it ran with: the ``preset`` of its ``attack_config``
    (``er_core.attacks.cw_l2.PRESETS``), ``""`` where the config names none (cw_l2 leaves its
    default preset out, so older rows keep their fingerprint) or the rows carry no config."""
    if "attack_config" not in df.columns:
        return pd.Series("", index=df.index, dtype=object)
    names = {config: _preset_of(config) for config in df["attack_config"].dropna().unique()}
    return df["attack_config"].map(names).fillna("").astype(object)


def _preset_of(config) -> str:
    try:
        parsed = json.loads(config)
    except (TypeError, ValueError):
        return ""
    return str(parsed.get("preset") or "") if isinstance(parsed, dict) else ""


def _with_config(by: Iterable[str], df) -> list[str]:
    """``by`` plus the configuration columns among ``df``'s columns (``df``: a frame or its columns)."""
    by = list(by)
    columns = df.columns if isinstance(df, pd.DataFrame) else df
    return by + [c for c in CONFIG_COLUMNS if c not in by and c in columns]


def _require(df: pd.DataFrame, columns: Iterable[str]) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"by/df: column(s) {missing} not in the frame; columns: {', '.join(df.columns)}")

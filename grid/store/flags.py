"""Sanity flags of stored trials: er_core's rules applied to the store's rows, and the stored
flags read back.

The rules and their thresholds live in :mod:`er_core.sanity` (pure Python, shared with the
Ray-free fidelity runner). The sanity stage (``grid.stages.sanity``) stores one file per
trial; ``er-grid report`` recomputes every flag from the rows it reads (:func:`flags_from_frames`),
so a store written before the flags existed, or a threshold changed since, is still checked;
``status`` and ``query`` read the stored flags and compute the missing ones from rows
(:func:`flags_for_trials`).
"""

from __future__ import annotations

import json
from typing import Iterable

import numpy as np
import pandas as pd

from er_core.dataset_info import info
from er_core.sanity import COLLAPSED, FLAG_NAMES, AttackOutcome, Flag, check
from er_core.sanity.base import LINF_TOLERANCE

from .layout import SANITY_DIR
from .locate import open_results
from .readers import load_flags, load_notes
from .rows import present

# Sample indices below this share their int objects across the outcome sets.
INTERNED_INDICES = 1 << 22


def outcomes_from_frame(df) -> dict[str, list[AttackOutcome]]:
    """Trial id → outcomes, from a frame of example rows (``grid.store.load``)."""
    return {trial_id: build() for trial_id, build in trial_outcomes(df).items()}


def trial_outcomes(df) -> dict:
    """Trial id → a function giving that trial's outcomes: each trial's sets are built when its
    rules run and dropped after, so a large store never holds every trial's sets at once."""
    if df.empty:
        return {}
    samples = df["sample_idx"].to_numpy()
    clean = df["correct_clean"].to_numpy(dtype=bool)
    robust = clean & df["correct_adv"].to_numpy(dtype=bool)
    failed = df["gradient_failed"].eq(True).to_numpy() if "gradient_failed" in df else np.zeros(len(df), bool)
    linf = df["linf"].to_numpy(dtype=float) if "linf" in df else np.zeros(len(df))
    randomized = df["randomized"].eq(True).to_numpy() if "randomized" in df else np.zeros(len(df), bool)
    # One int object per sample index, shared by every set (a grid holds millions of rows over a
    # test set of at most 100,000 indices); past that bound the sets get their own.
    top = int(samples.max()) if len(samples) else 0
    shared = np.arange(top + 1).astype(object) if 0 <= samples.min() and top < INTERNED_INDICES else None
    groups: dict[str, list] = {}
    for (trial_id, attack, norm, eps), rows in df.groupby(["trial_id", "attack", "norm", "eps"], sort=False,
                                                          observed=True).indices.items():
        groups.setdefault(trial_id, []).append((attack, norm, float(eps), rows))

    def outcome(attack, norm, eps, rows) -> AttackOutcome:
        mine = shared[samples[rows]] if shared is not None else samples[rows].astype(object)
        beyond = int((linf[rows] > eps + LINF_TOLERANCE).sum()) if norm == "Linf" else 0
        return AttackOutcome(
            attack=attack, norm=norm, eps=eps, evaluated=frozenset(mine),
            robust=frozenset(mine[robust[rows]]), gradient_failed=int(failed[rows].sum()),
            clean=frozenset(mine[clean[rows]]), out_of_bounds=beyond,
            max_linf=float(linf[rows].max()), randomized=bool(randomized[rows].any()),
        )

    return {trial_id: (lambda found=found: [outcome(*group) for group in found]) for trial_id, found in groups.items()}


def flags_from_frames(df, trials_df=None, notes_df=None):
    """Recompute every flag from example rows ``df`` and trial rows ``trials_df`` → flags frame.

    Clean accuracy comes from the trial row, else from the examples' ``correct_clean``.
    """
    flags, trials = compute_flags(df, trials_df, notes_df)
    return flags_frame(flags, trials)


def compute_flags(df, trials_df=None, notes_df=None) -> tuple[list[Flag], dict[str, dict]]:
    """(flags, trial records) of every trial in the example rows ``df`` or trial rows ``trials_df``."""
    flags, trials, _unchecked = compute_checks(df, trials_df, notes_df)
    return flags, trials


def compute_checks(df, trials_df=None, notes_df=None) -> tuple[list[Flag], dict[str, dict], dict[str, dict[str, str]]]:
    """(flags, trial records, trial_id → {rule: why it could not check}) of every trial in the
    example rows ``df`` or trial rows ``trials_df``."""
    outcomes = trial_outcomes(df)
    trials = _trial_records(df, trials_df)
    notes = notes_by_trial(notes_df)
    flags, unchecked = [], {}
    for trial_id, trial in trials.items():
        mine = outcomes[trial_id]() if trial_id in outcomes else []
        raised, unchecked[trial_id] = check(trial, mine, info(trial["dataset"]).num_classes,
                                            notes.get(trial_id, ()) if notes is not None else None)
        flags += raised
    return flags, trials, unchecked


def notes_by_trial(notes_df):
    """trial_id → (attack, ε, batch, kind, message) of its notes rows (``grid.store.load_notes``);
    None when no notes frame was read (the notes rule then says it could not check)."""
    if notes_df is None:
        return None
    out: dict[str, list] = {}
    for r in notes_df.itertuples(index=False):
        out.setdefault(r.trial_id, []).append((r.attack, float(r.eps), int(r.batch), r.kind, r.message))
    return out


def not_checked_frame(df, trials_df=None, notes_df=None) -> pd.DataFrame:
    """One row per (rule, reason) that could not judge some trials: ``flag``, ``reason``,
    ``trials`` (how many), so a report says what its flags could not see."""
    _flags, _trials, unchecked = compute_checks(df, trials_df, notes_df)
    counts: dict[tuple[str, str], int] = {}
    for rules in unchecked.values():
        for name, reason in rules.items():
            counts[(name, reason)] = counts.get((name, reason), 0) + 1
    order = {name: i for i, name in enumerate(FLAG_NAMES)}
    rows = [{"flag": n, "reason": r, "trials": c} for (n, r), c in sorted(counts.items(), key=lambda kv: order[kv[0][0]])]
    return pd.DataFrame(rows, columns=["flag", "reason", "trials"])


def _trial_records(df, trials_df) -> dict[str, dict]:
    """trial_id → {trial_id, experiment, dataset, method, train_eps, clean_accuracy, losses}."""
    out: dict[str, dict] = {}
    if not df.empty:
        clean = df.drop_duplicates(["trial_id", "sample_idx"]).groupby("trial_id")["correct_clean"].mean()
        for r in df.drop_duplicates("trial_id").itertuples(index=False):
            out[r.trial_id] = {"trial_id": r.trial_id, "experiment": r.experiment, "dataset": r.dataset,
                               "method": r.method, "train_eps": _none_if_nan(r.train_eps),
                               "clean_accuracy": float(clean[r.trial_id]), "losses": []}
    if trials_df is not None and not trials_df.empty:
        # The trial row's clean accuracy (the model's own forward on the whole subset) and its
        # training curve take precedence; a trial with no example rows yet is still checked.
        # Columns a hand-made trial frame lacks are taken from the example rows.
        for r in trials_df.to_dict("records"):
            base = out.get(r["trial_id"], {})
            losses = r.get("losses_json")
            out[r["trial_id"]] = {
                **base, "trial_id": r["trial_id"], "experiment": r.get("experiment", base.get("experiment")),
                "dataset": r["dataset"], "method": r["method"], "train_eps": _none_if_nan(r.get("train_eps")),
                "clean_accuracy": float(r["clean_accuracy"]),
                "losses": json.loads(losses) if isinstance(losses, str) else [],
            }
    return out


def _none_if_nan(value):
    return float(value) if present(value) else None


FLAG_COLUMNS = ("experiment", "dataset", "method", "trial_id", "flag", "attack", "eps", "value", "threshold",
                "evidence")


def flags_frame(flags: list[Flag], trials: dict[str, dict]):
    """Flags as a frame with :data:`FLAG_COLUMNS` (trial columns from ``trials``)."""
    rows = [{**{k: trials[f.trial_id][k] for k in ("experiment", "dataset", "method")},
             **{k: getattr(f, k) for k in ("trial_id", "flag", "attack", "eps", "value", "threshold", "evidence")}}
            for f in flags]
    return pd.DataFrame(rows, columns=list(FLAG_COLUMNS))


def checked_trials(store) -> set[str]:
    """Trial ids with a stored flags file (from file names only)."""
    return {path.rsplit("/", 1)[-1][: -len(".parquet")] for path in store.files(SANITY_DIR)}


def flags_for_trials(root, trial_ids: Iterable[str], damaged: str = "raise"):
    """Flags of ``trial_ids``: stored where checked, else recomputed from the store's rows.
    ``damaged="skip"`` leaves damaged files out of both, like the rows they annotate."""
    store = open_results(root)
    wanted = sorted(set(trial_ids))
    if not wanted:
        return flags_frame([], {})
    stored = load_flags(store, damaged=damaged, trial_id=wanted)[list(FLAG_COLUMNS)]
    checked = checked_trials(store)
    missing = [t for t in wanted if t not in checked]
    if not missing:
        return stored.reset_index(drop=True)
    fresh = flags_from_frames(store.load(damaged=damaged, trial_id=missing),
                              store.load_trials(damaged=damaged, trial_id=missing),
                              load_notes(store, damaged=damaged, trial_id=missing))
    parts = [f for f in (stored, fresh) if not f.empty]
    return pd.concat(parts, ignore_index=True) if parts else flags_frame([], {})


def flag_names(flags_df) -> dict[str, str]:
    """trial_id → comma-separated flag names (sorted), for the trials that have any."""
    if flags_df.empty:
        return {}
    return {t: ",".join(sorted(set(g["flag"]))) for t, g in flags_df.groupby("trial_id")}


def status_summary(flags_df) -> str:
    """One line for ``er-grid status``: how many trials carry each flag."""
    if flags_df.empty:
        return "sanity flags: none"
    counts = flags_df.groupby("flag")["trial_id"].nunique()
    return (f"sanity flags: {flags_df['trial_id'].nunique()} trial(s) flagged — "
            + ", ".join(f"{name} {counts[name]}" for name in FLAG_NAMES if name in counts))


def collapsed_trials(flags_df) -> set[str]:
    return set(flags_df.loc[flags_df["flag"] == COLLAPSED, "trial_id"]) if not flags_df.empty else set()


__all__ = ["FLAG_COLUMNS", "checked_trials", "collapsed_trials", "compute_checks", "compute_flags", "flag_names",
           "flags_for_trials", "flags_frame", "flags_from_frames", "not_checked_frame", "notes_by_trial",
           "outcomes_from_frame", "status_summary", "trial_outcomes"]

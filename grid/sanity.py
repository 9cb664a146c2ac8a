"""Sanity flags in the grid: computed per trial, stored, shown by status, query and report.

The rules and their thresholds live in :mod:`er_core.sanity` (pure Python, shared with the
Ray-free fidelity runner); this module applies them to the store's rows and keeps the results.

When: the trainable checks each trial after its evaluation (:func:`check_trial`); one file per
trial in the store's ``sanity`` table (``sanity/experiment=…/dataset=…/method=…/<trial_id>.parquet``,
zero rows when nothing is flagged, so "checked, clean" differs from "not checked"), written
through ``ResultStore.write_atomic``. ``er-grid report`` recomputes every flag from the rows it
reads (:func:`flags_from_frames`), so a store written before the flags existed, or a threshold
changed since, is still checked; ``status`` and ``query`` read the stored flags and compute the
missing ones from rows (:func:`flags_for_trials`). Reports keep trials flagged ``collapsed`` out
of their tables (:func:`headline_rows`) and list them in the "Sanity checks" section.
"""

from __future__ import annotations

import json
from typing import Iterable

from er_core.dataset_info import info
from er_core.sanity import COLLAPSED, FLAG_NAMES, AttackOutcome, Flag, trial_flags
from grid.report_format import markdown_table, present

SANITY_DIR = "sanity"


def outcomes_from_frame(df) -> dict[str, list[AttackOutcome]]:
    """Trial id → outcomes, from a frame of example rows (``grid.store.load``)."""
    out: dict[str, list[AttackOutcome]] = {}
    if df.empty:
        return out
    robust = df["correct_clean"].astype(bool) & df["correct_adv"].astype(bool)
    failed = df["gradient_failed"].eq(True) if "gradient_failed" in df else robust & False
    d = df.assign(_robust=robust, _failed=failed)
    for (trial_id, attack, norm, eps), g in d.groupby(["trial_id", "attack", "norm", "eps"], sort=False):
        samples = g["sample_idx"].to_numpy()
        out.setdefault(trial_id, []).append(AttackOutcome(
            attack=attack, norm=norm, eps=float(eps), evaluated=frozenset(samples.tolist()),
            robust=frozenset(samples[g["_robust"].to_numpy()].tolist()), gradient_failed=int(g["_failed"].sum()),
        ))
    return out


# --------------------------------------------------------------------------- frames and store


def flags_from_frames(df, trials_df=None):
    """Recompute every flag from example rows ``df`` and trial rows ``trials_df`` → flags frame.

    Clean accuracy comes from the trial row, else from the examples' ``correct_clean``.
    """
    flags, trials = compute_flags(df, trials_df)
    return flags_frame(flags, trials)


def compute_flags(df, trials_df=None) -> tuple[list[Flag], dict[str, dict]]:
    """(flags, trial records) of every trial in the example rows ``df`` or trial rows ``trials_df``."""
    outcomes = outcomes_from_frame(df)
    trials = _trial_records(df, trials_df)
    flags = []
    for trial_id, trial in trials.items():
        flags += trial_flags(trial, outcomes.get(trial_id, []), info(trial["dataset"]).num_classes)
    return flags, trials


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


def sanity_schema():
    import pyarrow as pa

    from grid.store import UTC_TIMESTAMP, column

    return pa.schema([
        column("experiment", pa.string()),
        column("dataset", pa.string()),
        column("method", pa.string()),
        column("trial_id", pa.string()),
        column("flag", pa.string()),                          # one of FLAG_NAMES
        column("attack", pa.string(), nullable=True),         # None for trial-level flags
        column("eps", pa.float64(), nullable=True),
        column("value", pa.float64()),                        # the measured quantity
        column("threshold", pa.float64()),                    # the bound it crossed
        column("evidence", pa.string()),
        column("code_version", pa.string()),
        column("created_at", UTC_TIMESTAMP),
    ])


FLAG_COLUMNS = ("experiment", "dataset", "method", "trial_id", "flag", "attack", "eps", "value", "threshold",
                "evidence")


def flags_frame(flags: list[Flag], trials: dict[str, dict]):
    """Flags as a frame with :data:`FLAG_COLUMNS` (trial columns from ``trials``)."""
    import pandas as pd

    rows = [{**{k: trials[f.trial_id][k] for k in ("experiment", "dataset", "method")},
             **{k: getattr(f, k) for k in ("trial_id", "flag", "attack", "eps", "value", "threshold", "evidence")}}
            for f in flags]
    return pd.DataFrame(rows, columns=list(FLAG_COLUMNS))


def write_flags(store, trial: dict, flags: list[Flag]) -> str:
    """Store (or replace) one trial's flags atomically; zero rows records "checked, nothing flagged"."""
    from grid.store import rows_to_table, without_partitions

    schema = sanity_schema()
    key = {k: trial[k] for k in ("experiment", "dataset", "method", "trial_id")}
    if flags:
        rows = [{**key, **{k: getattr(f, k) for k in ("flag", "attack", "eps", "value", "threshold", "evidence")}}
                for f in flags]
        table = rows_to_table(rows, schema, fill={})
    else:
        table = schema.empty_table()
    path = f"{store.partition_dir(SANITY_DIR, key['experiment'], key['dataset'], key['method'])}/{key['trial_id']}.parquet"
    store.write_atomic(without_partitions(table), path)
    return path


def check_trial(store, trial) -> list[Flag]:
    """Compute and store the flags of a finished trial (``trial``: a ``grid.spec.TrialConfig``)."""
    key = {"experiment": trial.experiment, "dataset": trial.dataset, "method": trial.method}
    flags, _ = compute_flags(store.load(**key, trial_id=trial.trial_id),
                             store.load_trials(**key, trial_id=trial.trial_id))
    write_flags(store, {**key, "trial_id": trial.trial_id}, flags)
    return flags


def load_flags(root, damaged: str = "raise", **filters):
    """Stored flag rows under ``root`` (path, URI or ResultStore); ``damaged`` and filters as in
    ``grid.store.load``."""
    from grid.store import ResultStore

    store = root if isinstance(root, ResultStore) else ResultStore(root)
    return store.load_table(SANITY_DIR, sanity_schema(), filters, damaged=damaged)


def checked_trials(store) -> set[str]:
    """Trial ids with a stored flags file (from file names only)."""
    return {path.rsplit("/", 1)[-1][: -len(".parquet")] for path in store.files(SANITY_DIR)}


def flags_for_trials(root, trial_ids: Iterable[str], damaged: str = "raise"):
    """Flags of ``trial_ids``: stored where checked, else recomputed from the store's rows.
    ``damaged="skip"`` leaves damaged files out of both, like the rows they annotate."""
    from grid.store import ResultStore

    store = root if isinstance(root, ResultStore) else ResultStore(root)
    wanted = sorted(set(trial_ids))
    if not wanted:
        return flags_frame([], {})
    stored = load_flags(store, damaged=damaged, trial_id=wanted)[list(FLAG_COLUMNS)]
    missing = [t for t in wanted if t not in checked_trials(store)]
    if not missing:
        return stored.reset_index(drop=True)
    fresh = flags_from_frames(store.load(damaged=damaged, trial_id=missing),
                              store.load_trials(damaged=damaged, trial_id=missing))
    import pandas as pd

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


# --------------------------------------------------------------------------- report, query


def sanity_section(flags_df) -> list[str]:
    """The report's "Sanity checks" section: each flagged trial with its evidence."""
    out = ["## Sanity checks", "",
           "Flags after Carlini et al. 2019, *On Evaluating Adversarial Robustness* (thresholds in "
           "`er_core/sanity.py`). Trials flagged `collapsed` are left out of every table below.", ""]
    if flags_df.empty:
        return out + ["No trial flagged.", ""]
    rows = [[r.dataset, r.method, r.trial_id, f"`{r.flag}`", r.evidence.replace("|", "/")]
            for r in flags_df.sort_values(["dataset", "method", "trial_id", "flag"]).itertuples(index=False)]
    return out + [markdown_table(["dataset", "method", "trial", "flag", "evidence"], rows), ""]


def headline_rows(df, flags_df):
    """``df`` without the rows of trials flagged ``collapsed`` (they stay listed in the sanity section)."""
    gone = collapsed_trials(flags_df)
    return df[~df["trial_id"].isin(gone)] if gone else df


def add_flags_column(table, df, flags_df):
    """``table`` (rows of ``grid.report_metrics.robust_accuracy`` over ``df``) plus ``flags``: the union of
    the flags of the trials behind each row ('' when none)."""
    names = flag_names(flags_df)
    keys = [c for c in ("experiment", "dataset", "method", "train_eps", "lam", "seed", "epochs")
            if c in table.columns and c in df.columns]
    per_trial = df.drop_duplicates("trial_id")[["trial_id", *keys]]
    if not keys:
        union = ",".join(sorted({n for t in per_trial["trial_id"] for n in names.get(t, "").split(",") if n}))
        return table.assign(flags=union)
    per_trial = per_trial.assign(_flags=per_trial["trial_id"].map(lambda t: names.get(t, "")))
    grouped = per_trial.groupby(keys, dropna=False)["_flags"].agg(
        lambda s: ",".join(sorted({n for v in s for n in v.split(",") if n}))).rename("flags").reset_index()
    return table.merge(grouped, on=keys, how="left").assign(flags=lambda t: t["flags"].fillna(""))


__all__ = [
    "SANITY_DIR", "outcomes_from_frame", "flags_from_frames", "compute_flags", "write_flags", "check_trial",
    "load_flags", "flags_for_trials", "flag_names", "status_summary", "sanity_section", "headline_rows",
    "add_flags_column",
]

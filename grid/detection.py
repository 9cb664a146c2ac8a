"""The grid's detection stage: KD, LID, ER1, ER2 on a trained trial, rows to the store.

A trial's plan (which detectors, attacks, examples) is a :class:`grid.detection_plan.DetectionPlan`,
validated with the spec (the spec field ``detection`` is documented there).

The stage (:func:`run_detection_stage`) crafts every attack on set I and set II against the
trial's model, fits each detector on set I per fit attack, evaluates it on set II per test
attack (every pair: familiar = Table 5, cross = Tables 6–8) and writes one row per (trial,
detector, fit attack, test attack) with the four criteria, the counts and timings.

Storage: one parquet file per (trial, detection plan), written and committed through the
results store (``ResultStore.write_atomic``), ``<results>/detection/experiment=<e>/dataset=<d>/method=<m>/<trial_id>__<plan hash>.parquet``
(Hive partitions as in ``grid.store``). Resumable: a trial whose file is committed and intact is
skipped, so a rerun after a kill adds nothing twice; an uncommitted or damaged file is never
read and is redone. A changed plan hashes to a new file name, so its rows land beside the old ones with
their own ``detection_config``, never mixed into the same file.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, Optional

import pyarrow as pa

from .detection_plan import DetectionPlan
from .faults import KILL_IN_DETECTION_ENV, kill_if_asked
from .fingerprint import canonical_json, library_versions, short_hash
from .store import UTC_TIMESTAMP, ResultStore, column, open_results, without_partitions, rows_to_table
from .store_rows import SEP

DETECTION_DIR = "detection"

#: One row per (trial, detector, fit attack, test attack).
DETECTION_SCHEMA = pa.schema([
    column("experiment", pa.string()),
    column("dataset", pa.string()),
    column("method", pa.string()),
    column("trial_id", pa.string()),
    column("train_eps", pa.float64(), nullable=True),
    column("lam", pa.float64(), nullable=True),
    column("seed", pa.int64()),
    column("epochs", pa.int64()),
    column("detector", pa.string()),
    column("fit_attack", pa.string()),
    column("fit_eps", pa.float64()),                  # C&W: the RMS-ℓ2 bound
    column("test_attack", pa.string()),
    column("test_eps", pa.float64()),
    column("acc_adv", pa.float64(), nullable=True),   # fractions in [0, 1]; NaN where undefined
    column("acc_nadv", pa.float64(), nullable=True),
    column("acc_cla", pa.float64(), nullable=True),
    column("acc_com", pa.float64(), nullable=True),
    column("n_adv", pa.int64()),
    column("n_nat", pa.int64()),
    column("n_detected", pa.int64()),
    column("n_undetected", pa.int64()),
    column("n_undetected_correct", pa.int64()),
    column("n_natural_flagged", pa.int64()),
    column("fit_seconds", pa.float64()),
    column("score_seconds", pa.float64()),
    column("craft_seconds", pa.float64()),            # crafting the test attack on sets I and II
    column("detector_config", pa.string()),           # canonical JSON of the detector's config
    column("detection_config", pa.string()),          # canonical JSON of the trial's detection plan
    column("checkpoint_hash", pa.string()),
    column("library_versions", pa.string()),
    column("code_version", pa.string()),
    column("created_at", UTC_TIMESTAMP),
])


# --------------------------------------------------------------------------- the stage


def plan_hash(plan: DetectionPlan) -> str:
    """10 hex digits identifying a detection plan (file-name part; rows carry the full JSON)."""
    return short_hash(plan.to_dict(), 10)


def detection_path(store: ResultStore, trial, plan: DetectionPlan) -> str:
    directory = store.partition_dir(DETECTION_DIR, trial.experiment, trial.dataset, trial.method)
    return f"{directory}/{trial.trial_id}{SEP}{plan_hash(plan)}.parquet"


def detection_done(store: ResultStore, trial, plan: DetectionPlan) -> bool:
    """True when this trial's rows for ``plan`` are committed and intact (a damaged file is redone)."""
    return store.is_committed_intact(detection_path(store, trial, plan))


def run_detection_stage(store: ResultStore, trial, model, data, plan: DetectionPlan, checkpoint_hash: str,
                        report: Optional[Callable[[dict], None]] = None) -> int:
    """Run ``plan`` (a trial's, ``TrialConfig.detection``) on ``model`` (the trial's trained
    inference model) and store the rows. ``data``: the trial's ``er_core.data.Data``.
    ``trial``: anything with experiment, dataset, method, trial_id, train_eps, lam, seed,
    epochs (a ``grid.spec.TrialConfig``). Returns the number of rows written (0 when the trial's
    rows for this plan are already stored). ``report`` (optional) gets progress dicts.
    """
    from er_core import data as er_data
    from er_core import detect

    if detection_done(store, trial, plan):
        return 0
    started = time.perf_counter()
    x_test, y_test = data.x_test, data.y_test
    if plan.n is not None:
        idx = er_data.eval_indices(trial.dataset, plan.n, plan.split_seed)
        x_test, y_test = data.test_examples(idx)
    settings = {a.attack: a for a in plan.attacks}  # AttackSpecs, checked when the spec was
    material = detect.prepare_material(
        model, data.x_train, data.y_train, x_test, y_test, settings, split_seed=plan.split_seed,
        fit_fraction=plan.fit_fraction, batch_size=plan.batch_size, overbound=plan.overbound,
    )
    if report is not None:
        report({"phase": "detection", "crafted_seconds": time.perf_counter() - started})
    kill_if_asked(KILL_IN_DETECTION_ENV, 1)  # test hook: a kill mid-stage must leave no rows
    configs = {d: detect.make(d, dataset=trial.dataset, **plan.configs.get(d, {})).config for d in plan.detectors}
    results = detect.detection_matrix({d: material for d in plan.detectors}, configs, pairs="all")
    eps = plan.attack_eps()
    common = {
        "experiment": trial.experiment, "dataset": trial.dataset, "method": trial.method,
        "trial_id": trial.trial_id, "train_eps": trial.train_eps, "lam": trial.lam,
        "seed": trial.seed, "epochs": trial.epochs, "detection_config": canonical_json(plan.to_dict()),
        "checkpoint_hash": checkpoint_hash, "library_versions": library_versions(),
    }
    rows = [{
        **common, **r,
        "fit_eps": eps[r["fit_attack"]], "test_eps": eps[r["test_attack"]],
        "craft_seconds": material.seconds[r["test_attack"]],
        "detector_config": canonical_json(dataclasses.asdict(configs[r["detector"]])),
    } for r in results]
    table = without_partitions(rows_to_table(rows, DETECTION_SCHEMA, fill={}))
    store.write_atomic(table, detection_path(store, trial, plan))
    if report is not None:
        report({"phase": "detection", "detection_rows": len(rows), "detection_seconds": time.perf_counter() - started})
    return len(rows)


# --------------------------------------------------------------------------- reading


def load_detection(root, damaged: str = "raise", **filters):
    """Detection rows under ``root`` (path, URI or ResultStore) as a pandas DataFrame with the
    columns of :data:`DETECTION_SCHEMA`; filters and ``damaged`` as in ``grid.store.load``.
    """
    store = open_results(root)
    # The store prunes files of non-example tables by "<trial_id>.parquet" names; ours carry a
    # plan hash too, so trial_id is filtered on the rows instead of the file names.
    trial_ids = filters.pop("trial_id", None)
    df = store.load_table(DETECTION_DIR, DETECTION_SCHEMA, filters, damaged=damaged,
                          unique=("trial_id", "detection_config", "detector", "fit_attack", "test_attack"))
    if trial_ids is not None:
        wanted = list(trial_ids) if isinstance(trial_ids, (list, tuple, set, frozenset)) else [trial_ids]
        df = df[df["trial_id"].isin(wanted)].reset_index(drop=True)
    return df


__all__ = [
    "DETECTION_DIR", "DETECTION_SCHEMA", "detection_done", "detection_path", "load_detection", "plan_hash",
    "run_detection_stage",
]

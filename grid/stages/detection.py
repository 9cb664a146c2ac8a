"""The detection stage: KD, LID, ER1, ER2 on a trained trial (paper Section 4.5), rows to the store.

A trial's plan (which detectors, attacks, examples) is a :class:`grid.spec.DetectionPlan`,
validated with the spec (the spec field ``detection`` is documented there). The stage crafts
every attack on set I and set II against the trial's model, fits each detector on set I per
fit attack, evaluates it on set II per test attack (every pair: familiar = Table 5, cross =
Tables 6–8) and writes one row per (trial, detector, fit attack, test attack) with the four
criteria, the counts and timings (``grid.store.schemas.DETECTION_SCHEMA``).

One file per (trial, detection plan), ``detection/…/<trial_id>__<plan hash>.parquet``
(``grid.store.layout.detection_path``): a changed plan's rows land beside the old ones with
their own ``detection_config``. A trial whose file is committed and intact is skipped; an
uncommitted or damaged one is never read and is redone.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, Optional

from grid.common.faults import KILL_IN_DETECTION_ENV, kill_if_asked
from grid.common.fingerprint import canonical_json, library_versions
from grid.store.layout import detection_path
from grid.store.rows import rows_to_table, without_partitions
from grid.store.schemas import DETECTION_SCHEMA

from .base import SingleFileStage, TrialBundle


def run_detection_stage(store, trial, model, data, plan, checkpoint_hash: str,
                        report: Optional[Callable[[dict], None]] = None) -> int:
    """Run ``plan`` (a trial's, ``TrialConfig.detection``) on ``model`` (the trial's trained
    inference model) and store the rows. ``data``: the trial's ``er_core.data.Data``.
    ``trial``: anything with experiment, dataset, method, trial_id, train_eps, lam, seed,
    epochs (a ``grid.spec.TrialConfig``). Returns the number of rows written (it is rewritten
    even when stored: the stage object decides what to skip). ``report`` (optional) gets progress dicts.
    """
    from er_core import data as er_data
    from er_core import detect

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


class DetectionStage(SingleFileStage):
    name = "detection"

    def wants(self, trial) -> bool:
        return bool(trial.detection)

    def path(self, store, trial) -> str:
        return detection_path(store, trial, trial.detection)

    def compute(self, bundle: TrialBundle) -> None:
        run_detection_stage(bundle.store, bundle.trial, bundle.model, bundle.data, bundle.trial.detection,
                            bundle.checkpoint_hash)


STAGE = DetectionStage()

__all__ = ["STAGE", "run_detection_stage"]

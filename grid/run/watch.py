"""Watching a grid through Ray Tune: its progress table, its TensorBoard curves and its
``ResultGrid``.

- :func:`progress_reporter`: Tune's table with one row per trial and the columns a researcher
  reads (trial name, method, dataset, ε, λ, seed, epoch, held-out accuracy, evaluation batches
  done/total), instead of Tune's newer console output, which infers its columns from the first
  reported metrics and prints the nested trial config as one truncated dict
  (:func:`use_progress_table` turns that output off in the driver).
- :class:`EpochTensorBoard`: TensorBoard event files in each trial folder (where Tune's default
  TensorBoard logger writes, which it replaces): the training reports against the epoch
  (``train/<metric>``), the robust accuracy per attack and ε once at the end, at the last
  epoch (``robust/pgd_eps0.1``), and nothing for the per-batch evaluation reports (which would
  otherwise draw a flat tail).
  ``tensorboard --logdir <storage>/<experiment>`` shows every trial.
- :func:`tune_results` / :func:`tune_results_frame`: Tune's ``ResultGrid`` of an experiment
  folder, and one row per trial in which Tune's id is ``tune_trial_id`` and ``trial_id`` is
  er-grid's, the id of the store's rows. The rows in ``results/`` are the record; Tune's results
  are what the trials last told Tune, and getting them unpickles Tune's experiment state:
  only for folders you or your cluster wrote.
"""

from __future__ import annotations

import os

from ray.tune.logger import TBXLoggerCallback

# What the progress table shows: a config path (Tune's "trial/…" lookup into param_space) or a
# reported metric (grid.trial.progress) → its column header.
PARAMETER_COLUMNS = {"trial/method": "method", "trial/dataset": "dataset", "trial/train_eps": "ε",
                     "trial/lam": "λ", "trial/seed": "seed"}
METRIC_COLUMNS = {"epoch": "epoch", "holdout_accuracy": "held-out acc", "eval_batches": "eval batches"}
# Seconds between two tables: a grid runs for minutes to hours.
TABLE_EVERY_S = 30
# The environment switch of Tune's console output; "0" is the output that takes a reporter.
TUNE_NEW_OUTPUT_ENV = "RAY_AIR_NEW_OUTPUT"
# Report keys that are bookkeeping, not curves (the epoch is the axis itself).
NOT_PLOTTED = {"epoch", "resumed_from", "images", "eval_batches_done", "eval_batches_total", "done"}


def use_progress_table() -> None:
    """Make Tune print :func:`progress_reporter`'s table in this driver: Tune's newer console
    output ignores a reporter. A value already set in the environment is kept."""
    os.environ.setdefault(TUNE_NEW_OUTPUT_ENV, "0")


def progress_reporter():
    """Tune's ``CLIReporter`` with the grid's columns (see the module docstring)."""
    from ray.tune import CLIReporter

    return CLIReporter(parameter_columns=dict(PARAMETER_COLUMNS), metric_columns=dict(METRIC_COLUMNS),
                       max_report_frequency=TABLE_EVERY_S, print_intermediate_tables=True, sort_by_metric=False)


class EpochTensorBoard(TBXLoggerCallback):
    """Tune's TensorBoard logger with the epoch as the step of the training curves and the
    robust accuracies written once (see the module docstring). Being a ``TBXLoggerCallback``,
    it stands in for Tune's default one, so each trial folder has one set of curves."""

    def log_trial_result(self, iteration: int, trial, result: dict) -> None:
        from ray.tune.result import AUTO_RESULT_KEYS

        from grid.trial.progress import ROBUST_KEY

        phase = result.get("phase")  # every report of an er-grid trial has one (grid.trial.progress)
        if phase not in ("train", "done"):
            return
        if trial not in self._trial_writer:
            self.log_trial_start(trial)
        writer, step = self._trial_writer[trial], int(result["epoch"])
        if phase == "train":
            for key, value in result.items():
                if key not in NOT_PLOTTED and key not in AUTO_RESULT_KEYS and _is_number(value):
                    writer.add_scalar(f"train/{key}", value, global_step=step)
        else:
            for column, accuracy in result[ROBUST_KEY].items():
                # "pgd@0.1" → "robust/pgd_eps0.1": TensorBoard tags take no "@".
                writer.add_scalar(f"robust/{column.replace('@', '_eps')}", accuracy, global_step=step)
        writer.flush()


def _is_number(value) -> bool:
    import math

    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def tune_results(path: str):
    """Tune's ``ResultGrid`` of the experiment folder ``path`` (``<storage>/<experiment>``).

    Trust: this restores Tune's experiment state, which unpickles it; use it only on folders
    you or your cluster wrote. The store's rows are the record (``grid.store.load``,
    ``er-grid query``); Tune's results are what the trials last reported to Tune."""
    from ray import tune

    from grid.common.locations import storage_location

    from .session import trainable

    return tune.Tuner.restore(storage_location(path), trainable=trainable()).get_results()


def tune_results_frame(results):
    """One row per trial of a ``ResultGrid``: the trial's name, er-grid's ``trial_id`` (as in the
    store's rows), Tune's id as ``tune_trial_id``, dataset, method, ε, λ, seed, then every metric
    of its last report (nested ones as ``robust/pgd@0.1``) and Tune's error, if any."""
    import pandas as pd
    from ray.tune.utils import flatten_dict

    from grid.spec import TrialConfig

    rows = []
    for result in results:
        trial = TrialConfig.from_dict(result.config["trial"])
        metrics = flatten_dict(dict(result.metrics or {}), delimiter="/")
        metrics = {k: v for k, v in metrics.items() if not k.startswith("config/")}
        rows.append({"trial": trial.name, "trial_id": trial.trial_id, "tune_trial_id": metrics.pop("trial_id", None),
                     **{k: getattr(trial, k) for k in ("dataset", "method", "train_eps", "lam", "seed")},
                     **metrics, "error": None if result.error is None else str(result.error).strip().splitlines()[-1]})
    return pd.DataFrame(rows)


__all__ = ["EpochTensorBoard", "METRIC_COLUMNS", "PARAMETER_COLUMNS", "progress_reporter", "tune_results",
           "tune_results_frame", "use_progress_table"]

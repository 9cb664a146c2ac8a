"""``er-grid status`` from the project's own records only: no Ray, no unpickling.

Read, all plain JSON or parquet written by er-grid itself:

- ``<experiment>/grid_spec.json``: the planned trials (``grid.experiment.spec_record``);
- ``<experiment>/<trial name>/checkpoint_*/epoch.json``: the epochs each trial finished (the
  sidecar the trainable writes beside every checkpoint), each checked against the spec: a
  sidecar claiming epoch 99 of 2 is damaged, never counted;
- ``<experiment>/results``: the commit record and every committed file, verified
  (``grid.store.check``).

Ray Tune's ``experiment_state-*.json`` is never read: it embeds cloudpickled objects, and
unpickling runs code chosen by whoever could write the folder (a shared bucket, a copied
results folder). So the state shown is what is stored, not what Tune believes: a trial
stopped half-way reads TRAINING or EVALUATING until it is resumed.

States: DONE (every file of every stage the trial wants, ``grid.stages.STAGES``: evaluation
batches, detection, codes, trial row, sanity flags, committed and intact),
DAMAGED (a committed file is missing or changed: ``er-grid resume`` recomputes it),
EVALUATING (trained, a stage's files incomplete), TRAINING (some epochs), PENDING (nothing yet).
"""

from __future__ import annotations

import dataclasses
from typing import Optional

from grid.common.errors import GridError
from grid.common.locations import filesystem, join, results_location
from grid.spec import TrialConfig
from grid.stages import missing_files
from grid.store import EXAMPLES_DIR, ResultStore, check_store
from grid.store.manifest import batch_key

from .files import scan_checkpoints
from .spec_record import experiment_folder, planned_trials


@dataclasses.dataclass(frozen=True)
class TrialStatus:
    name: str
    trial_id: str
    state: str  # DONE | DAMAGED | EVALUATING | TRAINING | PENDING
    epochs_done: int
    epochs: int
    batches_done: int  # planned (attack, ε, batch) committed and intact
    batches_total: int
    damaged: tuple = ()  # "path: reason" per committed file missing or changed, per sidecar that cannot be true
    elapsed_s: float = 0.0  # training seconds so far, from the newest checkpoint's sidecar
    config: Optional[TrialConfig] = None  # for the time-remaining estimate (grid.trial.progress)


@dataclasses.dataclass(frozen=True)
class ExperimentStatus:
    experiment_path: str
    results_path: str
    trials: tuple
    not_part_of_store: tuple  # files under results/ that no reader reads
    moved_aside: tuple        # files a repair replaced, kept as evidence
    damaged_records: tuple    # "(manifest path, reason)" of unreadable commit records

    @property
    def damaged(self) -> list:
        return [t for t in self.trials if t.damaged]


def epochs_done(experiment: str, trial: TrialConfig) -> tuple[int, float]:
    """(newest epoch with a complete checkpoint sidecar in the trial's folder, its training
    seconds so far); (0, 0.0) if none."""
    return checkpoint_progress(experiment, trial)[:2]


def checkpoint_progress(experiment: str, trial: TrialConfig) -> tuple[int, float, list]:
    """:func:`epochs_done` and the trial's damaged sidecars (``"<trial name>/<folder>/epoch.json
    is damaged (…)"``): a sidecar claiming more epochs than the spec plans is not believed."""
    fs, folder = filesystem(join(experiment, trial.name))
    found, damaged = scan_checkpoints(fs, folder, trial.epochs)
    epoch, seconds = max(((epoch, seconds) for epoch, seconds, _path in found), default=(0, 0.0))
    return epoch, seconds, [f"{trial.name}/{line}" for line in damaged]


def status(path: str, progress=None) -> ExperimentStatus:
    """Per trial: state, epochs checkpointed, evaluation batches committed of planned, damage;
    plus the files under the results folder that are not part of the store.

    ``path``: the experiment folder or its results folder (local or URI). ``progress``:
    optional wrapper for the trial iterable (e.g. ``tqdm``).
    """
    experiment = experiment_folder(path)
    trials = planned_trials(experiment)
    results = ResultStore(results_location(experiment))
    check = check_store(results)
    out = []
    for trial in (progress(trials) if progress else trials):
        committed = {batch_key(c) for c in check.intact_commits(trial.trial_id, EXAMPLES_DIR)}
        planned = set(trial.eval_batches())
        epochs, seconds, sidecars = checkpoint_progress(experiment, trial)
        damaged = tuple(f"{c.path}: {reason}" for c, reason in check.damaged.get(trial.trial_id, ())) + tuple(sidecars)
        intact = {f"{results.base}/{c.path}" for c in check.intact.get(trial.trial_id, ())}
        # DONE means every stage the trial wants has committed every file it makes, intact.
        complete = not any(missing_files(results, trial, intact).values())
        out.append(TrialStatus(
            name=trial.name, trial_id=trial.trial_id, state=_state(bool(damaged), bool(complete), epochs, trial.epochs),
            epochs_done=epochs, epochs=trial.epochs, batches_done=len(planned & committed),
            batches_total=len(planned), damaged=damaged, elapsed_s=seconds, config=trial,
        ))
    return ExperimentStatus(
        experiment_path=experiment, results_path=results.root, trials=tuple(out),
        not_part_of_store=check.not_part_of_store, moved_aside=check.moved_aside,
        damaged_records=check.damaged_records,
    )


def _state(damaged: bool, complete: bool, epochs: int, planned: int) -> str:
    if damaged:
        return "DAMAGED"
    if complete:
        return "DONE"
    if epochs >= planned:
        return "EVALUATING"
    return "TRAINING" if epochs else "PENDING"


def trials_without_results(path: str, **filters) -> Optional[list[str]]:
    """Names of the planned trials (those matching ``filters``: a TrialConfig field → the values
    kept) with no committed evaluation rows, their commit record deleted or never written: what
    ``query`` and ``report`` name instead of leaving them silently absent. None when ``path``
    holds no plan (a results folder without ``grid_spec.json`` beside it): nothing to compare.
    A damaged spec record is a GridError naming it."""
    try:
        experiment = experiment_folder(path)
    except GridError:
        return None
    trials = [t for t in planned_trials(experiment) if all(getattr(t, k) in v for k, v in filters.items())]
    # Damaged commit records count as no rows: readers stop on them (naming them) or, with
    # --skip-damaged, leave their rows out too.
    results = ResultStore(results_location(experiment))
    with_rows = {c.key["trial_id"] for c in results.commits(EXAMPLES_DIR, damaged="skip")}
    return sorted(t.name for t in trials if t.trial_id not in with_rows)


def trials_to_repair(report: ExperimentStatus) -> list[str]:
    """trial_ids that are fully trained but whose stored results are damaged or incomplete:
    what ``er-grid resume`` recomputes outside Tune when Tune considers the trial finished."""
    return [t.trial_id for t in report.trials if t.epochs_done >= t.epochs and t.state != "DONE"]


__all__ = ["ExperimentStatus", "TrialStatus", "checkpoint_progress", "epochs_done", "status", "trials_to_repair",
           "trials_without_results"]

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
from grid.store.layout import NOTES_DIR
from grid.store.manifest import batch_key

from .files import EPOCH_FILE, scan_checkpoints
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
    config: Optional[TrialConfig] = None  # for the time-remaining estimate (grid.run.estimate)
    # When the trial's records were written (file times, seconds since 1970), the estimate's
    # measure of its pace: the newest checkpoint sidecar, each committed intact evaluation batch
    # as ((attack, ε, batch), time), and the newest of its other committed files.
    epoch_at: Optional[float] = None
    batch_at: tuple = ()
    finished_at: Optional[float] = None
    epoch_seconds: tuple = ()  # (epoch, training seconds so far) of every kept checkpoint


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
    return _checkpoints(experiment, trial)[:3]


def _checkpoints(experiment: str, trial: TrialConfig) -> tuple[int, float, list, dict]:
    """:func:`checkpoint_progress` and the pace fields of :class:`TrialStatus` (``epoch_at``,
    ``epoch_seconds``)."""
    fs, folder = filesystem(join(experiment, trial.name))
    found, damaged = scan_checkpoints(fs, folder, trial.epochs)
    epoch, seconds, newest = max(found, default=(0, 0.0, None))
    pace = {"epoch_at": _written_at(fs, [f"{newest}/{EPOCH_FILE}"])[0] if newest else None,
            "epoch_seconds": tuple(sorted((e, s) for e, s, _path in found))}
    return epoch, seconds, [f"{trial.name}/{line}" for line in damaged], pace


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
        epochs, seconds, sidecars, pace = _checkpoints(experiment, trial)
        damaged = tuple(f"{c.path}: {reason}" for c, reason in check.damaged.get(trial.trial_id, ())) + tuple(sidecars)
        intact = {f"{results.base}/{c.path}" for c in check.intact.get(trial.trial_id, ())}
        # DONE means every stage the trial wants has committed every file it makes, intact.
        complete = not any(missing_files(results, trial, intact).values())
        out.append(TrialStatus(
            name=trial.name, trial_id=trial.trial_id, state=_state(bool(damaged), bool(complete), epochs, trial.epochs),
            epochs_done=epochs, epochs=trial.epochs, batches_done=len(planned & committed),
            batches_total=len(planned), damaged=damaged, elapsed_s=seconds, config=trial, **pace,
            **_commit_times(results, check.intact.get(trial.trial_id, ()), planned),
        ))
    return ExperimentStatus(
        experiment_path=experiment, results_path=results.root, trials=tuple(out),
        not_part_of_store=check.not_part_of_store, moved_aside=check.moved_aside,
        damaged_records=check.damaged_records,
    )


def _commit_times(results: ResultStore, commits, planned: set) -> dict:
    """``batch_at`` and ``finished_at`` of :class:`TrialStatus` from the trial's intact commits."""
    commits = list(commits)
    times = _written_at(results.fs, [f"{results.base}/{c.path}" for c in commits])
    batch_at, others = [], []
    for commit, at in zip(commits, times):
        if at is None:
            continue
        if commit.table == EXAMPLES_DIR:
            if batch_key(commit) in planned:
                batch_at.append((batch_key(commit), at))
        elif commit.table != NOTES_DIR:  # notes come before their batch; the other tables after
            others.append(at)
    return {"batch_at": tuple(batch_at), "finished_at": max(others, default=None)}


def _written_at(fs, paths: list) -> list:
    """Each file's modification time (seconds since 1970), None where the store gives none."""
    if not paths:
        return []
    return [info.mtime.timestamp() if info.mtime is not None else None for info in fs.get_file_info(paths)]


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

"""The post-training stages of a trial, in the order they run: one file each, one line in
:data:`STAGES`.

The trainable (after training), ``er-grid resume``'s repair (from the newest checkpoint) and
``er-grid status`` (which files a finished trial must have) all iterate :data:`STAGES`, so a
stage added here is run, repaired and checked everywhere; ``tests/grid/stages`` fails when a
consumer does not cover every stage. Each stage says whether a trial wants it, which files it
commits, and how to run it (:class:`~grid.stages.base.Stage`); torch is imported only when a
stage runs.
"""

from __future__ import annotations

from . import codes, detection, evaluation, sanity, trial_row
from .base import Stage, TrialBundle

#: Order matters: the trial row's wall time covers the stages before it, and the sanity flags
#: are computed from the rows and the trial row.
STAGES: tuple[Stage, ...] = (
    evaluation.STAGE,
    detection.STAGE,
    codes.STAGE,
    trial_row.STAGE,
    sanity.STAGE,
)


def run_stages(bundle: TrialBundle) -> dict[str, int]:
    """Run every stage the trial wants, each computing only what is not committed and intact;
    a stage derived from others is redone when one of them wrote anything. Returns files
    written per stage."""
    written: dict[str, int] = {}
    for stage in STAGES:
        if not stage.wants(bundle.trial):
            continue
        redo = any(written.get(name, 0) > 0 for name in stage.derived_from)
        written[stage.name] = stage.run(bundle, redo=redo)
    return written


def missing_files(store, trial, intact: set) -> dict[str, list[str]]:
    """Stage name → the files it commits for ``trial`` that are not in ``intact`` (store paths of
    committed, verified files): what a repair would recompute. Stages the trial skips are absent."""
    out = {}
    for stage in STAGES:
        if stage.wants(trial):
            out[stage.name] = [p for p in stage.files(store, trial) if p not in intact]
    return out


__all__ = ["STAGES", "Stage", "TrialBundle", "missing_files", "run_stages"]

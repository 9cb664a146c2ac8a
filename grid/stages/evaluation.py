"""The evaluation stage: the trial's evaluation plan on its fixed subset, one committed file per
(attack, ε, batch), one row per example (``grid.store.schemas.ROW_SCHEMA``).

Batch by batch through ``er_core.evaluate.attack_batch``, skipping every (attack, ε, batch)
whose file is committed and intact (``ResultStore.done_batches``; a missing or damaged one is
moved aside and recomputed). The subset, its batches and their seeds are ``er_core.eval_subset``'s.
A batch that runs out of CUDA memory is retried in halves. An AutoAttack batch also keeps what
pyautoattack's own checks warned of (``notes/``, :func:`write_notes`), before the batch itself.

Fingerprint rule: every row carries what produced it (``attack_config``: the attack's full
config as canonical JSON, with the torch and pyautoattack versions; ``checkpoint_hash``;
``eval_subset``; ``library_versions``, recorded only). A changed spec gives new ``trial_id``s, so
its rows land beside the old ones. Within one ``trial_id``, if the store already holds rows for
an (attack, ε) whose attack config, checkpoint hash or subset differ from the current ones, the
stage stops with :class:`FingerprintMismatch` naming what differs: rows of two fingerprints are
never mixed in one trial.
"""

from __future__ import annotations

from typing import Callable, Optional

from er_core.sanity.base import batch_notes
from grid.common.faults import DISK_FULL_AFTER_BATCHES_ENV, KILL_AFTER_BATCHES_ENV, disk_full_if_asked, kill_if_asked
from grid.common.fingerprint import canonical_json, eval_subset_tag, library_versions
from grid.store import manifest
from grid.store.layout import EXAMPLES_DIR, notes_path
from grid.store.rows import rows_to_table, without_partitions
from grid.store.schemas import NOTES_SCHEMA

from .base import Stage, TrialBundle, trial_batches


class FingerprintMismatch(RuntimeError):
    """Stored rows of this trial were produced by a different checkpoint or attack setting."""


CHECKED_FINGERPRINT = ("attack_config", "checkpoint_hash", "eval_subset")



def eval_fingerprint(trial, attack: str, eps: float, options: dict, checkpoint_hash: str) -> dict:
    """The fingerprint columns of every row of one (attack, ε) evaluation of this trial.

    ``attack_config``, ``checkpoint_hash`` and ``eval_subset`` decide the outcome and are checked
    against stored rows (:func:`check_fingerprints`); ``library_versions`` is recorded, not checked.
    """
    import er_core.evaluate

    config = er_core.evaluate.attack_fingerprint(attack, eps, **options)
    return {
        "norm": config["norm"],
        "attack_config": canonical_json(config),
        "checkpoint_hash": checkpoint_hash,
        "eval_subset": eval_subset_tag(trial.eval_n, trial.eval_seed),
        "library_versions": library_versions(),
    }


def check_fingerprints(store, trial, expected: dict[tuple[str, float], dict]) -> None:
    """Stop if stored rows of this trial carry another fingerprint for the same (attack, ε)."""
    # Damaged committed files are left out: they are recomputed, not compared.
    stored = store.load(experiment=trial.experiment, dataset=trial.dataset, method=trial.method,
                        trial_id=trial.trial_id, damaged="skip")
    if stored.empty:
        return
    stored = stored[["attack", "eps", *CHECKED_FINGERPRINT]].drop_duplicates()
    clashes = []
    for row in stored.itertuples(index=False):
        want = expected.get((row.attack, float(row.eps)))
        if want is None:
            continue  # an (attack, ε) no longer in the plan: left alone, never rewritten
        for column in CHECKED_FINGERPRINT:
            if getattr(row, column) != want[column]:
                clashes.append(f"{row.attack} eps={row.eps}: {column} stored {getattr(row, column)!r}, "
                               f"now {want[column]!r}")
    if clashes:
        raise FingerprintMismatch(
            f"trial {trial.trial_id} ({trial.dataset}/{trial.method}) of experiment "
            f"{trial.experiment!r} already has rows produced by a different checkpoint or attack "
            f"setting: {'; '.join(sorted(set(clashes)))}. Rows of two fingerprints are never mixed: "
            "evaluate the change under a new experiment name, or delete this trial's rows first."
        )


def attack_with_oom_retry(model, attack: str, x, y, eps: float, sample_idx: list, options: dict,
                          notes: Optional[list] = None) -> list[dict]:
    """``attack_batch``; on CUDA out-of-memory, the same examples in two halves (recursively).
    ``notes`` collects what the attack's library warned of (``er_core.evaluate.attack_batch``)."""
    import torch

    import er_core.evaluate

    try:
        return er_core.evaluate.attack_batch(model, attack, x, y, eps, sample_idx=sample_idx, notes=notes, **options)
    except torch.cuda.OutOfMemoryError:
        if len(y) == 1:
            raise
        torch.cuda.empty_cache()
        half = len(y) // 2
        return (attack_with_oom_retry(model, attack, x[:half], y[:half], eps, sample_idx[:half], options, notes)
                + attack_with_oom_retry(model, attack, x[half:], y[half:], eps, sample_idx[half:], options, notes))


def write_notes(store, trial, attack: str, eps: float, batch: int, notes: list) -> str:
    """One batch's notes: a ``recorded`` row, then one row per distinct (kind, message) the attack
    gave (``AttackResult.notes``). Written before the batch itself, so a committed batch always
    has its notes committed too."""
    key = {"experiment": trial.experiment, "dataset": trial.dataset, "method": trial.method,
           "trial_id": trial.trial_id, "attack": attack, "eps": float(eps), "batch": int(batch)}
    rows = [{**key, "kind": kind, "message": message}
            for *_where, kind, message in batch_notes(attack, eps, batch, notes)]
    path = notes_path(store, trial, attack, eps, batch)
    store.write_atomic(without_partitions(rows_to_table(rows, NOTES_SCHEMA, fill={})), path)
    return path


def evaluate(model, data, trial, store, checkpoint_hash: str, report_progress: Callable[[int, int], None],
             batches=None) -> int:
    """Run the evaluation plan batch by batch, skipping stored batches. Returns batches computed.

    ``batches``: the subset's batches of indices (``er_core.eval_subset.eval_batches``), computed
    from the trial when not given.
    """
    import torch

    from er_core.attacks import attack_class
    from er_core.eval_subset import batch_seed
    from er_core.torch_utils import model_device

    if batches is None:
        batches = trial_batches(trial)
    fingerprints = {
        (item.attack, float(item.eps)): eval_fingerprint(trial, item.attack, item.eps, item.options, checkpoint_hash)
        for item in trial.eval_plan
    }
    check_fingerprints(store, trial, fingerprints)
    done = store.done_batches(trial.experiment, trial.dataset, trial.method, trial.trial_id)
    # A batch whose notes file is committed but damaged is redone with its notes (a batch from
    # before notes were kept has none committed: it stays done, its flag says "not checked").
    commits = store.trial_commits(trial.trial_id)
    for item in trial.eval_plan:
        if attack_class(item.attack).reports_notes:
            for b in range(len(batches)):
                commit = commits.get(store.relative(notes_path(store, trial, item.attack, float(item.eps), b)))
                if commit is not None and manifest.verify(store.fs, store.base, commit)[1] is not None:
                    done.discard((item.attack, float(item.eps), b))
    todo = [(item, b) for item in trial.eval_plan for b in range(len(batches))
            if (item.attack, float(item.eps), b) not in done]
    total = len(trial.eval_plan) * len(batches)
    finished = total - len(todo)
    device = model_device(model)
    trial_columns = {"train_eps": trial.train_eps, "lam": trial.lam, "seed": trial.seed, "epochs": trial.epochs}
    for computed, (item, b) in enumerate(todo, start=1):
        idx = batches[b]
        torch.manual_seed(batch_seed(trial.seed, trial.eval_seed, item.attack, item.eps, b))
        x, y = data.test_examples(idx, device)
        notes: list = []
        rows = attack_with_oom_retry(model, item.attack, x, y, float(item.eps), idx.tolist(), dict(item.options), notes)
        if attack_class(item.attack).reports_notes:  # e.g. AutoAttack: for the autoattack_warning flag
            write_notes(store, trial, item.attack, float(item.eps), b, notes)
        extra = {**trial_columns, **fingerprints[(item.attack, float(item.eps))]}
        disk_full_if_asked(DISK_FULL_AFTER_BATCHES_ENV, computed)
        store.write_batch(
            [{**row, **extra} for row in rows], experiment=trial.experiment, dataset=trial.dataset,
            method=trial.method, trial_id=trial.trial_id, attack=item.attack, eps=float(item.eps), batch=b,
        )
        finished += 1
        report_progress(finished, total)
        kill_if_asked(KILL_AFTER_BATCHES_ENV, computed)
    return len(todo)


class EvaluationStage(Stage):
    name = "evaluation"

    def wants(self, trial) -> bool:
        return True

    def files(self, store, trial) -> list[str]:
        directory = store.partition_dir(EXAMPLES_DIR, trial.experiment, trial.dataset, trial.method)
        return [f"{directory}/{store.batch_file_name(trial.trial_id, attack, eps, b)}"
                for attack, eps, b in trial.eval_batches()]

    def run(self, bundle: TrialBundle, redo: bool = False) -> int:
        # Never derived: a batch is recomputed only when its file is missing or damaged.
        return evaluate(bundle.model, bundle.data, bundle.trial, bundle.store, bundle.checkpoint_hash,
                        bundle.report_progress, bundle.batches)


STAGE = EvaluationStage()

__all__ = ["CHECKED_FINGERPRINT", "FingerprintMismatch", "STAGE", "attack_with_oom_retry", "check_fingerprints",
           "eval_fingerprint", "evaluate"]

"""The trainable's steps without a Ray cluster: checkpoint round trip, evaluation that skips
stored batches and redoes a lost one identically, RSE evaluation after a resume, the
per-batch seed, the fingerprint rule, CUDA-OOM halving.

The lost-batch and resume tests evaluate an RSE model: its noise comes from torch's global
RNG, which ``evaluate`` seeds per batch from ``batch_seed`` (PGD seeds its own generator and
FGSM draws nothing, so on a deterministic model a broken batch seed would go unnoticed).

Runtime: ~8 s (1-epoch digits models, PGD-3/5 on 20 examples).
"""

from __future__ import annotations

import json
import shutil

from pathlib import Path

import pytest
import torch
from ray import tune

import er_core.data
import er_core.methods
import er_core.train
from grid.trial import checkpoints as C
from er_core.eval_subset import batch_seed
from grid.trial import trainable as T
from grid.stages import evaluation as E
from grid.spec import GridSpec, TrialConfig
from grid.store import manifest
from grid.store import ResultStore, load

SPEC = {
    "experiment": "unit",
    "datasets": ["digits"],
    "methods": ["none"],
    "epochs": 1,
    "eval_plan": {"digits": [{"attack": "pgd", "eps": [0.1], "options": {"steps": 5}},
                             {"attack": "fgsm", "eps": [0.1]}]},
    "eval_n": 20,
    "eval_batch_size": 5,
}


# RSE: 2-pass ensemble so the noise still shows in the predictions (10 passes average it out).
RSE_SPEC = {**SPEC, "methods": ["rse"], "hyperparams": {"rse": {"ensemble": 2}},
            "eval_plan": {"digits": [{"attack": "pgd", "eps": [0.1], "options": {"steps": 3}},
                                     {"attack": "fgsm", "eps": [0.1]}]}}
OUTCOME = ["attack", "sample_idx", "pred_clean", "pred_adv", "correct_adv", "l2", "linf"]


@pytest.fixture(scope="module")
def trained():
    torch.set_num_threads(1)
    trial = GridSpec.from_dict(SPEC).expand()[0]
    data = er_core.data.load("digits")
    method = er_core.methods.make("none", "digits")
    er_core.train.fit(method, data, epochs=1, seed=0)
    return trial, data, method


@pytest.fixture(scope="module")
def trained_rse(trained):
    _trial, data, _method = trained
    trial = GridSpec.from_dict(RSE_SPEC).expand()[0]
    method = er_core.methods.make("rse", "digits", **trial.method_hyperparams())
    er_core.train.fit(method, data, epochs=1, seed=0)
    return trial, data, method


def outcome_of(rows):
    """The rows' outcome columns in a fixed order, for exact comparison."""
    return rows[OUTCOME].sort_values(["attack", "sample_idx"]).reset_index(drop=True)


def outcome(store):
    return outcome_of(load(store))


def quiet(done: int, total: int) -> None:
    assert 0 < done <= total


def test_checkpoint_round_trip(trained, tmp_path):
    trial, data, method = trained
    state = C.TrainState(epoch=1, losses=[{"loss": 0.5}], train_seconds=2.0)
    torch.manual_seed(123)
    rng = torch.get_rng_state()
    C.save_state(method, state, tmp_path)
    # The state and its epoch sidecar; no temp file left behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([C.STATE_FILE, C.EPOCH_FILE])
    assert json.loads((tmp_path / C.EPOCH_FILE).read_text()) == {"epoch": 1, "train_seconds": 2.0}

    fresh = er_core.methods.make("none", "digits", init_seed=1)
    assert C.weights_hash(fresh.model) != C.weights_hash(method.model)
    torch.manual_seed(999)
    restored = C.restore_state(fresh, tune.Checkpoint.from_directory(str(tmp_path)))
    assert restored == state
    assert C.weights_hash(fresh.model) == C.weights_hash(method.model)
    assert torch.equal(torch.get_rng_state(), rng)
    assert C.restore_state(fresh, None) == C.TrainState()


def test_evaluate_skips_stored_batches_and_redoes_a_lost_one_identically(trained_rse, tmp_path):
    trial, data, method = trained_rse
    store = ResultStore(str(tmp_path / "results"))
    digest = C.weights_hash(method.model)
    assert E.evaluate(method.model, data, trial, store, digest, quiet) == 8  # 2 attacks × 4 batches
    first = load(store)
    assert len(first) == 2 * 20 and not first.duplicated(["attack", "sample_idx"]).any()
    assert set(first["checkpoint_hash"]) == {digest}
    assert set(first["sample_idx"]) == set(er_core.data.eval_indices("digits", 20, 0).tolist())

    assert E.evaluate(method.model, data, trial, store, digest, quiet) == 0  # nothing redone

    for attack in ("pgd", "fgsm"):  # one lost batch each, redone as the first batch of the run
        lost = next(p for p in store.files() if f"__{attack}__" in p and p.endswith("__b2.parquet"))
        Path(lost).unlink()
    torch.manual_seed(12345)  # whatever the RNG holds before, the redone batches draw the same noise
    assert E.evaluate(method.model, data, trial, store, digest, quiet) == 2
    again = outcome(store)
    assert again.equals(outcome_of(first))


def test_rse_evaluation_after_a_resume_equals_an_uninterrupted_one(trained_rse, tmp_path):
    """A trial killed after storing 3 of its 8 evaluation batches: the new process restores the
    RSE model from the checkpoint and evaluates the other 5; the rows equal an uninterrupted
    evaluation's, and the 3 stored batches are left as they were."""
    trial, data, method = trained_rse
    reference = ResultStore(str(tmp_path / "reference"))
    E.evaluate(method.model, data, trial, reference, C.weights_hash(method.model), quiet)

    checkpoint = tmp_path / "checkpoint"
    checkpoint.mkdir()
    C.save_state(method, C.TrainState(epoch=1), checkpoint)
    resumed = er_core.methods.make("rse", "digits", **{**trial.method_hyperparams(), "init_seed": 1})
    C.restore_state(resumed, tune.Checkpoint.from_directory(str(checkpoint)))
    assert resumed.model.randomized and C.weights_hash(resumed.model) == C.weights_hash(method.model)

    store = ResultStore(str(tmp_path / "results"))
    kept = sorted(reference.commits("examples"), key=lambda c: c.path)[:3]
    for commit in kept:  # what the killed process had stored and committed
        target = Path(store.base) / commit.path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(Path(reference.base) / commit.path, target)
    trial_id = kept[0].key["trial_id"]
    store.put_atomic(manifest.manifest_path(store.base, trial_id),
                     manifest.encode_manifest(trial_id, {c.path: c for c in kept}))
    stamps = {Path(p).name: Path(p).stat().st_mtime_ns for p in store.files()}
    assert E.evaluate(resumed.model, data, trial, store, C.weights_hash(resumed.model), quiet) == 5
    assert outcome(store).equals(outcome(reference))
    assert {Path(p).name: Path(p).stat().st_mtime_ns for p in store.files() if Path(p).name in stamps} == stamps


def test_batch_seed_is_derived_from_the_config_alone(trained):
    """One seed per (trial seed, eval seed, attack, ε, batch), from the config's values alone:
    a trial rebuilt from its dict (as in a resumed process) gets the same seeds."""
    import dataclasses

    trial, *_ = trained
    variants = [trial, dataclasses.replace(trial, seed=trial.seed + 1),
                dataclasses.replace(trial, eval_seed=trial.eval_seed + 1)]
    seeds = {batch_seed(t.seed, t.eval_seed, attack, eps, b) for t in variants for attack in ("pgd", "fgsm")
             for eps in (0.1, 0.2) for b in range(4)}
    assert len(seeds) == 3 * 2 * 2 * 4 and all(0 <= s < 2**63 for s in seeds)
    rebuilt = TrialConfig.from_dict(json.loads(json.dumps(trial.to_dict())))
    assert batch_seed(rebuilt.seed, rebuilt.eval_seed, "pgd", 1e-1, 2) == batch_seed(trial.seed, trial.eval_seed, "pgd", 0.1, 2)


def test_changed_checkpoint_stops_instead_of_mixing_rows(trained, tmp_path):
    trial, data, method = trained
    store = ResultStore(str(tmp_path / "results"))
    E.evaluate(method.model, data, trial, store, "a" * 16, quiet)
    files = sorted(store.files())
    with pytest.raises(E.FingerprintMismatch, match="checkpoint_hash stored 'aaaaaaaaaaaaaaaa'"):
        E.evaluate(method.model, data, trial, store, "b" * 16, quiet)
    assert sorted(store.files()) == files
    assert set(load(store)["checkpoint_hash"]) == {"a" * 16}


class RunsOutOfMemory(torch.nn.Module):
    """The trained model, but any forward pass over more than ``limit`` examples raises the
    CUDA out-of-memory error (as a too-large evaluation batch would on a GPU)."""

    def __init__(self, model: torch.nn.Module, limit: int):
        super().__init__()
        self.model, self.limit, self.sizes = model, limit, []

    def forward(self, x):
        self.sizes.append(len(x))
        if len(x) > self.limit:
            raise torch.cuda.OutOfMemoryError(f"CUDA out of memory ({len(x)} examples)")
        return self.model(x)


def test_evaluation_batch_is_retried_in_halves_on_cuda_oom(trained):
    trial, data, method = trained
    idx = er_core.data.eval_indices("digits", 10, 0)
    x, y = data.x_test[idx], data.y_test[idx]
    small = RunsOutOfMemory(method.model, limit=3)
    rows = E.attack_with_oom_retry(small, "fgsm", x, y, 0.1, idx.tolist(), {})
    assert [r["sample_idx"] for r in rows] == idx.tolist()
    assert max(small.sizes) == 10 and 3 in small.sizes  # tried whole, then halves of halves
    direct = er_core.evaluate.attack_batch(method.model, "fgsm", x, y, 0.1, sample_idx=idx.tolist())
    assert [r["pred_adv"] for r in rows] == [r["pred_adv"] for r in direct]
    with pytest.raises(torch.cuda.OutOfMemoryError):
        E.attack_with_oom_retry(RunsOutOfMemory(method.model, limit=0), "fgsm", x[:2], y[:2], 0.1, [0, 1], {})


def test_results_root_prefers_an_explicit_uri():
    uri = "s3://bucket/grid/exp/results?endpoint_override=127.0.0.1:9000"
    assert T.results_root(uri) == uri


def test_restore_falls_back_past_a_checkpoint_cut_short(trained, tmp_path):
    """A checkpoint whose state file was cut short (a kill mid-upload) is skipped for the next."""
    trial, data, method = trained
    good, cut = tmp_path / "good", tmp_path / "cut"
    good.mkdir(), cut.mkdir()
    C.save_state(method, C.TrainState(epoch=1), good)
    C.save_state(method, C.TrainState(epoch=2), cut)
    state_bytes = (cut / C.STATE_FILE).read_bytes()
    (cut / C.STATE_FILE).write_bytes(state_bytes[: len(state_bytes) // 2])
    fresh = er_core.methods.make("none", "digits", init_seed=1)
    restored = C.restore_latest(fresh, [tune.Checkpoint.from_directory(str(d)) for d in (cut, good)])
    assert restored.epoch == 1
    assert C.weights_hash(fresh.model) == C.weights_hash(method.model)
    assert C.restore_latest(er_core.methods.make("none", "digits"), []).epoch == 0


def test_restore_never_offers_a_checkpoint_whose_sidecar_claims_an_epoch_past_the_trial(trained, tmp_path):
    """A sidecar forged to claim epoch 99 of a 2-epoch trial would be "newest": the restore and
    the repair skip it for the true newest checkpoint."""
    import pyarrow.fs as pafs

    from grid.experiment.files import EPOCH_FILE

    trial, data, method = trained
    for epoch in (1, 2):
        folder = tmp_path / f"checkpoint_{epoch - 1:06d}"
        folder.mkdir()
        C.save_state(method, C.TrainState(epoch=epoch), folder)
    forged = tmp_path / "checkpoint_000009"
    forged.mkdir()
    C.save_state(method, C.TrainState(epoch=2), forged)
    (forged / EPOCH_FILE).write_text(json.dumps({"epoch": 99, "train_seconds": 1.0}))
    fs = pafs.LocalFileSystem()
    offered = [Path(c.path).name for c in C.stored_checkpoints(fs, str(tmp_path), epochs=2)]
    assert offered == ["checkpoint_000001", "checkpoint_000000"]
    assert Path(C.stored_checkpoints(fs, str(tmp_path))[0].path).name == "checkpoint_000009"  # unchecked: believed

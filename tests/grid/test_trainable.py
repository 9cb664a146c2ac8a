"""The trainable's steps without a Ray cluster: checkpoint round trip, evaluation that skips
stored batches and redoes a lost one identically, the fingerprint rule, CUDA-OOM halving.

Runtime: ~6 s (one 1-epoch digits model, PGD-5 on 20 examples).
"""

from __future__ import annotations

import json

from pathlib import Path

import pytest
import torch
from ray import tune

import er_core.data
import er_core.methods
import er_core.train
from grid import trainable as T
from grid.spec import GridSpec
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


@pytest.fixture(scope="module")
def trained():
    torch.set_num_threads(1)
    trial = GridSpec.from_dict(SPEC).expand()[0]
    data = er_core.data.load("digits")
    method = er_core.methods.make("none", "digits")
    er_core.train.fit(method, data, epochs=1, seed=0)
    return trial, data, method


def quiet(done: int, total: int) -> None:
    assert 0 < done <= total


def test_checkpoint_round_trip(trained, tmp_path):
    trial, data, method = trained
    state = T.TrainState(epoch=1, losses=[{"loss": 0.5}], train_seconds=2.0)
    torch.manual_seed(123)
    rng = torch.get_rng_state()
    T.save_state(method, state, tmp_path)
    # The state and its epoch sidecar; no temp file left behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([T.STATE_FILE, T.EPOCH_FILE])
    assert json.loads((tmp_path / T.EPOCH_FILE).read_text()) == {"epoch": 1}

    fresh = er_core.methods.make("none", "digits", init_seed=1)
    assert T.weights_hash(fresh.model) != T.weights_hash(method.model)
    torch.manual_seed(999)
    restored = T.restore_state(fresh, tune.Checkpoint.from_directory(str(tmp_path)))
    assert restored == state
    assert T.weights_hash(fresh.model) == T.weights_hash(method.model)
    assert torch.equal(torch.get_rng_state(), rng)
    assert T.restore_state(fresh, None) == T.TrainState()


def test_evaluate_skips_stored_batches_and_redoes_a_lost_one_identically(trained, tmp_path):
    trial, data, method = trained
    store = ResultStore(str(tmp_path / "results"))
    digest = T.weights_hash(method.model)
    assert T.evaluate(method.model, data, trial, store, digest, quiet) == 8  # 2 attacks × 4 batches
    first = load(store)
    assert len(first) == 2 * 20 and not first.duplicated(["attack", "sample_idx"]).any()
    assert set(first["checkpoint_hash"]) == {digest}
    assert set(first["sample_idx"]) == set(er_core.data.eval_indices("digits", 20, 0).tolist())

    assert T.evaluate(method.model, data, trial, store, digest, quiet) == 0  # nothing redone

    lost = next(p for p in store.files() if "__pgd__" in p and p.endswith("__b2.parquet"))
    Path(lost).unlink()
    assert T.evaluate(method.model, data, trial, store, digest, quiet) == 1
    again = load(store)
    columns = ["attack", "sample_idx", "pred_clean", "pred_adv", "correct_adv", "l2", "linf"]
    key = ["attack", "sample_idx"]
    assert again[columns].sort_values(key).reset_index(drop=True).equals(
        first[columns].sort_values(key).reset_index(drop=True))


def test_changed_checkpoint_stops_instead_of_mixing_rows(trained, tmp_path):
    trial, data, method = trained
    store = ResultStore(str(tmp_path / "results"))
    T.evaluate(method.model, data, trial, store, "a" * 16, quiet)
    files = sorted(store.files())
    with pytest.raises(T.FingerprintMismatch, match="checkpoint_hash stored 'aaaaaaaaaaaaaaaa'"):
        T.evaluate(method.model, data, trial, store, "b" * 16, quiet)
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
    rows = T.attack_with_oom_retry(small, "fgsm", x, y, 0.1, idx.tolist(), {})
    assert [r["sample_idx"] for r in rows] == idx.tolist()
    assert max(small.sizes) == 10 and 3 in small.sizes  # tried whole, then halves of halves
    direct = er_core.evaluate.attack_batch(method.model, "fgsm", x, y, 0.1, sample_idx=idx.tolist())
    assert [r["pred_adv"] for r in rows] == [r["pred_adv"] for r in direct]
    with pytest.raises(torch.cuda.OutOfMemoryError):
        T.attack_with_oom_retry(RunsOutOfMemory(method.model, limit=0), "fgsm", x[:2], y[:2], 0.1, [0, 1], {})


def test_results_root_prefers_an_explicit_uri():
    uri = "s3://bucket/grid/exp/results?endpoint_override=127.0.0.1:9000"
    assert T.results_root(uri) == uri


def test_restore_falls_back_past_a_checkpoint_cut_short(trained, tmp_path):
    """A checkpoint whose state file was cut short (a kill mid-upload) is skipped for the next."""
    trial, data, method = trained
    good, cut = tmp_path / "good", tmp_path / "cut"
    good.mkdir(), cut.mkdir()
    T.save_state(method, T.TrainState(epoch=1), good)
    T.save_state(method, T.TrainState(epoch=2), cut)
    state_bytes = (cut / T.STATE_FILE).read_bytes()
    (cut / T.STATE_FILE).write_bytes(state_bytes[: len(state_bytes) // 2])
    fresh = er_core.methods.make("none", "digits", init_seed=1)
    restored = T.restore_latest(fresh, [tune.Checkpoint.from_directory(str(d)) for d in (cut, good)])
    assert restored.epoch == 1
    assert T.weights_hash(fresh.model) == T.weights_hash(method.model)
    assert T.restore_latest(er_core.methods.make("none", "digits"), []).epoch == 0

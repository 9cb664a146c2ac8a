"""The values the trainable writes to the trial row, without Ray: per-epoch losses and training
time carried across a kill and restore, clean accuracy on the evaluation subset (judged like
the rows' ``correct_clean``, also for a randomized model), and the row as stored. (The Ray
tests in test_resume.py check the row ``train_and_evaluate`` writes.)

Runtime: ~5 s (2 digits epochs, FGSM on 30 examples twice).
"""

from __future__ import annotations

import json
import time

import pytest
import torch
from ray import tune

import er_core.data
import er_core.methods
import er_core.train
from grid.trial import checkpoints as C
from grid.trial import trainable as T
from grid.stages import evaluation as E
from grid.stages import trial_row as R
from grid.spec import GridSpec
from grid.store import ResultStore, load, load_trials

SPEC = {
    "experiment": "trial_row",
    "datasets": ["digits"],
    "methods": ["none"],
    "epochs": 2,
    "eval_plan": {"digits": [{"attack": "fgsm", "eps": [0.1]}]},
    "eval_n": 30,
    "eval_batch_size": 10,
}


class Killed(Exception):
    """Stands for the SIGKILL after the first checkpoint."""


def quiet(done: int, total: int) -> None:
    assert 0 < done <= total


@pytest.fixture(scope="module")
def resumed_training(digits, tmp_path_factory):
    """Epoch 1 in one "process" (checkpointed, then killed), epoch 2 after a restore into a
    fresh method; plus the uninterrupted fit of the same trial as the reference."""
    trial = GridSpec.from_dict(SPEC).expand()[0]
    reference = er_core.methods.make("none", "digits", **trial.method_hyperparams())
    history = er_core.train.fit(reference, digits, epochs=2, batch_size=trial.batch_size, seed=trial.seed)

    checkpoint = tmp_path_factory.mktemp("checkpoint")
    reported = []
    first = er_core.methods.make("none", "digits", **trial.method_hyperparams())

    def report_then_die(epoch: int, metrics: dict, state: C.TrainState) -> None:
        reported.append(dict(metrics))
        C.save_state(first, state, checkpoint)
        raise Killed

    started = time.perf_counter()
    with pytest.raises(Killed):
        T.train(first, digits, trial, C.TrainState(), report_then_die)
    wall = time.perf_counter() - started

    method = er_core.methods.make("none", "digits", **{**trial.method_hyperparams(), "init_seed": 1})
    state = C.restore_state(method, tune.Checkpoint.from_directory(str(checkpoint)))
    assert state.epoch == 1
    started = time.perf_counter()
    state = T.train(method, digits, trial, state, lambda epoch, metrics, _state: reported.append(dict(metrics)))
    wall += time.perf_counter() - started
    return trial, method, state, history, reported, wall


def test_losses_and_training_time_survive_the_restore(resumed_training):
    _trial, method, state, history, reported, wall = resumed_training
    assert state.epoch == 2 and [m["epoch"] for m in reported] == [1, 2]
    # The per-epoch losses equal the uninterrupted run's (same seed): epoch 1 came through the
    # checkpoint, epoch 2 was trained after the restore.
    assert [{k: v for k, v in e.items() if k != "seconds"} for e in state.losses] == [
        {k: float(v) for k, v in e.items() if k != "seconds"} for e in history]
    # Training time adds up across the kill: at least both epochs' own seconds, at most the
    # wall time of the two calls.
    assert sum(m["seconds"] for m in reported) <= state.train_seconds <= wall
    assert state.train_seconds > reported[1]["seconds"]  # epoch 1's time was not lost


def test_trial_row_holds_the_clean_accuracy_epochs_losses_and_wall_time(resumed_training, digits, tmp_path):
    trial, method, state, _history, _reported, _wall = resumed_training
    store = ResultStore(str(tmp_path / "results"))
    digest = C.weights_hash(method.model)
    E.evaluate(method.model, digits, trial, store, digest, quiet)
    accuracy = R.subset_accuracy(method.model, digits, trial)
    # Clean accuracy on the evaluation subset (not the whole test set), computed here directly
    # and matching the stored rows' clean verdicts.
    idx = er_core.data.eval_indices("digits", trial.eval_n, trial.eval_seed)
    with torch.no_grad():
        direct = int((method.model.eval()(digits.x_test[idx]).argmax(1) == digits.y_test[idx]).sum()) / len(idx)
    assert accuracy == pytest.approx(direct, abs=1e-12)
    assert accuracy == pytest.approx(load(store)["correct_clean"].mean(), abs=1e-12)

    R.write_trial_row(store, trial, state, digest, accuracy, "cpu", wall_seconds=state.train_seconds + 0.25,
                      hyperparams=method.hyperparams)
    R.write_trial_row(store, trial, state, digest, accuracy, "cpu", wall_seconds=state.train_seconds + 0.5,
                      hyperparams=method.hyperparams)
    (row,) = load_trials(store).to_dict("records")  # rewritten, not added
    assert row["trial_id"] == trial.trial_id and row["epochs"] == 2 and row["seed"] == trial.seed
    assert row["clean_accuracy"] == accuracy and row["device"] == "cpu" and row["checkpoint_hash"] == digest
    assert json.loads(row["losses_json"]) == state.losses
    assert row["wall_seconds"] == pytest.approx(state.train_seconds + 0.5)


class Flickering(torch.nn.Module):
    """A randomized model: ``model``, except that on every second forward pass the examples
    brighter than ``threshold`` (mean pixel) get their logits rolled by one class, so one pass
    can call them right and the next wrong, as RSE's noise can. The flips follow the pass
    count, not torch's RNG: the attack draws from the RNG between the rows' clean judgement and
    nothing reproduces that draw for the trial row, so only RNG-free flips make the two figures
    comparable exactly."""

    randomized = True

    def __init__(self, model: torch.nn.Module, threshold: float) -> None:
        super().__init__()
        self.model, self.threshold, self.passes = model, threshold, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(x)
        self.passes += 1
        if self.passes % 2:
            bright = x.flatten(1).mean(1) > self.threshold
            logits = torch.where(bright[:, None], logits.roll(1, dims=1), logits)
        return logits


def test_trial_row_clean_accuracy_is_the_rows_correct_clean_for_a_randomized_model(
        undefended_digits_model, digits, tmp_path):
    trial = GridSpec.from_dict(SPEC).expand()[0]
    idx = er_core.data.eval_indices("digits", trial.eval_n, trial.eval_seed)
    model = Flickering(undefended_digits_model, float(digits.x_test[idx].flatten(1).mean(1).median()))
    store = ResultStore(str(tmp_path / "results"))
    E.evaluate(model, digits, trial, store, "flickering", quiet)
    rows = load(store)
    assert len(rows) == trial.eval_n and set(rows["attack"]) == {"fgsm"}
    accuracy = R.subset_accuracy(model, digits, trial)
    # The worst case over the passes, as the rows judge: the same figure to the last example.
    assert accuracy == pytest.approx(rows["correct_clean"].mean(), abs=1e-12)
    # The flips matter: a single pass per batch (half of them unflipped) would read higher.
    with torch.no_grad():
        steady = float((undefended_digits_model(digits.x_test[idx]).argmax(1) == digits.y_test[idx]).float().mean())
    assert accuracy < steady - 0.2

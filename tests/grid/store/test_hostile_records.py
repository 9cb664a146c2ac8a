"""The experiment's own JSON records read back under a bound (issue 21, items 2 and 3): a
checkpoint's ``epoch.json`` checked against the spec (epoch 99 of 2 is damaged, never
``DONE 99/2``), deep or oversized ``epoch.json`` and ``grid_spec.json`` each one line naming
the file, never a RecursionError. Real folders written by ``record_spec`` and sidecars as the
trainable writes them. Runtime: < 2 s."""

from __future__ import annotations

import json
import os

import pyarrow.fs as pafs
import pytest

from grid.common.bounded_json import bounded_json
from grid.common.errors import DamagedRecord, GridError
from grid.experiment import EPOCH_FILE, SPEC_FILE, checkpoint_epochs, planned_trials, record_spec, status
from grid.spec import GridSpec


@pytest.fixture
def experiment(tmp_path):
    spec = GridSpec.from_dict({
        "experiment": "records", "datasets": ["digits"], "methods": ["none"], "seeds": [0], "epochs": 2,
        "eval_plan": {"digits": [{"attack": "fgsm", "eps": [0.1]}]}, "eval_n": 20,
        "storage_path": str(tmp_path),
    })
    folder = tmp_path / "records"
    record_spec(spec, str(folder))
    (trial,) = spec.expand()
    return folder, trial


def sidecar(folder, trial, index: int, text: str):
    checkpoint = folder / trial.name / f"checkpoint_{index:06d}"
    checkpoint.mkdir(parents=True, exist_ok=True)
    (checkpoint / EPOCH_FILE).write_text(text)
    return checkpoint


def test_a_sidecar_claiming_more_epochs_than_planned_is_damaged_not_done(experiment):
    folder, trial = experiment
    sidecar(folder, trial, 0, json.dumps({"epoch": 1, "train_seconds": 2.0}))
    sidecar(folder, trial, 1, json.dumps({"epoch": 99, "train_seconds": 3.0}))
    (shown,) = status(str(folder)).trials
    assert (shown.epochs_done, shown.epochs) == (1, 2) and shown.state == "DAMAGED"
    assert shown.damaged == (f"{trial.name}/checkpoint_000001/{EPOCH_FILE} is damaged (claims epoch 99 of the "
                             "trial's 2)",)
    # Without the spec's epochs the scan cannot judge it (Tune's restore path); with them it leaves it out.
    fs = pafs.LocalFileSystem()
    assert [e for e, _, _ in checkpoint_epochs(fs, str(folder / trial.name), epochs=2)] == [1]


@pytest.mark.parametrize("text, reason", [
    ("[" * 2000 + "]" * 2000, "nested deeper than 32 levels"),  # past Python's recursion limit, within 4 KB
    ("[" * 40 + "]" * 40, "nested deeper than 32 levels"),
    (json.dumps({"epoch": 1, "pad": "x" * 10_000}), "more than 4,096 bytes"),
    (json.dumps({"epoch": True}), "is not an epoch number"),
    (json.dumps({"epoch": 1, "train_seconds": -5}), "is not a duration"),
])
def test_a_sidecar_that_cannot_be_true_is_one_damaged_line(experiment, text, reason):
    folder, trial = experiment
    sidecar(folder, trial, 0, text)
    (shown,) = status(str(folder)).trials
    assert shown.epochs_done == 0 and len(shown.damaged) == 1
    assert shown.damaged[0].startswith(f"{trial.name}/checkpoint_000000/{EPOCH_FILE} is damaged") and reason in shown.damaged[0]


def test_a_sidecar_cut_short_by_a_kill_is_an_unpersisted_checkpoint_not_damage(experiment):
    folder, trial = experiment
    sidecar(folder, trial, 0, json.dumps({"epoch": 1}))
    sidecar(folder, trial, 1, '{"epoch": 2, "train_sec')
    (shown,) = status(str(folder)).trials
    assert (shown.epochs_done, shown.damaged, shown.state) == (1, (), "TRAINING")


def test_a_deep_spec_record_is_one_error_naming_it(experiment):
    folder, _ = experiment
    (folder / SPEC_FILE).write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(GridError, match=rf"{SPEC_FILE} is damaged \(nested deeper than 32 levels\)"):
        status(str(folder))


def test_an_oversized_spec_record_is_refused_unread(experiment):
    folder, _ = experiment
    os.truncate(folder / SPEC_FILE, 200 << 20)  # sparse: refused after reading 64 MB + 1 at most
    with pytest.raises(GridError, match=rf"{SPEC_FILE} is damaged \(more than 67,108,864 bytes"):
        planned_trials(str(folder))


def test_the_record_still_reads_as_written(experiment):
    folder, trial = experiment
    assert [t.trial_id for t in planned_trials(str(folder))] == [trial.trial_id]


@pytest.mark.parametrize("data, reason", [
    (b"[" * 50 + b"]" * 50, "nested deeper than 8 levels"),
    (b'{"a": 1', "not JSON"),
    (b'"\xff"', "not JSON"),
    (b"1" * 101, "more than 100 bytes"),
])
def test_bounded_json_names_the_record_and_the_problem(data, reason):
    with pytest.raises(DamagedRecord) as err:
        bounded_json(data, "the record", max_bytes=100, max_depth=8)
    assert str(err.value).startswith("the record is damaged (") and reason in str(err.value)
    assert bounded_json(b'{"a": [[1]]}', "the record", 100, max_depth=3) == {"a": [[1]]}

"""Watching a grid while it runs, on the session's Ray head: ``er-grid status``'s time left
against what the run then took, Tune's progress table, the TensorBoard curves, Tune's
``ResultGrid`` with its two ids named apart.

The grid: ER-Classifier on digits, λ 1 and 10, two seeds (4 trials, 1 CPU each, so 2 at a time
on the 2-CPU head: two waves; λ and the seed change no work, so the second wave's rates are the
first's), 16 epochs of batch 64, PGD-10 at two ε and FGSM on 60 examples. ``status`` is read
about twice a second while ``er-grid run`` works. Its estimate at a quarter of the run must lie
within 2× of the time the run then still took, both ways. The run is counted from when its
first trial began training (its records say when): before that Ray is starting (the driver,
the worker processes; 10–30 s on a shared 2-core machine), no trial has measured anything, and
``status`` says the time left is unknown.

Runtime: one grid, ~40 s on the shared head when the machine is quiet (up to ~2 min when a
loaded 2-core machine runs everything 3× slower).
"""

from __future__ import annotations

import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from grid.demo import BIN, REPO
from grid.experiment import status
from grid.run.estimate import remaining_seconds, trial_pace
from grid.run.watch import METRIC_COLUMNS, PARAMETER_COLUMNS
from grid.store import load_trials

EPOCHS = 16
SPEC = {
    "experiment": "watched",
    "datasets": ["digits"],
    "methods": ["er"],
    "train_eps": {"digits": [0.1]},
    "lams": [1.0, 10.0],
    "seeds": [0, 1],
    "epochs": EPOCHS,
    # Many short epochs: at a quarter of the run a trial has kept several checkpoints, so its
    # rate no longer rests on its first epoch alone (slower: the other worker starting beside it).
    "batch_size": 64,
    "eval_plan": {"digits": [{"attack": "pgd", "eps": [0.05, 0.1], "options": {"steps": 10}},
                             {"attack": "fgsm", "eps": [0.1]}]},
    "eval_n": 60,
    "eval_batch_size": 20,
    "resources": {"cpu": 1, "gpu": 0},
    "max_failures": 0,
}

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def watched(ray_head, tmp_path_factory) -> dict:
    """The grid run by ``er-grid run`` while ``status`` is sampled: its experiment folder, its
    output, the samples (seconds since launch, estimated seconds left or None), the seconds it
    took and when it was launched (seconds since 1970, as file times are)."""
    tmp = tmp_path_factory.mktemp("watched")
    spec_file = tmp / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(SPEC))
    path = tmp / "s" / SPEC["experiment"]
    log = tmp / "run.log"
    launched = time.time()
    samples = []
    with open(log, "w") as out:
        run = subprocess.Popen([str(BIN / "er-grid"), "run", str(spec_file), "--storage", str(tmp / "s")],
                               env=ray_head.env(), cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
        try:
            while run.poll() is None:
                time.sleep(0.5)
                if (path / "grid_spec.json").is_file():  # written just before Tune starts
                    left = remaining_seconds(list(status(str(path)).trials))
                    samples.append((time.time() - launched, left))
            took = time.time() - launched
        finally:
            if run.poll() is None:
                run.kill()
    assert run.wait(timeout=240) == 0, log.read_text()[-3000:]
    return {"path": path, "output": log.read_text(), "samples": samples, "took": took, "launched": launched}


def test_status_estimates_the_time_left_within_2x_at_a_quarter_of_the_run(watched):
    samples, took = watched["samples"], watched["took"]
    trials = status(str(watched["path"])).trials
    assert {t.state for t in trials} == {"DONE"}
    # The run as the trials see it: from the first trial's start of training to the run's end.
    origin = min(trial_pace(t).started_at for t in trials) - watched["launched"]
    quarter = origin + 0.25 * (took - origin)
    after = [(at, left) for at, left in samples if at >= quarter]
    assert after and after[0][1] is not None, f"no estimate at a quarter of the run ({quarter:.0f} s): {samples}"
    at, left = after[0]
    assert at <= origin + 0.35 * (took - origin), f"status was not read near {quarter:.0f} s: {samples}"
    actual = took - at
    print(f"estimate at {at:.0f} s of {took:.0f} s (trials from {origin:.0f} s): {left:.0f} s left, "
          f"{actual:.0f} s taken (ratio {left / actual:.2f})")
    assert 0.5 <= left / actual <= 2.0, samples
    # Before a trial has finished an epoch there is nothing measured: unknown, never a guess.
    assert samples[0][1] is None


def test_the_progress_table_has_the_grids_columns(watched):
    # The last table (the first ones, before any report, have no metric columns yet).
    header = [line for line in watched["output"].splitlines() if line.startswith("| Trial name")][-1]
    columns = [cell.strip() for cell in header.strip("|").split("|")]
    assert columns == ["Trial name", "status", "loc", *PARAMETER_COLUMNS.values(), *METRIC_COLUMNS.values()]
    assert columns[3:] == ["method", "dataset", "ε", "λ", "seed", "epoch", "held-out acc", "eval batches"]
    # The last table: every trial finished, its 8 epochs and 3 × 3 evaluation batches done.
    table = watched["output"].split(header)[-1]
    rows = [line for line in table.splitlines() if line.startswith("| digits-")]
    assert len(rows) == 4 and all("TERMINATED" in r and "| 9/9" in r for r in rows), table
    assert "'codes': None" not in watched["output"]  # no config dict printed whole


def test_tensorboard_plots_training_by_epoch_and_robust_accuracy_once(watched):
    for trial_dir in sorted(p for p in watched["path"].iterdir() if p.name.startswith("digits-")):
        files = list(trial_dir.glob("events.out.tfevents.*"))
        assert len(files) == 1, files  # ours, in place of Tune's default logger
        scalars = _scalars(files[0])
        steps = {tag: [step for step, _value in points] for tag, points in scalars.items()}
        for tag in ("train/loss", "train/holdout_accuracy", "train/seconds"):
            assert steps[tag] == list(range(1, EPOCHS + 1)), (tag, steps[tag])
        robust = {tag for tag in scalars if tag.startswith("robust/")}
        assert robust == {"robust/pgd_eps0.05", "robust/pgd_eps0.1", "robust/fgsm_eps0.1"}
        assert all(steps[tag] == [EPOCHS] for tag in robust)
        assert all(0.0 <= value <= 1.0 for tag in robust for _step, value in scalars[tag])
        assert not any(tag.startswith("ray/") or "eval_batches" in tag for tag in scalars)


def test_the_readme_result_grid_snippet_names_the_ids_apart(watched, tmp_path, monkeypatch):
    """The README's ``ResultGrid`` snippet, as written, with this grid where it names make demo's."""
    sys.path.insert(0, str(REPO / "tests"))
    from test_readme import run_snippet

    (tmp_path / "results" / "demo").mkdir(parents=True)
    (tmp_path / "results" / "demo" / "smoke").symlink_to(watched["path"], target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    frame = run_snippet("results = tune_results(")["frame"]
    stored = load_trials(str(watched["path"]))
    assert sorted(frame["trial_id"]) == sorted(stored["trial_id"])  # er-grid's id: the store's rows
    assert frame["tune_trial_id"].notna().all() and not set(frame["tune_trial_id"]) & set(frame["trial_id"])
    # Tune's last report per trial carries the robust accuracy read back from the rows.
    for row in frame.to_dict("records"):
        assert row["epoch"] == EPOCHS and row["phase"] == "done" and 0.0 <= row["robust/pgd@0.1"] <= 1.0


def _scalars(path: Path) -> dict:
    """tag → [(step, value)] of a TensorBoard event file (TFRecord frames of ``Event`` protos)."""
    from tensorboardX.proto.event_pb2 import Event

    data, at, out = path.read_bytes(), 0, {}
    while at < len(data):
        (length,) = struct.unpack("<Q", data[at:at + 8])
        event = Event.FromString(data[at + 12:at + 12 + length])  # length, its CRC, the record
        at += 12 + length + 4  # …, the record's CRC
        for value in event.summary.value:
            out.setdefault(value.tag, []).append((event.step, value.simple_value))
    return out

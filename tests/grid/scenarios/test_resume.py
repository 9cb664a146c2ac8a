"""Fault injection on a real Ray head: SIGKILL during training and during evaluation, resume
with ``er-grid resume`` from a moved experiment folder, and a changed spec that must not mix.

One scenario, in order (each step is a separate ``er-grid`` driver on the shared head):

1. reference: the same grid under another experiment name, uninterrupted;
2. run, trial SIGKILLed when epoch 2 of 3 finishes training (last checkpoint: epoch 1);
3. the experiment folder is moved to another directory;
4. ``er-grid resume`` there, trial SIGKILLed after storing 3 of its 8 evaluation batches;
5. ``er-grid resume`` again: finishes.

Checked: training resumed from epoch 1 (the second process reported epochs 2 and 3 only)
and ended with the reference's weights (same checkpoint hash); the 3 batches stored before
the kill were not rewritten (same mtime and inode); the final rows equal the reference's
(same keys, no duplicates, none missing, same predictions); the trial row holds 3 epochs,
the reference's per-epoch losses, the rows' clean accuracy and a wall time that counts the
training of both processes. Then a changed spec run into the same experiment stops with
exit code 2 and writes nothing.

Runtime: ~45 s (five drivers of ~8 s each on the session's Ray head).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from grid.store import ResultStore, load, load_trials
from ray_helpers import kill_once_stored, run_cli

# Every test here starts drivers on the session's real Ray head.
pytestmark = pytest.mark.ray

EPOCHS = 3
BATCHES = 8  # 2 (attack, ε) pairs × 40 examples / batches of 10
KEYS = ["attack", "eps", "batch", "sample_idx"]


def tiny_spec(experiment: str, pgd_steps: int = 5) -> dict:
    return {
        "experiment": experiment,
        "datasets": ["digits"],
        "methods": ["none"],
        "epochs": EPOCHS,
        "eval_plan": {"digits": [{"attack": "pgd", "eps": [0.05, 0.1], "options": {"steps": pgd_steps}}]},
        "eval_n": 40,
        "eval_batch_size": 10,
        "max_failures": 0,  # a killed trial errors out; `er-grid resume` brings it back
    }


def write_spec(path: Path, spec: dict) -> str:
    path.write_text(yaml.safe_dump(spec))
    return str(path)


def train_reports(experiment: Path) -> list[dict]:
    """Every result Tune recorded for the single trial: epoch, phase, pid, resumed_from."""
    (trial_dir,) = [p for p in experiment.iterdir() if p.is_dir() and p.name.startswith("digits-")]
    lines = (trial_dir / "result.json").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def batch_files(results: Path) -> dict[str, tuple[int, int]]:
    store = ResultStore(str(results))
    return {Path(p).name: (Path(p).stat().st_mtime_ns, Path(p).stat().st_ino) for p in store.files()}


def test_kill_in_training_and_evaluation_then_resume_from_moved_folder(ray_head, tmp_path):
    # 1. reference, uninterrupted
    ref = run_cli(ray_head, "run", write_spec(tmp_path / "ref.yaml", tiny_spec("faults_ref")),
                  "--storage", str(tmp_path / "ref"))
    assert ref.returncode == 0, ref.stdout + ref.stderr
    reference = load(tmp_path / "ref" / "faults_ref" / "results")
    assert len(reference) == BATCHES * 10

    # 2. killed while training: epoch 2 trained, not checkpointed
    spec_file = write_spec(tmp_path / "faults.yaml", tiny_spec("faults"))
    started = time.monotonic()
    first = run_cli(ray_head, "run", spec_file, "--storage", str(tmp_path / "a"),
                    ER_GRID_TEST_KILL_AFTER_EPOCHS="1")
    assert first.returncode == 1, first.stdout + first.stderr
    assert "errored 1" in first.stdout
    experiment = tmp_path / "a" / "faults"
    (trial_dir,) = [p for p in experiment.iterdir() if p.is_dir() and p.name.startswith("digits-")]
    assert sorted(p.name for p in trial_dir.glob("checkpoint_*")) == ["checkpoint_000000"]
    assert not (experiment / "results" / "examples").exists()

    # 3. move the whole experiment folder
    moved = tmp_path / "b" / "faults"
    moved.parent.mkdir()
    shutil.move(str(experiment), str(moved))

    # 4. resume there; killed after 3 stored evaluation batches
    second = run_cli(ray_head, "resume", str(moved), ER_GRID_TEST_KILL_AFTER_BATCHES="3")
    assert second.returncode == 1, second.stdout + second.stderr
    before = batch_files(moved / "results")
    assert len(before) == 3, sorted(before)
    assert not experiment.exists(), "a resumed trial wrote into the old location"

    # 5. resume again: finishes
    third = run_cli(ray_head, "resume", str(moved))
    assert third.returncode == 0, third.stdout + third.stderr
    elapsed = time.monotonic() - started  # the three drivers of this trial
    after = batch_files(moved / "results")
    assert len(after) == BATCHES
    for name, stamp in before.items():
        assert after[name] == stamp, f"batch {name} stored before the kill was recomputed"

    # Training: process 1 reported epoch 1 only; process 2 resumed from epoch 1 and reported 2, 3.
    reports = [r for r in train_reports(moved) if r.get("phase") == "train"]
    pids = list(dict.fromkeys(r["pid"] for r in reports))
    assert len(pids) == 2, reports
    assert [r["epoch"] for r in reports if r["pid"] == pids[0]] == [1]
    assert [(r["epoch"], r["resumed_from"]) for r in reports if r["pid"] == pids[1]] == [(2, 1), (3, 1)]
    assert sorted(p.name for p in (moved / trial_dir.name).glob("checkpoint_*")) == [
        f"checkpoint_{i:06d}" for i in range(EPOCHS)]

    # Rows: same keys as the reference, no duplicates, none missing, same outcome and weights.
    final = load(moved / "results")
    assert not final.duplicated(KEYS).any()
    merged = reference.merge(final, on=KEYS, how="outer", suffixes=("_ref", ""), indicator=True)
    assert (merged["_merge"] == "both").all(), merged["_merge"].value_counts()
    for column in ("pred_clean", "pred_adv", "correct_adv"):
        pd.testing.assert_series_equal(merged[f"{column}_ref"], merged[column], check_names=False)
    assert set(final["checkpoint_hash"]) == set(reference["checkpoint_hash"]), "resumed training ended elsewhere"

    # The trial row: 3 epochs with the reference's per-epoch losses (epoch 1 came through the
    # checkpoint), the clean accuracy of the stored rows, and a wall time that counts epoch 1
    # of the killed process as well as the resumed epochs (each epoch's own "seconds").
    (row,) = load_trials(moved / "results").to_dict("records")
    (ref_row,) = load_trials(tmp_path / "ref" / "faults_ref" / "results").to_dict("records")
    losses = json.loads(row["losses_json"])
    assert row["epochs"] == EPOCHS and [e["epoch"] for e in losses] == [1, 2, 3]
    assert [e["loss"] for e in losses] == [e["loss"] for e in json.loads(ref_row["losses_json"])]
    assert row["clean_accuracy"] == final.drop_duplicates("sample_idx")["correct_clean"].mean()
    assert sum(r["seconds"] for r in reports) <= row["wall_seconds"] <= elapsed

    status = run_cli(ray_head, "status", str(moved))
    assert status.returncode == 0, status.stderr
    assert f"evaluation batches: {BATCHES}/{BATCHES}" in status.stdout
    assert "done 1, damaged 0, evaluating 0, training 0, pending 0" in status.stdout

    # A changed spec (PGD steps 5 → 7) run into the same experiment: refused, nothing written.
    changed = run_cli(ray_head, "run", write_spec(tmp_path / "changed.yaml", tiny_spec("faults", pgd_steps=7)),
                      "--storage", str(moved.parent))
    assert changed.returncode == 2, changed.stdout + changed.stderr
    assert "different spec" in changed.stderr and "Traceback" not in changed.stderr
    assert batch_files(moved / "results") == after


def test_driver_killed_mid_evaluation_then_resume(ray_head, tmp_path):
    """The `er-grid run` driver itself SIGKILLed once evaluation batches are being stored (a
    crash of the machine running the job): its trials die with it, and `er-grid resume`
    finishes from the experiment state and checkpoints without retraining or duplicating."""
    import subprocess

    from ray_helpers import BIN, REPO

    spec = dict(tiny_spec("driver_kill", pgd_steps=20), eval_batch_size=5)  # 16 slower batches
    spec_file = write_spec(tmp_path / "driver.yaml", spec)
    experiment = tmp_path / "s" / "driver_kill"
    driver = subprocess.Popen([str(BIN / "er-grid"), "run", spec_file, "--storage", str(tmp_path / "s")],
                              env=ray_head.env(), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        kill_once_stored(driver, lambda: len(batch_files(experiment / "results"))
                         if (experiment / "results").exists() else 0)
    finally:
        driver.wait(timeout=30)
    before = batch_files(experiment / "results")
    assert 2 <= len(before) < 16

    resumed = run_cli(ray_head, "resume", str(experiment))
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    rows = load(experiment / "results")
    assert len(rows) == 2 * 40 and not rows.duplicated(KEYS).any()
    after = batch_files(experiment / "results")
    assert all(after[name] == stamp for name, stamp in before.items()), "stored batches were recomputed"
    reports = [r for r in train_reports(experiment) if r.get("phase") == "train"]
    assert [r["epoch"] for r in reports] == [1, 2, 3], "training was repeated after the driver died"

"""A disk that fills during evaluation, on the session's real Ray head: the run ends in one line
naming the experiment folder (exit 2, no traceback of the driver), the committed batch is kept,
and after space is freed ``er-grid resume`` ends with the rows of an uninterrupted run.

The full disk is injected (``ER_GRID_TEST_DISK_FULL_AFTER_BATCHES``: the trial's second batch
write fails with pyarrow's ENOSPC; mounting a real small tmpfs needs root). What a real full
disk also does to Ray Tune's own files, which the driver writes to the same disk, is done here
by hand as a 1.4 MB tmpfs left them: the experiment state cut mid-file and the trial's
``error.pkl`` empty (``tests/grid/run/test_disk_full.py`` has the shapes). ``resume`` names
both, sets them aside and gives Tune its trial list again from ``grid_spec.json``.

Runtime: ~30 s (three drivers on the session's Ray head; 65 s with the machine's 2 cores loaded 8×).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from grid.experiment import status
from grid.run.tune_state import SET_ASIDE_DIR
from grid.store import ResultStore
from ray_helpers import compare_stores_tool, run_cli

pytestmark = pytest.mark.ray

SPEC = {
    "experiment": "disk_full",
    "datasets": ["digits"],
    "methods": ["none"],
    "epochs": 1,
    "eval_plan": {"digits": [{"attack": "pgd", "eps": [0.1], "options": {"steps": 5}}]},
    "eval_n": 30,
    "eval_batch_size": 10,  # 3 batches: the first is committed, the second meets the full disk
    "max_failures": 0,
}

compare_stores = compare_stores_tool()


def committed(experiment: Path) -> dict[str, tuple[int, int]]:
    return {Path(p).name: (Path(p).stat().st_mtime_ns, Path(p).stat().st_ino)
            for p in ResultStore(str(experiment / "results")).files()}


def test_a_full_disk_is_one_line_and_resume_after_freeing_space_completes(ray_head, tmp_path):
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(SPEC))
    straight = run_cli(ray_head, "run", str(spec_file), "--storage", str(tmp_path / "straight"))
    assert straight.returncode == 0, straight.stdout[-3000:] + straight.stderr[-3000:]

    full = run_cli(ray_head, "run", str(spec_file), "--storage", str(tmp_path / "full"),
                   ER_GRID_TEST_DISK_FULL_AFTER_BATCHES="1")
    experiment = tmp_path / "full" / SPEC["experiment"]
    assert full.returncode == 2, full.stdout[-3000:] + full.stderr[-3000:]
    errors = [line for line in full.stderr.splitlines() if line.startswith("er-grid: error:")]
    assert errors == [full.stderr.strip().splitlines()[-1]], full.stderr[-3000:]  # one line, the last
    assert errors[0].startswith(f"er-grid: error: No space left on device (disk full) at {experiment} (")
    assert errors[0].endswith(f"run `er-grid resume {experiment}`")
    # Tune logs the trial's own error; the driver itself ends in the line, not a traceback.
    assert "bin/er-grid" not in full.stderr and "EOFError" not in full.stderr, full.stderr[-3000:]
    kept = committed(experiment)
    assert len(kept) == 1, kept

    # What the full disk did to Tune's files as the driver wrote them (see the module docstring).
    (state,) = experiment.glob("experiment_state-*.json")
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])
    (error_pkl,) = experiment.glob("digits-*/error.pkl")
    error_pkl.write_bytes(b"")

    resumed = run_cli(ray_head, "resume", str(experiment))
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    notes = [line for line in resumed.stderr.splitlines() if line.startswith("er-grid: note: Ray Tune's")]
    assert len(notes) == 2 and any(str(state) in n for n in notes) and any(str(error_pkl) in n for n in notes), notes
    (stamp,) = (experiment / SET_ASIDE_DIR).iterdir()
    assert (stamp / state.name).exists() and (stamp / error_pkl.parent.name / "error.pkl").exists()
    assert "Traceback" not in resumed.stderr, resumed.stderr[-3000:]

    assert compare_stores.compare(tmp_path / "straight" / SPEC["experiment"], experiment) == []
    after = committed(experiment)
    assert len(after) == 3  # the evaluation batches
    assert all(after[name] == stamp_ for name, stamp_ in kept.items()), "the committed batch was rewritten"
    assert [t.state for t in status(str(experiment)).trials] == ["DONE"]

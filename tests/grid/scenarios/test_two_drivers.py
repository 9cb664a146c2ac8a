"""One driver per experiment on a real Ray head (``grid.run.lease``).

1. Two ``er-grid run`` of one spec on one storage, launched at once: exactly one runs (exit 0),
   the other exits 2 with one line naming the lease, the pid of the one that runs and its host;
   the lease is gone once the run ends. That run is the uninterrupted reference.
2. The same spec on other storage, its driver SIGKILLed once evaluation batches are stored: its
   lease file stays behind, and a new ``er-grid run`` (which resumes, sharing its own lease with
   ``resume``) takes it over at once and finishes. Its rows equal the reference's
   (``tools/compare_stores.py``: same committed files, schemas and values).

Runtime: ~30 s (four drivers on the session's Ray head, two of them cut short).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time

import pytest
import yaml

from grid.run import lease_location
from grid.store import ResultStore, load
from ray_helpers import BIN, REPO, compare_stores_tool, kill_once_stored, run_cli

pytestmark = pytest.mark.ray

SPEC = {
    "experiment": "two_drivers",
    "datasets": ["digits"],
    "methods": ["none"],
    "epochs": 1,
    # 16 batches of 5 with a 20-step PGD: slow enough to kill the driver between two of them.
    "eval_plan": {"digits": [{"attack": "pgd", "eps": [0.05, 0.1], "options": {"steps": 20}}]},
    "eval_n": 40,
    "eval_batch_size": 5,
    "max_failures": 0,
}
KEYS = ["attack", "eps", "batch", "sample_idx"]


def driver(head, *args: str) -> subprocess.Popen:
    return subprocess.Popen([str(BIN / "er-grid"), *args], env=head.env(), cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def stored_batches(experiment) -> int:
    results = experiment / "results"
    return len(ResultStore(str(results)).files()) if results.exists() else 0


def test_two_drivers_one_runs_and_a_killed_drivers_lease_is_taken_over(ray_head, tmp_path):
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(SPEC))

    # 1. Two drivers at once: one runs, the other is refused naming the lease and its holder.
    storage = tmp_path / "reference"
    experiment = storage / SPEC["experiment"]
    lease_file = lease_location(str(experiment))[2]
    drivers = [driver(ray_head, "run", str(spec_file), "--storage", str(storage)) for _ in range(2)]
    outputs = [d.communicate(timeout=300) for d in drivers]
    assert sorted(d.returncode for d in drivers) == [0, 2], outputs
    runner, refused = (0, 1) if drivers[0].returncode == 0 else (1, 0)
    errors = [line for line in outputs[refused][1].splitlines() if line.startswith("er-grid: error:")]
    assert len(errors) == 1 and "Traceback" not in outputs[refused][1], outputs[refused][1][-3000:]
    assert (f"experiment {experiment} is being driven by pid {drivers[runner].pid} on host "
            f"{socket.gethostname()} since ") in errors[0]
    assert f"(lease {lease_file})" in errors[0]
    assert "experiment:" not in outputs[refused][0]  # it ran nothing and summarised nothing
    assert not os.path.exists(lease_file), "the lease outlived its run"
    reference = load(experiment / "results")
    assert len(reference) == 2 * 40 and not reference.duplicated(KEYS).any()

    # 2. A driver killed mid-run leaves its lease; a new run takes it over and finishes.
    storage = tmp_path / "killed"
    experiment = storage / SPEC["experiment"]
    lease_file = lease_location(str(experiment))[2]
    killed = driver(ray_head, "run", str(spec_file), "--storage", str(storage))
    try:
        kill_once_stored(killed, lambda: stored_batches(experiment))
    finally:
        killed.communicate(timeout=30)
    assert os.path.exists(lease_file) and stored_batches(experiment) < 16

    started = time.monotonic()
    taken_over = run_cli(ray_head, "run", str(spec_file), "--storage", str(storage))
    assert taken_over.returncode == 0, taken_over.stdout[-3000:] + taken_over.stderr[-3000:]
    assert f"took over the lease of experiment {experiment} from pid {killed.pid}" in taken_over.stderr
    assert not os.path.exists(lease_file)
    rows = load(experiment / "results")
    assert len(rows) == 2 * 40 and not rows.duplicated(KEYS).any()
    assert compare_stores_tool().compare(tmp_path / "reference" / SPEC["experiment"], experiment) == []
    print(f"takeover run: {time.monotonic() - started:.1f} s")

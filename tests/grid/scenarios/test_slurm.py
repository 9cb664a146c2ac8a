"""The grid on SLURM: ``cluster/slurm/er-grid.sbatch`` submitted with ``sbatch`` to a real
one-machine SLURM cluster (``tools/slurm_local.sh``: slurmctld, slurmd and munged of this test,
every file of theirs in a temporary folder, stopped by their PIDs at the end).

The job starts a token-authenticated Ray head on its node (free ports, its own temp folder),
waits for it, runs ``er-grid run SPEC --storage FOLDER`` inside the allocation and stops the
head. The spec is a multi-node one (``num_nodes: 2``) whose storage is a folder declared shared
(``shared_storage: true``); the allocation has the one node this machine is, so the worker loop
of the script starts nothing. Checked: the job ends COMPLETED with exit code 0, the committed
rows are the spec's (one trial, every evaluated example once), the job's token folder and Ray
temp folder are gone and no process of its Ray is left.

SLURM is an external system: where it is not installed and cannot be (not root, no apt-get, no
package mirror), the test skips with one line saying so. Where it can, the module installs it
(``tools/slurm_local.sh install``: Debian's slurmctld, slurmd, slurm-client and munge, ~15 s).
Runtime on a loaded 2-core machine: 25–65 s, most of it the Ray head starting inside the job.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from grid.demo import BIN, REPO, client_env
from grid.store import load, load_trials

SLURM_LOCAL = REPO / "tools" / "slurm_local.sh"
SBATCH_SCRIPT = REPO / "cluster" / "slurm" / "er-grid.sbatch"
# How slurm_local.sh says SLURM cannot be installed here.
CANNOT_INSTALL = 3
EXPERIMENT = "slurm"
EVAL_N = 20


def spec() -> dict:
    return {"experiment": EXPERIMENT, "datasets": ["digits"], "methods": ["none"], "epochs": 1,
            "eval_plan": {"digits": [{"attack": "fgsm", "eps": [0.1]}]}, "eval_n": EVAL_N, "eval_batch_size": 10,
            "num_nodes": 2, "shared_storage": True, "max_failures": 0}


@pytest.fixture(scope="module")
def slurm_conf(tmp_path_factory):
    """A started one-machine SLURM cluster: the path of its slurm.conf (for SLURM_CONF)."""
    install = subprocess.run([str(SLURM_LOCAL), "install"], capture_output=True, text=True, timeout=900)
    if install.returncode == CANNOT_INSTALL:
        pytest.skip(f"an external system, not a feature: SLURM is not installed here and cannot be: {install.stderr.strip()}")
    assert install.returncode == 0, install.stderr
    folder = tmp_path_factory.mktemp("slurm")
    started = subprocess.run([str(SLURM_LOCAL), "start", str(folder)], capture_output=True, text=True, timeout=120)
    try:
        assert started.returncode == 0, started.stderr
        yield folder / "slurm.conf"
    finally:
        stopped = subprocess.run([str(SLURM_LOCAL), "stop", str(folder)], capture_output=True, text=True, timeout=60)
        assert stopped.returncode == 0, stopped.stderr


@pytest.fixture
def shared_folder():
    """Storage outside /tmp (a folder declared shared may not be node-local): a fresh folder in
    the checkout's git-ignored results/, or, for a checkout that itself lies under a node-local
    root (a clone in /tmp), in the user's ~/.cache; removed afterwards."""
    from grid.spec.storage import node_local_root

    parent = REPO / "results"
    if node_local_root(str(parent)):
        parent = Path.home() / ".cache" / "er-grid-tests"
    made = not parent.exists()
    parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="slurm-test-", dir=parent))
    try:
        yield folder
    finally:
        shutil.rmtree(parent if made else folder, ignore_errors=True)


def sbatch(env: dict, *args: str) -> int:
    submitted = subprocess.run(["sbatch", "--parsable", *args], env=env, capture_output=True, text=True, timeout=60)
    assert submitted.returncode == 0, submitted.stderr
    return int(submitted.stdout.strip().split(";")[0])


def wait_for_job(env: dict, job: int, timeout: float) -> dict:
    """The job's fields from ``scontrol show job`` once it has left the queue (SLURM keeps a
    finished job there for MinJobAge, 10 minutes in slurm_local.sh's config)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        queued = subprocess.run(["squeue", "-h", "-j", str(job)], env=env, capture_output=True, text=True, timeout=30)
        if queued.returncode == 0 and not queued.stdout.strip():
            shown = subprocess.run(["scontrol", "-o", "show", "job", str(job)], env=env, capture_output=True,
                                   text=True, timeout=30, check=True)
            return dict(field.split("=", 1) for field in shown.stdout.split() if "=" in field)
        time.sleep(1)
    subprocess.run(["scancel", str(job)], env=env, timeout=30)
    raise AssertionError(f"SLURM job {job} still queued or running after {timeout:.0f} s (cancelled)")


def processes_naming(text: str) -> list[str]:
    """Command lines of the processes on this machine that contain ``text``."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            command = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # exited while we looked
            continue
        if text in command:
            found.append(command)
    return found


@pytest.mark.ray
def test_the_grid_runs_through_sbatch_onto_a_folder_declared_shared(slurm_conf, shared_folder, tmp_path):
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(spec()))
    ray_temp = f"/tmp/er-ray-t{os.getpid()}"  # node-local, short (Ray's socket paths), ours alone
    env = client_env(tmp_path / "home", {"SLURM_CONF": str(slurm_conf), "ER_GRID_VENV": str(BIN.parent),
                                         "ER_GRID_RAY_TEMP": ray_temp})
    log = tmp_path / "job.out"

    job = sbatch(env, "--nodes=1", "--cpus-per-task=2", f"--output={log}", f"--chdir={REPO}", str(SBATCH_SCRIPT),
                 "er-grid", "run", str(spec_file), "--storage", str(shared_folder))
    fields = wait_for_job(env, job, timeout=420)
    output = log.read_text(errors="replace")
    assert (fields["JobState"], fields["ExitCode"]) == ("COMPLETED", "0:0"), output[-4000:]
    assert "1 Ray node(s) up; running: er-grid run" in output and "finished 1, errored 0" in output, output[-4000:]

    results = shared_folder / EXPERIMENT / "results"
    rows, trials = load(results), load_trials(results)
    assert len(trials) == 1 and trials["epochs"].tolist() == [1] and trials["dataset"].tolist() == ["digits"]
    assert len(rows) == EVAL_N and set(rows["attack"]) == {"fgsm"} and set(rows["eps"]) == {0.1}
    assert rows["sample_idx"].nunique() == EVAL_N and set(rows["trial_id"]) == set(trials["trial_id"])

    # Stopped and cleaned up: the token's folder (the default one under $HOME), Ray's temp
    # folder and every process of the job's Ray.
    assert not (tmp_path / "home" / ".er-grid" / "slurm" / str(job)).exists()
    assert not Path(ray_temp).exists()
    assert processes_naming(ray_temp) == []


def test_the_script_refuses_to_run_outside_a_slurm_job():
    """Run by hand instead of through sbatch: one line, exit 2, nothing started."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    ran = subprocess.run(["bash", str(SBATCH_SCRIPT), "er-grid", "run", "spec.yaml"], env=env, capture_output=True,
                         text=True, timeout=30)
    assert (ran.returncode, ran.stdout) == (2, "")
    assert ran.stderr == "er-grid.sbatch: not inside a SLURM job: submit this script with sbatch\n"
    no_command = subprocess.run(["bash", str(SBATCH_SCRIPT)], env=env, capture_output=True, text=True, timeout=30)
    assert no_command.returncode == 2 and no_command.stderr.startswith("er-grid.sbatch: no driver command; usage:")

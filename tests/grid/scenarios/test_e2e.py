"""End to end on a real, token-authenticated local Ray head: ``er-grid submit`` (``ray job
submit`` plus the checkout's code version) of the smoke preset.

The job uploads the repository as its working directory with ``jobs/runtime_env.yaml``
(excludes .venv, .git, data, results), runs ``jobs/full_grid.py --preset smoke``, and must
succeed; then every trial has one checkpoint per epoch, the store holds
trials × (attack, ε) pairs × n rows with no duplicates, every row records this checkout's code
version (the upload has no ``.git``), and ``er-grid query`` reads them.

Also a run on S3 storage (moto server). Runtime: ~45 s for the job, ~12 s for S3.
"""

from __future__ import annotations

import sys

import pytest
import torch

from grid.common.fingerprint import checkout_code_version
from grid.demo import PORT_TAKEN
from grid.spec import GridSpec
from grid.store import load, load_trials
from ray_helpers import REPO, run_cli

sys.path.insert(0, str(REPO / "jobs"))
from full_grid import SMOKE  # noqa: E402  (the job file's spec, so the counts follow it)

# Every test here runs on the session's real Ray head.
pytestmark = pytest.mark.ray


def test_ray_job_submit_smoke_preset(ray_head, smoke_experiment):
    experiment, submit = smoke_experiment  # the session's one smoke-grid job (conftest.py)
    log = submit.stdout[-4000:] + submit.stderr[-4000:]
    assert submit.returncode == 0, log
    assert "succeeded" in submit.stdout + submit.stderr, log

    trials = GridSpec.from_dict(SMOKE).expand()
    assert experiment.name == SMOKE["experiment"]
    pairs = len(trials[0].eval_plan)
    rows = load(experiment / "results")
    assert len(rows) == len(trials) * pairs * SMOKE["eval_n"]
    assert not rows.duplicated(["trial_id", "attack", "eps", "sample_idx"]).any()
    assert set(rows["trial_id"]) == {t.trial_id for t in trials}
    trial_rows = load_trials(experiment / "results")
    assert set(trial_rows["trial_id"]) == {t.trial_id for t in trials}
    # What `er-grid run` in this checkout records (commit, .dirty): the job path says the same.
    version = checkout_code_version(REPO)
    assert "+g" in version, version
    assert set(rows["code_version"]) == {version} and set(trial_rows["code_version"]) == {version}

    for trial in trials:
        checkpoints = sorted((experiment / trial.name).glob("checkpoint_*"))
        assert [c.name for c in checkpoints] == [f"checkpoint_{i:06d}" for i in range(SMOKE["epochs"])]
        for epoch, checkpoint in enumerate(checkpoints, start=1):
            state = torch.load(checkpoint / "state.pt", weights_only=True)
            assert state["epoch"] == epoch

    query = run_cli(ray_head, "query", str(experiment), "--attack", "pgd", "worst_case")
    assert query.returncode == 0, query.stderr
    assert "worst_case" in query.stdout and "pgd" in query.stdout


def test_head_retried_on_fresh_ports_after_a_taken_port(ray_head):
    """The session's head was handed a taken port first (ray_helpers.ray_head): its first try
    failed naming that port, the second started on fresh ports and serves jobs (above)."""
    assert ray_head.attempts == 2
    failed = (ray_head.home.parent / "ray_head.attempt1.log").read_text().lower()
    assert any(phrase in failed for phrase in PORT_TAKEN), failed[-2000:]
    assert (ray_head.home.parent / "ray_head.log").is_file()


def test_object_store_storage_run_status_query(ray_head, s3_endpoint, tmp_path):
    """A grid whose storage is an S3 URI (moto's server): Tune's checkpoints, the experiment
    state and the parquet results all land in the bucket; a trial killed mid-evaluation is
    resumed from the bucket; status and query read them there.
    The dummy credentials ride in the URI because the head's worker processes were started
    without the AWS variables the fixture sets (on a cluster: the nodes' IAM role)."""
    import boto3
    import yaml

    endpoint, bucket = s3_endpoint
    host = endpoint.removeprefix("http://")
    query = f"?endpoint_override={host}&scheme=http&region=us-east-1"
    storage = f"s3://testing:testing@{bucket}/grid{query}"
    spec = {"experiment": "objstore", "datasets": ["digits"], "methods": ["none"], "epochs": 1,
            "eval_plan": {"digits": [{"attack": "fgsm", "eps": [0.1]}]}, "eval_n": 20, "eval_batch_size": 10,
            "num_nodes": 2, "max_failures": 0}
    (tmp_path / "s3.yaml").write_text(yaml.safe_dump(spec))
    # Killed after its first evaluation batch; `er-grid resume` restores from the bucket.
    run = run_cli(ray_head, "run", str(tmp_path / "s3.yaml"), "--storage", storage,
                  ER_GRID_TEST_KILL_AFTER_BATCHES="1")
    assert run.returncode == 1, run.stdout[-3000:] + run.stderr[-3000:]
    resumed = run_cli(ray_head, "resume", f"s3://testing:testing@{bucket}/grid/objstore{query}")
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]

    keys = [o["Key"] for o in boto3.client("s3", endpoint_url=endpoint).list_objects_v2(Bucket=bucket)["Contents"]]
    assert any(k.startswith("grid/objstore/digits-none-") and "/checkpoint_000000/state.pt" in k for k in keys)
    assert sum(k.startswith("grid/objstore/results/examples/") and k.endswith(".parquet") for k in keys) == 2
    status = run_cli(ray_head, "status", f"s3://testing:testing@{bucket}/grid/objstore{query}")
    assert status.returncode == 0 and "evaluation batches: 2/2" in status.stdout, status.stdout + status.stderr
    rows = load(f"s3://testing:testing@{bucket}/grid/objstore/results{query}")
    assert len(rows) == 20 and set(rows["attack"]) == {"fgsm"}
    assert not rows.duplicated(["batch", "sample_idx"]).any()

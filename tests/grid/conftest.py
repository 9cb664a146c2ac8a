"""Fixtures for the grid tests: a local S3 endpoint (moto's server) with one bucket."""

from __future__ import annotations

import pytest

from grid.demo import free_port


@pytest.fixture(scope="session")
def s3_endpoint():
    """``(endpoint_url, bucket)`` of a moto S3 server on a free port, stopped after the session.

    Dummy credentials and region go into the environment for boto3 and pyarrow's S3 client
    (moto accepts any); the real AWS is never reached because every client gets the endpoint.
    """
    import boto3
    from moto.server import ThreadedMotoServer

    monkeypatch = pytest.MonkeyPatch()
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        # Keep clients from looking for ~/.aws files or instance metadata.
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    bucket = "er-grid-test"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    try:
        yield endpoint, bucket
    finally:
        server.stop()
        monkeypatch.undo()


# The shared, token-authenticated local Ray head (session scope), defined in ray_helpers.py
# by the Ray-side tests' author; imported here so one head serves every grid test module.
from ray_helpers import ray_head  # noqa: E402,F401


@pytest.fixture(scope="session")
def smoke_experiment(ray_head, tmp_path_factory):
    """The smoke preset (``jobs/full_grid.py --preset smoke``) submitted once per session with
    ``ray job submit`` to the shared head: ``(experiment folder, CompletedProcess of the submit)``.

    Shared by the end-to-end test (which checks the job) and the store tests (which damage
    copies of its results), so the session runs the smoke grid once. Treat it as read-only.
    """
    import subprocess

    from ray_helpers import REPO

    storage = tmp_path_factory.mktemp("smoke_storage")
    submit = subprocess.run(ray_head.job_command("jobs/full_grid.py", "smoke", storage), cwd=REPO,
                            env=ray_head.env(), capture_output=True, text=True, timeout=400)
    return storage / "smoke", submit

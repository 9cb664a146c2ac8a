"""A ``data_root`` on an object store is probed before any trial starts and before anything is
written (``grid.spec.data_root_probe``): a store that does not answer, a bucket that does not
exist or a dataset folder that is missing is one line in seconds, exit 2; a good one passes.
Against moto's S3 server (``s3_endpoint``) and a closed port."""

from __future__ import annotations

import time

import boto3
import pytest
import yaml

from grid.cli import main
from grid.demo import free_port
from grid.spec import GridSpec, check_data_root

# One attempt with bounded waits: a refused connection or a missing bucket answers at once;
# the bound leaves room for a loaded test machine, far below pyarrow's default retries.
FAST_SECONDS = 5.0


@pytest.fixture
def bucket_root(s3_endpoint):
    """``s3://<bucket>/datasets?endpoint_override=…`` holding one file under ``mnist/``."""
    endpoint, bucket = s3_endpoint
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").put_object(
        Bucket=bucket, Key="probe/datasets/mnist/train-images-idx3-ubyte.gz", Body=b"x")
    host = endpoint.removeprefix("http://")
    return f"s3://{bucket}/probe/datasets?endpoint_override={host}&scheme=http", host


def refused(data_root: str, datasets: list) -> str:
    started = time.monotonic()
    with pytest.raises(ValueError) as caught:
        check_data_root(data_root, datasets)
    assert time.monotonic() - started < FAST_SECONDS
    message = str(caught.value)
    assert message.startswith("spec.data_root: ") and "\n" not in message
    return message


def test_a_reachable_root_with_the_dataset_folder_passes(bucket_root):
    root, _host = bucket_root
    check_data_root(root, ["mnist"])
    check_data_root(root, [])  # no dataset named: the root itself


def test_a_missing_dataset_folder_is_named(bucket_root, s3_endpoint):
    root, _host = bucket_root
    _endpoint, bucket = s3_endpoint
    message = refused(root, ["mnist", "cifar10"])
    assert f"no folder 'cifar10' at s3://{bucket}/probe/datasets/cifar10/" in message


def test_a_bucket_that_does_not_exist_is_named(bucket_root):
    _root, host = bucket_root
    message = refused(f"s3://no-such-bucket/datasets?endpoint_override={host}&scheme=http", ["mnist"])
    assert "s3://no-such-bucket/datasets" in message and "bucket 'no-such-bucket' does not exist" in message


def test_a_store_that_does_not_answer_is_one_line_in_seconds(s3_endpoint):
    closed = free_port()  # nothing listens there
    message = refused(f"s3://bucket/datasets?endpoint_override=127.0.0.1:{closed}&scheme=http", ["mnist"])
    assert "s3://bucket/datasets cannot be reached" in message and f"127.0.0.1:{closed}" in message


def test_er_grid_run_refuses_it_before_anything_is_written(tmp_path, capsys):
    """The CLI: exit 2 with one line, before Ray starts and before the storage folder (the driver
    lease, the spec record, Tune's folder) is made."""
    import ray

    closed = free_port()
    spec = {"experiment": "probe", "datasets": ["digits"], "methods": ["none"], "epochs": 1,
            "eval_plan": {"digits": [{"attack": "fgsm", "eps": [0.1]}]}, "eval_n": 8,
            "data_root": f"s3://bucket/datasets?endpoint_override=127.0.0.1:{closed}&scheme=http"}
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(spec))
    GridSpec.from_yaml(spec_file)  # the spec's own imports (torch, er_core) are not the probe's time
    started = time.monotonic()
    assert main(["run", str(spec_file), "--storage", str(tmp_path / "storage")]) == 2
    assert time.monotonic() - started < FAST_SECONDS
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("er-grid: error: spec.data_root: s3://bucket/datasets cannot be reached")
    assert not (tmp_path / "storage").exists()
    assert not ray.is_initialized()

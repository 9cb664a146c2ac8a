"""Datasets on an object store (moto's S3 server): staged once per node, then read locally."""

from __future__ import annotations

import boto3
import pytest
from dataset_files import write_mnist

from er_core import data as er_data
from grid.trial.data_staging import CACHE_ENV, local_dataset_dir


@pytest.fixture
def mnist_bucket(s3_endpoint, tmp_path, monkeypatch):
    """Tiny MNIST files (the exact IDX format) uploaded under s3://<bucket>/datasets/mnist/;
    cache in tmp_path."""
    endpoint, bucket = s3_endpoint
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    for path in sorted(write_mnist(tmp_path / "upload", sizes=(7, 4)).glob("*-ubyte.gz")):
        client.upload_file(str(path), bucket, f"datasets/mnist/{path.name}")
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    host = endpoint.removeprefix("http://")
    return f"s3://{bucket}/datasets?endpoint_override={host}&scheme=http", client, bucket


def test_dataset_on_object_store_is_staged_once_and_loads(mnist_bucket, tmp_path):
    uri, client, bucket = mnist_bucket
    local = local_dataset_dir(uri, "mnist")
    assert local.parent == tmp_path / "cache"
    data = er_data.load("mnist", root=local)
    assert data.x_train.shape == (7, 1, 28, 28) and data.x_test.shape == (4, 1, 28, 28)
    assert data.x_train.equal(er_data.load("mnist", root=tmp_path / "upload").x_train)
    assert not [p for p in local.parent.iterdir() if p.name.startswith(".")]  # no staging leftovers

    # A second trial on the node reads the cache: the bucket is no longer consulted.
    client.delete_object(Bucket=bucket, Key="datasets/mnist/t10k-labels-idx1-ubyte.gz")
    assert local_dataset_dir(uri, "mnist") == local


def test_missing_dataset_folder_names_where_it_belongs(mnist_bucket):
    uri, _, _ = mnist_bucket
    with pytest.raises(FileNotFoundError, match=r"datasets/cifar10/"):
        local_dataset_dir(uri, "cifar10")


def test_local_data_root_is_used_in_place(tmp_path):
    assert local_dataset_dir(str(tmp_path), "mnist") == tmp_path / "mnist"

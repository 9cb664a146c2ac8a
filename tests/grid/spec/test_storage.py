"""Which storage a multi-node spec may name (grid/spec/storage.py): an object store, or a POSIX
folder the spec declares shared (``shared_storage: true``, e.g. a SLURM cluster's /scratch);
an undeclared local folder and a node-local one (/tmp, /dev/shm, ...) are refused, the latter
even when declared. The SLURM scenario runs a declared folder for real
(tests/grid/scenarios/test_slurm.py)."""

from __future__ import annotations

import pytest

from grid.common.errors import GridError
from grid.spec import GridSpec
from grid.spec.storage import NODE_LOCAL_ROOTS


def multi_node(**fields) -> dict:
    return {"experiment": "shared", "datasets": ["digits"], "methods": ["none"], "epochs": 1,
            "eval_plan": {"digits": [{"attack": "fgsm", "eps": [0.1]}]}, "eval_n": 10, "num_nodes": 2, **fields}


@pytest.mark.parametrize("storage", ["/scratch/someone/er-grid", "file:///lustre/project/er-grid"])
def test_a_folder_declared_shared_holds_a_multi_node_run(storage):
    spec = GridSpec.from_dict(multi_node(storage_path=storage, shared_storage=True))
    assert spec.num_nodes == 2 and spec.shared_storage is True and spec.storage_path == storage
    assert len(spec.expand()) == 1
    # The declaration survives the round trip that grid_spec.json and re-expansion go through.
    assert GridSpec.from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize("storage", ["results", "/scratch/someone/er-grid", "file:///scratch/someone/er-grid"])
def test_an_undeclared_local_folder_is_refused_on_several_nodes(storage):
    with pytest.raises(ValueError) as err:
        GridSpec.from_dict(multi_node(storage_path=storage))
    message = str(err.value)
    assert message.startswith(f"spec.storage_path: {storage!r} is a local path but num_nodes=2")
    assert "shared_storage: true" in message and "s3://" in message
    # One node needs no declaration.
    assert GridSpec.from_dict(multi_node(storage_path=storage, num_nodes=1)).num_nodes == 1


@pytest.mark.parametrize("root", NODE_LOCAL_ROOTS)
@pytest.mark.parametrize("num_nodes", [1, 2])
def test_a_node_local_folder_is_refused_even_when_declared_shared(root, num_nodes):
    with pytest.raises(ValueError) as err:
        GridSpec.from_dict(multi_node(storage_path=f"{root}/er-grid", shared_storage=True, num_nodes=num_nodes))
    assert f"spec.storage_path: '{root}/er-grid' is under {root}, which is each node's own disk" in str(err.value)


def test_the_declared_folder_is_judged_where_it_resolves(tmp_path, monkeypatch):
    """A relative path is resolved against the working directory and a link is followed: a
    folder whose real place is under /tmp is node-local, a link out of /tmp to /scratch is not."""
    monkeypatch.chdir(tmp_path)  # under /tmp (pytest's base temp)
    with pytest.raises(ValueError, match=r"spec.storage_path: 'results' is under /tmp"):
        GridSpec.from_dict(multi_node(storage_path="results", shared_storage=True))
    (tmp_path / "scratch").symlink_to("/scratch/someone")
    spec = GridSpec.from_dict(multi_node(storage_path=str(tmp_path / "scratch"), shared_storage=True))
    assert spec.storage_path == str(tmp_path / "scratch")


def test_an_object_store_needs_no_declaration_and_the_declaration_must_be_a_boolean():
    assert GridSpec.from_dict(multi_node(storage_path="s3://bucket/er")).shared_storage is False
    assert GridSpec.from_dict(multi_node(storage_path="gs://bucket/er", shared_storage=True)).num_nodes == 2
    with pytest.raises(ValueError, match=r"^spec.shared_storage: expected true or false, got 'yes'$"):
        GridSpec.from_dict(multi_node(storage_path="/scratch/er", shared_storage="yes"))


def test_the_driver_checks_the_storage_it_is_given_too():
    """``grid.run(spec, storage=...)`` from Python bypasses the spec's own storage_path: the Tuner
    is refused before it exists (and before Ray is joined)."""
    from grid.run.tuner import build_tuner

    spec = GridSpec.from_dict(multi_node(storage_path="/scratch/someone/er-grid", shared_storage=True))
    with pytest.raises(GridError, match=r"^storage '/dev/shm/er' is under /dev/shm"):
        build_tuner(spec, "/dev/shm/er")
    undeclared = GridSpec.from_dict(multi_node(storage_path="s3://bucket/er"))
    with pytest.raises(GridError, match=r"is a local path but num_nodes=2"):
        build_tuner(undeclared, "/scratch/someone/er-grid")

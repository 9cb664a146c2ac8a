"""A worker node lost mid-trial on a multi-node Ray cluster whose storage is S3 (moto's server).

The cluster is this test's own: a token-authenticated head with no CPUs, so trials run on worker
nodes only, and two worker nodes of 1 CPU each, all on this machine (``ray_helpers.WorkerNode``:
more raylets, ``ray start --address --block``). Storage is an ``s3://`` URI on the local S3
server, as a multi-node spec (``num_nodes: 2``) requires.

1. reference: the grid runs uninterrupted on the session's head (while this cluster starts);
2. the same grid on this cluster into another prefix; the trial's actor lands on one worker
   node, and once its first checkpoint (epoch 1 of 2) is in the bucket that node is SIGKILLed
   whole (raylet and every process under it, a machine lost) while epoch 2 trains;
3. Tune (``max_failures: 1``) restarts the trial on the other node, where it restores epoch 1
   from the bucket and finishes; the driver exits 0.

Checked: the trial's process was on the lost node; the restarted one ran on the other node,
resumed from epoch 1 and trained only epoch 2; and the committed results of both runs, copied
out of the bucket, are the same (``tools/compare_stores.py`` finds no difference and exits 0:
same files, schemas and values, the checkpoint hash and per-epoch losses included).

Runtime on the shared 2-core test machine: 26 s at a load average of 5, 40 s at 10, up to 140 s
at 20; most of it Ray starting a head, two nodes, the drivers and their trial processes (plus
the session head's start when this test runs alone).
"""

from __future__ import annotations

import json
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml

from grid.demo import BIN, REPO, LocalHead
from grid.store import load
from ray_helpers import WorkerNode, cluster_state, compare_stores_tool

pytestmark = pytest.mark.ray

compare_stores = compare_stores_tool()

EXPERIMENT = "multinode"
EVAL_N = 20  # 2 evaluation batches of 10


def spec() -> dict:
    # madry trains on PGD examples: an epoch takes seconds, so the kill lands inside epoch 2.
    return {"experiment": EXPERIMENT, "datasets": ["digits"], "methods": ["madry"], "train_eps": {"digits": [0.1]},
            "epochs": 2, "eval_plan": {"digits": [{"attack": "fgsm", "eps": [0.1]}]}, "eval_n": EVAL_N,
            "eval_batch_size": 10, "num_nodes": 2, "max_failures": 1}


class Bucket:
    """The moto bucket as er-grid storage URIs (the dummy credentials ride in the URI, where a
    cluster's nodes would have an IAM role) and through boto3."""

    def __init__(self, endpoint: str, name: str):
        import boto3

        self.name = name
        self.query = f"?endpoint_override={endpoint.removeprefix('http://')}&scheme=http&region=us-east-1"
        self.client = boto3.client("s3", endpoint_url=endpoint)

    def uri(self, prefix: str) -> str:
        return f"s3://testing:testing@{self.name}/{prefix}{self.query}"

    def keys(self, prefix: str) -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.name, Prefix=prefix)
        return [item["Key"] for page in pages for item in page.get("Contents", [])]

    def download(self, prefix: str, folder) -> None:
        for key in self.keys(prefix):
            target = folder / key.removeprefix(prefix)
            target.parent.mkdir(parents=True, exist_ok=True)
            self.client.download_file(self.name, key, str(target))


def er_grid(head: LocalHead, log, *args: str) -> subprocess.Popen:
    """``er-grid ARGS`` as a driver of ``head``'s cluster, its output in ``log``."""
    with open(log, "w") as out:
        return subprocess.Popen([str(BIN / "er-grid"), *args], env=head.env(), cwd=REPO,
                                stdout=out, stderr=subprocess.STDOUT)


def wait_until(condition, driver: subprocess.Popen, what: str, timeout: float = 240, interval: float = 0.1):
    """Poll ``condition()`` until it returns something true; fail if the run ends first."""
    deadline = time.monotonic() + timeout
    while not (found := condition()):
        assert driver.poll() is None, f"the run ended (exit {driver.returncode}) before {what}"
        assert time.monotonic() < deadline, f"no {what} after {timeout}s"
        time.sleep(interval)
    return found


def trial_actors(head: LocalHead, nodes: list, state: str | None = None) -> list[dict]:
    """The trial actors on the worker nodes (the head has no CPU for any), per Ray's state API."""
    on_workers = {node.node_id for node in nodes}
    return [a for a in cluster_state(head, "actors") if a["node_id"] in on_workers and state in (None, a["state"])]


def first_checkpoint_stored(bucket: Bucket, prefix: str) -> bool:
    """Epoch 1's checkpoint, state and sidecar both, is in the bucket (an S3 put is whole)."""
    names = {"/".join(key.split("/")[-2:]) for key in bucket.keys(prefix)}
    return {"checkpoint_000000/state.pt", "checkpoint_000000/epoch.json"} <= names


def trial_reports(bucket: Bucket, prefix: str) -> list[dict]:
    """Every report Tune recorded for the one trial (its result.json in the bucket)."""
    (key,) = [k for k in bucket.keys(prefix) if k.endswith("/result.json")]
    body = bucket.client.get_object(Bucket=bucket.name, Key=key)["Body"].read().decode()
    return [json.loads(line) for line in body.splitlines() if line.strip()]


def test_worker_node_lost_mid_trial_restarts_elsewhere_with_the_same_rows(ray_head, s3_endpoint, tmp_path):
    bucket = Bucket(*s3_endpoint)
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(spec()))
    straight = er_grid(ray_head, tmp_path / "straight.log", "run", str(spec_file),
                       "--storage", bucket.uri("mn/straight"))
    head, nodes, driver = None, [], None
    try:
        head = LocalHead.start(tmp_path / "head", num_cpus=0)
        for name in ("node_a", "node_b"):  # started side by side
            nodes.append(WorkerNode(head, tmp_path, name))
        nodes[0].wait_registered()  # the run refuses to start without a node that fits its trial
        driver = er_grid(head, tmp_path / "lost.log", "run", str(spec_file), "--storage", bucket.uri("mn/lost"))
        nodes[1].wait_registered()  # the trial may land on either node
        (actor,) = wait_until(lambda: trial_actors(head, nodes, "ALIVE"), driver, "a trial process", interval=0.5)
        (lost,) = [node for node in nodes if node.node_id == actor["node_id"]]
        (survivor,) = [node for node in nodes if node is not lost]
        wait_until(lambda: first_checkpoint_stored(bucket, f"mn/lost/{EXPERIMENT}/"), driver, "epoch 1's checkpoint")
        lost_pids = set(lost.kill())
        assert actor["pid"] in lost_pids
        driver.wait(timeout=300)
        assert driver.returncode == 0, (tmp_path / "lost.log").read_text()[-4000:]
        node_of = {a["pid"]: a["node_id"] for a in trial_actors(head, nodes)}
        straight.wait(timeout=300)
        assert straight.returncode == 0, (tmp_path / "straight.log").read_text()[-4000:]
    finally:
        for process in (straight, driver):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait(timeout=30)
        # Side by side: each waits up to 30 s for its `ray start` to stop its node.
        with ThreadPoolExecutor() as pool:
            list(pool.map(lambda started: started.stop(), [*nodes, *([head] if head else [])]))

    # What the trial reported: the lost process at most epoch 1 (its report may not have reached
    # Tune before the kill), then a process on the other node, resumed from epoch 1's
    # checkpoint, trained epoch 2 only, evaluated and finished.
    reports = trial_reports(bucket, f"mn/lost/{EXPERIMENT}/")
    seen = [(r["pid"], r["phase"], r["epoch"], r["resumed_from"]) for r in reports]
    before = [s for s in seen if s[0] == actor["pid"]]
    after = [s for s in seen if s[0] != actor["pid"]]
    assert before in ([], [(actor["pid"], "train", 1, 0)]) and seen[:len(before)] == before, seen
    assert {pid for pid, *_ in after} <= {pid for pid, node in node_of.items() if node == survivor.node_id}, seen
    assert after and after[0][1:] == ("train", 2, 1) and after[-1][1] == "done", seen
    assert {resumed for *_, resumed in after} == {1}, seen

    for prefix in ("straight", "lost"):
        bucket.download(f"mn/{prefix}/{EXPERIMENT}/results/", tmp_path / prefix / EXPERIMENT / "results")
    rows = load(tmp_path / "lost" / EXPERIMENT / "results")
    assert len(rows) == EVAL_N and not rows.duplicated(["batch", "sample_idx"]).any()
    stores = [tmp_path / "straight" / EXPERIMENT, tmp_path / "lost" / EXPERIMENT]
    assert compare_stores.compare(*stores) == []
    assert compare_stores.main([str(store) for store in stores]) == 0

"""What the commit record costs a writer, and whether concurrent writers lose commits.

``python bench/bench_store_commits.py [--writers 8] [--batches 50]``: W threads, each one
trial writing B batches of 250 example rows through ``ResultStore.write_batch`` (data file +
commit), against a local folder and against a local S3 server (moto, the same one the tests
use). Prints seconds per batch and checks that every batch of every writer is committed and
readable. The per-trial manifest is read and rewritten on every commit, so its cost grows
with the trial's batch count; the numbers say how much that is at the paper grid's size
(~50 (attack, ε) × 4 batches = 200 batches per trial).
"""

from __future__ import annotations

import argparse
import os
import socket
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from grid.store import ResultStore, load


def rows(n: int, batch: int) -> list[dict]:
    return [{
        "train_eps": None, "lam": None, "seed": 0, "epochs": 1, "norm": "Linf", "sample_idx": batch * n + i,
        "label": 1, "pred_clean": 1, "pred_adv": 1, "correct_clean": True, "correct_adv": True, "l2": 0.1,
        "l2_rms": 0.01, "linf": 0.1, "queries": -1, "seconds": 0.01, "attack_config": "{}",
        "checkpoint_hash": "abc", "eval_subset": "n=1000,seed=0", "library_versions": "{}",
        "gradient_failed": False, "randomized": False,
    } for i in range(n)]


def writer(root: str, trial: int, batches: int) -> float:
    store = ResultStore(root)
    started = time.perf_counter()
    for b in range(batches):
        store.write_batch(rows(250, b), experiment="bench", dataset="digits", method="none",
                          trial_id=f"t{trial:09d}", attack="pgd", eps=0.1, batch=b)
    return time.perf_counter() - started


def measure(root: str, writers: int, batches: int) -> None:
    with ThreadPoolExecutor(max_workers=writers) as pool:
        seconds = list(pool.map(lambda w: writer(root, w, batches), range(writers)))
    df = load(root)
    assert len(df) == writers * batches * 250, len(df)
    print(f"{root.split('?')[0]}: {writers} writers × {batches} batches: "
          f"{sum(seconds) / (writers * batches) * 1000:.1f} ms per committed batch; "
          f"all {writers * batches} batches committed and read back")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--batches", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        measure(tmp, args.writers, args.batches)
    from moto.server import ThreadedMotoServer
    import boto3

    for key, value in {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        os.environ.setdefault(key, value)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}").create_bucket(Bucket="bench")
        measure(f"s3://bench/store?endpoint_override=127.0.0.1:{port}&scheme=http", args.writers, args.batches)
    finally:
        server.stop()


if __name__ == "__main__":
    main()

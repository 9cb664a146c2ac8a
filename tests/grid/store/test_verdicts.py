"""Verdicts kept between commands (``grid.store.verdicts``) never let a changed file through,
and reading a few trials at a time gives what reading everything gives.

- ``check_store`` believes an unchanged file without reading it; a file changed in any way
  after its verdict (other bytes of the same size with its mtime put back, a truncation, a
  replacement by rename) is read and checked again, and a damaged one is named;
- on an object store a verdict is keyed by size and Last-Modified: an object overwritten after
  it is named too;
- a reader compares every file's sha256 even with a verdict on its entry;
- a commit record that changed after its verdict is checked entry by entry again;
- a file written within the timestamp margin keeps no identity (git's "racily clean" rule);
- verdicts live in the user's cache folder, never in the results folder;
- ``query_store`` read in chunks of a trial or two, and ``robust_accuracy`` in batches, give
  the same tables as one pass over every row; duplicate rows are refused within a chunk.

Runtime: ~5 s (the object-store case waits ~2 s for Last-Modified to tick).
"""

from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from grid.report.metrics import ACC_BY, robust_accuracy
from grid.report.query import query_store, query_table
from grid.store import DamagedStore, ResultStore, check_store, load, manifest
from grid.store import confined, verdicts

KEY = {"experiment": "v", "dataset": "digits", "method": "none"}
PARTITION = "examples/experiment=v/dataset=digits/method=none"


def rows(trial: int, batch: int, attack: str, n: int = 5) -> list[dict]:
    return [{"train_eps": None, "lam": None, "seed": trial % 2, "epochs": 2, "norm": "Linf",
             "sample_idx": batch * n + i, "label": i % 3, "pred_clean": i % 3, "pred_adv": 0,
             "correct_clean": i != 1, "correct_adv": (i + trial + len(attack)) % 3 == 0, "l2": 0.5, "l2_rms": 0.06,
             "linf": 0.1, "queries": -1, "seconds": 0.01, "attack_config": json.dumps({"attack": attack}),
             "checkpoint_hash": "c0ffee", "eval_subset": f"n={2 * n},seed=0", "library_versions": "{}",
             "gradient_failed": False, "randomized": False} for i in range(n)]


def trial_id(trial: int) -> str:
    return f"t{trial:09d}"


def write(store: ResultStore, trials: int = 1) -> None:
    for trial in range(trials):
        for attack in ("fgsm", "pgd"):
            for batch in (0, 1):
                store.write_batch(rows(trial, batch, attack), attack=attack, eps=0.1, batch=batch,
                                  trial_id=trial_id(trial), **KEY)


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """A verdict folder of the test's own, and no timestamp margin (the files are seconds old)."""
    monkeypatch.setenv(verdicts.CACHE_ENV, str(tmp_path / "verdicts"))
    monkeypatch.setitem(verdicts.RACY_SECONDS, "local", 0.0)
    return tmp_path / "verdicts"


@pytest.fixture
def reads(monkeypatch) -> list:
    """Paths of the committed parquet files read from here on."""
    seen = []
    original = confined.read_measured

    def counted(fs, found, max_bytes):
        if str(found.where).endswith(".parquet"):
            seen.append(found.where)
        return original(fs, found, max_bytes)

    monkeypatch.setattr(confined, "read_measured", counted)
    return seen


def batch_path(store: ResultStore, trial: int = 0, attack: str = "fgsm", batch: int = 0) -> Path:
    return Path(store.base) / PARTITION / f"{trial_id(trial)}__{attack}__eps0.1__b{batch}.parquet"


def damaged_paths(store: ResultStore) -> list[str]:
    return [c.path for found in check_store(ResultStore(store.root)).damaged.values() for c, _ in found]


def test_an_unchanged_file_is_believed_unread_and_verdicts_stay_out_of_the_store(tmp_path, cache, reads):
    store = ResultStore(tmp_path / "results")
    write(store)
    first = check_store(ResultStore(store.root))
    assert len(first.intact[trial_id(0)]) == 4 and len(reads) == 4
    reads.clear()
    again = check_store(ResultStore(store.root))
    assert again.intact.keys() == first.intact.keys() and not again.damaged and reads == []
    # Verdicts are the user's: the results folder holds nothing new, the cache folder a file per trial.
    assert not again.not_part_of_store
    assert [p.name for p in cache.glob("*/*.json") if p.name != "store.json"] == [f"{trial_id(0)}.json"]


@pytest.mark.parametrize("change", ["same size, mtime put back", "truncated", "replaced by rename"])
def test_a_file_changed_after_its_verdict_is_checked_again_and_named(tmp_path, cache, reads, change):
    store = ResultStore(tmp_path / "results")
    write(store)
    check_store(ResultStore(store.root))
    path = batch_path(store)
    data, info = path.read_bytes(), path.stat()
    if change == "same size, mtime put back":
        changed = bytearray(data)
        changed[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(changed))
        os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))  # ctime still moves: a user cannot set it
        assert path.stat().st_size == info.st_size and path.stat().st_mtime_ns == info.st_mtime_ns
    elif change == "truncated":
        path.write_bytes(data[:-10])
    else:
        spare = path.with_name("spare")
        spare.write_bytes(data)
        spare.replace(path)  # the very bytes, another inode: checked again, still intact
    reads.clear()
    damaged = damaged_paths(store)
    assert str(path) in reads  # the verdict did not stand for the changed file
    if change == "replaced by rename":
        assert damaged == []
    else:
        assert damaged == [str(path.relative_to(store.base))]
        with pytest.raises(DamagedStore, match=path.name):
            load(store.root)


def test_a_reader_compares_the_sha256_even_with_a_verdict_on_the_entry(tmp_path, cache):
    store = ResultStore(tmp_path / "results")
    write(store)
    assert len(load(store.root)) == 20  # the entries' checks are now kept
    path = batch_path(store, attack="pgd", batch=1)
    commit = store.trial_commits(trial_id(0))[store.relative(str(path))]
    assert verdicts.verdicts_for(ResultStore(store.root)).checked(commit)
    data = bytearray(path.read_bytes())
    data[40] ^= 0xFF  # in the first column's pages, not the footer: the same size, parquet still
    path.write_bytes(bytes(data))
    with pytest.raises(DamagedStore, match=f"{path.name}: checksum differs"):
        load(store.root)


def test_a_commit_record_changed_after_its_verdict_is_checked_again(tmp_path, cache):
    store = ResultStore(tmp_path / "results")
    write(store)
    check_store(ResultStore(store.root))  # the record's checks are kept
    record = Path(store.base) / "_commits" / f"{trial_id(0)}.json"
    payload = json.loads(record.read_bytes())
    entry = payload["files"].pop(next(iter(payload["files"])))
    payload["files"]["examples/../../outside.parquet"] = entry
    record.write_text(json.dumps(payload))
    check = check_store(ResultStore(store.root))
    assert check.intact == {} and [p for p, _ in check.damaged_records] == [f"_commits/{trial_id(0)}.json"]
    assert "not a normalised path" in check.damaged_records[0][1]


def test_a_file_written_within_the_margin_keeps_no_identity(tmp_path, monkeypatch, reads):
    monkeypatch.setenv(verdicts.CACHE_ENV, str(tmp_path / "verdicts"))
    store = ResultStore(tmp_path / "results")
    write(store)  # seconds old at most: inside the default margin
    check_store(ResultStore(store.root))
    (kept,) = [p for p in (tmp_path / "verdicts").glob("*/*.json") if p.name != "store.json"]
    files = json.loads(kept.read_text())["files"]
    assert len(files) == 4 and all(identity is None for identity in files.values())
    reads.clear()
    check_store(ResultStore(store.root))
    assert len(reads) == 4  # read again: a change within the same timestamp tick would not show


def test_an_object_overwritten_after_its_verdict_is_named(s3_endpoint, tmp_path, monkeypatch):
    endpoint, bucket = s3_endpoint
    monkeypatch.setenv(verdicts.CACHE_ENV, str(tmp_path / "verdicts"))
    monkeypatch.setitem(verdicts.RACY_SECONDS, "object", 0.0)
    host = endpoint.split("://", 1)[1]
    uri = f"s3://{bucket}/verdicts-{time.time_ns()}?endpoint_override={host}&scheme=http"
    store = ResultStore(uri)
    write(store)
    time.sleep(1.1)  # Last-Modified has whole seconds: the overwrite below must fall in a later one
    assert len(check_store(ResultStore(uri)).intact[trial_id(0)]) == 4
    import boto3

    s3 = boto3.client("s3", endpoint_url=endpoint)
    key = f"{store.base.split('/', 1)[1]}/{PARTITION}/{trial_id(0)}__fgsm__eps0.1__b0.parquet"
    body = bytearray(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    body[len(body) // 2] ^= 0xFF
    s3.put_object(Bucket=bucket, Key=key, Body=bytes(body))  # same size, a later Last-Modified
    assert damaged_paths(ResultStore(uri)) == [f"{PARTITION}/{trial_id(0)}__fgsm__eps0.1__b0.parquet"]


def test_reading_a_few_trials_at_a_time_gives_the_same_tables(tmp_path, cache, monkeypatch):
    store = ResultStore(tmp_path / "results")
    write(store, trials=4)
    everything = load(store.root)
    monkeypatch.setattr("grid.store.read.CHUNK_ROWS", 25)  # a trial holds 20 rows: chunks of one or two
    monkeypatch.setattr("grid.report.metrics.BATCH_ROWS", 25)
    for by in (["dataset", "method", "attack", "eps"], ["dataset", "method", "attack", "eps", "seed"]):
        expected = query_table(everything, by)
        parts = query_store(ResultStore(store.root), by)
        assert len(parts.parts) > 1
        pd.testing.assert_frame_equal(parts.table(), expected, check_dtype=False)
    batched = robust_accuracy(everything, by=ACC_BY)
    monkeypatch.setattr("grid.report.metrics.BATCH_ROWS", 10**9)
    pd.testing.assert_frame_equal(batched, robust_accuracy(everything, by=ACC_BY))
    # Strings as sorted categories: the same rows, grouped and sorted as the strings are.
    compact = load(store.root, categorical=True)
    assert isinstance(compact["attack_config"].dtype, pd.CategoricalDtype)
    pd.testing.assert_frame_equal(robust_accuracy(compact, by=ACC_BY), batched, check_dtype=False,
                                  check_categorical=False)


def test_a_duplicate_smuggled_into_another_chunk_position_is_refused(tmp_path, cache):
    store = ResultStore(tmp_path / "results")
    write(store, trials=2)
    source = batch_path(store, trial=1, attack="pgd", batch=0)
    forged = source.with_name(source.name.replace("__b0", "__b9"))
    table = pq.read_table(source)
    table = table.set_column(table.schema.get_field_index("batch"), table.schema.field("batch"),
                             pa.array([9] * table.num_rows, pa.int64()))
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    forged.write_bytes(buffer.getvalue())
    commits = store.trial_commits(trial_id(1))
    relative = store.relative(str(forged))
    commits[relative] = manifest.describe("examples", relative, table, buffer.getvalue(),
                                          {**commits[store.relative(str(source))].key, "batch": 9}, ("sample_idx",))
    store.put_atomic(manifest.manifest_path(store.base, trial_id(1)), manifest.encode_manifest(trial_id(1), commits))
    with pytest.raises(DamagedStore, match="duplicate examples rows"):
        load(store.root)
    with pytest.raises(DamagedStore, match="duplicate examples rows"):
        query_store(ResultStore(store.root), ["dataset", "method", "attack", "eps"])

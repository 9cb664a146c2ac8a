"""A results store that no file can trick (issue 21, items 1 and 2), on copies of a small real
store written by ResultStore itself, then tampered with as a writer of a shared folder could:

- commit entries naming ``../../outside.parquet``, an absolute path, ``…/dev/zero``;
- a committed file, or a whole partition folder, replaced by a link to a place outside;
- a committed file replaced by a FIFO (opening it would hang the test: it must never be opened);
- a parquet file declaring 200 million rows, a 4 GB sparse file, a 100 MB sparse manifest;
- deeply nested JSON as a commit record; an entry whose key lacks ``trial_id`` or whose range
  names a column the file lacks.

Each is refused with one line naming the file ("damaged"), never a traceback, and the readers
stay under a 1.5 GB address-space limit. The canary outside the results folder holds exactly
the committed bytes of a batch: were it ever read, it would verify, so every refusal here is
the path or link rule, decided before the file is opened. Runtime: ~5 s.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from grid.store import DamagedStore, ResultStore, check_store, load, load_trials
from grid.store.confined import relative_path

TRIAL = "a1b2c3d4e5"
KEY = {"experiment": "hostile", "dataset": "digits", "method": "none", "trial_id": TRIAL}
PARTITION = "examples/experiment=hostile/dataset=digits/method=none"
BATCH = f"{PARTITION}/{TRIAL}__fgsm__eps0.1__b0.parquet"
REPO = Path(__file__).resolve().parents[3]


def example_rows(batch: int) -> list[dict]:
    return [{"train_eps": None, "lam": None, "seed": 0, "epochs": 2, "norm": "Linf", "sample_idx": batch * 4 + i,
             "label": i, "pred_clean": i, "pred_adv": 0, "correct_clean": True, "correct_adv": i == 0, "l2": 0.5,
             "l2_rms": 0.06, "linf": 0.1, "queries": -1, "seconds": 0.01, "attack_config": '{"attack":"fgsm"}',
             "checkpoint_hash": "c0ffee", "eval_subset": "n=8,seed=0", "library_versions": "{}",
             "gradient_failed": False, "randomized": False} for i in range(4)]


@pytest.fixture
def store(tmp_path) -> ResultStore:
    """Two committed batches and a trial row in ``tmp/results``, and the canary ``tmp/outside.parquet``."""
    results = ResultStore(tmp_path / "results")
    for batch in (0, 1):
        results.write_batch(example_rows(batch), attack="fgsm", eps=0.1, batch=batch, **KEY)
    results.write_trial({**KEY, "train_eps": None, "lam": None, "seed": 0, "epochs": 2, "clean_accuracy": 1.0,
                         "losses_json": "[]", "wall_seconds": 1.0, "device": "cpu", "checkpoint_hash": "c0ffee",
                         "recipe": "adam", "hyperparams_json": "{}", "validation_n": 0, "evaluate": "last",
                         "evaluated_epoch": 2})
    shutil.copy(tmp_path / "results" / BATCH, tmp_path / "outside.parquet")
    return results


def manifest_file(store: ResultStore) -> Path:
    return Path(store.base) / "_commits" / f"{TRIAL}.json"


def edit_manifest(store: ResultStore, change) -> None:
    path = manifest_file(store)
    record = json.loads(path.read_text())
    change(record["files"])
    path.write_text(json.dumps(record))


def move_entry(store: ResultStore, new_path: str) -> None:
    edit_manifest(store, lambda files: files.__setitem__(new_path, files.pop(BATCH)))


def one_line_damage(store: ResultStore, *expected: str) -> str:
    """The reader's error: DamagedStore, one line, naming each of ``expected``."""
    with pytest.raises(DamagedStore) as err:
        load(store.base)
    message = str(err.value)
    assert "\n" not in message
    for text in expected:
        assert text in message, message
    return message


@pytest.mark.parametrize("entry, rule", [
    ("../../outside.parquet", "not a normalised path"),
    ("examples/../../outside.parquet", "not a normalised path"),
    ("examples/../../../../../../../../dev/zero", "not a normalised path"),
    ("/tmp/outside.parquet", "not a relative path inside the store"),
    ("examples//x.parquet", "not a normalised path"),
    ("_commits/a1b2c3d4e5.json", "not a file of its table"),
])
def test_an_entry_that_would_leave_the_store_damages_its_record(store, entry, rule):
    if entry.startswith("/tmp/"):
        entry = str(Path(store.base).parent / "outside.parquet")
    move_entry(store, entry)
    one_line_damage(store, f"commit record _commits/{TRIAL}.json is damaged", rule)
    check = check_store(store)
    assert check.intact == {} and [path for path, _ in check.damaged_records] == [f"_commits/{TRIAL}.json"]
    assert rule in check.damaged_records[0][1]


def test_a_committed_file_linked_out_of_the_store_is_damaged_not_followed(store):
    batch = Path(store.base) / BATCH
    batch.unlink()
    batch.symlink_to(Path(store.base).parent / "outside.parquet")  # the very committed bytes
    one_line_damage(store, BATCH, "a symbolic link out of the store")
    (damaged,) = check_store(store).damaged[TRIAL]
    assert damaged[0].path == BATCH and "symbolic link out of the store" in damaged[1]
    assert len(load(store.base, damaged="skip")) == 4  # the other batch, still read


def test_a_committed_file_linked_to_dev_zero_is_damaged_unread(store):
    batch = Path(store.base) / BATCH
    batch.unlink()
    batch.symlink_to("/dev/zero")
    message = one_line_damage(store, BATCH, "symbolic link out of the store (to /dev/zero)")
    (damaged,) = check_store(store).damaged[TRIAL]
    assert damaged[0].path == BATCH and "/dev/zero" in damaged[1] and "/dev/zero" in message


def test_a_fifo_in_place_of_a_committed_file_is_never_opened(store):
    batch = Path(store.base) / BATCH
    batch.unlink()
    os.mkfifo(batch)  # opening it for reading would block this test forever
    one_line_damage(store, BATCH, "not a regular file")
    (damaged,) = check_store(store).damaged[TRIAL]
    assert damaged[0].path == BATCH and "not a regular file" in damaged[1]


def test_a_linked_partition_folder_is_neither_followed_nor_walked(store, tmp_path):
    partition = Path(store.base) / PARTITION
    elsewhere = tmp_path / "elsewhere"
    shutil.move(partition, elsewhere)
    (elsewhere / "deep").mkdir()
    (elsewhere / "deep" / "unlisted.parquet").write_bytes(b"never listed")
    partition.symlink_to(elsewhere, target_is_directory=True)
    one_line_damage(store, "2 committed file(s)", "a symbolic link out of the store")
    check = check_store(store)
    assert len(check.damaged[TRIAL]) == 2
    assert PARTITION in check.not_part_of_store  # the link itself, listed, not walked
    assert not any("unlisted" in path for path in check.not_part_of_store)


def plant_row_bomb(path: Path) -> None:
    """~400 KB of parquet declaring 200 million rows (1.6 GB of int64 once decoded)."""
    chunk = pa.table({"x": pa.nulls(1_000_000, pa.int64())})
    with pq.ParquetWriter(path, chunk.schema) as writer:
        for _ in range(200):
            writer.write_table(chunk)


def test_a_parquet_row_bomb_is_judged_by_its_footer_never_decoded(store):
    plant_row_bomb(Path(store.base) / BATCH)
    one_line_damage(store, BATCH, "schema differs from the committed one")
    (damaged,) = check_store(store).damaged[TRIAL]
    assert damaged[0].path == BATCH and "schema differs" in damaged[1]


def test_a_forged_row_count_is_caught_from_the_footer(store):
    edit_manifest(store, lambda files: files[BATCH].__setitem__("rows", 999))
    one_line_damage(store, BATCH, "4 rows, 999 committed")
    (damaged,) = check_store(store).damaged[TRIAL]
    assert damaged[0].path == BATCH and "999 committed" in damaged[1]


def test_a_sparse_4_gb_file_is_refused_by_its_size_unread(store):
    os.truncate(Path(store.base) / BATCH, 4 << 30)  # sparse: no disk used, 4 GB if read
    one_line_damage(store, BATCH, "4,294,967,296 bytes on storage", "not read")
    (damaged,) = check_store(store).damaged[TRIAL]
    assert damaged[0].path == BATCH and "not read" in damaged[1]


def test_a_sparse_100_mb_commit_record_is_refused_unread(store):
    os.truncate(manifest_file(store), 100 << 20)
    one_line_damage(store, f"commit record _commits/{TRIAL}.json is damaged", "104,857,600 bytes", "not read")
    check = check_store(store)
    assert check.intact == {} and [path for path, _ in check.damaged_records] == [f"_commits/{TRIAL}.json"]


def test_a_deeply_nested_commit_record_is_damaged_not_a_recursion_error(store):
    manifest_file(store).write_text('{"format": "er-grid-commits/1", "files": ' + "[" * 200_000 + "]" * 200_000 + "}")
    one_line_damage(store, f"commit record _commits/{TRIAL}.json is damaged", "nested deeper than 32 levels")
    assert check_store(store).damaged_records[0][0] == f"_commits/{TRIAL}.json"


def test_an_entry_without_trial_id_is_damaged_not_a_key_error(store):
    edit_manifest(store, lambda files: files[BATCH]["key"].pop("trial_id"))
    one_line_damage(store, "is damaged", "key lacks trial_id")
    assert check_store(store).damaged_records  # status names it too, no KeyError


def test_a_range_over_a_column_the_file_lacks_is_damaged_not_a_key_error(store):
    edit_manifest(store, lambda files: files[BATCH]["ranges"].__setitem__("no_such_column", [0, 1]))
    one_line_damage(store, BATCH, "names column 'no_such_column', which the file lacks")
    assert "no_such_column" in check_store(store).damaged[TRIAL][0][1]


def test_a_wrong_key_type_is_damaged_not_an_arrow_error(store):
    edit_manifest(store, lambda files: files[BATCH]["key"].__setitem__("batch", "zero"))
    one_line_damage(store, BATCH, "do not fit the file's columns")
    check = check_store(store)  # status's view: named, not an Arrow error
    named = [path for path, _ in check.damaged_records] + [c.path for c, _ in check.damaged.get(TRIAL, ())]
    assert BATCH not in {c.path for c in check.intact.get(TRIAL, ())} and named


def test_a_trial_id_filter_cannot_name_a_path(store):
    with pytest.raises(ValueError, match="trial_id"):
        load(store.base, trial_id="../../outside")


def test_keys_on_an_object_store_follow_the_same_rule(tmp_path):
    """pyarrow's in-memory file system stands for an object store (no links, keys only)."""
    fs = pafs._MockFileSystem()
    bucket = ResultStore("bucket/results", filesystem=fs)
    bucket.write_batch(example_rows(0), attack="fgsm", eps=0.1, batch=0, **KEY)
    assert len(load(bucket)) == 4
    record = f"bucket/results/_commits/{TRIAL}.json"
    with fs.open_input_stream(record) as stream:
        payload = json.loads(stream.read())
    payload["files"]["../../elsewhere.parquet"] = payload["files"].pop(BATCH)
    with fs.open_output_stream(record) as out:
        out.write(json.dumps(payload).encode())
    with pytest.raises(DamagedStore, match="not a normalised path"):
        load(bucket)


@pytest.mark.parametrize("path", ["a/../b", "./a", "/a", "a//b", "a\\b", "a/\nb", "", "a/.."])
def test_the_path_rule_refuses_every_way_out(path):
    with pytest.raises(ValueError):
        relative_path(path, "entry")


def test_readers_stay_within_a_memory_limit_on_every_bomb_at_once(store):
    """One store holding the row bomb, the 4 GB sparse file and a link to /dev/zero, read by
    load, load_trials and check_store under RLIMIT_AS = 1.5 GB: damaged, never MemoryError."""
    base = Path(store.base)
    plant_row_bomb(base / BATCH)
    os.truncate(base / BATCH.replace("__b0", "__b1"), 4 << 30)
    trial_row = next((base / "trials").rglob("*.parquet"))
    trial_row.unlink()
    trial_row.symlink_to("/dev/zero")
    script = textwrap.dedent(f"""
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (1536 << 20, 1536 << 20))
        from grid.store import DamagedStore, check_store, load, load_trials, ResultStore
        for read in (load, load_trials):
            try:
                read({str(base)!r})
            except DamagedStore as err:
                print("damaged:", str(err)[:300])
        check = check_store(ResultStore({str(base)!r}))
        print("check:", sum(len(v) for v in check.damaged.values()), "damaged files")
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "MemoryError" not in done.stderr and "Traceback" not in done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 3 and lines[0].startswith("damaged: 2 committed file(s)") and "/dev/zero" in lines[1]
    assert lines[2] == "check: 3 damaged files"


def test_an_untouched_store_still_reads_whole(store):
    """The bounds refuse nothing er-grid writes."""
    assert len(load(store.base)) == 8 and len(load_trials(store.base)) == 1
    check = check_store(store)
    assert len(check.intact[TRIAL]) == 3 and not check.damaged and not check.damaged_records

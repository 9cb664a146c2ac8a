"""ResultStore: atomic replace-on-rewrite, temp files ignored, filters, schema checks, S3, other readers."""

from __future__ import annotations

import io
import json

import duckdb
import pandas as pd
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from grid.store import ROW_SCHEMA, TRIAL_SCHEMA, NoResults, ResultStore, load, load_trials

KEY = {"experiment": "unit", "dataset": "digits", "method": "er", "trial_id": "a1b2c3d4e5"}


def make_rows(batch: int, n: int = 4, pred_adv: int = 0, **overrides) -> list[dict]:
    """Rows as the trainable builds them: everything but the batch key and auto columns."""
    rows = []
    for i in range(n):
        label = (batch * n + i) % 10
        rows.append({
            "train_eps": 0.1, "lam": None, "seed": 0, "epochs": 2, "norm": "Linf",
            "sample_idx": batch * n + i, "label": label, "pred_clean": label, "pred_adv": pred_adv,
            "correct_clean": True, "correct_adv": pred_adv == label, "l2": 0.5, "l2_rms": 0.06,
            "linf": 0.1, "queries": -1, "seconds": 0.01, "attack_config": '{"attack":"pgd"}',
            "checkpoint_hash": "c0ffee", "eval_subset": "n=8,seed=0", "library_versions": "{}",
            "gradient_failed": False, "randomized": False, **overrides,
        })
    return rows


def write(store: ResultStore, batch: int, attack="pgd", eps=0.1, key=KEY, **row_kw) -> str:
    return store.write_batch(make_rows(batch, **row_kw), attack=attack, eps=eps, batch=batch, **key)


def trial_row(**overrides) -> dict:
    return {
        "trial_id": KEY["trial_id"], "experiment": "unit", "dataset": "digits", "method": "er",
        "train_eps": 0.1, "lam": None, "seed": 0, "epochs": 2, "clean_accuracy": 0.9,
        "losses_json": json.dumps([{"loss": 1.0}, {"loss": 0.5}]), "wall_seconds": 3.0,
        "device": "cpu", "checkpoint_hash": "c0ffee", "recipe": "adam", "hyperparams_json": "{}",
        "validation_n": 0, "evaluate": "last", "evaluated_epoch": 2, **overrides,
    }


def test_rewriting_a_batch_replaces_it(tmp_path):
    store = ResultStore(tmp_path)
    write(store, 0, pred_adv=0)
    write(store, 1)
    path = write(store, 0, pred_adv=1)  # a retried batch
    df = load(tmp_path)
    assert len(df) == 8 and sorted(df.sample_idx) == list(range(8))
    assert (df[df.batch == 0].pred_adv == 1).all()  # the retry's rows, not the first attempt's
    assert sorted(p.name for p in (tmp_path / path).parent.iterdir()) == [
        "a1b2c3d4e5__pgd__eps0.1__b0.parquet", "a1b2c3d4e5__pgd__eps0.1__b1.parquet"]
    assert set(df.code_version) and df.created_at.dt.tz is not None
    assert (df.experiment == "unit").all() and (df.attack == "pgd").all() and (df.eps == 0.1).all()


def test_leftover_temp_files_are_ignored(tmp_path):
    store = ResultStore(tmp_path)
    final = write(store, 0)
    directory = (tmp_path / final).parent
    whole = (tmp_path / final).read_bytes()
    # What a writer killed mid-write leaves behind: half a file under its temp name.
    (directory / ".a1b2c3d4e5__pgd__eps0.1__b1.parquet.tmp-deadbeef").write_bytes(whole[: len(whole) // 2])
    assert len(load(tmp_path)) == 4
    assert store.done_batches(**KEY) == {("pgd", 0.1, 0)}
    assert len(pd.read_parquet(tmp_path / "examples")) == 4  # pandas' own reader skips dot-files too


def test_done_batches_from_the_commit_record(tmp_path):
    store = ResultStore(tmp_path)
    for attack, eps, batch in [("pgd", 0.0, 0), ("pgd", 0.025, 1), ("cw_l2", 1e-05, 0), ("fgsm", 0.3, 2)]:
        write(store, batch, attack=attack, eps=eps)
    write(store, 0, key={**KEY, "trial_id": "ffffffffff"})  # another trial, same partition
    done = store.done_batches(**KEY)
    assert done == {("pgd", 0.0, 0), ("pgd", 0.025, 1), ("cw_l2", 1e-05, 0), ("fgsm", 0.3, 2)}
    assert store.done_batches("unit", "digits", "madry", KEY["trial_id"]) == set()


def test_filters(tmp_path):
    store = ResultStore(tmp_path)
    write(store, 0, eps=0.1)
    write(store, 1, eps=0.2)
    write(store, 0, key={**KEY, "dataset": "mnist", "trial_id": "0000000000"}, eps=0.1)
    assert len(load(tmp_path)) == 12
    assert len(load(tmp_path, dataset="mnist")) == 4
    assert len(load(tmp_path, eps=0.2)) == 4
    assert len(load(tmp_path, eps=[0.1, 0.2], dataset=["digits"])) == 8
    assert set(load(tmp_path, sample_idx=[0, 5]).sample_idx) == {0, 5}
    assert len(load(tmp_path, lam=None)) == 12 and len(load(tmp_path, train_eps=None)) == 0
    assert len(load(tmp_path, experiment="other")) == 0
    # Pruning by the committed key values, before any file is opened.
    assert [p.rsplit("/", 1)[1] for p in store.files(trial_id="0000000000")] == ["0000000000__pgd__eps0.1__b0.parquet"]
    assert len(store.files(experiment="unit", dataset="digits", eps=0.2)) == 1
    assert len(load(tmp_path, trial_id=KEY["trial_id"], batch=[1])) == 4
    with pytest.raises(ValueError, match="filter 'colour': unknown column"):
        load(tmp_path, colour="red")


def test_empty_selection_gives_empty_frame_with_columns(tmp_path):
    write(ResultStore(tmp_path), 0)
    df = load(tmp_path, method="madry")
    assert df.empty and list(df.columns) == ROW_SCHEMA.names
    assert list(load_trials(tmp_path).columns) == TRIAL_SCHEMA.names


def test_a_folder_without_results_is_one_clear_error(tmp_path):
    with pytest.raises(NoResults, match="does not exist"):
        load(tmp_path / "nothing-here")
    with pytest.raises(NoResults, match="holds no results"):
        load(tmp_path)


def test_experiment_folder_and_results_folder_load_the_same(tmp_path):
    experiment = tmp_path / "exp"
    write(ResultStore(experiment / "results"), 0)
    write(ResultStore(experiment / "results"), 1)
    by_results, by_experiment = load(experiment / "results"), load(experiment)
    assert len(by_results) == 8
    pd.testing.assert_frame_equal(by_results, by_experiment)


@pytest.mark.parametrize("change, message", [
    (lambda r: r.pop("label"), r"missing column\(s\) \['label'\]"),
    (lambda r: r.update(colour="red"), r"unknown column\(s\) \['colour'\]"),
    (lambda r: r.update(label="seven"), "column 'label': values do not fit type int64"),
    (lambda r: r.update(seed=None), "column 'seed': null value"),
    (lambda r: r.update(attack="fgsm"), "rows\\[0\\].attack: 'fgsm' disagrees"),
])
def test_rows_not_matching_the_schema_are_refused(tmp_path, change, message):
    store = ResultStore(tmp_path)
    rows = make_rows(0)
    change(rows[0])
    with pytest.raises(ValueError, match=message):
        store.write_batch(rows, attack="pgd", eps=0.1, batch=0, **KEY)
    assert store.files() == []  # nothing written


def test_trial_table_one_row_per_trial(tmp_path):
    store = ResultStore(tmp_path)
    store.write_trial(trial_row(clean_accuracy=0.5))
    store.write_trial(trial_row(clean_accuracy=0.9))  # rerun replaces
    store.write_trial(trial_row(trial_id="bbbbbbbbbb", method="none"))
    trials = load_trials(tmp_path)
    assert len(trials) == 2
    assert trials.set_index("trial_id").loc[KEY["trial_id"], "clean_accuracy"] == 0.9
    assert len(load_trials(tmp_path, method="none")) == 1
    with pytest.raises(ValueError, match="missing column"):
        store.write_trial({k: v for k, v in trial_row().items() if k != "device"})


def test_files_readable_by_pandas_pyarrow_duckdb(tmp_path):
    store = ResultStore(tmp_path)
    write(store, 0)
    write(store, 1, key={**KEY, "method": "none", "trial_id": "9999999999"})
    root = tmp_path / "examples"
    by_pandas = pd.read_parquet(root)
    by_arrow = ds.dataset(root, format="parquet", partitioning="hive").to_table()
    by_duck = duckdb.sql(
        f"select method, count(*) as n from read_parquet('{root}/**/*.parquet', hive_partitioning=true) "
        "group by method order by method"
    ).fetchall()
    assert len(by_pandas) == by_arrow.num_rows == 8
    assert set(by_pandas.method.astype(str)) == {"er", "none"}
    assert by_duck == [("er", 4), ("none", 4)]
    one = pq.read_table(store.files()[0])  # a single file on its own is plain parquet
    assert one.num_rows == 4 and "sample_idx" in one.column_names


def test_round_trip_through_s3(s3_endpoint):
    endpoint, bucket = s3_endpoint
    host = endpoint.split("://", 1)[1]
    uri = f"s3://{bucket}/run1?endpoint_override={host}&scheme=http"
    store = ResultStore(uri)
    assert store.fs.type_name == "s3"
    write(store, 0, pred_adv=0)
    write(store, 0, pred_adv=1)  # rewrite replaces the object
    write(store, 1, eps=0.2)
    store.write_trial(trial_row())
    df = load(uri)
    assert len(df) == 8 and sorted(df.sample_idx) == list(range(8))
    assert (df[df.batch == 0].pred_adv == 1).all()
    assert store.done_batches(**KEY) == {("pgd", 0.1, 0), ("pgd", 0.2, 1)}
    assert len(load_trials(uri)) == 1
    # The objects are plain parquet for any S3 client.
    import boto3

    s3 = boto3.client("s3", endpoint_url=endpoint)
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="run1/")["Contents"]
                  if o["Key"].endswith(".parquet"))
    assert len(keys) == 3
    body = s3.get_object(Bucket=bucket, Key=keys[0])["Body"].read()
    assert pd.read_parquet(io.BytesIO(body)).shape[0] == 4
    # The same store through an explicit filesystem object and a plain bucket/prefix path.
    explicit = ResultStore(f"{bucket}/run1", filesystem=pafs.S3FileSystem(endpoint_override=host, scheme="http"))
    assert explicit.done_batches(**KEY) == store.done_batches(**KEY) and len(explicit.load()) == 8


def test_a_damaged_commit_record_is_named_and_its_trial_recomputed(tmp_path):
    """A manifest cut short: readers name it; other trials stay readable with damaged="skip";
    the trial's own writer moves the record aside (kept) and starts a new one, so its files
    count as not committed until rewritten (and an old file in the way is moved aside too)."""
    from grid.store import DamagedStore

    store = ResultStore(tmp_path)
    first = write(store, 0)
    write(store, 0, key={**KEY, "trial_id": "0000000000"})
    record = tmp_path / "_commits" / f"{KEY['trial_id']}.json"
    record.write_bytes(record.read_bytes()[:40])
    with pytest.raises(DamagedStore, match=f"commit record _commits/{KEY['trial_id']}.json is damaged"):
        load(tmp_path)
    assert set(load(tmp_path, damaged="skip")["trial_id"]) == {"0000000000"}
    assert store.done_batches(**KEY) == set()  # the writer's view: nothing of this trial is committed
    write(store, 0)
    assert len(load(tmp_path)) == 8
    aside = sorted(p.name for p in (tmp_path / "_moved_aside").rglob("*") if p.is_file())
    assert aside == sorted([f"{KEY['trial_id']}.json", first.rsplit("/", 1)[1]])

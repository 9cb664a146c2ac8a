"""What a file system does to a results folder over weeks, on copies of a real smoke-grid store.

The session's smoke grid (``smoke_experiment`` in conftest.py: the smoke preset through
``ray job submit``, 3 trials × 6 (attack, ε) × 2 batches) is copied per test, then:

- stray files (a copy of a batch, a ``backup/`` folder, a ``method=none.bak`` partition, a
  foreign-schema parquet file, a temp file) → every reader returns exactly the committed rows,
  ``query`` prints the same table, ``status`` lists the strays as not part of the store;
- damage to a committed file (a dropped column, a deleted file, a truncated file, a changed
  value) → readers refuse with the file named (or leave it out when asked), ``status`` marks
  the trial DAMAGED and names the file;
- a duplicate key smuggled in through a forged commit → refused;
- ``er-grid resume`` after three kinds of damage recomputes exactly those batches (moving the
  damaged files aside) and ends with the undamaged run's rows;
- a pickle planted in Tune's ``experiment_state-*.json`` is not executed by status, query
  or report (and is executed by Tune's own ExperimentAnalysis: the plant is live).

Runtime: ~5 s of readers plus ~25 s for the resume (one driver on the shared head), after
the shared smoke grid.
"""

from __future__ import annotations

import io
import pickle
import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from grid.store import manifest
from grid.cli import main
from grid.store import DamagedStore, ResultStore, load, load_trials
from ray_helpers import run_cli

pytestmark = pytest.mark.ray

KEY = ["trial_id", "attack", "eps", "sample_idx"]
PARTITION = Path("results/examples/experiment=smoke/dataset=digits/method=none")
COMPARED = KEY + ["batch", "pred_clean", "pred_adv", "correct_clean", "correct_adv", "l2", "linf",
                  "checkpoint_hash", "attack_config"]


def rows(df: pd.DataFrame) -> pd.DataFrame:
    return df.sort_values(KEY).reset_index(drop=True)


@pytest.fixture
def experiment(smoke_experiment, tmp_path) -> Path:
    source, submit = smoke_experiment
    assert submit.returncode == 0, submit.stdout[-3000:] + submit.stderr[-3000:]
    copy = tmp_path / "smoke"
    shutil.copytree(source, copy)
    return copy


@pytest.fixture(scope="module")
def reference(smoke_experiment) -> pd.DataFrame:
    return rows(load(smoke_experiment[0]))


def batch_file(experiment: Path, name: str, partition: Path = PARTITION) -> Path:
    (path,) = (experiment / partition).glob(f"*__{name}.parquet")
    return path


def query_csv(path: Path, capsys, *extra: str) -> str:
    capsys.readouterr()
    assert main(["query", str(path), "--format", "csv", *extra]) == 0
    return capsys.readouterr().out


def status_text(path: Path, capsys) -> str:
    capsys.readouterr()
    assert main(["status", str(path)]) == 0
    return capsys.readouterr().out


# --------------------------------------------------------------------------- stray files


def copy_of_a_batch(experiment: Path) -> list[str]:
    batch = batch_file(experiment, "fgsm__eps0.1__b0")
    shutil.copy(batch, batch.with_name(batch.stem + " (copy).parquet"))
    return [batch.stem + " (copy).parquet"]


def backup_folder(experiment: Path) -> list[str]:
    shutil.copytree(experiment / PARTITION, experiment / PARTITION / "backup")
    return [f"method=none/backup/{p.name}" for p in (experiment / PARTITION).glob("*.parquet")]


def bak_partition(experiment: Path) -> list[str]:
    shutil.copytree(experiment / PARTITION, (experiment / PARTITION).with_name("method=none.bak"))
    return ["method=none.bak/"]


def foreign_schema_file(experiment: Path) -> list[str]:
    pq.write_table(pa.table({"sample_idx": [0], "correct_adv": [True], "note": ["junk"]}),
                   experiment / PARTITION / "notes.parquet")
    return ["method=none/notes.parquet"]


def temp_file(experiment: Path) -> list[str]:
    whole = batch_file(experiment, "pgd__eps0.1__b1").read_bytes()
    (experiment / PARTITION / ".half.parquet.tmp-dead").write_bytes(whole[: len(whole) // 2])
    return [".half.parquet.tmp-dead"]


def test_stray_files_are_not_read_and_are_listed(experiment, reference, smoke_experiment, capsys):
    """All five kinds at once: were any of them read, the rows or the query would differ."""
    expected_query = query_csv(smoke_experiment[0], capsys)
    listed = {plant.__name__: plant(experiment)
              for plant in (copy_of_a_batch, backup_folder, bak_partition, foreign_schema_file, temp_file)}
    pd.testing.assert_frame_equal(rows(load(experiment)), reference)
    pd.testing.assert_frame_equal(rows(load(experiment / "results")), reference)
    assert len(load_trials(experiment)) == 3
    assert query_csv(experiment, capsys) == expected_query
    capsys.readouterr()
    assert main(["report", str(experiment)]) == 0
    assert "none.bak" not in capsys.readouterr().out
    text = status_text(experiment, capsys)
    assert "done 3, damaged 0" in text and "evaluation batches: 36/36" in text
    stray = text.split("not part of the store", 1)[1]
    for plant, names in listed.items():
        for name in names:
            assert name in stray, f"{plant}: {name} not listed\n{text}"


# --------------------------------------------------------------------------- damage


def dropped_column(path: Path) -> str:
    pq.write_table(pq.read_table(path).drop_columns(["correct_adv"]), path)
    return "missing column(s) ['correct_adv']"


def deleted(path: Path) -> str:
    path.unlink()
    return "missing"


def truncated(path: Path) -> str:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return "truncated"


def changed_value(path: Path) -> str:
    table = pq.read_table(path)
    flipped = pa.array([not v for v in table["correct_adv"].to_pylist()])
    pq.write_table(table.set_column(table.schema.get_field_index("correct_adv"), table.schema.field("correct_adv"),
                                    flipped), path)
    return "checksum differs"


@pytest.mark.parametrize("damage", [dropped_column, deleted, truncated, changed_value])
def test_damaged_committed_files_are_reported_never_read_as_data(damage, experiment, reference, capsys):
    path = batch_file(experiment, "pgd__eps0.1__b0")
    reason = damage(path)
    with pytest.raises(DamagedStore, match=reason.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")) as err:
        load(experiment)
    assert path.name in str(err.value)

    capsys.readouterr()
    assert main(["query", str(experiment)]) == 2
    message = capsys.readouterr().err
    assert message.count("\n") == 1 and path.name in message and "Traceback" not in message

    # Asked to, readers leave the damaged batch out and keep everything else.
    lost = (reference["trial_id"] == path.name.split("__")[0]) & (reference["attack"] == "pgd") \
        & (reference["eps"] == 0.1) & (reference["batch"] == 0)
    pd.testing.assert_frame_equal(rows(load(experiment, damaged="skip")), rows(reference[~lost]))
    assert query_csv(experiment, capsys, "--skip-damaged").count("\n") > 5

    text = status_text(experiment, capsys)
    assert "done 2, damaged 1" in text and "evaluation batches: 35/36" in text
    assert f"damaged: examples/experiment=smoke/dataset=digits/method=none/{path.name}: " in text
    assert "repair with: er-grid resume" in text


def test_duplicate_keys_are_refused_even_when_committed(experiment):
    """A forged but self-consistent commit: batch 0's examples again as "batch 7"."""
    store = ResultStore(experiment / "results")
    source = batch_file(experiment, "fgsm__eps0.1__b0")
    forged = source.with_name(source.name.replace("__b0", "__b7"))
    table = pq.read_table(source)
    column = table.schema.get_field_index("batch")
    table = table.set_column(column, table.schema.field("batch"), pa.array([7] * table.num_rows, pa.int64()))
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    forged.write_bytes(buffer.getvalue())
    trial_id = source.name.split("__")[0]
    commits = store.trial_commits(trial_id)
    key = {**commits[store.relative(str(source))].key, "batch": 7}
    commits[store.relative(str(forged))] = manifest.describe(
        "examples", store.relative(str(forged)), table, buffer.getvalue(), key, ("sample_idx",))
    store.put_atomic(manifest.manifest_path(store.base, trial_id), manifest.encode_manifest(trial_id, commits))
    with pytest.raises(DamagedStore, match="duplicate examples rows"):
        load(experiment)


# --------------------------------------------------------------------------- repair


def test_resume_recomputes_exactly_the_damaged_and_missing_batches(ray_head, experiment, reference, capsys):
    none = batch_file(experiment, "fgsm__eps0.1__b0")
    madry = batch_file(experiment, "pgd__eps0.2__b1", PARTITION.with_name("method=madry"))
    er_minus = batch_file(experiment, "fgsm__eps0.2__b1", PARTITION.with_name("method=er_minus"))
    dropped_column(none), deleted(madry), truncated(er_minus)
    damaged_bytes = {none.name: none.read_bytes(), er_minus.name: er_minus.read_bytes()}
    stray = copy_of_a_batch(experiment)[0]
    untouched = {p: p.stat().st_mtime_ns for p in (experiment / "results" / "examples").rglob("*.parquet")
                 if p not in (none, er_minus)}

    resumed = run_cli(ray_head, "resume", str(experiment))
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]

    final = rows(load(experiment))
    pd.testing.assert_frame_equal(final[COMPARED], reference[COMPARED])
    for path, stamp in untouched.items():
        assert path.stat().st_mtime_ns == stamp, f"{path.name} was rewritten"
    assert (experiment / PARTITION / stray).exists(), "a stray file was deleted"
    aside = {p.name: p.read_bytes() for p in (experiment / "results" / "_moved_aside").rglob("*.parquet")}
    assert aside == damaged_bytes  # evidence kept, byte for byte
    text = status_text(experiment, capsys)
    assert "done 3, damaged 0" in text and "evaluation batches: 36/36" in text
    assert "moved aside by repairs (kept as evidence): 2 file(s)" in text


# --------------------------------------------------------------------------- no code from results


class Plant:
    """Unpickling this opens (creates) ``path``: what a hostile writer of the folder could run."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return open, (self.path, "w")


def test_a_pickle_planted_in_the_experiment_state_is_never_run(experiment, tmp_path, capsys):
    import json

    marker = tmp_path / "pwned"
    (state,) = experiment.glob("experiment_state-*.json")
    payload = json.loads(state.read_text())
    trial = json.loads(payload["trial_data"][0][0])
    trial["storage"] = {"_type": "CLOUDPICKLE_FALLBACK", "value": pickle.dumps(Plant(str(marker))).hex()}
    payload["trial_data"][0][0] = json.dumps(trial)
    state.write_text(json.dumps(payload))

    for argv in (["status", str(experiment)], ["query", str(experiment)], ["report", str(experiment)],
                 ["report", str(experiment / "results"), "--out", str(tmp_path / "r.md")]):
        assert main(argv) == 0, capsys.readouterr().err
        assert not marker.exists(), f"er-grid {argv[0]} ran code from the results folder"

    # Control: Ray Tune's own reader does unpickle it, so the plant above was live.
    from ray import tune

    try:
        tune.ExperimentAnalysis(str(experiment))
    except Exception:  # noqa: BLE001  (what Tune does after running the payload does not matter)
        pass
    assert marker.exists()


def test_a_damaged_tune_state_is_named_and_set_aside_on_resume(ray_head, experiment):
    """``resume`` goes through Tune's restore; a cut-short experiment state is named in one
    line and set aside (``_tune_state_set_aside/``, never deleted), with no traceback; the
    finished experiment is then answered from the store, nothing in the results changed.
    (An unfinished one resumes: tests/grid/scenarios/test_disk_full_scenario.py.)"""
    from grid.run.tune_state import SET_ASIDE_DIR

    (state,) = sorted(experiment.glob("experiment_state-*.json"))[-1:]
    state.write_text(state.read_text()[:200])
    before = {p: p.stat().st_mtime_ns for p in (experiment / "results").rglob("*") if p.is_file()}
    resumed = run_cli(ray_head, "resume", str(experiment))
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert "Traceback" not in resumed.stderr, resumed.stderr[-2000:]
    (note,) = resumed.stderr.strip().splitlines()
    assert note.startswith(f"er-grid: note: Ray Tune's {state} is damaged (cut short") and SET_ASIDE_DIR in note
    assert not state.exists() and len(list((experiment / SET_ASIDE_DIR).glob(f"*/{state.name}"))) == 1
    assert {p: p.stat().st_mtime_ns for p in (experiment / "results").rglob("*") if p.is_file()} == before

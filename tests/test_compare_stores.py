"""tools/compare_stores.py, the before/after check of a refactor, finds what it must find."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("compare_stores", REPO / "tools" / "compare_stores.py")
compare_stores = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compare_stores)


def _store(root: Path, accuracy: float = 0.9, seconds: float = 1.0, epoch_seconds: float = 0.5,
           nan_eps: bool = True) -> Path:
    folder = root / "results" / "trials" / "experiment=e"
    folder.mkdir(parents=True)
    losses = json.dumps([{"epoch": 1.0, "loss": 0.25, "seconds": epoch_seconds}])
    table = pa.table({"trial_id": ["t1"], "clean_accuracy": [accuracy], "wall_seconds": [seconds],
                      "eps": [float("nan") if nan_eps else 0.1], "losses_json": [losses]})
    pq.write_table(table, folder / "t1.parquet")
    return root


def test_same_results_with_other_times_compare_equal(tmp_path):
    before = _store(tmp_path / "a")
    after = _store(tmp_path / "b", seconds=7.0, epoch_seconds=3.0)  # only wall times differ
    assert compare_stores.compare(before, after) == []
    assert compare_stores.main([str(before), str(after)]) == 0


def test_a_changed_value_a_missing_file_and_a_changed_schema_are_reported(tmp_path):
    before = _store(tmp_path / "a")
    assert compare_stores.compare(before, _store(tmp_path / "b", accuracy=0.8)) == [
        "results/trials/experiment=e/t1.parquet: column clean_accuracy differs"]
    assert compare_stores.compare(before, _store(tmp_path / "c", nan_eps=False)) == [
        "results/trials/experiment=e/t1.parquet: column eps differs"]
    empty = tmp_path / "d" / "results"
    empty.mkdir(parents=True)
    assert compare_stores.compare(before, empty.parent) == [
        f"only in {before}: results/trials/experiment=e/t1.parquet"]
    retyped = _store(tmp_path / "e")
    path = retyped / "results" / "trials" / "experiment=e" / "t1.parquet"
    table = pq.read_table(path)
    index = table.schema.get_field_index("clean_accuracy")
    pq.write_table(table.set_column(index, "clean_accuracy", table["clean_accuracy"].cast(pa.float32())), path)
    assert compare_stores.compare(before, retyped) == ["results/trials/experiment=e/t1.parquet: schema differs"]
    assert compare_stores.main([str(before), str(tmp_path / "b")]) == 1
    assert compare_stores.main([str(before), str(tmp_path / "nowhere")]) == 2

"""The codes stage without Ray: its file counts as done only once committed and intact, so a
kill between the write and the commit (or later damage) has the stage redo it.

Runtime: ~1 s (PGD-2 on 20 digits examples, twice, on the shared conftest model).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from grid.spec import GridSpec
from grid.stages import TrialBundle
from grid.stages.codes import STAGE as CODES
from grid.store import ResultStore, load_codes
from grid.store.layout import codes_path
from grid.store.manifest import COMMITS_DIR

SPEC = {
    "experiment": "codes",
    "datasets": ["digits"],
    "methods": ["none"],
    "epochs": 1,
    "eval_plan": {"digits": [{"attack": "fgsm", "eps": [0.1]}]},
    "eval_n": 20,
    "eval_batch_size": 10,
    "codes": {"steps": 2},
}


def test_a_codes_file_without_its_commit_is_redone(digits, undefended_digits_model, tmp_path):
    trial = GridSpec.from_dict(SPEC).expand()[0]
    root = tmp_path / "results"
    store = ResultStore(str(root))
    bundle = TrialBundle(trial=trial, store=store, method=SimpleNamespace(model=undefended_digits_model),
                         data=digits, checkpoint_hash="abc", device="cpu", state=None)

    def done() -> bool:
        return store.is_committed_intact(codes_path(store, trial))

    assert CODES.wants(trial) and CODES.files(store, trial) == [codes_path(store, trial)]
    assert not done()
    assert CODES.run(bundle) == 1
    rows = len(load_codes(root))
    assert rows == 2 * SPEC["eval_n"]  # natural and adversarial code per example
    assert done()
    assert CODES.run(bundle) == 0  # committed and intact: skipped

    # The file stays, its commit is gone: what a kill between the two writes leaves behind.
    (root / COMMITS_DIR / f"{trial.trial_id}.json").unlink()
    assert any(Path(p).name.startswith(trial.trial_id) for p in map(str, root.rglob("*.parquet")))
    assert not done()
    assert CODES.run(bundle) == 1
    assert done() and len(load_codes(root)) == rows
    # The experiment folder (the results folder's parent) is read the same way.
    assert load_codes(tmp_path).equals(load_codes(root))

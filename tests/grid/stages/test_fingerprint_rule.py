"""The fingerprint rule of the trainable (``grid.stages.evaluation.check_fingerprints``), without Ray.

Within one trial_id, stored rows whose ``attack_config``, ``checkpoint_hash`` or ``eval_subset``
differ from the current ones stop the evaluation with FingerprintMismatch and nothing is
written; an (attack, ε) that is no longer in the plan is left alone; a spec that drops an
(attack, ε) gets new trial_ids, so its rows land beside the old ones.

Runtime: ~2 s (PGD-2 and FGSM on 10 digits examples, the session's undefended model).
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from grid.trial import checkpoints as C
from grid.stages import evaluation as E
from grid.spec import GridSpec
from grid.store import ResultStore, load

SPEC = {
    "experiment": "fingerprints",
    "datasets": ["digits"],
    "methods": ["none"],
    "epochs": 1,
    "eval_plan": {"digits": [{"attack": "pgd", "eps": [0.1], "options": {"steps": 2}},
                             {"attack": "fgsm", "eps": [0.1]}]},
    "eval_n": 10,
    "eval_batch_size": 5,
}


def quiet(done: int, total: int) -> None:
    assert 0 < done <= total


@pytest.fixture()
def evaluated(undefended_digits_model, digits, tmp_path):
    """A trial whose 4 evaluation batches (2 (attack, ε) pairs × 2) are in a fresh store."""
    trial = GridSpec.from_dict(SPEC).expand()[0]
    store = ResultStore(str(tmp_path / "results"))
    digest = C.weights_hash(undefended_digits_model)
    assert E.evaluate(undefended_digits_model, digits, trial, store, digest, quiet) == 4
    return trial, store, digest


def stamps(store: ResultStore) -> dict[str, int]:
    """mtime of each committed file still on disk (a deleted one is committed but missing)."""
    return {p: Path(p).stat().st_mtime_ns for p in store.files() if Path(p).exists()}


def expected_fingerprints(trial, digest: str) -> dict:
    return {(item.attack, float(item.eps)): E.eval_fingerprint(trial, item.attack, item.eps, item.options, digest)
            for item in trial.eval_plan}


def test_changed_attack_config_stops_the_trial(evaluated, undefended_digits_model, digits, monkeypatch):
    """A resume after a torch upgrade: every attack_config names the torch version, so the
    stored rows no longer match and nothing is added to them."""
    trial, store, digest = evaluated
    before = stamps(store)
    Path(next(p for p in before if "__pgd__" in p)).unlink()  # one batch left to redo
    before = stamps(store)
    monkeypatch.setattr(torch, "__version__", "99.0.0")
    with pytest.raises(E.FingerprintMismatch, match=r"attack_config stored .*99\.0\.0") as error:
        E.evaluate(undefended_digits_model, digits, trial, store, digest, quiet)
    assert "pgd eps=0.1" in str(error.value) and "fgsm eps=0.1" in str(error.value)
    assert stamps(store) == before  # the lost batch was not redone under the new config
    assert set(load(store, damaged="skip")["attack_config"].str.contains("99.0.0")) == {False}


def test_changed_eval_subset_stops_the_trial(evaluated, undefended_digits_model, digits):
    """Stored rows of the fgsm pair that carry another evaluation subset (rows written when the
    subset was drawn differently): the trial stops, naming that pair and column only."""
    trial, store, digest = evaluated
    commit = next(c for c in store.commits("examples") if c.key["attack"] == "fgsm")
    path = f"{store.base}/{commit.path}"
    table = pq.read_table(path)
    column = table.schema.get_field_index("eval_subset")
    # Committed through the store (an edit behind its back would be damage, not a clash).
    store.commit_table("examples", table.set_column(column, "eval_subset", pa.array(["n=999,seed=0"] * len(table))),
                       path, commit.key, range_columns=tuple(commit.ranges))
    before = stamps(store)
    with pytest.raises(E.FingerprintMismatch, match=r"fgsm eps=0\.1: eval_subset stored 'n=999,seed=0', now 'n=10,seed=0'") as error:
        E.evaluate(undefended_digits_model, digits, trial, store, digest, quiet)
    assert "pgd" not in str(error.value).split("setting:")[1]
    assert stamps(store) == before


def test_a_dropped_attack_eps_is_left_alone(evaluated, undefended_digits_model, digits):
    trial, store, digest = evaluated
    before = stamps(store)
    pgd_only = {k: v for k, v in expected_fingerprints(trial, digest).items() if k[0] == "pgd"}
    E.check_fingerprints(store, trial, pgd_only)  # fgsm's rows are not in the plan: no clash
    # A clash on a pair still in the plan is reported for that pair only.
    retrained = {k: {**v, "checkpoint_hash": "f" * 16} for k, v in pgd_only.items()}
    with pytest.raises(E.FingerprintMismatch) as error:
        E.check_fingerprints(store, trial, retrained)
    clashes = str(error.value).split("setting:")[1]
    assert "pgd eps=0.1: checkpoint_hash" in clashes and "fgsm" not in clashes

    # The spec without fgsm is another grid: new trial_id, its rows beside the old ones.
    reduced = GridSpec.from_dict({**SPEC, "eval_plan": {"digits": SPEC["eval_plan"]["digits"][:1]}}).expand()[0]
    assert reduced.trial_id != trial.trial_id
    assert E.evaluate(undefended_digits_model, digits, reduced, store, digest, quiet) == 2
    rows = load(store)
    assert set(rows.loc[rows["trial_id"] == reduced.trial_id, "attack"]) == {"pgd"}
    assert len(rows[rows["trial_id"] == trial.trial_id]) == 2 * 10
    assert {p: s for p, s in stamps(store).items() if p in before} == before

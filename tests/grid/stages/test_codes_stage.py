"""The codes stage without Ray: its file counts as done only once committed and intact, so a
kill between the write and the commit (or later damage) has the stage redo it; its PGD ε is
the swept ε nearest 50% PGD robust accuracy in the trial's stored rows (hand-written here), the
dataset's training ε without a sweep, or the spec's number, and its rows record which.

Runtime: ~3 s (PGD-2 on 20 digits examples, six times, on the shared conftest model).
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from grid.spec import GridSpec
from grid.spec.codes_plan import GIVEN, HALF, TRAIN_EPS, nearest_half
from grid.stages import TrialBundle
from grid.stages.codes import EPS_RULE_KEY, STAGE as CODES, codes_attack
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


# ------------------------------------------------------------------ the ε of the codes attack

# A trial that sweeps PGD: its codes plan is the "half" rule (codes_plan.AUTO with ≥ 2 nonzero ε).
SWEEP = dict(SPEC, eval_plan={"digits": [{"attack": "pgd", "eps": [0.0, 0.05, 0.1, 0.2], "options": {"steps": 2}}]})
# Per ε: (correct_clean, correct_adv) of the 20 examples. Robust = correct both ways:
# ε 0.05: 11/20 = 55%, nearest 50%; ε 0.1: 10 survive the attack but 2 of them were wrong
# clean, so 8/20 = 40% (50% if clean verdicts were ignored); ε 0.2: 2/20; ε 0: exactly 50%,
# but an ε that changes nothing is never chosen.
OUTCOMES = {
    0.0: [(i < 10, i < 10) for i in range(20)],
    0.05: [(True, i < 11) for i in range(20)],
    0.1: [(i >= 2, i < 10) for i in range(20)],
    0.2: [(True, i < 2) for i in range(20)],
}


def pgd_row(sample_idx: int, correct_clean: bool, correct_adv: bool) -> dict:
    return {
        "train_eps": None, "lam": None, "seed": 0, "epochs": 1, "norm": "Linf", "sample_idx": sample_idx,
        "label": 1, "pred_clean": 1 if correct_clean else 2, "pred_adv": 1 if correct_adv else 3,
        "correct_clean": correct_clean, "correct_adv": correct_adv, "l2": 0.1, "l2_rms": 0.01, "linf": 0.1,
        "queries": -1, "seconds": 0.01, "attack_config": '{"attack":"pgd"}', "checkpoint_hash": "abc",
        "eval_subset": "n=20,seed=0", "library_versions": "{}", "gradient_failed": False, "randomized": False,
    }


def store_pgd_rows(store: ResultStore, trial, outcomes: dict) -> None:
    """The trial's PGD rows as the evaluation stage commits them: one file per (ε, batch)."""
    from er_core.eval_subset import eval_batches

    batches = eval_batches(trial.dataset, trial.eval_n, trial.eval_seed, trial.eval_batch_size)
    for eps, verdicts in outcomes.items():
        start = 0
        for b, idx in enumerate(batches):
            rows = [pgd_row(int(i), *verdicts[start + k]) for k, i in enumerate(idx.tolist())]
            start += len(rows)
            store.write_batch(rows, experiment=trial.experiment, dataset=trial.dataset, method=trial.method,
                              trial_id=trial.trial_id, attack="pgd", eps=eps, batch=b)


def bundle_of(trial, store, model, data) -> TrialBundle:
    return TrialBundle(trial=trial, store=store, method=SimpleNamespace(model=model), data=data,
                       checkpoint_hash="abc", device="cpu", state=None)


def stored_configs(root) -> list[dict]:
    return [json.loads(c) for c in load_codes(root)["attack_config"].unique()]


def test_nearest_half_prefers_the_smaller_eps_on_a_tie_and_never_eps_zero():
    assert nearest_half({0.1: (6, 10), 0.2: (4, 10)}) == 0.1  # 60% and 40%: a tie, however floats round
    assert nearest_half({0.2: (4, 10), 0.1: (6, 10)}) == 0.1  # whatever the order given
    assert nearest_half({0.0: (5, 10), 0.3: (1, 10), 0.4: (0, 10)}) == 0.3
    assert nearest_half({0.1: (9, 10), 0.2: (6, 10), 0.3: (3, 10)}) == 0.2
    with pytest.raises(ValueError, match="no PGD rows at a nonzero ε"):
        nearest_half({0.0: (10, 10)})


def test_the_rule_picks_the_swept_eps_nearest_half_from_the_stored_rows(tmp_path):
    (trial,) = GridSpec.from_dict(SWEEP).expand()
    assert trial.codes.rule == HALF and trial.codes.eps is None
    store = ResultStore(str(tmp_path / "results"))
    store_pgd_rows(store, trial, OUTCOMES)
    spec, choice = codes_attack(store, trial)
    assert (spec.attack, spec.eps, spec.options) == ("pgd", 0.05, {"steps": SPEC["codes"]["steps"]})
    assert choice == {"rule": HALF, "pgd_accuracy": 11 / 20, "n": 20}
    # ε 0.1 at 9 robust of 20 (45%) ties with ε 0.05's 55%: the smaller ε stays; at 10 of 20, 0.1.
    store_pgd_rows(store, trial, {0.1: [(True, i < 9) for i in range(20)]})
    assert codes_attack(store, trial)[0].eps == 0.05
    store_pgd_rows(store, trial, {0.1: [(True, i < 10) for i in range(20)]})
    assert codes_attack(store, trial) == (trial.codes.attack(0.1), {"rule": HALF, "pgd_accuracy": 0.5, "n": 20})


def test_the_stage_rows_carry_the_chosen_eps_and_how_it_was_chosen(digits, undefended_digits_model, tmp_path):
    (trial,) = GridSpec.from_dict(SWEEP).expand()
    root = tmp_path / "results"
    store = ResultStore(str(root))
    store_pgd_rows(store, trial, OUTCOMES)
    assert CODES.run(bundle_of(trial, store, undefended_digits_model, digits)) == 1
    (config,) = stored_configs(root)
    assert config["attack"] == "pgd" and config["eps"] == 0.05 and config["steps"] == SPEC["codes"]["steps"]
    assert config[EPS_RULE_KEY] == {"rule": HALF, "pgd_accuracy": 0.55, "n": 20}


def test_half_without_the_committed_sweep_is_one_clear_error(digits, undefended_digits_model, tmp_path):
    (trial,) = GridSpec.from_dict(SWEEP).expand()
    store = ResultStore(str(tmp_path / "results"))
    store_pgd_rows(store, trial, {eps: v for eps, v in OUTCOMES.items() if eps != 0.1})
    with pytest.raises(RuntimeError, match=r"pgd rows at ε 0.1 hold 0 of 20 examples"):
        CODES.run(bundle_of(trial, store, undefended_digits_model, digits))
    assert not store.is_committed_intact(codes_path(store, trial))


def test_a_trial_without_a_pgd_sweep_falls_back_to_the_training_eps(digits, undefended_digits_model, tmp_path):
    from er_core.dataset_info import info

    one_eps = dict(SPEC, eval_plan={"digits": [{"attack": "pgd", "eps": [0.0, 0.05], "options": {"steps": 2}},
                                               {"attack": "fgsm", "eps": [0.1, 0.2]}]})
    for spec in (SPEC, one_eps):  # no PGD; PGD at one nonzero ε only
        (trial,) = GridSpec.from_dict(spec).expand()
        assert (trial.codes.rule, trial.codes.eps) == (TRAIN_EPS, info("digits").train_eps)
    root = tmp_path / "results"
    store = ResultStore(str(root))  # no PGD rows are read: nothing of the evaluation stored
    assert CODES.run(bundle_of(trial, store, undefended_digits_model, digits)) == 1
    (config,) = stored_configs(root)
    assert config["eps"] == info("digits").train_eps and config[EPS_RULE_KEY] == {"rule": TRAIN_EPS}


def test_an_eps_given_in_the_spec_is_used_as_given(digits, undefended_digits_model, tmp_path):
    given = dict(SWEEP, codes={"steps": 2, "eps": {"digits": 0.07}})
    (trial,) = GridSpec.from_dict(given).expand()
    root = tmp_path / "results"
    store = ResultStore(str(root))
    store_pgd_rows(store, trial, OUTCOMES)  # a sweep is there, but the spec's ε wins
    assert CODES.run(bundle_of(trial, store, undefended_digits_model, digits)) == 1
    (config,) = stored_configs(root)
    assert config["eps"] == 0.07 and config[EPS_RULE_KEY] == {"rule": GIVEN}

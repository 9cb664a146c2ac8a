"""``er-grid status``'s time left, from each trial's measured pace: the rules on hand-made
records (no Ray, ~2 s). Checked against a real run in ``test_watching_a_grid.py``."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

from grid.experiment.status import TrialStatus
from grid.run.estimate import format_duration, remaining_seconds, start_gap, trial_pace
from grid.spec import GridSpec

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "jobs"))
from full_grid import SMOKE  # noqa: E402

NOW = 1_000_000.0
SPEC = dict(SMOKE, methods=["madry"], seeds=[0, 1, 2, 3], epochs=4, eval_n=40, eval_batch_size=20,
            eval_plan={"digits": [{"attack": "pgd", "eps": [0.1], "options": {"steps": 5}},
                                  {"attack": "fgsm", "eps": [0.1]}]})
TRIALS = GridSpec.from_dict(SPEC).expand()  # 4 seeds × (pgd, fgsm) × 2 batches


def record(trial, state="PENDING", epochs_done=0, train_s=0.0, epoch_at=None, batch_at=(), finished_at=None):
    return TrialStatus(name=trial.name, trial_id=trial.trial_id, state=state, epochs_done=epochs_done,
                       epochs=trial.epochs, batches_done=len(batch_at), batches_total=len(trial.eval_batches()),
                       elapsed_s=train_s, config=trial, epoch_at=epoch_at, batch_at=tuple(batch_at),
                       finished_at=finished_at)


def batches(trial, start: float, every: float, count: int) -> list:
    """The first ``count`` batches of ``trial`` committed ``every`` seconds after ``start``."""
    return [(key, start + every * (i + 1)) for i, key in enumerate(trial.eval_batches()[:count])]


def test_nothing_measured_is_unknown_and_everything_done_is_zero():
    assert remaining_seconds([record(t) for t in TRIALS]) is None
    assert format_duration(None).startswith("unknown")
    done = [record(t, "DONE", 4, 8.0, NOW - 50, batches(t, NOW - 50, 1.0, 4), NOW - 45) for t in TRIALS]
    assert remaining_seconds(done, NOW) == 0.0


def test_a_trial_runs_at_its_own_pace_less_what_its_current_epoch_has_done():
    # 2 of 4 epochs in 20 s, the last checkpoint 4 s ago: 2 × 10 s left less the 4 s spent on epoch 3.
    trial = TRIALS[0]
    pace = trial_pace(record(trial, "TRAINING", 2, 20.0, NOW - 4))
    assert pace.epoch_s == 10.0 and pace.epochs_left == 2 and pace.started_at == NOW - 24
    alone = remaining_seconds([record(trial, "TRAINING", 2, 20.0, NOW - 4)], NOW)
    later = remaining_seconds([record(trial, "TRAINING", 2, 20.0, NOW - 9)], NOW)
    assert later == pytest.approx(alone - 5.0)
    # With two checkpoints kept the rate is the one between them: a slow first epoch (15 s of a
    # warming-up process) drops out, 5 s an epoch is what is left to expect.
    warm = record(trial, "TRAINING", 2, 20.0, NOW - 4)
    warm = dataclasses.replace(warm, epoch_seconds=((1, 15.0), (2, 20.0)))
    assert trial_pace(warm).epoch_s == 5.0
    assert remaining_seconds([warm], NOW) == pytest.approx(alone - 10.0, rel=0.05)
    # Evaluation has no rate of its own yet: the cost model, scaled as training is (10 s per
    # modelled epoch), so the evaluation is a small share next to 16 s of training.
    assert 16.0 < alone < 16.0 + 0.5 * 20.0


def test_measured_batches_and_the_seed_peers_set_the_rates_of_the_others():
    pgd_only = dict(SPEC, eval_plan={"digits": [{"attack": "pgd", "eps": [0.1], "options": {"steps": 5}}]})
    t0, t1, t2, t3 = GridSpec.from_dict(pgd_only).expand()  # 2 batches each
    # Seed 0: 4 epochs in 20 s, then its first batch in 3 s; seed 1: its first epoch in 5 s.
    first = record(t0, "EVALUATING", 4, 20.0, NOW - 3, batches(t0, NOW - 3, 3.0, 1))
    second = record(t1, "TRAINING", 1, 5.0, NOW)
    assert trial_pace(first).batch_s == {("pgd", 0.1): 3.0}
    left = remaining_seconds([first, second, record(t2), record(t3)], NOW)
    # Seed 1 and the waiting seeds take seed 0's rates (5 s an epoch, 3 s a batch): seed 0 has 3 s
    # left, seed 1 3 × 5 + 2 × 3 = 21 s, a waiting seed 4 × 5 + 2 × 3 = 26 s. Two slots: seed 2
    # follows seed 0 (ends at 29 s), seed 3 follows seed 1 (ends at 47 s); plus the few tenths of
    # a second the cost model gives the trial row's clean accuracy after each evaluation.
    assert left == pytest.approx(47.0, rel=0.05)


def test_pending_trials_wait_for_a_slot():
    t0, t1, t2, t3 = TRIALS
    running = [record(t, "TRAINING", 2, 20.0, NOW) for t in (t0, t1)]
    just_running = remaining_seconds(running, NOW)
    # A waiting trial runs 2 epochs of 10 s more than a running one; two of them take two slots.
    assert remaining_seconds(running + [record(t2)], NOW) == pytest.approx(2 * just_running + 20.0)
    assert remaining_seconds(running + [record(t2), record(t3)], NOW) == pytest.approx(2 * just_running + 20.0)
    # A grid whose records show three trials at once (seed 3 trained beside seeds 0 and 1) has a
    # third slot: the waiting trial starts at once.
    beside = record(t3, "DONE", 4, 40.0, NOW - 1)
    assert remaining_seconds(running + [record(t2), beside], NOW) == pytest.approx(just_running + 20.0)


def test_a_waiting_trial_starts_after_the_pause_measured_between_trials():
    t0, t1, t2, t3 = TRIALS
    # Seed 0 finished at NOW − 30; seed 1 began training 3 s later on its slot (1 epoch of 10 s done).
    finished = record(t0, "DONE", 4, 40.0, NOW - 32, finished_at=NOW - 30)
    following = record(t1, "TRAINING", 1, 10.0, NOW - 17)
    assert start_gap([trial_pace(finished), trial_pace(following)]) == pytest.approx(3.0)
    alone = remaining_seconds([finished, following], NOW)
    # One slot: seed 2 waits for seed 1 (2 epochs and its evaluation left, the third epoch
    # counted as done since it has run 10 s), then 3 s, then its own 4 epochs and evaluation.
    assert remaining_seconds([finished, following, record(t2)], NOW) == pytest.approx(2 * alone + 3.0 + 20.0)


def test_a_plugin_method_that_does_not_import_here_leaves_the_estimate_unavailable():
    """``status`` never needs a plugin importable: where a running grid's trials use one that is
    not, the cost model cannot price them, and the estimate says so instead of failing."""
    from grid.cli.main import _remaining

    gone = [dataclasses.replace(t, method="not_installed_anywhere.defense:Gone") for t in TRIALS]
    running = [record(t, "TRAINING", 1, 2.0, NOW - 10) for t in gone]
    with pytest.raises(ImportError):
        remaining_seconds(running, NOW)
    assert _remaining(running).startswith("unavailable here (a plugin method is not importable")
    # Every trial finished: nothing to price, so no method is loaded and the answer is 0.
    done = [record(t, "DONE", 4, 8.0, NOW - 50, batches(t, NOW - 50, 1.0, 4), NOW - 45) for t in gone]
    assert remaining_seconds(done, NOW) == 0.0

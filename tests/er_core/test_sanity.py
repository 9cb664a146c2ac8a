"""Sanity rules on real attack records: a gradient-masked model is flagged, a normally trained
one is not, a diverged training run is ``collapsed``; the critic, AutoAttack-gap and no-decay
rules on hand-made series at their thresholds.

Runtime: ~6 s (PGD-10 and a 300-query RayS on 40 digits examples, twice; one 2-epoch training).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from er_core import sanity
from er_core.data import eval_indices
from er_core.evaluate import attack_batch
from er_core.methods import make
from er_core.torch_utils import predict
from er_core.train import fit

EPS = 0.3
N = 40


class Quantised(nn.Module):
    """``model`` on its input rounded to 1/16 steps: digits' own grey levels pass unchanged, so
    clean accuracy is the model's, but the rounding makes every input gradient exactly 0."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(torch.round(x * 16) / 16)


def records(model, digits, attacks: dict) -> list[dict]:
    idx = eval_indices("digits", N, 0)
    x, y = digits.x_test[idx], digits.y_test[idx]
    out = []
    for attack, options in attacks.items():
        torch.manual_seed(0)
        rows = attack_batch(model, attack, x, y, EPS, sample_idx=idx.tolist(), **options)
        out += [{**r, "attack": attack, "eps": EPS, "norm": "Linf"} for r in rows]
    return out


PLAN = {"pgd": {"steps": 10}, "rays": {"max_queries": 300}}


def flags_of(model, digits, plan=PLAN, losses=None) -> dict[str, sanity.Flag]:
    rows = records(model, digits, plan)
    clean = sum(r["correct_clean"] for r in rows if r["attack"] == "pgd") / N
    trial = {"trial_id": "t", "train_eps": None, "clean_accuracy": clean, "losses": losses or []}
    return {f.flag: f for f in sanity.trial_flags(trial, sanity.outcomes_from_records(rows), 10)}


def test_masked_gradients_are_flagged_and_rays_beats_pgd(digits, undefended_digits_model):
    # Measured over three trained models (seeds 0–2): 88–90% of examples with a zero gradient
    # under PGD, and RayS 85–88 points below PGD; the bounds below leave wide room.
    flags = flags_of(Quantised(undefended_digits_model).eval(), digits)
    # PGD sees a zero gradient on every example its random start did not already fool.
    assert flags["zero_gradients"].attack == "pgd" and flags["zero_gradients"].value > 0.5
    # The label-only attack is unaffected by the rounding and breaks what PGD could not.
    assert flags["black_box_stronger"].value > 0.5, flags["black_box_stronger"].evidence
    # Without RayS in the plan there is nothing to compare against.
    assert "black_box_stronger" not in flags_of(Quantised(undefended_digits_model).eval(), digits,
                                                plan={"pgd": {"steps": 10}})


def test_normally_trained_model_gets_no_flag(digits, undefended_digits_model):
    # Seeds 0–2 of the same training: no flag on any (PGD and RayS both break it at ε 0.3).
    # A training curve that fell well below ln 10 (the fixture's 3-epoch model ends near 0.2).
    flags = flags_of(undefended_digits_model, digits, losses=[{"ce": 1.2}, {"ce": 0.4}, {"ce": 0.2}])
    assert flags == {}, {k: f.evidence for k, f in flags.items()}


def test_diverged_training_is_collapsed(digits):
    # lr 10 makes Adam blow up: measured clean test accuracy 0.078–0.114 over seeds 0–2 for
    # none and madry (a constant prediction; each digits class is ~10% of the test set), while
    # the bound is 1/C + 0.05 = 0.15. The whole 360-example test set keeps any constant
    # predictor under it (no class reaches 12%).
    method = make("none", "digits", lr=10.0, init_seed=1)
    history = fit(method, digits, epochs=2, batch_size=32, seed=1)
    clean = float((predict(method.model, digits.x_test) == digits.y_test).float().mean())
    trial = {"trial_id": "t", "train_eps": None, "clean_accuracy": clean,
             "losses": [{"ce": h["ce"]} for h in history]}
    flags = sanity.trial_flags(trial, [], 10)
    assert [f.flag for f in flags] == ["collapsed"] and "clean accuracy" in flags[0].evidence


def test_collapse_by_loss_within_two_percent_of_ln_c():
    ln10 = math.log(10)
    flagged = sanity.trial_flags({"trial_id": "t", "clean_accuracy": 0.9, "losses": [{"ce_adv": ln10 * 1.019}]}, [], 10)
    assert [f.flag for f in flagged] == ["collapsed"] and "ce_adv" in flagged[0].evidence
    assert sanity.trial_flags({"trial_id": "t", "clean_accuracy": 0.9, "losses": [{"ce": ln10 * 0.97}]}, [], 10) == []


def test_critic_dead_reads_the_last_quarter_of_the_critic_w_series():
    # The shape measured on MNIST er_minus over 30 epochs: 0.018 at epoch 1, |W| < 3e-4 from
    # epoch 16, 0.0000 from epoch 19.
    series = [0.018 * (0.7 ** e) for e in range(15)] + [2.5e-4, 2e-4, 1.5e-4] + [0.0] * 12
    losses = [{"loss": 0.1, sanity.CRITIC_W_METRIC: w} for w in series]
    (flag,) = sanity.critic_dead("t", losses)
    assert flag.flag == "critic_dead" and "last 8 of 30" in flag.evidence
    # One live epoch inside the last quarter (epochs 23–30) keeps the critic alive.
    alive = [dict(e) for e in losses]
    alive[-3][sanity.CRITIC_W_METRIC] = -2e-4
    assert sanity.critic_dead("t", alive) == []
    # A dead stretch before the last quarter only does not count either.
    recovered = [dict(e) for e in losses]
    for e in recovered[-7:]:
        e[sanity.CRITIC_W_METRIC] = 0.01
    assert sanity.critic_dead("t", recovered) == []
    # Methods without a critic log no estimate: nothing to judge.
    assert sanity.critic_dead("t", [{"ce": 0.1}] * 8) == []


def rows(attack: str, eps: float, robust: list[int], norm: str = "Linf") -> list[dict]:
    return [{"attack": attack, "eps": eps, "norm": norm, "sample_idx": i, "correct_clean": True,
             "correct_adv": bool(r), "gradient_failed": False} for i, r in enumerate(robust)]


def test_autoattack_gap_and_black_box_margin_at_their_thresholds():
    pgd = rows("pgd", 0.3, [1] * 80 + [0] * 20)                   # 0.80
    aa_far = rows("autoattack", 0.3, [1] * 69 + [0] * 31)          # 0.69: 11 points below
    aa_near = rows("autoattack", 0.3, [1] * 71 + [0] * 29)         # 0.71: 9 points below
    gaps = sanity.pgd_overestimates("t", sanity.outcomes_from_records(pgd + aa_far))
    assert len(gaps) == 1 and gaps[0].value == pytest.approx(0.11)
    assert sanity.pgd_overestimates("t", sanity.outcomes_from_records(pgd + aa_near)) == []
    # RayS compared with the best gradient attack at the same ε and norm, on shared examples.
    rays_low = rows("rays", 0.3, [1] * 66 + [0] * 34)              # 3 points under AutoAttack's 0.69
    rays_ok = rows("rays", 0.3, [1] * 68 + [0] * 32)               # 1 point under
    assert [f.flag for f in sanity.black_box_stronger("t", sanity.outcomes_from_records(pgd + aa_far + rays_low))] \
        == ["black_box_stronger"]
    assert sanity.black_box_stronger("t", sanity.outcomes_from_records(pgd + aa_far + rays_ok)) == []
    l2_only = rows("cw_l2", 0.3, [1] * 100, norm="L2")             # another threat model: not a rival
    assert sanity.black_box_stronger("t", sanity.outcomes_from_records(l2_only + rays_low)) == []


def test_no_decay_needs_twice_the_training_eps_and_a_third_of_the_range():
    sweep = rows("pgd", 0.3, [1] * 30 + [0] * 70) + rows("pgd", 0.4, [1] * 20 + [0] * 80)
    outcomes = sanity.outcomes_from_records(sweep)
    flag, = sanity.no_decay("t", outcomes, train_eps=0.1, num_classes=10)
    assert flag.eps == 0.4 and flag.value == pytest.approx(0.2)
    # Trained at 0.3 (MNIST), ε must reach 0.6 before accuracy has to fall: no judgement here.
    assert sanity.no_decay("t", outcomes, train_eps=0.3, num_classes=10) == []

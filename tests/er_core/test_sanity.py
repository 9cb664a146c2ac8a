"""Sanity rules on real attack records: a gradient-masked model is flagged (and stays accurate
at ε 0.5: ``no_decay``), a deliberately weak PGD is caught by the convergence probe and by FGSM,
a normally trained model gets no flag under a plan that runs every check, a diverged training
run is ``collapsed``; the critic, paired-gap, sweep and bounds rules on hand-made records at
their thresholds, and a rule the plan cannot feed says so instead of staying silent.

Runtime: ~15 s (PGD, the 100 × 5 probe and a 300-query RayS on 40 digits examples; one 2-epoch
training).
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


def records(model, digits, attacks: dict, eps: float = EPS, notes: list = None) -> list[dict]:
    """Rows of ``attacks`` (name → options; a name may carry ``@ε`` to run at another ε). ``notes``:
    filled with (attack, ε, batch 0, kind, message) as the grid keeps them, where given."""
    idx = eval_indices("digits", N, 0)
    x, y = digits.x_test[idx], digits.y_test[idx]
    out = []
    for key, options in attacks.items():
        attack, _, at = key.partition("@")
        at_eps = float(at) if at else eps
        torch.manual_seed(0)
        said: list = []
        rows = attack_batch(model, attack, x, y, at_eps, sample_idx=idx.tolist(), notes=said, **options)
        out += [{**r, "attack": attack, "eps": at_eps, "norm": "Linf"} for r in rows]
        if notes is not None and attack == "autoattack":
            notes += sanity.batch_notes(attack, at_eps, 0, said)
    return out


PLAN = {"pgd": {"steps": 10}, "rays": {"max_queries": 300}}


def flags_of(model, digits, plan=PLAN, losses=None) -> dict[str, sanity.Flag]:
    rows = records(model, digits, plan)
    clean = sum(r["correct_clean"] for r in rows if r["attack"] == rows[0]["attack"] and r["eps"] == rows[0]["eps"]) / N
    trial = {"trial_id": "t", "train_eps": None, "clean_accuracy": clean, "losses": losses or []}
    return {f.flag: f for f in sanity.trial_flags(trial, sanity.outcomes_from_records(rows), 10)}


# Every record-based check has what it needs: ε 0 and 0.5, FGSM, the probe and AutoAttack beside
# PGD, RayS (AutoAttack breaks this model at ε 0.3 within seconds).
FULL_PLAN = {"pgd@0.0": {"steps": 10}, "pgd@0.1": {"steps": 10}, "pgd": {"steps": 10}, "pgd@0.5": {"steps": 10},
             "fgsm": {}, "pgd_probe": {}, "autoattack": {}, "rays": {"max_queries": 300}}


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
    # The plan runs every record-based check, so silence here means each looked and passed.
    notes: list = []
    rows = records(undefended_digits_model, digits, FULL_PLAN, notes=notes)
    trial = {"trial_id": "t", "train_eps": None, "clean_accuracy": None,
             "losses": [{"ce": 1.2}, {"ce": 0.4}, {"ce": 0.2}]}
    flags, unchecked = sanity.check(trial, sanity.outcomes_from_records(rows), 10, notes)
    assert flags == [], [f.evidence for f in flags]
    assert set(unchecked) == {"critic_dead", "eot_insufficient"}, unchecked


class Noisy(nn.Module):
    """``model`` with noise added to its logits at every call, while it says it is deterministic:
    what pyautoattack's ``check_randomized`` exists to catch."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x) + 0.5 * torch.randn(len(x), 10, device=x.device)


def test_autoattack_warnings_reach_the_flag(digits, undefended_digits_model):
    notes: list = []
    rows = records(Noisy(undefended_digits_model).eval(), digits, {"autoattack": {}}, notes=notes)
    (flag,) = [f for f in sanity.trial_flags({"trial_id": "t"}, sanity.outcomes_from_records(rows), 10, notes)
               if f.flag == "autoattack_warning"]
    assert "randomized defense" in flag.evidence and flag.eps == EPS and flag.value == 1.0
    # Rows without notes (kept before er-grid recorded them), or with none read: not checked.
    outcomes = sanity.outcomes_from_records(rows)
    assert isinstance(sanity.autoattack_warning(sanity.evidence({"trial_id": "t"}, outcomes, 10)), sanity.NotChecked)
    unrecorded = sanity.evidence({"trial_id": "t"}, outcomes, 10, [])
    assert "kept its notes" in sanity.autoattack_warning(unrecorded).reason


def test_a_plan_without_what_a_check_needs_says_not_checked(digits, undefended_digits_model):
    rows = records(undefended_digits_model, digits, {"pgd": {"steps": 10}})
    _flags, unchecked = sanity.check({"trial_id": "t"}, sanity.outcomes_from_records(rows), 10)
    assert "ε ≥ 0.5" in unchecked["no_decay"] and "pgd_probe" in unchecked["pgd_unconverged"]
    assert "ε = 0" in unchecked["eps0_mismatch"] and "fgsm" in unchecked["fgsm_stronger"]
    assert "two or more ε" in unchecked["non_monotonic"]


def test_a_masked_model_stays_accurate_at_half_the_range(digits, undefended_digits_model):
    """``no_decay``: PGD with zero gradients leaves the rounded model accurate at ε 0.5, where
    the grey image is within reach of every input; the normal model falls to chance there."""
    masked = flags_of(Quantised(undefended_digits_model).eval(), digits, plan={"pgd@0.5": {"steps": 10}})
    assert masked["no_decay"].eps == 0.5 and masked["no_decay"].value > 0.5, masked["no_decay"].evidence
    assert "no_decay" not in flags_of(undefended_digits_model, digits, plan={"pgd@0.5": {"steps": 10}})


def test_a_weak_pgd_is_caught_by_the_probe_and_by_fgsm(digits, undefended_digits_model):
    """One PGD step of 1e-4 without a random start barely moves the input: the 100 × 5 probe
    and a single FGSM step at the same ε break what it left standing."""
    weak = {"pgd@0.1": {"steps": 1, "step_size": 1e-4, "random_start": False}, "pgd_probe@0.1": {}, "fgsm@0.1": {}}
    flags = flags_of(undefended_digits_model, digits, plan=weak)
    assert flags["pgd_unconverged"].value > 0.2 and flags["pgd_unconverged"].attack == "pgd_probe"
    assert flags["fgsm_stronger"].value > 0.2
    sound = {"pgd@0.1": {"steps": 20}, "pgd_probe@0.1": {}, "fgsm@0.1": {}}
    healthy = flags_of(undefended_digits_model, digits, plan=sound)
    assert "pgd_unconverged" not in healthy and "fgsm_stronger" not in healthy


def test_a_perturbation_outside_the_ball_is_flagged(digits, undefended_digits_model):
    """PGD run at ε 0.3 but stored as ε 0.1 (a plan/attack mismatch): its ‖δ‖∞ leaves the ball."""
    rows = [dict(r, eps=0.1) for r in records(undefended_digits_model, digits, {"pgd": {"steps": 10}})]
    (flag,) = [f for f in sanity.trial_flags({"trial_id": "t"}, sanity.outcomes_from_records(rows), 10)
               if f.flag == "perturbation_out_of_bounds"]
    assert flag.value > 0.5 and "‖δ‖∞ > ε" in flag.evidence
    honest = records(undefended_digits_model, digits, {"pgd": {"steps": 10}})
    assert not [f for f in sanity.trial_flags({"trial_id": "t"}, sanity.outcomes_from_records(honest), 10)
                if f.flag == "perturbation_out_of_bounds"]


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


def ev(outcome_rows=(), losses=(), **kw) -> sanity.TrialEvidence:
    return sanity.evidence({"trial_id": "t", "losses": list(losses), **kw},
                           sanity.outcomes_from_records(list(outcome_rows)), kw.pop("num_classes", 10))


def test_critic_dead_by_its_estimate_relative_to_its_peak():
    # The shape measured on MNIST er_minus over 30 epochs: 0.018 at epoch 1, |W| < 3e-4 from
    # epoch 16, 0.0000 from epoch 19 (an absolute 1e-4 bound missed the 2–3e-4 epochs).
    series = [0.018 * (0.7 ** e) for e in range(15)] + [2.5e-4, 2e-4, 1.5e-4] + [2.8e-4] * 12
    losses = [{"loss": 0.1, sanity.CRITIC_W_METRIC: w} for w in series]
    (flag,) = sanity.critic_dead(ev(losses=losses))
    assert flag.flag == "critic_dead" and "last 8 of 30" in flag.evidence
    # One epoch inside the last quarter (epochs 23–30) above 5% of the peak keeps it alive.
    alive = [dict(e) for e in losses]
    alive[-3][sanity.CRITIC_W_METRIC] = -0.002
    assert sanity.critic_dead(ev(losses=alive)) == []
    # A dead stretch before the last quarter only does not count either.
    recovered = [dict(e) for e in losses]
    for e in recovered[-7:]:
        e[sanity.CRITIC_W_METRIC] = 0.01
    assert sanity.critic_dead(ev(losses=recovered)) == []
    # Methods without a critic log no estimate: not checked, and saying why.
    assert isinstance(sanity.critic_dead(ev(losses=[{"ce": 0.1}] * 8)), sanity.NotChecked)


def test_critic_dead_by_its_live_units():
    # The Adam critic's measured death (er_core/methods/critic.py): live 0.72 → 0.23–0.24 from
    # epoch 10 on while its estimate still moved; the RMSProp critic held 0.79–0.90.
    dying = [{"critic_w": 0.05, sanity.CRITIC_LIVE_METRIC: v} for v in [0.72, 0.5, 0.3] + [0.24, 0.23] * 6]
    (flag,) = sanity.critic_dead(ev(losses=dying))
    assert flag.value == pytest.approx(0.24) and "critic_live" in flag.evidence
    live = [{"critic_w": 0.05, sanity.CRITIC_LIVE_METRIC: v} for v in [0.79, 0.84, 0.80, 0.90] * 4]
    assert sanity.critic_dead(ev(losses=live)) == []


def rows(attack: str, eps: float, robust: list[int], norm: str = "Linf", clean=None, linf=None) -> list[dict]:
    return [{"attack": attack, "eps": eps, "norm": norm, "sample_idx": i,
             "correct_clean": True if clean is None else bool(clean[i]), "correct_adv": bool(r),
             "gradient_failed": False, "linf": eps if linf is None else linf} for i, r in enumerate(robust)]


def test_autoattack_gap_paired_and_beyond_a_sound_models_range():
    n = 1000
    pgd = rows("pgd", 0.3, [1] * 800 + [0] * 200)                   # 0.80
    aa_far = rows("autoattack", 0.3, [1] * 740 + [0] * 260)         # 0.74: 6 points below
    aa_sound = rows("autoattack", 0.3, [1] * 770 + [0] * 230)       # 0.77: 3 points, a sound model's gap
    (gap,) = sanity.pgd_overestimates(ev(pgd + aa_far))
    assert gap.value == pytest.approx(0.06) and "McNemar" in gap.evidence
    assert sanity.pgd_overestimates(ev(pgd + aa_sound)) == []
    # The same 6-point gap on 50 examples (3 of them) is within chance: no flag.
    small = rows("pgd", 0.3, [1] * 40 + [0] * 10) + rows("autoattack", 0.3, [1] * 37 + [0] * 13)
    assert sanity.pgd_overestimates(ev(small)) == []
    assert len(pgd) == n


def test_black_box_margin_on_shared_examples():
    pgd = rows("pgd", 0.3, [1] * 800 + [0] * 200)
    rays_low = rows("rays", 0.3, [1] * 760 + [0] * 240)             # 4 points under PGD
    rays_ok = rows("rays", 0.3, [1] * 790 + [0] * 210)              # 1 point under
    assert [f.flag for f in sanity.black_box_stronger(ev(pgd + rays_low))] == ["black_box_stronger"]
    assert sanity.black_box_stronger(ev(pgd + rays_ok)) == []
    l2_only = rows("cw_l2", 0.3, [1] * 1000, norm="L2")             # another threat model: not a rival
    assert isinstance(sanity.black_box_stronger(ev(l2_only + rays_low)), sanity.NotChecked)


def test_accuracy_rising_along_the_sweep_is_flagged():
    # Robust at 0.2 but not at 0.1 for 60 more examples than the reverse: a 6-point rise.
    low = rows("pgd", 0.1, [1] * 500 + [0] * 500)
    high = rows("pgd", 0.2, [1] * 460 + [0] * 40 + [1] * 100 + [0] * 400)
    (flag,) = sanity.non_monotonic(ev(low + high))
    assert flag.eps == 0.2 and flag.value == pytest.approx(0.06)
    falling = rows("pgd", 0.2, [1] * 450 + [0] * 550)
    assert sanity.non_monotonic(ev(low + falling)) == []


def test_eps0_must_equal_clean():
    clean = [1] * 90 + [0] * 10
    exact = rows("pgd", 0.0, clean, clean=clean, linf=0.0)
    assert sanity.eps0_mismatch(ev(exact)) == []
    lost = rows("pgd", 0.0, [1] * 88 + [0] * 12, clean=clean, linf=0.0)
    (flag,) = sanity.eps0_mismatch(ev(lost))
    assert "2 of 90" in flag.evidence
    randomized = [dict(r, randomized=True) for r in lost]
    assert isinstance(sanity.eps0_mismatch(ev(randomized)), sanity.NotChecked)
    # C&W-ℓ2 is unbounded: its ε 0 is a placeholder, every fooled example is no mismatch.
    cw = rows("cw_l2", 0.0, [1] * 10 + [0] * 90, norm="L2", clean=clean, linf=0.4)
    assert isinstance(sanity.eps0_mismatch(ev(cw)), sanity.NotChecked)


def test_no_decay_needs_ε_half_the_range():
    at_half = rows("pgd", 0.5, [1] * 300 + [0] * 700)
    (flag,) = sanity.no_decay(ev(rows("pgd", 0.3, [1] * 500 + [0] * 500) + at_half))
    assert flag.eps == 0.5 and flag.value == pytest.approx(0.3)
    assert sanity.no_decay(ev(rows("pgd", 0.5, [1] * 120 + [0] * 880))) == []   # 0.12 ≤ 1/C + 0.05
    # Trained at 0.3 (MNIST) with a sweep ending at 0.4: nothing to judge, and it says so.
    assert isinstance(sanity.no_decay(ev(rows("pgd", 0.4, [1] * 900 + [0] * 100))), sanity.NotChecked)


def test_the_eot_probe_runs_on_a_randomized_model_and_feeds_its_flag(digits):
    """AutoAttack's ``rand`` suite on an RSE model (one noisy pass per forward, to stay quick)
    ends with the larger-EoT probe, whose "broken/probed" note the rule reads; planted probe
    counts then trip ``eot_insufficient`` only beyond 2% of the examples and beyond chance."""
    method = make("rse", "digits", ensemble=1, init_seed=0)
    fit(method, digits, epochs=1, batch_size=64, seed=0)
    model = method.model.eval()
    idx = eval_indices("digits", 10, 0)
    said: list = []
    rows = attack_batch(model, "autoattack", digits.x_test[idx], digits.y_test[idx], 0.05, sample_idx=idx.tolist(),
                        notes=said, eot_probe_examples=2, eot_probe_iter=5)
    (probe,) = [m for kind, m in said if kind == "eot_probe"]
    broken, probed = map(int, probe.split("/"))
    assert 0 <= broken <= probed <= 2 and all(r["randomized"] for r in rows)

    evaluated = [{"attack": "autoattack", "eps": 0.3, "norm": "Linf", "sample_idx": i, "correct_clean": True,
                  "correct_adv": i < 60, "gradient_failed": False, "linf": 0.3, "randomized": True} for i in range(100)]
    outcomes = sanity.outcomes_from_records(evaluated)

    def notes(count: str) -> list:
        return [("autoattack", 0.3, 0, "recorded", ""), ("autoattack", 0.3, 0, "eot_probe", count)]

    (flag,) = sanity.eot_insufficient(sanity.evidence({"trial_id": "t"}, outcomes, 10, notes("12/20")))
    assert flag.value == pytest.approx(0.12) and "EoT-100 broke 12 of 20" in flag.evidence
    assert sanity.eot_insufficient(sanity.evidence({"trial_id": "t"}, outcomes, 10, notes("2/20"))) == []
    unprobed = sanity.evidence({"trial_id": "t"}, outcomes, 10, notes("0/0")[:1])
    assert "EoT probe" in sanity.eot_insufficient(unprobed).reason
    deterministic = sanity.outcomes_from_records([dict(r, randomized=False) for r in evaluated])
    assert "deterministic" in sanity.eot_insufficient(sanity.evidence({"trial_id": "t"}, deterministic, 10, notes("12/20"))).reason

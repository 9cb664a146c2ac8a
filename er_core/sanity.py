"""Sanity flags of one trial: signs that a result should not be read as robustness.

Pure Python on plain records (no pandas, no Ray), so the grid and the Ray-free fidelity runner
apply the same rules; the grid stores and reports them (``grid.stages.sanity``). The checklist is
Carlini et al. 2019, "On Evaluating Adversarial Robustness" (arXiv:1902.06705): a model that
learned nothing, gradients that are zero, a black-box attack beating the white-box ones, a weak
attack beaten by a stronger one, accuracy that does not fall at large ε.

- ``collapsed``: clean accuracy on the evaluation subset ≤ 1/C + :data:`COLLAPSE_MARGIN`, or the
  final training cross-entropy within :data:`COLLAPSE_LOSS_TOLERANCE` (relative) of ln C.
- ``zero_gradients``: more than :data:`ZERO_GRADIENT_SHARE` of one attack's examples have
  ``gradient_failed`` (``er_core.evaluate`` records it per example: the attack's loss gradient
  was zero or non-finite on an example it did not fool; label-only attacks record False).
- ``black_box_stronger``: at one (threat model, ε), RayS leaves lower robust accuracy than the
  best gradient attack by more than :data:`BLACK_BOX_MARGIN`.
- ``pgd_overestimates``: AutoAttack more than :data:`AUTOATTACK_GAP` below PGD at one ε.
- ``critic_dead`` (methods that log a critic): the critic's Wasserstein estimate within
  :data:`CRITIC_DEAD_TOLERANCE` of 0 in every epoch of the last :data:`CRITIC_TAIL_FRACTION` of
  training.
- ``no_decay``: in the PGD sweep, robust accuracy above 1/C + :data:`NO_DECAY_MARGIN` at an ε
  ≥ :data:`NO_DECAY_EPS_RATIO` × the training ε and ≥ :data:`NO_DECAY_MIN_EPS`.

Pairwise flags compare the attacks on the examples both evaluated. Robust = correct clean and
under the attack. ``trial_flags(trial, outcomes_from_records(records), num_classes)`` is the
one call.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Iterable, Optional

# -- metric names as the trial row stores them (per-epoch dicts in ``losses_json``) -----------
CRITIC_W_METRIC = "critic_w"  # the critic's Wasserstein estimate (er_core/methods/er.py)
# The classification cross-entropy, first present wins: ``ce`` (none, er, trades, …),
# ``ce_adv`` (madry), else the method's total ``loss``.
CLASSIFICATION_LOSS_METRICS = ("ce", "ce_adv", "loss")

# -- attacks by kind --------------------------------------------------------------------------
PGD_ATTACK, AUTOATTACK, RAYS = "pgd", "autoattack", "rays"
BLACK_BOX_ATTACKS = frozenset({RAYS})  # label-only: no gradient to mask

# -- thresholds (each with its reason) ---------------------------------------------------------
# Chance is 1/C; 5 points above it on a 1,000-example subset is ~5 standard errors, so a model
# there has learned next to nothing (Carlini et al. §5: check the model is not trivially broken).
COLLAPSE_MARGIN = 0.05
# A constant uniform predictor has cross-entropy exactly ln C; 2% of it is far below the
# epoch-to-epoch noise of a model that learns (digits/MNIST fall to < 0.5 within one epoch).
COLLAPSE_LOSS_TOLERANCE = 0.02
# Gradient-based attacks that meet zero gradients on more than 1% of examples are not
# evaluating those examples at all (Carlini et al. §4.1 "gradient masking").
ZERO_GRADIENT_SHARE = 0.01
# A label-only attack should never beat white-box gradient attacks; 2 points is above the
# sampling noise of the difference on shared examples (Carlini et al. §5.4 "black-box beats white-box").
BLACK_BOX_MARGIN = 0.02
# AutoAttack is usually within a few points of a well-tuned PGD on sound defences (Croce &
# Hein 2020); 10 points below means PGD was too weak or the gradients mislead it.
AUTOATTACK_GAP = 0.10
# The critic's estimate of W(prior, codes) stuck at 0 means it gives the encoder no signal.
CRITIC_DEAD_TOLERANCE = 1e-4
# Judged over the last quarter of training: a critic that died early and stayed dead.
CRITIC_TAIL_FRACTION = 0.25
# At an ε twice the training ε and at least 0.3 of the [0, 1] image range an ℓ∞ attack can
# erase most digits; accuracy should fall to chance (Carlini et al. §5.2 "unbounded attacks").
NO_DECAY_EPS_RATIO = 2.0
NO_DECAY_MIN_EPS = 0.3
NO_DECAY_MARGIN = 0.05

FLAG_NAMES = ("collapsed", "zero_gradients", "black_box_stronger", "pgd_overestimates", "critic_dead", "no_decay")
COLLAPSED = "collapsed"


@dataclasses.dataclass(frozen=True)
class Flag:
    """One raised flag of one trial: what was measured against which bound, in words too."""

    trial_id: str
    flag: str
    value: float  # the measured quantity (accuracy, share, gap, |W|)
    threshold: float  # the bound it crossed
    evidence: str
    attack: Optional[str] = None
    eps: Optional[float] = None


@dataclasses.dataclass(frozen=True)
class AttackOutcome:
    """One (attack, threat model, ε) of one trial: which examples it evaluated, which stayed robust."""

    attack: str
    norm: str
    eps: float
    evaluated: frozenset
    robust: frozenset  # correct clean and under the attack
    gradient_failed: int

    @property
    def accuracy(self) -> float:
        return len(self.robust) / len(self.evaluated) if self.evaluated else float("nan")

    def accuracy_on(self, samples: frozenset) -> float:
        return len(self.robust & samples) / len(samples) if samples else float("nan")


# --------------------------------------------------------------------------- outcomes


def outcomes_from_records(records: Iterable[dict]) -> list[AttackOutcome]:
    """Group per-example records (er_core.evaluate / store rows) of ONE trial by (attack, norm, ε)."""
    groups: dict[tuple, list] = {}
    for r in records:
        key = (r["attack"], r.get("norm", "Linf"), float(r["eps"]))
        groups.setdefault(key, []).append(r)
    out = []
    for (attack, norm, eps), rows in groups.items():
        out.append(AttackOutcome(
            attack=attack, norm=norm, eps=eps,
            evaluated=frozenset(int(r["sample_idx"]) for r in rows),
            robust=frozenset(int(r["sample_idx"]) for r in rows if r["correct_clean"] and r["correct_adv"]),
            gradient_failed=sum(1 for r in rows if r.get("gradient_failed") is True),
        ))
    return out


# --------------------------------------------------------------------------- the rules


def collapsed(trial_id: str, clean_accuracy: Optional[float], losses: list, num_classes: int) -> list[Flag]:
    chance = 1.0 / num_classes
    flags = []
    if clean_accuracy is not None and clean_accuracy <= chance + COLLAPSE_MARGIN:
        flags.append(Flag(trial_id, COLLAPSED, clean_accuracy, chance + COLLAPSE_MARGIN,
                          f"clean accuracy {clean_accuracy:.3f} ≤ 1/C + {COLLAPSE_MARGIN} = {chance + COLLAPSE_MARGIN:.3f}"))
    final = final_loss(losses)
    if final is not None:
        name, value = final
        ln_c = math.log(num_classes)
        if abs(value - ln_c) <= COLLAPSE_LOSS_TOLERANCE * ln_c:
            flags.append(Flag(trial_id, COLLAPSED, value, ln_c,
                              f"final training {name} {value:.4f} within {COLLAPSE_LOSS_TOLERANCE:.0%} of ln C = {ln_c:.4f}"))
    # One flag per trial, with the evidence of both criteria when both hold.
    return [dataclasses.replace(flags[0], evidence="; ".join(f.evidence for f in flags))] if flags else []


def final_loss(losses: list) -> Optional[tuple[str, float]]:
    """(metric name, value) of the last epoch's classification loss; None without epochs."""
    if not losses:
        return None
    last = losses[-1]
    for name in CLASSIFICATION_LOSS_METRICS:
        if name in last and last[name] is not None and math.isfinite(float(last[name])):
            return name, float(last[name])
    return None


def zero_gradients(trial_id: str, outcomes: list[AttackOutcome]) -> list[Flag]:
    flags = []
    for o in outcomes:
        share = o.gradient_failed / len(o.evaluated) if o.evaluated else 0.0
        if share > ZERO_GRADIENT_SHARE:
            flags.append(Flag(trial_id, "zero_gradients", share, ZERO_GRADIENT_SHARE,
                              f"{o.attack} ε={o.eps:g}: {o.gradient_failed}/{len(o.evaluated)} examples with a zero "
                              f"or non-finite gradient (> {ZERO_GRADIENT_SHARE:.0%})", o.attack, o.eps))
    return flags


def black_box_stronger(trial_id: str, outcomes: list[AttackOutcome]) -> list[Flag]:
    flags = []
    for box in (o for o in outcomes if o.attack in BLACK_BOX_ATTACKS):
        rivals = [o for o in outcomes if o.attack not in BLACK_BOX_ATTACKS and o.norm == box.norm
                  and o.eps == box.eps]
        if not rivals:
            continue
        shared = frozenset.intersection(box.evaluated, *(o.evaluated for o in rivals))
        if not shared:
            continue
        best = min(rivals, key=lambda o: o.accuracy_on(shared))
        gap = best.accuracy_on(shared) - box.accuracy_on(shared)
        if gap > BLACK_BOX_MARGIN:
            flags.append(Flag(trial_id, "black_box_stronger", gap, BLACK_BOX_MARGIN,
                              f"ε={box.eps:g}: {box.attack} {box.accuracy_on(shared):.3f} < best gradient attack "
                              f"{best.attack} {best.accuracy_on(shared):.3f} by {gap:.3f} on {len(shared)} examples",
                              box.attack, box.eps))
    return flags


def pgd_overestimates(trial_id: str, outcomes: list[AttackOutcome]) -> list[Flag]:
    flags = []
    for aa in (o for o in outcomes if o.attack == AUTOATTACK):
        for pgd in (o for o in outcomes if o.attack == PGD_ATTACK and o.norm == aa.norm and o.eps == aa.eps):
            shared = aa.evaluated & pgd.evaluated
            gap = pgd.accuracy_on(shared) - aa.accuracy_on(shared)
            if shared and gap > AUTOATTACK_GAP:
                flags.append(Flag(trial_id, "pgd_overestimates", gap, AUTOATTACK_GAP,
                                  f"ε={aa.eps:g}: autoattack {aa.accuracy_on(shared):.3f} vs pgd "
                                  f"{pgd.accuracy_on(shared):.3f} on {len(shared)} examples", AUTOATTACK, aa.eps))
    return flags


def critic_dead(trial_id: str, losses: list) -> list[Flag]:
    """Flag when |critic_w| ≤ tolerance in every epoch of the last quarter (at least one epoch).

    Silent when the trial logged no critic estimate (methods without a critic).
    """
    series = [float(e[CRITIC_W_METRIC]) for e in losses or [] if e.get(CRITIC_W_METRIC) is not None]
    if not series:
        return []
    tail = series[-max(1, math.ceil(CRITIC_TAIL_FRACTION * len(series))):]
    worst = max(abs(w) for w in tail)
    if worst > CRITIC_DEAD_TOLERANCE:
        return []
    return [Flag(trial_id, "critic_dead", worst, CRITIC_DEAD_TOLERANCE,
                 f"|{CRITIC_W_METRIC}| ≤ {worst:.2g} in each of the last {len(tail)} of {len(series)} epochs "
                 f"(bound {CRITIC_DEAD_TOLERANCE:g})")]


def no_decay(trial_id: str, outcomes: list[AttackOutcome], train_eps: Optional[float], num_classes: int) -> list[Flag]:
    bound = 1.0 / num_classes + NO_DECAY_MARGIN
    floor = max(NO_DECAY_MIN_EPS, NO_DECAY_EPS_RATIO * (train_eps or 0.0))
    large = [o for o in outcomes if o.attack == PGD_ATTACK and o.norm == "Linf" and o.eps >= floor - 1e-12]
    high = [o for o in large if o.accuracy > bound]
    if not high:
        return []
    o = max(high, key=lambda o: o.eps)
    return [Flag(trial_id, "no_decay", o.accuracy, bound,
                 f"pgd at ε={o.eps:g} (≥ max({NO_DECAY_MIN_EPS}, {NO_DECAY_EPS_RATIO:g}×train ε)) leaves "
                 f"{o.accuracy:.3f} > 1/C + {NO_DECAY_MARGIN} = {bound:.3f}", PGD_ATTACK, o.eps)]


def trial_flags(trial: dict, outcomes: list[AttackOutcome], num_classes: int) -> list[Flag]:
    """Every flag of one trial.

    trial: ``trial_id``, ``train_eps`` (None for clean training), ``clean_accuracy`` (None:
    taken from the examples' clean verdicts), ``losses`` (per-epoch metric dicts, may be empty).
    """
    trial_id = trial["trial_id"]
    clean = trial.get("clean_accuracy")
    if clean is None or (isinstance(clean, float) and math.isnan(clean)):
        clean = _clean_from_outcomes(outcomes)
    losses = trial.get("losses") or []
    return (collapsed(trial_id, clean, losses, num_classes) + zero_gradients(trial_id, outcomes)
            + black_box_stronger(trial_id, outcomes) + pgd_overestimates(trial_id, outcomes)
            + critic_dead(trial_id, losses) + no_decay(trial_id, outcomes, trial.get("train_eps"), num_classes))


def _clean_from_outcomes(outcomes: list[AttackOutcome]) -> Optional[float]:
    # Clean correctness is the same under every attack; the largest evaluation covers the most.
    # Without a clean column per outcome, robust at ε = 0 equals clean; otherwise unknown.
    zero = [o for o in outcomes if o.eps == 0.0]
    return max(zero, key=lambda o: len(o.evaluated)).accuracy if zero else None


__all__ = [
    "FLAG_NAMES", "Flag", "AttackOutcome", "trial_flags", "outcomes_from_records", "final_loss",
    "CRITIC_W_METRIC", "CLASSIFICATION_LOSS_METRICS",
]

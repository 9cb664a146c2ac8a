"""Sanity rules on how a trial trained: a model that learned nothing (``collapsed``) and a WGAN
critic that stopped giving the encoder a signal (``critic_dead``)."""

from __future__ import annotations

import dataclasses
import math
from typing import Optional

from .base import Flag, NotChecked, TrialEvidence

COLLAPSED = "collapsed"
# The critic's diagnostics as the trial row stores them (per-epoch dicts in ``losses_json``;
# er_core/methods/critic.py): its Wasserstein estimate and the share of its last hidden
# layer's units that are live.
CRITIC_W_METRIC = "critic_w"
CRITIC_LIVE_METRIC = "critic_live"
# The classification cross-entropy, first present wins: ``ce`` (none, er, trades, …),
# ``ce_adv`` (madry), else the method's total ``loss``.
CLASSIFICATION_LOSS_METRICS = ("ce", "ce_adv", "loss")

# Chance is 1/C; 5 points above it on a 1,000-example subset is ~5 standard errors, so a model
# there has learned next to nothing (Carlini et al. §5: check the model is not trivially broken).
COLLAPSE_MARGIN = 0.05
# A constant uniform predictor has cross-entropy exactly ln C; 2% of it is far below the
# epoch-to-epoch noise of a model that learns (digits/MNIST fall to < 0.5 within one epoch).
COLLAPSE_LOSS_TOLERANCE = 0.02
# Judged over the last quarter of training: a critic that died early and stayed dead.
CRITIC_TAIL_FRACTION = 0.25
# Dead by its units: the critics this project watched die (Adam at 1e-3, er_core/methods/
# critic.py) fell to 0.23–0.24 live within 10 epochs and stayed there, while the live RMSProp
# critics held 0.79–0.90; 0.3 separates the two with room on both sides.
CRITIC_LIVE_MIN = 0.3
# Dead by its estimate: the MNIST er_minus critic that died read |W| < 3e-4 from epoch 16 on
# against 0.018 at epoch 1 (1.7%); an absolute bound (1e-4) missed it. Below 5% of the run's
# own largest |W| in every late epoch, the critic no longer separates prior from codes.
CRITIC_W_RELATIVE = 0.05


def final_loss(losses) -> Optional[tuple[str, float]]:
    """(metric name, value) of the last epoch's classification loss; None without epochs."""
    if not losses:
        return None
    last = losses[-1]
    for name in CLASSIFICATION_LOSS_METRICS:
        if name in last and last[name] is not None and math.isfinite(float(last[name])):
            return name, float(last[name])
    return None


def collapsed(ev: TrialEvidence):
    chance = 1.0 / ev.num_classes
    flags = []
    clean = ev.clean_accuracy
    if clean is not None and clean <= chance + COLLAPSE_MARGIN:
        flags.append(Flag(ev.trial_id, COLLAPSED, clean, chance + COLLAPSE_MARGIN,
                          f"clean accuracy {clean:.3f} ≤ 1/C + {COLLAPSE_MARGIN} = {chance + COLLAPSE_MARGIN:.3f}"))
    final = final_loss(ev.losses)
    if final is not None:
        name, value = final
        ln_c = math.log(ev.num_classes)
        if abs(value - ln_c) <= COLLAPSE_LOSS_TOLERANCE * ln_c:
            flags.append(Flag(ev.trial_id, COLLAPSED, value, ln_c,
                              f"final training {name} {value:.4f} within {COLLAPSE_LOSS_TOLERANCE:.0%} of ln C = {ln_c:.4f}"))
    if clean is None and final is None:
        return NotChecked("neither a clean accuracy nor a training loss is stored")
    # One flag per trial, with the evidence of both criteria when both hold.
    return [dataclasses.replace(flags[0], evidence="; ".join(f.evidence for f in flags))] if flags else []


def critic_dead(ev: TrialEvidence):
    """Dead when, in every epoch of the last quarter, the live share of the critic's units is at
    most :data:`CRITIC_LIVE_MIN`, or its |W| estimate is at most :data:`CRITIC_W_RELATIVE` of the
    run's largest. Not checked for methods that log no critic."""
    epochs = [e for e in ev.losses or () if e.get(CRITIC_W_METRIC) is not None]
    if not epochs:
        return NotChecked("the method trains no critic")
    tail = epochs[-max(1, math.ceil(CRITIC_TAIL_FRACTION * len(epochs))):]
    where = f"each of the last {len(tail)} of {len(epochs)} epochs"
    live = [float(e[CRITIC_LIVE_METRIC]) for e in tail if e.get(CRITIC_LIVE_METRIC) is not None]
    if len(live) == len(tail) and max(live) <= CRITIC_LIVE_MIN:
        return [Flag(ev.trial_id, "critic_dead", max(live), CRITIC_LIVE_MIN,
                     f"{CRITIC_LIVE_METRIC} ≤ {max(live):.2f} in {where} (bound {CRITIC_LIVE_MIN:g}): "
                     "most of the critic's units pass no gradient")]
    peak = max(abs(float(e[CRITIC_W_METRIC])) for e in epochs)
    worst = max(abs(float(e[CRITIC_W_METRIC])) for e in tail)
    if worst <= CRITIC_W_RELATIVE * peak or peak == 0.0:
        return [Flag(ev.trial_id, "critic_dead", worst, CRITIC_W_RELATIVE * peak,
                     f"|{CRITIC_W_METRIC}| ≤ {worst:.2g} in {where}, ≤ {CRITIC_W_RELATIVE:.0%} of its peak "
                     f"{peak:.2g}: the critic no longer separates prior and codes")]
    return []


__all__ = ["CLASSIFICATION_LOSS_METRICS", "COLLAPSED", "CRITIC_LIVE_METRIC", "CRITIC_W_METRIC", "collapsed",
           "critic_dead", "final_loss"]

"""Sanity rules along an ε sweep (Carlini et al. 2019 §5.2; Athalye et al. 2018 §3.1): accuracy
must fall to chance at a large ε, must not rise as ε grows, and at ε = 0 must equal clean."""

from __future__ import annotations

from itertools import combinations

from .base import Flag, NotChecked, TrialEvidence, paired_gap, significant

PGD_ATTACK = "pgd"
# At ℓ∞ ε = 0.5 every image in [0, 1] can be moved to the all-0.5 grey image, so no classifier
# can keep more examples right than the share of the one class it gives that image (≈ 1/C on
# a balanced subset): an attack that leaves more is not finding what exists. The same on every
# dataset, since ε is measured in [0, 1] space; the paper presets add this point to each sweep.
NO_DECAY_EPS = 0.5
# 5 points above chance at n = 1,000 is ~5 standard errors of a binomial at 0.1.
NO_DECAY_MARGIN = 0.05
# A rise of accuracy along ε beyond 2 points on shared examples (and beyond chance, paired):
# a sound attack at a larger ε finds at least what it found at a smaller one.
NON_MONOTONIC_MARGIN = 0.02
# At ε = 0 an attack cannot move the input, so a deterministic model's verdict under attack is
# its clean verdict: any example lost there is a bug (projection, mode, clipping), not noise.
EPS0_TOLERANCE = 0


def no_decay(ev: TrialEvidence):
    bound = 1.0 / ev.num_classes + NO_DECAY_MARGIN
    large = [o for o in ev.of(PGD_ATTACK, "Linf") if o.eps >= NO_DECAY_EPS - 1e-12]
    if not large:
        return NotChecked(f"the plan has no ℓ∞ PGD at ε ≥ {NO_DECAY_EPS:g}")
    high = [o for o in large if o.accuracy > bound]
    if not high:
        return []
    o = max(high, key=lambda o: o.eps)
    return [Flag(ev.trial_id, "no_decay", o.accuracy, bound,
                 f"pgd at ε={o.eps:g} (≥ {NO_DECAY_EPS:g}, where every image can become the grey image) leaves "
                 f"{o.accuracy:.3f} > 1/C + {NO_DECAY_MARGIN} = {bound:.3f}", PGD_ATTACK, o.eps)]


def non_monotonic(ev: TrialEvidence):
    flags, sweeps = [], 0
    for attack, norm in sorted({(o.attack, o.norm) for o in ev.outcomes}):
        sweep = sorted(ev.of(attack, norm), key=lambda o: o.eps)
        if len(sweep) < 2:
            continue
        sweeps += 1
        worst = None
        for small, large in combinations(sweep, 2):
            rise, p, n = paired_gap(small, large)
            if significant(rise, p, NON_MONOTONIC_MARGIN) and (worst is None or rise > worst[0]):
                worst = (rise, p, n, small, large)
        if worst is not None:
            rise, p, n, small, large = worst
            flags.append(Flag(ev.trial_id, "non_monotonic", rise, NON_MONOTONIC_MARGIN,
                              f"{attack} accuracy rises from {small.accuracy_on(large.evaluated):.3f} at ε={small.eps:g} "
                              f"to {large.accuracy_on(small.evaluated):.3f} at ε={large.eps:g} on {n} shared examples "
                              f"(McNemar p = {p:.1e})", attack, large.eps))
    return flags if sweeps else NotChecked("no attack is planned at two or more ε")


def eps0_mismatch(ev: TrialEvidence):
    # ℓ∞ attacks only: C&W-ℓ2 is unbounded and its ε of 0 is a placeholder, not a budget.
    zero = [o for o in ev.outcomes if o.eps == 0.0 and o.norm == "Linf" and o.clean is not None]
    if not zero:
        return NotChecked("no ℓ∞ attack is planned at ε = 0")
    if any(o.randomized for o in zero):
        return NotChecked("a randomized model's clean and attacked verdicts are separate ensemble draws")
    flags = []
    for o in zero:
        lost = len(o.clean - o.robust)
        if lost > EPS0_TOLERANCE:
            flags.append(Flag(ev.trial_id, "eps0_mismatch", lost / len(o.evaluated), EPS0_TOLERANCE,
                              f"{o.attack} at ε=0: {lost} of {len(o.clean)} clean-correct examples counted fooled",
                              o.attack, 0.0))
    return flags


__all__ = ["eps0_mismatch", "no_decay", "non_monotonic"]

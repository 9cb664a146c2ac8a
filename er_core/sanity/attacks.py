"""Sanity rules that compare the attacks of one trial (Carlini et al. 2019, "On Evaluating
Adversarial Robustness", §4–5; Athalye et al. 2018 §3.1): gradients that are zero, a label-only
or one-step attack beating the iterative white-box ones, AutoAttack or a stronger PGD far below
the plan's PGD, perturbations outside the ε ball.

Comparisons are paired: the same examples under both attacks, a gap beyond what a sound
evaluation shows and beyond chance (``base.significant``).
"""

from __future__ import annotations

from .base import ALPHA, RECORDED_NOTE, Flag, NotChecked, TrialEvidence, paired_gap, significant

PGD_ATTACK, FGSM_ATTACK, AUTOATTACK, RAYS = "pgd", "fgsm", "autoattack", "rays"
# The convergence probe: PGD with 100 steps × 5 restarts (er_core/attacks/pgd_probe.py) at the
# plan's PGD ε; if it finds much more than the plan's PGD, the plan's PGD had not converged.
PROBE_ATTACK = "pgd_probe"
BLACK_BOX_ATTACKS = frozenset({RAYS})  # label-only: no gradient to mask

# Gradient-based attacks that meet zero gradients on more than 1% of examples are not
# evaluating those examples at all (Carlini et al. §4.1 "gradient masking").
ZERO_GRADIENT_SHARE = 0.01
# A label-only attack should never beat white-box gradient attacks; 2 points on shared examples
# is beyond what a sound model shows (Carlini et al. §5.4 "black-box beats white-box").
BLACK_BOX_MARGIN = 0.02
# On sound defences AutoAttack lands 1.1–3.4 points below a well-tuned PGD (AutoAttack's
# README: Madry MNIST 89.62 → 88.50, CIFAR10 47.04 → 44.04; TRADES 56.43 → 53.08); 5 points is
# beyond that range and, at n = 1,000, about four standard errors of a paired difference.
AUTOATTACK_GAP = 0.05
# One FGSM step should not beat iterative PGD from the same ε ball: PGD's first step is FGSM's
# direction, so a PGD that ends above FGSM is broken or its gradients mislead it (§4.2).
FGSM_MARGIN = 0.01
# 100 steps × 5 restarts finding more than 2 points over the plan's PGD: that PGD stopped early.
PROBE_MARGIN = 0.02


def _pairs(ev: TrialEvidence, weaker: str, stronger_attacks, norm: str = "Linf"):
    """(weaker outcome, stronger outcome) at the same threat model and ε."""
    for w in ev.of(weaker, norm):
        for s in (o for o in ev.outcomes if o.attack in stronger_attacks and o.norm == norm and o.eps == w.eps):
            yield w, s


def zero_gradients(ev: TrialEvidence):
    flags = []
    for o in ev.outcomes:
        share = o.gradient_failed / len(o.evaluated) if o.evaluated else 0.0
        if share > ZERO_GRADIENT_SHARE:
            flags.append(Flag(ev.trial_id, "zero_gradients", share, ZERO_GRADIENT_SHARE,
                              f"{o.attack} ε={o.eps:g}: {o.gradient_failed}/{len(o.evaluated)} examples with a zero "
                              f"or non-finite gradient (> {ZERO_GRADIENT_SHARE:.0%})", o.attack, o.eps))
    return flags if ev.outcomes else NotChecked("no attack rows")


def _paired_rule(ev: TrialEvidence, name: str, weak: str, strong, margin: float, norms=("Linf", "L2")):
    """Flag every (threat model, ε) where ``strong`` leaves accuracy significantly more than
    ``margin`` below ``weak`` on shared examples; NotChecked when no such pair is planned."""
    flags, pairs = [], 0
    for norm in norms:
        for w, s in _pairs(ev, weak, strong, norm):
            pairs += 1
            gap, p, n = paired_gap(s, w)
            if significant(gap, p, margin):
                flags.append(Flag(ev.trial_id, name, gap, margin,
                                  f"ε={w.eps:g}: {s.attack} {s.accuracy_on(w.evaluated & s.evaluated):.3f} vs {weak} "
                                  f"{w.accuracy_on(w.evaluated & s.evaluated):.3f} on {n} shared examples "
                                  f"(gap {gap:.3f} > {margin:g}, McNemar p = {p:.1e})", s.attack, w.eps))
    if not pairs:
        return NotChecked(f"the plan has no {'/'.join(sorted(strong))} beside {weak} at a shared ε")
    return flags


def black_box_stronger(ev: TrialEvidence):
    gradient = {o.attack for o in ev.outcomes if o.attack not in BLACK_BOX_ATTACKS}
    flags, pairs = [], 0
    for box in (o for o in ev.outcomes if o.attack in BLACK_BOX_ATTACKS):
        for rival in (o for o in ev.outcomes if o.attack in gradient and o.norm == box.norm and o.eps == box.eps):
            pairs += 1
            gap, p, n = paired_gap(box, rival)
            if significant(gap, p, BLACK_BOX_MARGIN):
                flags.append(Flag(ev.trial_id, "black_box_stronger", gap, BLACK_BOX_MARGIN,
                                  f"ε={box.eps:g}: {box.attack} {box.accuracy_on(rival.evaluated):.3f} < "
                                  f"{rival.attack} {rival.accuracy_on(box.evaluated):.3f} on {n} shared examples "
                                  f"(McNemar p = {p:.1e})", box.attack, box.eps))
    if not pairs:
        return NotChecked("the plan has no label-only attack (RayS) beside a gradient attack at a shared ε")
    # One flag per (black-box attack, ε): its largest gap.
    best = {}
    for f in flags:
        if (f.attack, f.eps) not in best or f.value > best[(f.attack, f.eps)].value:
            best[(f.attack, f.eps)] = f
    return list(best.values())


def pgd_overestimates(ev: TrialEvidence):
    return _paired_rule(ev, "pgd_overestimates", PGD_ATTACK, {AUTOATTACK}, AUTOATTACK_GAP)


def fgsm_stronger(ev: TrialEvidence):
    return _paired_rule(ev, "fgsm_stronger", PGD_ATTACK, {FGSM_ATTACK}, FGSM_MARGIN, norms=("Linf",))


def pgd_unconverged(ev: TrialEvidence):
    return _paired_rule(ev, "pgd_unconverged", PGD_ATTACK, {PROBE_ATTACK}, PROBE_MARGIN, norms=("Linf",))


def autoattack_warning(ev: TrialEvidence):
    """AutoAttack's own checks (a randomized or dynamic model, outputs that are not logits, too
    few classes, Square beating APGD: pyautoattack's ``checks``) warned of something in some
    evaluation batch: AutoAttack's verdict there is not to be trusted as it stands."""
    runs = ev.of(AUTOATTACK)
    if not runs:
        return NotChecked("the plan has no AutoAttack")
    if ev.notes is None:
        return NotChecked("AutoAttack's notes were not read")
    recorded = {(a, float(e), b) for a, e, b, kind, _m in ev.notes if a == AUTOATTACK and kind == RECORDED_NOTE}
    if not recorded:
        return NotChecked("no AutoAttack batch kept its notes (evaluated before er-grid recorded them)")
    flags = []
    for o in runs:
        batches = {b for a, e, b in recorded if e == o.eps}
        said = sorted({m for a, e, b, kind, m in ev.notes if a == AUTOATTACK and float(e) == o.eps and kind == "warning"})
        warned = {b for a, e, b, kind, _m in ev.notes if a == AUTOATTACK and float(e) == o.eps and kind == "warning"}
        if said:
            flags.append(Flag(ev.trial_id, "autoattack_warning", len(warned) / max(len(batches), 1), 0.0,
                              f"ε={o.eps:g}: AutoAttack warned in {len(warned)} of {len(batches)} batches: "
                              + " / ".join(said), AUTOATTACK, o.eps))
    return flags


# The EoT probe breaking more than 2% of the evaluated examples that EoT-20 left standing: the
# suite's expectation was too coarse for this randomized model (Athalye et al. 2018 §4.1).
EOT_MARGIN = 0.02


def eot_insufficient(ev: TrialEvidence):
    """For a randomized model: AutoAttack's larger-EoT probe (``er_core.attacks.autoattack``:
    APGD-CE with EoT-100 on up to 20 still-standing examples per batch) broke examples the
    ``rand`` suite's EoT-20 left robust, beyond :data:`EOT_MARGIN` of the evaluated examples and
    beyond chance (the probe can only break more, so every broken example is one discordant pair
    in one direction)."""
    runs = ev.of(AUTOATTACK)
    if not runs:
        return NotChecked("the plan has no AutoAttack")
    if not any(o.randomized for o in runs):
        return NotChecked("the model is deterministic: expectation over transformation does not apply")
    if ev.notes is None:
        return NotChecked("AutoAttack's notes were not read")
    flags, probed_any = [], False
    for o in (o for o in runs if o.randomized):
        counts = [m.split("/") for a, e, b, kind, m in ev.notes
                  if a == AUTOATTACK and float(e) == o.eps and kind == "eot_probe"]
        if not counts:
            continue
        probed_any = True
        broken, probed = sum(int(c[0]) for c in counts), sum(int(c[1]) for c in counts)
        share = broken / len(o.evaluated)
        p = 0.5 ** broken
        if share > EOT_MARGIN and p < ALPHA:
            flags.append(Flag(ev.trial_id, "eot_insufficient", share, EOT_MARGIN,
                              f"ε={o.eps:g}: EoT-100 broke {broken} of {probed} examples EoT-20 left standing "
                              f"({share:.3f} of {len(o.evaluated)} evaluated, p = {p:.1e})", AUTOATTACK, o.eps))
    if not probed_any:
        return NotChecked("no AutoAttack batch kept an EoT probe (evaluated before er-grid ran it)")
    return flags


def perturbation_out_of_bounds(ev: TrialEvidence):
    bounded = [o for o in ev.outcomes if o.norm == "Linf"]
    if not bounded:
        return NotChecked("no ℓ∞ attack rows")
    return [Flag(ev.trial_id, "perturbation_out_of_bounds", o.out_of_bounds / len(o.evaluated), 0.0,
                 f"{o.attack} ε={o.eps:g}: {o.out_of_bounds}/{len(o.evaluated)} examples with ‖δ‖∞ > ε "
                 f"(largest {o.max_linf:.6f})", o.attack, o.eps)
            for o in bounded if o.out_of_bounds]


__all__ = ["AUTOATTACK", "FGSM_ATTACK", "PGD_ATTACK", "PROBE_ATTACK", "RAYS", "autoattack_warning", "black_box_stronger", "eot_insufficient",
           "fgsm_stronger", "perturbation_out_of_bounds", "pgd_overestimates", "pgd_unconverged", "zero_gradients"]

"""Sanity flags of one trial: signs that a result should not be read as robustness.

Pure Python on plain records (no pandas, no Ray), so the grid and the Ray-free fidelity runner
apply the same rules; the grid stores and reports them (``grid.stages.sanity``, ``grid.store.flags``).
The checklist is Carlini et al. 2019, "On Evaluating Adversarial Robustness" (arXiv:1902.06705)
and Athalye et al. 2018 §3.1. One rule a line in :data:`RULES`, each in the module of what it
reads (``training``: the training record; ``attacks``: attacks compared on shared examples;
``sweep``: an ε sweep), each threshold a named constant with its reason there.

Every rule returns the flags it raises or :class:`~er_core.sanity.base.NotChecked` saying why it
could not judge the trial (the plan lacks what it needs): a flag is never silently unavailable.
``check(trial, outcomes_from_records(records), num_classes)`` is the one call.
"""

from __future__ import annotations

import math

from .attacks import (
    autoattack_warning, black_box_stronger, eot_insufficient, fgsm_stronger, perturbation_out_of_bounds, pgd_overestimates, pgd_unconverged, zero_gradients,
)
from .base import (
    ALPHA, AttackOutcome, Flag, NotChecked, TrialEvidence, batch_notes, outcomes_from_records, paired_gap,
)
from .sweep import eps0_mismatch, no_decay, non_monotonic
from .training import (
    CLASSIFICATION_LOSS_METRICS, COLLAPSED, CRITIC_LIVE_METRIC, CRITIC_W_METRIC, collapsed, critic_dead, final_loss,
)


#: name → rule, in the order the report lists them.
RULES = {
    COLLAPSED: collapsed,
    "zero_gradients": zero_gradients,
    "black_box_stronger": black_box_stronger,
    "pgd_overestimates": pgd_overestimates,
    "fgsm_stronger": fgsm_stronger,
    "pgd_unconverged": pgd_unconverged,
    "perturbation_out_of_bounds": perturbation_out_of_bounds,
    "no_decay": no_decay,
    "non_monotonic": non_monotonic,
    "eps0_mismatch": eps0_mismatch,
    "critic_dead": critic_dead,
    "autoattack_warning": autoattack_warning,
    "eot_insufficient": eot_insufficient,
}
FLAG_NAMES = tuple(RULES)


def evidence(trial: dict, outcomes: list[AttackOutcome], num_classes: int, notes=None) -> TrialEvidence:
    """trial: ``trial_id``, ``train_eps`` (None for clean training), ``clean_accuracy`` (None:
    taken from the examples' clean verdicts), ``losses`` (per-epoch metric dicts, may be empty).
    notes: the attacks' notes of this trial (:class:`~er_core.sanity.base.TrialEvidence`), or None."""
    clean = trial.get("clean_accuracy")
    if clean is None or (isinstance(clean, float) and math.isnan(clean)):
        clean = _clean_from_outcomes(outcomes)
    return TrialEvidence(trial_id=trial["trial_id"], outcomes=tuple(outcomes), num_classes=num_classes,
                         train_eps=trial.get("train_eps"), clean_accuracy=clean,
                         losses=tuple(trial.get("losses") or ()), notes=None if notes is None else tuple(notes))


def check(trial: dict, outcomes: list[AttackOutcome], num_classes: int,
          notes=None) -> tuple[list[Flag], dict[str, str]]:
    """(every flag raised, rule name → why it could not check) of one trial."""
    ev = evidence(trial, outcomes, num_classes, notes)
    flags, unchecked = [], {}
    for name, rule in RULES.items():
        result = rule(ev)
        if isinstance(result, NotChecked):
            unchecked[name] = result.reason
        else:
            flags += result
    return flags, unchecked


def trial_flags(trial: dict, outcomes: list[AttackOutcome], num_classes: int, notes=None) -> list[Flag]:
    """Every flag of one trial (see :func:`check` for the rules that could not judge it)."""
    return check(trial, outcomes, num_classes, notes)[0]


def _clean_from_outcomes(outcomes: list[AttackOutcome]):
    # The clean verdicts of the widest outcome (clean correctness is the same under every attack).
    known = [o for o in outcomes if o.clean is not None and o.evaluated]
    if not known:
        return None
    widest = max(known, key=lambda o: len(o.evaluated))
    return len(widest.clean) / len(widest.evaluated)


__all__ = [
    "ALPHA", "AttackOutcome", "CLASSIFICATION_LOSS_METRICS", "autoattack_warning", "batch_notes", "COLLAPSED", "CRITIC_LIVE_METRIC", "CRITIC_W_METRIC",
    "FLAG_NAMES", "Flag", "NotChecked", "RULES", "TrialEvidence", "black_box_stronger", "check", "collapsed",
    "critic_dead", "eot_insufficient", "eps0_mismatch", "evidence", "fgsm_stronger", "final_loss", "no_decay", "non_monotonic",
    "outcomes_from_records", "paired_gap", "perturbation_out_of_bounds", "pgd_overestimates", "pgd_unconverged",
    "trial_flags", "zero_gradients",
]

"""The codes plan: the spec field ``codes`` and the PGD setting one trial's codes stage runs.

Spec field ``codes``: ``false`` (off, the default), ``true`` (on: PGD at the dataset's
training ε, ``er_core.dataset_info``, with 40 steps, Madry et al.'s evaluation setting), or a
mapping ``{steps: 40, eps: {mnist: 0.3}}`` overriding either. The paper does not give PGD's
steps for its Figures 5/6; 40 is the standard ℓ∞ evaluation setting it uses elsewhere.
The stage itself (the store, torch) is :mod:`grid.stages.codes`; this module is what a spec needs to
be validated without them.
"""

from __future__ import annotations

from typing import Optional

from er_core.attack_spec import AttackSpec

from .fields import check_keys, positive_int

DEFAULT_STEPS = 40


def default_codes_eps(dataset: str) -> float:
    """The dataset's training ε (MNIST 0.3, CIFAR10 0.031, ...; digits 0.1): the scale of the
    paper's evaluation on that dataset."""
    from er_core.dataset_info import info

    return float(info(dataset).train_eps)


def validate_codes_spec(raw, datasets) -> Optional[dict]:
    """The spec's ``codes`` field normalised to ``{"steps": int, "eps": {dataset: ε}}`` or None."""
    if raw is None or raw is False:
        return None
    if raw is True:
        raw = {}
    if not isinstance(raw, dict):
        raise ValueError(f"spec.codes: expected true, false or {{steps, eps}}, got {raw!r}")
    check_keys("spec.codes", raw, required=(), optional=("steps", "eps"))
    steps = positive_int("codes.steps", raw.get("steps", DEFAULT_STEPS))
    given = raw.get("eps") or {}
    if not isinstance(given, dict):
        raise ValueError(f"spec.codes.eps: expected a dict dataset → ε, got {given!r}")
    eps = {}
    for dataset in datasets:
        value = given.get(dataset, default_codes_eps(dataset))
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
            raise ValueError(f"spec.codes.eps.{dataset}: expected a number in (0, 1], got {value!r}")
        eps[dataset] = float(value)
    extra = [d for d in given if d not in datasets]
    if extra:
        raise ValueError(f"spec.codes.eps: dataset {extra[0]!r} is not in spec.datasets")
    return {"steps": steps, "eps": eps}


def trial_codes_plan(codes: Optional[dict], dataset: str) -> Optional[AttackSpec]:
    """One trial's codes attack, PGD at the dataset's ε with ``steps`` steps, or None."""
    if codes is None:
        return None
    return AttackSpec("pgd", codes["eps"][dataset], {"steps": codes["steps"]})

"""Attack registry: one module per attack, one line each here.

``make(name, eps=..., **options)`` builds a configured attack; calling it on
``(model, x, y)`` returns an :class:`AttackResult`. See ``base.py`` for the contract.
"""

from __future__ import annotations

import dataclasses

from .autoattack import AutoAttackLinf
from .base import Attack, AttackResult
from .cw_l2 import CWL2
from .fgsm import FGSM
from .pgd import PGD
from .pgd_probe import PGDProbe
from .rays import RayS

ATTACKS: dict[str, type[Attack]] = {
    "fgsm": FGSM,
    "pgd": PGD,
    "pgd_probe": PGDProbe,
    "cw_l2": CWL2,
    "autoattack": AutoAttackLinf,
    "rays": RayS,
}


def attack_class(name: str) -> type[Attack]:
    """The class of attack ``name``; an unknown name is a ValueError listing the valid ones."""
    if name not in ATTACKS:
        raise ValueError(f"unknown attack {name!r}; valid attacks: {', '.join(sorted(ATTACKS))}")
    return ATTACKS[name]


def make(name: str, eps: float, **options) -> Attack:
    """Build attack ``name`` at budget ``eps``; unknown names or options raise ValueError."""
    cls = attack_class(name)
    valid = {f.name for f in dataclasses.fields(cls)} - {"eps"}
    unknown = set(options) - valid
    if unknown:
        raise ValueError(
            f"unknown option(s) {sorted(unknown)} for attack {name!r}; valid options: {sorted(valid)}"
        )
    return cls(eps=eps, **options)


__all__ = ["ATTACKS", "Attack", "AttackResult", "attack_class", "make"]

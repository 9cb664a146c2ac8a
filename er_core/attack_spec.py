"""One attack setting, :class:`AttackSpec` (attack name, ε, options), used wherever a setting is
declared: a grid spec's evaluation plan, the trials that run it and the detection protocol.

No torch at import (a spec is validated before anything heavy loads); :meth:`AttackSpec.build`
imports the attack registry when an attack is actually made.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class AttackSpec:
    """``attack``: a name in ``er_core.attacks.ATTACKS``; ``eps``: its budget (for a
    minimal-distortion attack such as C&W, whatever bound its user applies); ``options``:
    keyword arguments of the attack's constructor, kept sorted by name."""

    attack: str
    eps: float
    options: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "eps", float(self.eps))
        object.__setattr__(self, "options", dict(sorted(dict(self.options).items())))

    # Frozen but holding a dict: hash the canonical JSON of the options instead of the dict.
    def __hash__(self) -> int:
        return hash((self.attack, self.eps, json.dumps(self.options, sort_keys=True, default=repr)))

    @classmethod
    def of(cls, attack: str, eps: float, **options: Any) -> "AttackSpec":
        """An attack spec whose name is checked against the registry now."""
        from er_core.attacks import attack_class

        attack_class(attack)  # an unknown name fails here, with the valid ones listed
        return cls(attack, eps, options)

    def to_dict(self) -> dict:
        return {"attack": self.attack, "eps": self.eps, "options": dict(self.options)}

    @classmethod
    def from_dict(cls, d: dict) -> "AttackSpec":
        return cls(attack=d["attack"], eps=d["eps"], options=d.get("options") or {})

    def build(self):
        """The configured attack (``er_core.attacks.make``); bad names or options raise ValueError."""
        from er_core.attacks import make

        return make(self.attack, eps=self.eps, **self.options)

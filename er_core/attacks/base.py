"""The contract every attack shares.

An attack is a frozen dataclass of its settings (``eps`` plus attack-specific options with
defaults), built through :func:`er_core.attacks.make`. Calling it on ``(model, x, y)``:

- checks ``x`` is float NCHW in [0, 1] and ``y`` is int64 of length N,
- puts the model in eval mode for the attack and restores its mode afterwards,
- returns an :class:`AttackResult` whose ``x_adv`` lies in [0, 1] (and in the threat
  model's ball where the attack has one).

Subclasses implement only :meth:`Attack.perturb`. ``config()`` is the full setting dict,
recorded with every result row so a changed attack never mixes with an old one.

Settings are checked when an attack is built, so a bad value fails before any model is
trained: each field's value must have the field's declared type (``int`` fields take no
bool or float, ``float`` fields take no bool, ``Optional[...]`` also takes None), and a
subclass declares its numeric bounds in ``at_least`` (value ≥ bound) and ``greater_than``
(value > bound), e.g. ``at_least = {"steps": 1}``, ``greater_than = {"step_size": 0.0}``.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from typing import ClassVar, Optional

import torch
from torch import nn

from ..torch_utils import eval_mode


@dataclass
class AttackResult:
    """What an attack returns for a batch of N examples.

    x_adv: float tensor like ``x``, in [0, 1].
    queries: int64 (N,) model queries per example, or None where the attack does not count.
    gradient_failed: bool (N,) True where the loss gradient was zero or non-finite for an
        example, so a "robust" verdict there may be a silent attack failure.
    extra: per-example tensors specific to the attack (e.g. RayS radius).
    notes: the warnings the attack's own library raised about this batch (AutoAttack's checks:
        a randomized or dynamic model, outputs that are not logits, Square beating APGD, …).
    """

    x_adv: torch.Tensor
    queries: Optional[torch.Tensor] = None
    gradient_failed: Optional[torch.Tensor] = None
    extra: dict = field(default_factory=dict)
    notes: tuple = ()


@dataclass(frozen=True)
class Attack:
    """Base class: settings as dataclass fields, ``eps`` in the [0, 1] image space."""

    eps: float
    norm: ClassVar[str] = "Linf"
    name: ClassVar[str] = "attack"
    # The attack's library checks the model as it runs and may warn (``AttackResult.notes``): its
    # batches keep a record of that, even when nothing was said.
    reports_notes: ClassVar[bool] = False
    at_least: ClassVar[dict] = {}
    greater_than: ClassVar[dict] = {}

    def __post_init__(self) -> None:
        if isinstance(self.eps, bool) or not isinstance(self.eps, (int, float)) or not 0.0 <= float(self.eps) <= 1.0:
            raise ValueError(
                f"{self.name}: eps must be a number in [0, 1] (image space), got {self.eps!r}"
            )
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            check_setting(self.name, f.name, getattr(self, f.name), hints[f.name])
        for option, bound in self.at_least.items():
            value = getattr(self, option)
            if value is not None and not value >= bound:
                raise ValueError(f"{self.name}: {option} must be ≥ {bound}, got {value!r}")
        for option, bound in self.greater_than.items():
            value = getattr(self, option)
            if value is not None and not value > bound:
                raise ValueError(f"{self.name}: {option} must be > {bound}, got {value!r}")

    def config(self) -> dict:
        """Every setting of this attack, including its name, as plain values."""
        return {"attack": self.name, "norm": self.norm, **dataclasses.asdict(self)}

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> AttackResult:
        check_batch(self.name, x, y)
        with eval_mode(model):
            result = self.perturb(model, x.detach(), y.detach())
        result.x_adv = result.x_adv.detach().clamp_(0.0, 1.0)
        return result

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> AttackResult:
        raise NotImplementedError

    def gradient_passes(self) -> float:
        """At most how many forward + backward passes this attack spends per example, with its
        settings: the unit of the grid's cost model (a forward-only query counts as 1/3)."""
        raise NotImplementedError


def check_setting(attack_name: str, option: str, value, declared) -> None:
    """``value`` has the declared type of an attack field (int, float, bool, str, Optional)."""
    allowed = typing.get_args(declared) if typing.get_origin(declared) is typing.Union else (declared,)
    if value is None and type(None) in allowed:
        return
    for kind in allowed:
        if kind is bool and isinstance(value, bool):
            return
        if kind is int and isinstance(value, int) and not isinstance(value, bool):
            return
        if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return
        if kind is str and isinstance(value, str):
            return
    names = " or ".join("None" if k is type(None) else ("finite number" if k is float else k.__name__) for k in allowed)
    raise ValueError(f"{attack_name}: {option} must be {'an' if names[0] in 'aeiou' else 'a'} {names}, got {value!r}")


def check_batch(attack_name: str, x: torch.Tensor, y: torch.Tensor) -> None:
    """One clear error for inputs an attack cannot take."""
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{attack_name}: x must be a float tensor of shape (N, C, H, W), got {shape}")
    if not x.is_floating_point():
        raise ValueError(f"{attack_name}: x must be floating point in [0, 1], got dtype {x.dtype}")
    if x.numel() and (x.min() < 0.0 or x.max() > 1.0):
        raise ValueError(
            f"{attack_name}: x must lie in [0, 1] (got min {x.min().item():.3f}, "
            f"max {x.max().item():.3f}); normalisation belongs inside the model"
        )
    if not isinstance(y, torch.Tensor) or y.dim() != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"{attack_name}: y must be a 1-D label tensor of length {x.shape[0]}")
    if y.dtype != torch.int64:
        raise ValueError(f"{attack_name}: y must be int64 class labels, got {y.dtype}")


def project_linf(x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """Project onto the ℓ∞ ball around the *original* input, then onto [0, 1]."""
    return torch.min(torch.max(x_adv, x - eps), x + eps).clamp_(0.0, 1.0)


def bad_gradient(grad: torch.Tensor) -> torch.Tensor:
    """Per example: True where the gradient is all zero or has a non-finite entry."""
    flat = grad.flatten(1)
    return (~torch.isfinite(flat).all(dim=1)) | (flat.abs().sum(dim=1) == 0)

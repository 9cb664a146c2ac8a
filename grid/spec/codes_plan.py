"""The codes plan: the spec field ``codes`` and the PGD setting one trial's codes stage runs.

Spec field ``codes``: ``false`` (off, the default), ``true`` (on, every default below), or a
mapping ``{steps: 40, eps: ...}`` overriding either. ``eps`` is one rule for every dataset
(``eps: half``) or a mapping dataset → a number in (0, 1], ``"half"`` or ``"auto"``
(``eps: {mnist: half, cifar10: 0.02}``); a dataset left out gets ``"auto"``.

How a trial's ε is chosen (:class:`CodesPlan`'s ``rule``, recorded with the codes rows):

- ``"half"`` (:data:`HALF`): the ε of the trial's own PGD sweep (the evaluation plan's ``pgd``
  items, whose rows the evaluation stage commits before the codes stage runs) where its PGD
  robust accuracy, correct both clean and under attack over the evaluation subset, is nearest
  50% (ties: the smaller ε; ε = 0, an attack that changes nothing, is never chosen). Chosen by
  the stage from the stored rows (:func:`nearest_half`). Given explicitly, it needs a nonzero ε
  in that dataset's PGD sweep (checked with the spec).
- ``"auto"`` (:data:`AUTO`, the default): ``"half"`` where the trial's PGD sweep has at least
  :data:`MIN_SWEEP` nonzero ε, else the dataset's training ε (``er_core.dataset_info``: MNIST
  0.3, CIFAR10 0.031, ...; rule ``"train_eps"``). Why: the figures compare the code z of
  natural and adversarial images, and the markers of the PGD panels (● the attack failed,
  ▼ it fooled the model) only tell something where both occur. At the training ε, the
  clean-trained models the figures compare (E-CLA, ER-Classifier−) fall to 1–2% robust
  accuracy on MNIST, so every point is a ▼; the ε where PGD fools about half the examples
  shows both. A trial without such a sweep keeps the training ε, the scale of the paper's
  evaluation on that dataset.
- a number (rule ``"given"``): PGD at that ε.

PGD runs ``steps`` steps (default :data:`DEFAULT_STEPS`: the paper does not give PGD's steps
for its Figures 5/6; 40 is the standard ℓ∞ evaluation setting it uses elsewhere), whatever the
steps of the sweep the ε was chosen from. The stage itself (the store, torch) is
:mod:`grid.stages.codes`; this module is what a spec needs to be validated without them.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Mapping, Optional

from er_core.attack_spec import AttackSpec

from .fields import check_keys, in_datasets, positive_int

DEFAULT_STEPS = 40
#: The attack the codes stage runs, and the evaluation attack whose sweep ``"half"`` reads.
PGD = "pgd"
#: The rules a spec may name, and the rules a trial's plan holds once ``"auto"`` is resolved.
HALF, AUTO = "half", "auto"
GIVEN, TRAIN_EPS = "given", "train_eps"
SPEC_RULES = (HALF, AUTO)
TRIAL_RULES = (HALF, TRAIN_EPS, GIVEN)
#: Where the PGD panels show most: half of the examples survive the attack (●), half are fooled (▼).
TARGET_ACCURACY = Fraction(1, 2)
#: ``"auto"`` chooses among the swept ε only where there are at least two to choose from; with
#: one, that ε says nothing about where the attack is informative.
MIN_SWEEP = 2


def default_codes_eps(dataset: str) -> float:
    """The dataset's training ε (MNIST 0.3, CIFAR10 0.031, ...; digits 0.1): the scale of the
    paper's evaluation on that dataset."""
    from er_core.dataset_info import info

    return float(info(dataset).train_eps)


def sweep_eps(eval_plan) -> tuple:
    """The nonzero ε, ascending, at which ``eval_plan`` (a trial's tuple of ``AttackSpec``) runs PGD."""
    return tuple(sorted({float(item.eps) for item in eval_plan if item.attack == PGD and item.eps > 0}))


def nearest_half(counts: Mapping[float, tuple]) -> float:
    """The ε whose PGD robust accuracy is nearest :data:`TARGET_ACCURACY`; ties: the smaller ε.

    ``counts``: ε → (examples robust, examples evaluated); ε = 0 is left out. Exact fractions, so
    0.4 and 0.6 are a tie however the floats round. ValueError when no nonzero ε remains."""
    usable = {float(eps): (int(robust), int(n)) for eps, (robust, n) in counts.items() if eps > 0 and n > 0}
    if not usable:
        raise ValueError(f"no PGD rows at a nonzero ε to choose from (given ε: {sorted(counts)})")
    return min(usable, key=lambda eps: (abs(Fraction(*usable[eps]) - TARGET_ACCURACY), eps))


@dataclass(frozen=True)
class CodesPlan:
    """One trial's codes attack: PGD with ``steps`` steps, its ε fixed (``eps``, rules ``"given"``
    and ``"train_eps"``) or chosen by the stage from the trial's PGD rows (``eps`` None, rule
    ``"half"``). Not part of ``trial_id``: adding or changing it never retrains a trial."""

    rule: str
    steps: int
    eps: Optional[float] = None

    def __post_init__(self) -> None:
        if self.rule not in TRIAL_RULES:
            raise ValueError(f"codes plan: rule {self.rule!r}; valid: {', '.join(TRIAL_RULES)}")
        positive_int("codes.steps", self.steps)
        if (self.eps is None) != (self.rule == HALF):
            raise ValueError(f"codes plan: rule {self.rule!r} {'takes no' if self.rule == HALF else 'needs an'} ε, "
                             f"got {self.eps!r}")
        if self.eps is not None:
            object.__setattr__(self, "eps", float(self.eps))

    def attack(self, eps: float) -> AttackSpec:
        """The codes attack at ``eps``: PGD with this plan's steps."""
        return AttackSpec(PGD, eps, {"steps": self.steps})

    def priced_attack(self, eval_plan) -> AttackSpec:
        """The attack the cost model prices. PGD's passes (steps × restarts) do not depend on ε,
        so a ``"half"`` plan is priced at the largest ε of the sweep it chooses from."""
        return self.attack(self.eps if self.eps is not None else max(sweep_eps(eval_plan)))

    def to_dict(self) -> dict:
        return {"rule": self.rule, "steps": self.steps, "eps": self.eps}

    @classmethod
    def from_dict(cls, d: dict) -> "CodesPlan":
        """The plan back from :meth:`to_dict`, or from the ``AttackSpec`` dict that trial configs
        recorded before the rule existed (an experiment resumed from its record): a fixed ε."""
        if "attack" in d:
            spec = AttackSpec.from_dict(d)
            return cls(GIVEN, int(spec.options.get("steps", DEFAULT_STEPS)), spec.eps)
        check_keys("codes_plan", d, required=("rule", "steps"), optional=("eps",))
        return cls(d["rule"], d["steps"], d.get("eps"))


def _eps_value(dataset: str, value):
    """One dataset's ``codes.eps``: a rule name or a number in (0, 1]."""
    if isinstance(value, str) and value in SPEC_RULES:
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        rules = " or ".join(f'"{r}"' for r in SPEC_RULES)
        raise ValueError(f"spec.codes.eps.{dataset}: expected a number in (0, 1], {rules}, got {value!r}")
    return float(value)


def validate_codes_spec(raw, datasets) -> Optional[dict]:
    """The spec's ``codes`` field normalised to ``{"steps": int, "eps": {dataset: ε | rule}}`` or None."""
    if raw is None or raw is False:
        return None
    if raw is True:
        raw = {}
    if not isinstance(raw, dict):
        raise ValueError(f"spec.codes: expected true, false or {{steps, eps}}, got {raw!r}")
    check_keys("spec.codes", raw, required=(), optional=("steps", "eps"))
    steps = positive_int("codes.steps", raw.get("steps", DEFAULT_STEPS))
    given = raw.get("eps")
    if given is None:
        given = {}
    elif isinstance(given, str):
        if given not in SPEC_RULES:
            raise ValueError(f"spec.codes.eps: unknown rule {given!r}; valid: {', '.join(SPEC_RULES)} "
                             "(or a dict dataset → ε or rule)")
        given = dict.fromkeys(datasets, given)
    elif not isinstance(given, dict):
        raise ValueError(f"spec.codes.eps: expected a rule ({', '.join(SPEC_RULES)}) or a dict dataset → ε or rule, "
                         f"got {given!r}")
    for dataset in given:
        in_datasets("codes.eps", dataset, datasets)
    return {"steps": steps, "eps": {d: _eps_value(d, given.get(d, AUTO)) for d in datasets}}


def check_codes_against_plan(codes: Optional[dict], eval_plan: dict) -> None:
    """An explicit ``"half"`` needs a nonzero ε in the dataset's PGD sweep to choose from.
    ``codes``, ``eval_plan``: the normalised spec fields."""
    for dataset, eps in (codes or {}).get("eps", {}).items():
        if eps == HALF and not sweep_eps(eval_plan[dataset]):
            raise ValueError(f'spec.codes.eps.{dataset}: "{HALF}" chooses among the nonzero ε of the {PGD} '
                             f"items of spec.eval_plan.{dataset}, which has none; give a number or \"{AUTO}\"")


def trial_codes_plan(codes: Optional[dict], dataset: str, eval_plan) -> Optional[CodesPlan]:
    """One trial's codes plan (``eval_plan``: its tuple of ``AttackSpec``), ``"auto"`` resolved, or None."""
    if codes is None:
        return None
    eps = codes["eps"][dataset]
    if eps == AUTO:
        if len(sweep_eps(eval_plan)) < MIN_SWEEP:
            return CodesPlan(TRAIN_EPS, codes["steps"], default_codes_eps(dataset))
        eps = HALF
    if eps == HALF:
        return CodesPlan(HALF, codes["steps"])
    return CodesPlan(GIVEN, codes["steps"], eps)

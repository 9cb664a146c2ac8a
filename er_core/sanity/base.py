"""What every sanity rule reads and returns: the outcomes of one trial's attacks, the flag it
raises, the reason it could not check, and the one paired test the rules share.

Pure Python on plain records (scipy for the exact binomial tail), so the grid and the Ray-free
fidelity runner apply the same rules.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Iterable, Optional

# A flag is raised only when its gap is also beyond chance on the examples both attacks saw:
# one-sided exact McNemar test (the discordant pairs, binomial with p = 1/2) at this level. At
# n = 1,000 a 5-point paired gap with no reverse discordance has p ≈ 1e-15, while on the smoke
# grid's 40 examples a 2-example gap (p = 0.25) is noise, not evidence. Several comparisons run
# per trial; at 0.001 a healthy trial raises a false flag about once in a hundred.
ALPHA = 0.001


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
class NotChecked:
    """A rule that could not judge this trial, and why (the plan lacks what it needs)."""

    reason: str


@dataclasses.dataclass(frozen=True)
class AttackOutcome:
    """One (attack, threat model, ε) of one trial: which examples it evaluated, which stayed robust.

    ``clean``: the evaluated examples the model classifies correctly without attack (None where
    unknown); ``out_of_bounds``: examples whose ℓ∞ distortion exceeds ε (ℓ∞ attacks only);
    ``randomized``: the verdicts are a randomized model's ensemble (RSE).
    """

    attack: str
    norm: str
    eps: float
    evaluated: frozenset
    robust: frozenset  # correct clean and under the attack
    gradient_failed: int
    clean: Optional[frozenset] = None
    out_of_bounds: int = 0
    max_linf: float = 0.0
    randomized: bool = False

    @property
    def accuracy(self) -> float:
        return len(self.robust) / len(self.evaluated) if self.evaluated else float("nan")

    def accuracy_on(self, samples: frozenset) -> float:
        return len(self.robust & samples) / len(samples) if samples else float("nan")


@dataclasses.dataclass(frozen=True)
class TrialEvidence:
    """Everything the rules judge one trial by."""

    trial_id: str
    outcomes: tuple = ()
    num_classes: int = 10
    train_eps: Optional[float] = None
    clean_accuracy: Optional[float] = None
    losses: tuple = ()  # per-epoch metric dicts (``losses_json``)
    # What attacks' libraries said, per batch (:func:`batch_notes`); None where none were read.
    notes: Optional[tuple] = None

    def of(self, attack: str, norm: Optional[str] = None) -> list[AttackOutcome]:
        return [o for o in self.outcomes if o.attack == attack and (norm is None or o.norm == norm)]


# ℓ∞ distortions are computed in float32 from images in [0, 1]: one rounding step of a value
# near 1 is 6e-8; anything beyond 1e-6 is a perturbation that left the ε ball.
LINF_TOLERANCE = 1e-6


def outcomes_from_records(records: Iterable[dict]) -> list[AttackOutcome]:
    """Group per-example records (er_core.evaluate / store rows) of ONE trial by (attack, norm, ε)."""
    groups: dict[tuple, list] = {}
    for r in records:
        key = (r["attack"], r.get("norm", "Linf"), float(r["eps"]))
        groups.setdefault(key, []).append(r)
    out = []
    for (attack, norm, eps), rows in groups.items():
        linf = [float(r["linf"]) for r in rows if r.get("linf") is not None]
        out.append(AttackOutcome(
            attack=attack, norm=norm, eps=eps,
            evaluated=frozenset(int(r["sample_idx"]) for r in rows),
            robust=frozenset(int(r["sample_idx"]) for r in rows if r["correct_clean"] and r["correct_adv"]),
            gradient_failed=sum(1 for r in rows if r.get("gradient_failed") is True),
            clean=frozenset(int(r["sample_idx"]) for r in rows if r["correct_clean"]),
            out_of_bounds=sum(1 for v in linf if v > eps + LINF_TOLERANCE) if norm == "Linf" else 0,
            max_linf=max(linf, default=0.0),
            randomized=any(r.get("randomized") is True for r in rows),
        ))
    return out


#: The note every batch of a noting attack keeps, said or not: "this batch's notes were kept".
RECORDED_NOTE = "recorded"


def batch_notes(attack: str, eps: float, batch: int, said) -> list[tuple]:
    """One evaluation batch's notes as the rules read them, (attack, ε, batch, kind, message):
    a ``recorded`` entry, then each distinct (kind, message) the attack gave
    (``AttackResult.notes``: AutoAttack's ``warning`` notes and its ``eot_probe``)."""
    return [(attack, float(eps), int(batch), RECORDED_NOTE, "")] + [
        (attack, float(eps), int(batch), kind, message) for kind, message in dict.fromkeys(said)]


def paired_gap(lower: AttackOutcome, higher: AttackOutcome) -> tuple[float, float, int]:
    """(accuracy of ``higher`` minus ``lower`` on the examples both evaluated, one-sided exact
    McNemar p-value that ``higher`` is not truly above, number of shared examples)."""
    from scipy.stats import binomtest

    shared = lower.evaluated & higher.evaluated
    if not shared:
        return float("nan"), 1.0, 0
    only_higher = len((higher.robust & shared) - lower.robust)
    only_lower = len((lower.robust & shared) - higher.robust)
    discordant = only_higher + only_lower
    p = binomtest(only_higher, discordant, 0.5, alternative="greater").pvalue if discordant else 1.0
    return (only_higher - only_lower) / len(shared), float(p), len(shared)


def significant(gap: float, p: float, margin: float) -> bool:
    """A gap beyond the rule's margin (what a sound evaluation can show) and beyond chance."""
    return not math.isnan(gap) and gap > margin and p < ALPHA


__all__ = ["ALPHA", "LINF_TOLERANCE", "RECORDED_NOTE", "AttackOutcome", "Flag", "NotChecked", "TrialEvidence",
           "batch_notes", "outcomes_from_records",
           "paired_gap", "significant"]

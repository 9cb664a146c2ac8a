"""Attack one evaluation batch and return one plain record per example.

``attack_batch(model, attack_name, x, y, eps, sample_idx=None, passes=None, **options)`` is a
short pipeline: build the attack (``attacks.make`` validates name, ε and options) → judge the
clean batch → run the attack (timed) → measure the perturbation → judge the adversarial batch
→ records. Examples misclassified clean are not attacked (:func:`attack_correct`). Records are dicts of Python scalars with the keys in :data:`RECORD_KEYS`; the grid adds
its trial columns and writes them as parquet rows.

Distortion is measured on ``x_adv − x`` exactly as the attack returned it: ``l2`` (plain ℓ2
norm over all C·H·W values), ``l2_rms`` = l2 / sqrt(C·H·W) (the paper's Table 2 form, bound
0.005 on MNIST) and ``linf``. ``queries`` is the attack's per-example model-query count, −1 where
the attack does not count (FGSM, AutoAttack). ``seconds`` is the batch's attack wall time / N.

Randomized models (``model.randomized`` True, e.g. RSE, whose eval-mode forward is already an
ensemble): one forward pass can overstate robustness, so the batch is judged ``passes`` times
(default 10) and an example counts as correct only if *every* pass is correct. The same rule
judges the clean and the adversarial batch. ``pred_*`` is then a wrong prediction from one of
the passes where any pass was wrong (the worst case), else the label, so ``correct_* ==
(pred_* == label)`` holds for every record. Records carry ``randomized``.

x in [0, 1], (N, C, H, W) on the model's device; y int64 (N,).
"""

from __future__ import annotations

import math
import time
from importlib import metadata
from typing import Optional, Sequence

import torch
from torch import nn

from .attacks import make
from .attacks.base import AttackResult, check_batch
from .torch_utils import predict

RECORD_KEYS = (
    "sample_idx", "label", "pred_clean", "pred_adv", "correct_clean", "correct_adv",
    "l2", "l2_rms", "linf", "queries", "seconds", "gradient_failed", "randomized",
)
DEFAULT_PASSES = 10


def passes_for(model: nn.Module, passes: Optional[int] = None) -> int:
    """How many forward passes judge ``model``: ``passes`` when given, else
    :data:`DEFAULT_PASSES` for a randomized model and 1 for a deterministic one."""
    if passes is None:
        passes = DEFAULT_PASSES if is_randomized(model) else 1
    if passes < 1:
        raise ValueError(f"passes must be ≥ 1, got {passes}")
    return passes


def is_randomized(model: nn.Module) -> bool:
    """Whether the model's eval-mode forward is random (``model.randomized``, e.g. RSE)."""
    return bool(getattr(model, "randomized", False))


def judge(model: nn.Module, x: torch.Tensor, y: torch.Tensor, passes: int) -> torch.Tensor:
    """Worst-case prediction over ``passes`` forward passes: a wrong one if any, else y."""
    worst = y.clone()
    for _ in range(passes):
        pred = predict(model, x)
        newly_wrong = (pred != y) & (worst == y)
        worst[newly_wrong] = pred[newly_wrong]
    return worst


def attack_batch(
    model: nn.Module,
    attack_name: str,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    sample_idx: Optional[Sequence[int] | torch.Tensor] = None,
    passes: Optional[int] = None,
    notes: Optional[list] = None,
    skip_misclassified: bool = True,
    **options,
) -> list[dict]:
    """Per-example records of attacking (x, y) with ``attack_name`` at ``eps``; see module doc.

    ``notes``: where given, the warnings the attack's library raised about this batch are
    appended to it (``AttackResult.notes``). ``skip_misclassified``: attack only the examples
    judged correct clean (:func:`attack_correct`)."""
    attack = make(attack_name, eps, **options)
    n = len(x)
    if sample_idx is None:
        sample_idx = list(range(n))
    sample_idx = [int(i) for i in sample_idx]
    if len(sample_idx) != n:
        raise ValueError(f"sample_idx must have one entry per example ({n}), got {len(sample_idx)}")
    randomized = is_randomized(model)
    passes = passes_for(model, passes)
    check_batch(attack_name, x, y)  # before any pass of the model

    pred_clean = judge(model, x, y, passes)
    start = time.perf_counter()
    attacked = pred_clean == y if skip_misclassified else None
    result = attack_correct(attack, model, x, y, attacked)
    seconds = (time.perf_counter() - start) / max(n, 1)
    if notes is not None:
        notes.extend(result.notes)
    pred_adv = judge(model, result.x_adv, y, passes)
    if attacked is not None:  # not attacked: the clean verdict stands (a randomized model's too)
        pred_adv = torch.where(attacked, pred_adv, pred_clean)
    delta = (result.x_adv - x).flatten(1)
    l2 = delta.norm(dim=1)
    l2_rms = l2 / math.sqrt(delta.shape[1])
    linf = delta.abs().amax(dim=1) if delta.shape[1] else torch.zeros(n)
    queries = result.queries if result.queries is not None else torch.full((n,), -1)
    failed = result.gradient_failed if result.gradient_failed is not None else torch.zeros(n, dtype=torch.bool)

    columns = {
        "label": y.tolist(),
        "pred_clean": pred_clean.tolist(),
        "pred_adv": pred_adv.tolist(),
        "correct_clean": (pred_clean == y).tolist(),
        "correct_adv": (pred_adv == y).tolist(),
        "l2": l2.tolist(),
        "l2_rms": l2_rms.tolist(),
        "linf": linf.tolist(),
        "queries": [int(q) for q in queries.tolist()],
        "gradient_failed": [bool(f) for f in failed.tolist()],
    }
    return [
        {
            "sample_idx": sample_idx[i],
            **{key: column[i] for key, column in columns.items()},
            "seconds": seconds,
            "randomized": randomized,
        }
        for i in range(n)
    ]


def attack_correct(attack, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                   correct: Optional[torch.Tensor]) -> AttackResult:
    """``attack`` on the examples where ``correct`` is True (None: on all of them).

    An example the model misclassifies clean is not robust whatever an attack finds (robust =
    correct clean and under attack), so attacking it is a wasted pass: its x_adv is x itself
    (``pred_adv`` = the clean verdict, so ``correct_adv`` is False, distortion 0, 0 queries).
    AutoAttack skips such examples internally too. The attacked subset is a fixed function of
    the batch and the model, so a batch redone after a resume attacks the same examples with
    the same random draws.
    """
    if correct is None or bool(correct.all()):
        return attack(model, x, y)
    n = len(x)
    x_adv = x.detach().clone()
    queries = torch.zeros(n, dtype=torch.int64)
    failed = torch.zeros(n, dtype=torch.bool)
    if not bool(correct.any()):
        return AttackResult(x_adv=x_adv, queries=queries, gradient_failed=failed)
    part = attack(model, x[correct], y[correct])
    x_adv[correct] = part.x_adv
    where = correct.cpu()
    counted = part.queries is not None
    if counted:
        queries[where] = part.queries.cpu().to(torch.int64)
    if part.gradient_failed is not None:
        failed[where] = part.gradient_failed.cpu().bool()
    return AttackResult(x_adv=x_adv, queries=queries if counted else None, gradient_failed=failed, notes=part.notes)


def attack_fingerprint(attack_name: str, eps: float, **options) -> dict:
    """The attack's full config (validated through ``make``) plus the library versions."""
    config = make(attack_name, eps, **options).config()
    # Part of what produced a row: attack_batch attacks only the examples correct clean.
    config["skips_misclassified"] = True
    config["torch_version"] = torch.__version__
    config["pyautoattack_version"] = metadata.version("pyautoattack")
    return config

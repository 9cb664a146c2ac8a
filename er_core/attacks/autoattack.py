"""AutoAttack (Croce & Hein, ICML 2020) through PyPI ``pyautoattack``, the official code.

Threat model: ℓ∞ at ``eps``. ``version`` None picks ``'standard'`` (APGD-CE, APGD-T, FAB-T,
Square) for deterministic models and ``'rand'`` (APGD-CE and APGD-DLR with 20-step EOT) for
models whose ``randomized`` attribute is True (RSE), as the AutoAttack authors prescribe.
Seeded with ``seed`` (pyautoattack re-seeds torch's global RNG before every sub-attack; this
wrapper restores the caller's RNG state afterwards). The call is exactly

    AutoAttack(model, norm='Linf', eps=eps, version=..., device=x.device, seed=seed)
    .run_standard_evaluation(x, y, batch_size=batch_size)

with ``verbose`` off and, trap avoided, the targeted sub-attacks' ``n_target_classes`` set to
min(9, classes − 1): the library's fixed 9 breaks on models with fewer than 10 classes.
Standard AutoAttack needs ≥ 4 classes (its targeted DLR loss uses the 3rd-largest logit);
fewer is a ValueError.

No ``state_path``: resumability is per evaluation batch in the grid (a killed run redoes at most
one batch), and pyautoattack 0.2.0's restore path returns x for examples broken before the
restore (and leaves ``y_adv`` unbound), which would silently count them as robust.

Queries: None (pyautoattack does not count them; wrap the model to count forward passes).
``gradient_failed``: per example, True where the model is not fooled and the cross-entropy
gradient at x is zero or non-finite (a hint of gradient masking; costs one forward/backward).
x, x_adv in [0, 1], shapes (N, C, H, W); x_adv stays in the ε-ball.
Usage: ``make("autoattack", eps=0.3)(model, x, y).x_adv``.
"""

from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar, Optional

import torch
import torch.nn.functional as F

from .base import Attack, AttackResult, bad_gradient

VERSIONS = ("standard", "rand")


@dataclass(frozen=True)
class AutoAttackLinf(Attack):
    name: ClassVar[str] = "autoattack"
    reports_notes: ClassVar[bool] = True  # pyautoattack's checks (see library_warnings)
    version: Optional[str] = None  # None: 'rand' if model.randomized else 'standard'
    seed: int = 0
    batch_size: int = 500
    # The EoT probe, for randomized models only (the ``rand`` suite): APGD-CE with EoT over
    # ``eot_probe_iter`` samples instead of the suite's 20, on up to ``eot_probe_examples`` of the
    # batch's examples the suite left standing; how many it breaks is a note of the batch (the
    # ``eot_insufficient`` flag). 100 is five times the suite's EoT, the larger-EoT check Croce and
    # Hein's own flags_doc recommends; 20 examples keep the probe a small share of the suite.
    eot_probe_examples: int = 20
    eot_probe_iter: int = 100
    at_least: ClassVar[dict] = {"batch_size": 1, "eot_probe_examples": 0, "eot_probe_iter": 1}

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.version is not None and self.version not in VERSIONS:
            raise ValueError(
                f"autoattack: version must be None (automatic) or one of {list(VERSIONS)}, "
                f"got {self.version!r}"
            )

    def resolved_version(self, model) -> str:
        if self.version is not None:
            return self.version
        return "rand" if getattr(model, "randomized", False) else "standard"

    def gradient_passes(self) -> float:
        # The standard suite (APGD-CE, APGD-T, FAB-T, Square; each later attack only on the
        # examples still standing) costs about 2,000 forward + backward passes per example on a
        # robust model; pyautoattack publishes no exact count, so this is an estimate.
        return 2000.0

    def perturb(self, model, x, y) -> AttackResult:
        with torch.no_grad():
            num_classes = model(x[:1]).shape[1]
        version = self.resolved_version(model)
        if version == "standard" and num_classes < 4:
            raise ValueError(
                f"autoattack: version 'standard' needs ≥ 4 classes (targeted DLR loss), "
                f"the model has {num_classes}"
            )
        devices = [x.device] if x.device.type == "cuda" else []
        probe = ()
        with torch.random.fork_rng(devices=devices), library_warnings() as said:
            adversary = build_adversary(model, self.eps, version, self.seed, x.device, num_classes)
            x_adv, _ = adversary.run_standard_evaluation(x, y, batch_size=self.batch_size)
            if version == "rand" and self.eot_probe_examples:
                probe = (self._eot_probe(adversary, model, x, y, x_adv),)
        notes = tuple((WARNING_NOTE, m) for m in dict.fromkeys(said)) + probe
        return AttackResult(x_adv=x_adv, queries=None, gradient_failed=_masked_gradient(model, x, y, x_adv),
                            notes=notes)

    def _eot_probe(self, adversary, model, x, y, x_adv) -> tuple:
        """(``EOT_PROBE_NOTE``, "broken/probed"): APGD-CE at ``eot_probe_iter`` EoT samples on the
        first ``eot_probe_examples`` examples correct clean and still standing after the suite."""
        with torch.no_grad():
            standing = (model(x).argmax(1) == y) & (model(x_adv).argmax(1) == y)
        idx = standing.nonzero().flatten()[: self.eot_probe_examples]
        if len(idx) == 0:
            return EOT_PROBE_NOTE, "0/0"
        adversary.apgd.loss = "ce"
        adversary.apgd.eot_iter = self.eot_probe_iter
        probed = adversary.apgd.perturb(x[idx], y[idx])
        with torch.no_grad():
            broken = int((model(probed).argmax(1) != y[idx]).sum())
        return EOT_PROBE_NOTE, f"{broken}/{len(idx)}"

    def config(self) -> dict:
        # The probe changes no row (it only adds a note), so at its defaults it is left out of
        # the fingerprint and rows written before it existed keep theirs.
        config = super().config()
        for name, default in (("eot_probe_examples", 20), ("eot_probe_iter", 100)):
            if config[name] == default:
                del config[name]
        return config


# pyautoattack's own checks (its ``checks`` module: a randomized or dynamic model, outputs that
# are not logits, too few classes for the targeted attacks, Square succeeding where APGD failed)
# report through this logger, or as Python warnings where it has none.
LIBRARY_LOGGER = "auto-attack"
# The kinds of note a batch keeps (``AttackResult.notes``: (kind, message) pairs).
WARNING_NOTE, EOT_PROBE_NOTE = "warning", "eot_probe"


class _Collect(logging.Handler):
    def __init__(self, into: list) -> None:
        super().__init__(level=logging.WARNING)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append(record.getMessage())


@contextmanager
def library_warnings():
    """Every warning pyautoattack raises inside the block, as a list of messages (logger records
    of WARNING and above, and Python warnings), so a batch's rows can carry what AutoAttack
    itself said about the model instead of losing it to a silenced logger."""
    messages: list = []
    logger = logging.getLogger(LIBRARY_LOGGER)
    handler, level = _Collect(messages), logger.level
    logger.addHandler(handler)
    if level == logging.NOTSET or level > logging.WARNING:
        logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield messages
        messages.extend(str(w.message) for w in caught if "pyautoattack" in (w.filename or ""))
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def build_adversary(model, eps: float, version: str, seed: int, device, num_classes: int):
    """The pyautoattack object this wrapper runs (exposed so tests can compare exactly)."""
    from pyautoattack import AutoAttack

    adversary = AutoAttack(model, norm="Linf", eps=eps, version=version, device=device, seed=seed)
    adversary.verbose = False
    targets = min(9, num_classes - 1)
    adversary.apgd_targeted.n_target_classes = targets
    adversary.fab.n_target_classes = targets
    return adversary


def _masked_gradient(model, x, y, x_adv) -> torch.Tensor:
    x_req = x.clone().requires_grad_(True)
    logits = model(x_req)
    loss = F.cross_entropy(logits, y, reduction="sum")
    (grad,) = torch.autograd.grad(loss, x_req)
    with torch.no_grad():
        fooled = model(x_adv).argmax(dim=1) != y
    return (bad_gradient(grad) & ~fooled).cpu()

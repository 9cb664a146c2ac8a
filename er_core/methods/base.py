"""The Method contract and the hyperparameters every method shares.

A Method owns its model (an :class:`~er_core.nets.ERNet`, the inference model:
``forward`` gives logits), an optional critic, and its optimisers. ``train_step(x, y)``
takes one batch (float NCHW in [0, 1], int64 labels) and returns a dict of float losses.
``state_dict()`` / ``load_state_dict()`` cover model, critic and every optimiser as plain
tensors and Python values, so ``torch.load(..., weights_only=True)`` reads them.

Randomness (PGD random starts, prior samples, RSE noise, dropout) comes from torch's global
RNG, which :func:`er_core.train.fit` seeds from (seed, epoch) at each epoch start. Model and
critic initialisation is seeded by the ``init_seed`` hyperparameter, independent of the
global RNG state, so ``make`` with the same arguments builds the same weights.

Hyperparameters are declared as :class:`Param` entries (default + one-line doc) in each
class's ``PARAMS``; a default of ``PER_DATASET`` is filled from ``DATASET_DEFAULTS``.

Per-epoch schedules (``methods.schedule``): ``fit`` calls ``begin_epoch(epoch, epochs)`` at
the start of every epoch; it sets the epoch's learning rate (``lr_schedule``) and, for
adversarial methods, the epoch's training ε (``eps_warmup_epochs``), and returns them as
metrics ``lr`` and ``train_eps_epoch``. Both depend only on the epoch index, so resume is exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from ..attacks.pgd import pgd_examples
from ..data import info
from ..nets import DEFAULT_CODE_DIM, ERNet, build_model
from .schedule import LR_SCHEDULES, lr_factor, warmup_eps


class _PerDataset:
    def __repr__(self) -> str:
        return "PER_DATASET"


PER_DATASET = _PerDataset()


@dataclass(frozen=True)
class Param:
    """A hyperparameter: its default (or PER_DATASET) and what it means."""

    default: Any
    doc: str


# Per-dataset defaults. Training ε follows the paper's evaluation scales (MNIST 0.3,
# CIFAR10 0.031 = 8/255, STL10 0.03, Tiny ImageNet 0.01; digits 0.1, its 8×8 images break
# at much smaller ε than MNIST). PGD steps: Madry et al. use 40 on MNIST and 7 on CIFAR10.
# ε warm-up W (eps_warmup_epochs, see methods.schedule; TRADES overrides it with 0):
# - mnist 4: on one H200 (batch 128, train ε 0.3), madry and er without warm-up stayed
#   constant predictors (clean 0.118, loss 2.30 for 6–7 epochs); with ε raised over 4
#   epochs they reached clean 0.982 / 0.976 and PGD-40 0.896 / 0.889 after 4 epochs (over 3
#   epochs: 0.975 / 0.965 after 3). 4 is the longer of the two that converged: 13% of the
#   paper preset's 30 epochs.
# - digits 5: at train ε 0.3 (batch 32) er without warm-up collapsed (seeds 1 and 2: clean
#   0.092 / 0.081 after 8 epochs, adversarial CE > ln 10 throughout; seed 0 stuck at 0.14
#   for 5 epochs, 0.725 after 20) and madry crawled (0.39 after 5 epochs); with W 5 they
#   reach 0.908 / 0.925 after 5 epochs and 0.839 / 0.889 after 20 (seed 0, RMSProp critic).
#   5 = a quarter of the 20 epochs the convergence test uses.
# - cifar10 / stl10 / tiny_imagenet 0: Madry et al. and TRADES train CIFAR10 at the full
#   8/255 from the first epoch; these ε are 10× smaller than MNIST's relative to the range.
DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    "digits": {"train_eps": 0.1, "pgd_steps": 7, "eps_warmup_epochs": 5},
    "mnist": {"train_eps": 0.3, "pgd_steps": 40, "eps_warmup_epochs": 4},
    "cifar10": {"train_eps": 0.031, "pgd_steps": 7, "eps_warmup_epochs": 0},
    "stl10": {"train_eps": 0.03, "pgd_steps": 7, "eps_warmup_epochs": 0},
    "tiny_imagenet": {"train_eps": 0.01, "pgd_steps": 7, "eps_warmup_epochs": 0},
}
for _name, _k in DEFAULT_CODE_DIM.items():
    DATASET_DEFAULTS[_name]["code_dim"] = _k


class Method:
    """Base class: builds the model and the Adam optimiser; subclasses write ``loss``/``train_step``."""

    name: ClassVar[str] = "method"
    display_name: ClassVar[str] = "method"  # as the paper's tables and figures write it
    uses_lambda: ClassVar[bool] = False
    uses_train_eps: ClassVar[bool] = False
    PARAMS: ClassVar[dict[str, Param]] = {
        "lr": Param(1e-3, "Adam learning rate of encoder+classifier (Kingma & Ba's default)."),
        "code_dim": Param(PER_DATASET, "size k of the code z (nets.DEFAULT_CODE_DIM)."),
        "dropout": Param(0.0, "dropout before the classifier head (for KD's MC passes)."),
        "init_seed": Param(0, "seed of the weight initialisation (independent of the global RNG)."),
        "encoder_init": Param(
            "torch",
            "encoder init: 'torch' (PyTorch's default; code std ≈ 0.02 at init) or 'he' (code std ≈ 1, "
            "near the prior). Default torch: with 'he' ER−'s robustness gain over E-CLA on digits vanished (nets).",
        ),
        "lr_schedule": Param(
            "constant",
            "per-epoch lr schedule: 'constant', 'piecewise' (×0.1 at 50% and 75% of the epochs) or "
            "'cosine' (methods.schedule). Default constant: Adam at 1e-3 without decay is what every "
            "convergence measurement of these methods used.",
        ),
    }

    def __init__(self, dataset: str, device: str | torch.device = "cpu", **hyperparams) -> None:
        info(dataset)
        self.dataset = dataset
        self.device = torch.device(device)
        self.hyperparams = resolve(type(self), dataset, hyperparams)
        self.hp = self.hyperparams  # short alias used in the loss code
        check_ranges(self.name, self.hp)
        if self.hp["lr_schedule"] not in LR_SCHEDULES:
            raise ValueError(f"{self.name}: lr_schedule must be one of {list(LR_SCHEDULES)}, got {self.hp['lr_schedule']!r}")
        self.epoch_train_eps: float | None = None  # set by begin_epoch; None → the full train_eps
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(self.hp["init_seed"]))
            self.build()
        self.model.to(self.device)
        if self.critic is not None:
            self.critic.to(self.device)
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.make_optimizers()

    # --- construction, overridable ------------------------------------------------------
    critic = None

    def build(self) -> None:
        """Create ``self.model`` (and ``self.critic``); runs under the init seed."""
        self.model: ERNet = build_model(
            self.dataset, code_dim=self.hp["code_dim"], dropout=self.hp["dropout"], init=self.hp["encoder_init"]
        )

    def make_optimizers(self) -> None:
        self.optimizers["model"] = torch.optim.Adam(self.model.parameters(), lr=self.hp["lr"])

    @property
    def randomized(self) -> bool:
        return bool(self.model.randomized)

    # --- per-epoch schedules ---------------------------------------------------------------
    def scheduled_lrs(self) -> dict[str, float]:
        """Optimiser name → base lr for the optimisers ``lr_schedule`` scales (not the critic's)."""
        return {"model": float(self.hp["lr"])}

    def begin_epoch(self, epoch: int, epochs: int) -> dict[str, float]:
        """Set 0-based ``epoch``'s lr and training ε; return them as metrics (``lr``, ``train_eps_epoch``)."""
        factor = lr_factor(self.hp["lr_schedule"], epoch, epochs)
        for name, base_lr in self.scheduled_lrs().items():
            for group in self.optimizers[name].param_groups:
                group["lr"] = base_lr * factor
        logs = {"lr": float(self.hp["lr"]) * factor}
        if "eps_warmup_epochs" in self.hp:
            self.epoch_train_eps = warmup_eps(self.hp["train_eps"], epoch, int(self.hp["eps_warmup_epochs"]))
            logs["train_eps_epoch"] = self.epoch_train_eps
        return logs

    @property
    def train_eps_now(self) -> float:
        """The training ε in force: this epoch's warm-up value, or ``train_eps`` outside ``fit``."""
        return float(self.hp["train_eps"]) if self.epoch_train_eps is None else self.epoch_train_eps

    # --- training -------------------------------------------------------------------------
    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        """One optimisation step on a batch; returns float losses (always includes 'loss')."""
        self.model.train()
        loss, logs = self.loss(x, y)
        opt = self.optimizers["model"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": float(loss.detach()), **logs}

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def pgd(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Madry PGD training examples (CE ascent, random start), generated in eval mode.

        Eval mode for the attack passes so BatchNorm statistics are not updated by
        adversarial batches and dropout is off (as in the TRADES reference code).
        """
        eps = self.train_eps_now
        steps = int(self.hp["pgd_steps"])
        self.model.eval()
        try:
            return pgd_examples(self.model, x, y, eps, steps, step_size(self.hp, eps))
        finally:
            self.model.train()

    # --- state ----------------------------------------------------------------------------
    def state_dict(self) -> dict:
        sd = {
            "method": self.name,
            "dataset": self.dataset,
            "hyperparams": dict(self.hyperparams),
            "model": self.model.state_dict(),
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
        }
        if self.critic is not None:
            sd["critic"] = self.critic.state_dict()
        return sd

    def load_state_dict(self, sd: dict) -> None:
        if sd.get("method") != self.name:
            raise ValueError(f"state_dict is for method {sd.get('method')!r}, not {self.name!r}")
        self.model.load_state_dict(sd["model"])
        if self.critic is not None:
            self.critic.load_state_dict(sd["critic"])
        if set(sd["optimizers"]) != set(self.optimizers):
            raise ValueError(f"state_dict optimizers {sorted(sd['optimizers'])} != {sorted(self.optimizers)}")
        for k, o in self.optimizers.items():
            o.load_state_dict(sd["optimizers"][k])


def resolve(cls: type[Method], dataset: str, given: dict) -> dict:
    """Defaults for ``cls`` on ``dataset`` overlaid with ``given``; unknown names → ValueError."""
    info(dataset)
    unknown = set(given) - set(cls.PARAMS)
    if unknown:
        raise ValueError(
            f"unknown hyperparameter(s) {sorted(unknown)} for method {cls.name!r}; "
            f"valid hyperparameters: {sorted(cls.PARAMS)}"
        )
    out = {}
    for key, p in cls.PARAMS.items():
        value = given[key] if key in given and given[key] is not None else p.default
        if value is PER_DATASET:
            value = DATASET_DEFAULTS[dataset][key]
        out[key] = value
    return out


# Valid ranges of numeric hyperparameters, checked where they enter (make).
RANGES: dict[str, tuple[float, float]] = {
    "lr": (0.0, float("inf")), "critic_lr": (0.0, float("inf")), "reg_lr": (0.0, float("inf")),
    "train_eps": (0.0, 1.0), "pgd_steps": (0, float("inf")), "code_dim": (1, float("inf")),
    "dropout": (0.0, 0.999), "lam": (0.0, float("inf")), "beta": (0.0, float("inf")),
    "clip": (1e-12, float("inf")), "critic_steps": (1, float("inf")), "critic_hidden": (1, float("inf")),
    "init_noise": (0.0, float("inf")), "inner_noise": (0.0, float("inf")), "ensemble": (1, float("inf")),
    "kl_weight": (0.0, float("inf")), "recon_weight": (0.0, float("inf")),
    "eps_warmup_epochs": (0, float("inf")),
}


def check_ranges(method: str, hp: dict) -> None:
    for key, (low, high) in RANGES.items():
        value = hp.get(key)
        if key in hp and (isinstance(value, bool) or not (isinstance(value, (int, float)) and low <= value <= high)):
            raise ValueError(f"{method}: hyperparameter {key}={hp[key]!r} must be a number in [{low}, {high}]")


def step_size(hp: dict, eps: float | None = None) -> float:
    """PGD step: ``pgd_step_size`` or, when None, Madry et al.'s 2.5·ε/steps for the ε in force.

    ``eps`` is the epoch's (warm-up) ε; None → ``train_eps``. Scaling the step with the
    warm-up ε keeps the inner maximiser able to cross the smaller ball the same number of times.
    """
    if hp["pgd_step_size"] is not None:
        return float(hp["pgd_step_size"])
    eps = float(hp["train_eps"]) if eps is None else float(eps)
    return 2.5 * eps / int(hp["pgd_steps"])


ADVERSARIAL_PARAMS: dict[str, Param] = {
    "train_eps": Param(PER_DATASET, "L∞ training ε in [0, 1] image space (DATASET_DEFAULTS)."),
    "pgd_steps": Param(PER_DATASET, "PGD steps for training examples (Madry: 40 MNIST, 7 CIFAR10)."),
    "pgd_step_size": Param(None, "PGD step; None → 2.5·ε/steps of the epoch's ε (Madry et al.)."),
    "eps_warmup_epochs": Param(
        PER_DATASET,
        "W: epoch e (0-based) trains at ε·min(1, (e+1)/W); 0 = full ε from the start (DATASET_DEFAULTS).",
    ),
}


def cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, y)

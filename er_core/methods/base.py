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

Hyperparameters are declared as :class:`Param` entries in each class's ``PARAMS``: default,
one-line doc, and the values it accepts (inclusive numeric bounds ``low``/``high`` or a tuple
of ``choices``), checked once in :func:`resolve` before anything is built. A default of
``PER_DATASET`` is the same-named field of the dataset's record (``er_core.dataset_info``); a
default of ``FROM_RECIPE`` is the same-named field of the method's training recipe
(``er_core.recipes``: optimiser, lr, momentum, weight decay, lr schedule, augmentation), and the
recipe itself defaults to the dataset's.

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

from ..accel import prepare_model
from ..attacks.pgd import pgd_examples
from ..dataset_info import info
from ..nets import ENCODER_INITS, ERNet, build_model
from ..recipes import AUGMENTS, OPTIMIZERS, RECIPES, recipe
from ..torch_utils import eval_mode
from .schedule import LR_SCHEDULES, lr_factor, warmup_eps


class _Marker:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


PER_DATASET = _Marker("PER_DATASET")  # the dataset record's same-named field
FROM_RECIPE = _Marker("FROM_RECIPE")  # the same-named field of the method's recipe


@dataclass(frozen=True)
class Param:
    """A hyperparameter: its default (or PER_DATASET), what it means, and the values it accepts.

    ``low`` / ``high``: inclusive bounds of a numeric setting (either may be None: unbounded
    on that side); the value must then be an int or float (not a bool) inside them.
    ``choices``: the accepted values of a setting that names one of a few options.
    A Param without either accepts any value (e.g. ``pgd_step_size``, which may be None).
    """

    default: Any
    doc: str
    low: float | None = None
    high: float | None = None
    choices: tuple | None = None
    nullable: bool = False  # None accepted besides the bounded values

    @property
    def bounded(self) -> bool:
        return self.low is not None or self.high is not None

    def check(self, method: str, key: str, value: Any) -> None:
        """ValueError naming ``method``, ``key`` and the accepted values unless ``value`` is one."""
        if value is None and self.nullable:
            return
        if self.bounded:
            low = float("-inf") if self.low is None else self.low
            high = float("inf") if self.high is None else self.high
            if isinstance(value, bool) or not (isinstance(value, (int, float)) and low <= value <= high):
                raise ValueError(f"{method}: hyperparameter {key}={value!r} must be a number in [{low}, {high}]")
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"{method}: {key} must be one of {list(self.choices)}, got {value!r}")


class Method:
    """Base class: builds the model and its recipe's optimiser; subclasses write ``loss``/``train_step``."""

    name: ClassVar[str] = "method"
    display_name: ClassVar[str] = "method"  # as the paper's tables and figures write it
    uses_lambda: ClassVar[bool] = False
    uses_train_eps: ClassVar[bool] = False
    PARAMS: ClassVar[dict[str, Param]] = {
        # The recipe first: resolve() fills the FROM_RECIPE defaults below from it.
        "recipe": Param(PER_DATASET, "training recipe (er_core.recipes): 'adam' for digits/MNIST, "
                        "'sgd_piecewise' (SGD, piecewise lr, weight decay, crop + flip) for the colour sets.",
                        choices=tuple(RECIPES)),
        "optimizer": Param(FROM_RECIPE, "optimiser of encoder+classifier: 'adam' or 'sgd' (momentum).",
                           choices=OPTIMIZERS),
        "lr": Param(FROM_RECIPE, "base learning rate of encoder+classifier (the recipe's).", low=0.0),
        "momentum": Param(FROM_RECIPE, "SGD momentum (unused by Adam).", low=0.0, high=0.999),
        "weight_decay": Param(FROM_RECIPE, "weight decay of every encoder+classifier parameter.", low=0.0),
        "lr_schedule": Param(
            FROM_RECIPE,
            "per-epoch lr schedule: 'constant', 'piecewise' (×0.1 at 50% and 75% of the epochs) or "
            "'cosine' (methods.schedule).",
            choices=LR_SCHEDULES,
        ),
        "augment": Param(FROM_RECIPE, "training augmentation: 'none' or 'crop_flip' (er_core.augment).",
                         choices=AUGMENTS),
        "crop_padding": Param(FROM_RECIPE, "zero padding of the random crop (augment='crop_flip').", low=0),
        "code_dim": Param(PER_DATASET, "size k of the code z (dataset_info's code_dim).", low=1),
        "encoder_fc": Param(PER_DATASET, "width of the small CNN's fc layer (digits 128, MNIST 1,024 as "
                            "Madry et al.); None for VGG19 (dataset_info).", low=1, nullable=True),
        "dropout": Param(0.0, "dropout before the classifier head (for KD's MC passes).", low=0.0, high=0.999),
        "init_seed": Param(0, "seed of the weight initialisation (independent of the global RNG)."),
        # GPU speed levers (er_core.accel), off until measured on the device.
        "compile_model": Param(False, "torch.compile the model for training (er_core.accel).", choices=(False, True)),
        "channels_last": Param(False, "channels-last weights and batches in training (er_core.accel).",
                               choices=(False, True)),
        "autocast_bf16": Param(False, "training steps under bf16 autocast (er_core.accel).", choices=(False, True)),
        "encoder_init": Param(
            "torch",
            "encoder init: 'torch' (PyTorch's default; code std ≈ 0.02 at init) or 'he' (code std ≈ 1, "
            "near the prior). Default torch: with 'he' ER−'s robustness gain over E-CLA on digits vanished (nets).",
            choices=ENCODER_INITS,
        ),
    }

    def __init__(self, dataset: str, device: str | torch.device = "cpu", **hyperparams) -> None:
        self.hyperparams = resolve(type(self), dataset, hyperparams)  # every value checked here
        self.hp = self.hyperparams  # short alias used in the loss code
        self.dataset = dataset
        self.device = torch.device(device)
        self.epoch_train_eps: float | None = None  # set by begin_epoch; None → the full train_eps
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(self.hp["init_seed"]))
            self.build()
        self.model.to(self.device)
        if self.critic is not None:
            self.critic.to(self.device)
        prepare_model(self.model, self.hp)
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.make_optimizers()

    # --- construction, overridable ------------------------------------------------------
    critic = None

    def build(self) -> None:
        """Create ``self.model`` (and ``self.critic``); runs under the init seed."""
        self.model: ERNet = build_model(
            self.dataset, code_dim=self.hp["code_dim"], dropout=self.hp["dropout"], init=self.hp["encoder_init"],
            encoder_fc=self.hp["encoder_fc"],
        )

    def make_optimizers(self) -> None:
        self.optimizers["model"] = model_optimizer(self.model.parameters(), self.hp)

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
        with eval_mode(self.model):
            return pgd_examples(self.model, x, y, eps, steps, step_size(self.hp, eps))

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
    """Defaults for ``cls`` on ``dataset`` overlaid with ``given`` (None → the default), each value
    checked against its Param; an unknown dataset or name or a value out of bounds → ValueError."""
    record = info(dataset)
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
            value = getattr(record, key)
        elif value is FROM_RECIPE:
            value = getattr(recipe(out["recipe"]), key)
        p.check(cls.name, key, value)
        out[key] = value
    return out


def model_optimizer(params, hp: dict) -> torch.optim.Optimizer:
    """The encoder+classifier optimiser the hyperparameters name (Adam, or SGD with momentum)."""
    if hp["optimizer"] == "sgd":
        return torch.optim.SGD(params, lr=hp["lr"], momentum=hp["momentum"], weight_decay=hp["weight_decay"])
    return torch.optim.Adam(params, lr=hp["lr"], weight_decay=hp["weight_decay"])


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
    "train_eps": Param(PER_DATASET, "L∞ training ε in [0, 1] image space (dataset_info).", low=0.0, high=1.0),
    "pgd_steps": Param(PER_DATASET, "PGD steps for training examples (Madry: 40 MNIST, 7 CIFAR10).", low=0),
    "pgd_step_size": Param(None, "PGD step; None → 2.5·ε/steps of the epoch's ε (Madry et al.)."),
    "eps_warmup_epochs": Param(
        PER_DATASET,
        "W: epoch e (0-based) trains at ε·min(1, (e+1)/W); 0 = full ε from the start (dataset_info).",
        low=0,
    ),
}


def cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, y)

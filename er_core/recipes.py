"""Training recipes: the optimiser, learning-rate schedule, weight decay and data augmentation a
method trains with, one named record each, chosen per dataset (``DatasetInfo.recipe``).

The paper names none of these. A method's own hyperparameters (``lr``, ``optimizer``,
``momentum``, ``weight_decay``, ``lr_schedule``, ``augment``) default to its recipe's values
(``er_core.methods.base.resolve``) and a spec may override any of them, or pick another
recipe with the ``recipe`` hyperparameter. The recipe's name and settings are part of every
trial's id (``grid.spec.TrialConfig.trial_id``) and of its trial row, so a changed recipe never
mixes with results of the old one.

=================  ==============================================================================
``adam``           Adam at 1e-3 (Kingma & Ba's default), constant, no weight decay, no augmentation.
                   MNIST and digits: what every convergence measurement of these methods here
                   used (``methods.schedule``, ``dataset_info``'s warm-up notes), and the usual
                   optimiser of MNIST PGD training (Madry et al.'s MNIST code uses Adam at 1e-4;
                   1e-3 converged in the few epochs the paper's 30 allow).
``sgd_piecewise``  SGD, momentum 0.9, lr 0.1 ×0.1 at 50% and ×0.01 at 75% of the epochs, weight
                   decay 5e-4, random crop (zero padding 4) + horizontal flip. CIFAR10, STL10 and
                   Tiny ImageNet: the field's standard for PGD training of these networks (Madry
                   et al. 2018's CIFAR10 code; Rice et al. 2020, "Overfitting in adversarially
                   robust deep learning", §3; TRADES). Padding 4 is CIFAR10's; it is kept for the
                   64 px and 96 px sets (Tiny ImageNet's common robust-training setting too).
=================  ==============================================================================

Imports nothing heavy: specs are checked and trial ids computed without torch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

OPTIMIZERS = ("adam", "sgd")
AUGMENTS = ("none", "crop_flip")


@dataclass(frozen=True)
class Recipe:
    name: str
    optimizer: str  # OPTIMIZERS
    lr: float
    momentum: float  # SGD's momentum; unused by Adam
    weight_decay: float  # L2 penalty through the optimiser's weight_decay, on every parameter
    lr_schedule: str  # er_core.methods.schedule.LR_SCHEDULES
    augment: str  # AUGMENTS
    crop_padding: int  # zero padding of the random crop (augment == "crop_flip")

    #: The method hyperparameters a recipe supplies the defaults of.
    HYPERPARAMS = ("optimizer", "lr", "momentum", "weight_decay", "lr_schedule", "augment", "crop_padding")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


RECIPES: dict[str, Recipe] = {
    "adam": Recipe("adam", "adam", 1e-3, 0.0, 0.0, "constant", "none", 0),
    "sgd_piecewise": Recipe("sgd_piecewise", "sgd", 0.1, 0.9, 5e-4, "piecewise", "crop_flip", 4),
}


def recipe(name: str) -> Recipe:
    """The recipe called ``name``; an unknown name is a ValueError listing the valid ones."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; valid recipes: {', '.join(RECIPES)}")
    return RECIPES[name]


def trial_recipe(dataset: str, hyperparams: dict) -> Recipe:
    """The recipe a trial trains with: its ``recipe`` hyperparameter, else its dataset's."""
    from .dataset_info import info

    return recipe(hyperparams.get("recipe") or info(dataset).recipe)


__all__ = ["AUGMENTS", "OPTIMIZERS", "RECIPES", "Recipe", "recipe", "trial_recipe"]

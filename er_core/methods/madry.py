"""``madry``: Madry et al. (ICLR 2018) PGD adversarial training, CE on PGD examples only.

PGD: L∞ ball of radius ``train_eps``, uniform random start, ``pgd_steps`` signed-gradient
steps of ``pgd_step_size`` (None → 2.5·ε/steps), projected around the clean input and
clipped to [0, 1]. Defaults per dataset in ``er_core.dataset_info`` (MNIST ε 0.3 / 40
steps, CIFAR10 ε 0.031 / 7 steps, as Madry et al.).
"""

from __future__ import annotations

from .base import ADVERSARIAL_PARAMS, Method, cross_entropy


class Madry(Method):
    name = "madry"
    display_name = "Madry's Adv"
    uses_train_eps = True
    PARAMS = {**Method.PARAMS, **ADVERSARIAL_PARAMS}

    def loss(self, x, y):
        x_adv = self.pgd(x, y)
        ce = cross_entropy(self.model(x_adv), y)
        return ce, {"ce_adv": float(ce.detach())}

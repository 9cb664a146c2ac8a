"""``rse``: Random Self-Ensemble (Liu et al., ECCV 2018), noise layers + CE on clean images.

The network (``nets.ERNet`` with an ``RSEConfig``) adds Gaussian noise of std ``init_noise``
to the input of its first conv block and ``inner_noise`` before every later conv block, in
training and at inference. Training is plain CE on one noisy pass; at inference (eval mode)
``forward`` averages the softmax of ``ensemble`` noisy passes and returns its log (see
``nets``), so the model is randomized (``randomized = True``). Defaults: the RSE paper's
CIFAR10 setting init 0.2 / inner 0.1 (normalised-input units) and an ensemble of 10.
"""

from __future__ import annotations

from ..nets import RSEConfig, build_model
from .base import Method, Param, cross_entropy


class RSE(Method):
    name = "rse"
    display_name = "RSE"
    PARAMS = {
        **Method.PARAMS,
        "init_noise": Param(0.2, "std of the noise added to the input (RSE paper, CIFAR10).", low=0.0),
        "inner_noise": Param(0.1, "std of the noise before each inner conv block (RSE paper).", low=0.0),
        "ensemble": Param(10, "noisy passes averaged at inference (RSE paper).", low=1),
    }

    def build(self) -> None:
        rse = RSEConfig(float(self.hp["init_noise"]), float(self.hp["inner_noise"]), int(self.hp["ensemble"]))
        self.model = build_model(self.dataset, code_dim=self.hp["code_dim"], dropout=self.hp["dropout"], rse=rse,
                                 init=self.hp["encoder_init"], encoder_fc=self.hp["encoder_fc"])

    def loss(self, x, y):
        ce = cross_entropy(self.model(x), y)  # train mode: one noisy pass
        return ce, {"ce": float(ce.detach())}

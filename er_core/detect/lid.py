"""LID: local intrinsic dimensionality (Ma et al. 2018, "Characterizing Adversarial Subspaces
Using Local Intrinsic Dimensionality").

Features: per layer of ``model.hidden(x)`` (plus the logits), the maximum-likelihood LID
estimate  −1 / mean_i log(d_i / d_k)  over the k = 20 nearest neighbours among a minibatch of
100 natural images (:func:`~er_core.detect.features.lid_mle`). Ma et al. use the natural images
of the same minibatch as the reference (a natural point excluding itself); here the reference
minibatch is drawn from the natural *training* images, so ``score(x)`` needs no knowledge of
which test points are natural (otherwise the feature would leak the label) and natural and
adversarial points are treated identically.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from ..torch_utils import eval_mode, model_device
from .base import THRESHOLD, Detector, check_common
from .features import lid_mle


@dataclass(frozen=True)
class LIDConfig:
    """Local intrinsic dimensionality (Ma et al. 2018). Defaults: Ma's k = 20, minibatch 100.

    k: nearest neighbours in the MLE estimate (< minibatch).
    minibatch: size of each query minibatch and of its natural reference minibatch.
    include_logits: add the logits as a last "layer" (Ma et al. use every layer incl. output).
    seed: seeds the choice of reference minibatches.
    """

    k: int = 20
    minibatch: int = 100
    include_logits: bool = True
    max_train: Optional[int] = None
    batch_size: int = 100
    seed: int = 0
    threshold: float = THRESHOLD

    def __post_init__(self) -> None:
        check_common("lid", self)
        if self.k < 1 or self.minibatch <= self.k:
            raise ValueError(f"lid: need 1 ≤ k < minibatch, got k={self.k}, minibatch={self.minibatch}")


class LID(Detector):
    """Ma et al. 2018: LID of every hidden layer (and the logits) against natural minibatches."""

    name = "lid"
    config_cls = LIDConfig
    base_model = "undefended"

    def _prepare(self, x_train, y_train) -> None:
        if len(x_train) < self.config.minibatch:
            raise ValueError(
                f"lid: need at least minibatch={self.config.minibatch} training images for the "
                f"natural reference, got {len(x_train)}"
            )
        self.reference_ = x_train

    def feature_passes(self) -> float:
        # hidden() and, with include_logits, the logits, of each query minibatch and of a natural
        # reference minibatch as large (per image of whole minibatches: a last, shorter query
        # minibatch still takes a full reference minibatch).
        return 2.0 * (1 + int(self.config.include_logits))

    def reference_passes(self) -> float:
        return 0.0  # prepare only keeps the training images; they are run as reference minibatches

    def _layers(self, b: torch.Tensor) -> list[torch.Tensor]:
        hs = [h.flatten(1) for h in self.model.hidden(b)]
        if self.config.include_logits:
            hs.append(self.model(b))
        return hs

    @torch.no_grad()
    def _features(self, x):
        c = self.config
        device = model_device(self.model)
        # Fresh seeded generator per call: the same x always gets the same reference batches.
        g = torch.Generator().manual_seed(c.seed)
        out = []
        with eval_mode(self.model):
            for i in range(0, len(x), c.minibatch):
                ref_idx = torch.randperm(len(self.reference_), generator=g)[:c.minibatch]
                q_layers = self._layers(x[i:i + c.minibatch].to(device))
                r_layers = self._layers(self.reference_[ref_idx].to(device))
                out.append(torch.stack([lid_mle(q, r, c.k) for q, r in zip(q_layers, r_layers)], 1).cpu())
        return torch.cat(out).numpy()

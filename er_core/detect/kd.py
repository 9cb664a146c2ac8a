"""KD: kernel density and Bayesian uncertainty (Feinman et al. 2017, "Detecting Adversarial
Samples from Artifacts").

Features: the log Gaussian kernel density of the last hidden layer (for an
:class:`~er_core.nets.ERNet` the last nonlinear block before the linear code z, see
:class:`KDConfig`) under the KDE of the *predicted* class, and the Bayesian uncertainty of
``mc_passes`` Monte-Carlo dropout passes (variance of the softmax over passes, averaged over
classes, as in Feinman's code); 50 passes. The bandwidth is Feinman's cross-validated value
for the dataset (``DatasetInfo.kd_bandwidth`` in :mod:`er_core.dataset_info`) on raw features;
a dataset without a published value (digits, …) gets the ER detectors' treatment instead
(standardised features, Scott's rule), see :meth:`KDConfig.for_dataset`.

Needs a network built with dropout > 0 (``er_core.methods.make('none', ds, dropout=0.5)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..dataset_info import INFO
from .base import THRESHOLD, Bandwidth, check_bandwidth, check_common
from .features import mc_dropout_uncertainty
from .kde import KDEDetector


@dataclass(frozen=True)
class KDConfig:
    """Kernel density + Bayesian uncertainty (Feinman et al. 2017). Defaults: MNIST.

    bandwidth: Gaussian KDE bandwidth on the last hidden layer (default: Feinman's MNIST value,
        ``INFO["mnist"].kd_bandwidth``) or a rule name (:data:`~er_core.detect.base.BANDWIDTH_RULES`;
        "scott"/"silverman" only sensible with ``standardize``).
    layer: which entry of ``model.hidden(x)`` is "the last hidden layer". Default −2, the last
        *nonlinear* layer (digits/MNIST: the fc-ReLU block; VGG: the pooled last stage). Why not
        z (−1): in the ERNet z is a linear bottleneck, so Linear(fc→z) followed by the head is
        one factored linear output layer on the fc features — Feinman's "last hidden layer"
        (a 128-unit ReLU layer before dropout and the softmax layer) is the fc block. On digits
        it also separates PGD examples much better (ACC-ADV ≈ 0.77 vs ≈ 0.62 with z).
    standardize: scale the features to unit variance before the KDE (Feinman: no).
    mc_passes: Monte-Carlo dropout passes for the uncertainty (Feinman: 50).
    max_train: sub-sample this many training images for the KDE (None: all, as Feinman).
    batch_size: forward-pass batch size (no effect on results).
    seed: seeds the dropout masks and the training sub-sample.
    threshold: probability above which ``predict`` flags adversarial.
    """

    bandwidth: Bandwidth = INFO["mnist"].kd_bandwidth
    standardize: bool = False
    layer: int = -2
    mc_passes: int = 50
    max_train: Optional[int] = None
    batch_size: int = 256
    seed: int = 0
    threshold: float = THRESHOLD

    def __post_init__(self) -> None:
        check_bandwidth("kd", self.bandwidth)
        check_common("kd", self)
        if self.mc_passes < 2:
            raise ValueError(f"kd: mc_passes must be ≥ 2 (a variance needs two passes), got {self.mc_passes}")

    @classmethod
    def for_dataset(cls, dataset: str) -> "KDConfig":
        """Feinman's bandwidth on raw features where the dataset's record has one; elsewhere
        (no published value, or a dataset without a record) standardised features and Scott's
        rule, as the ER detectors."""
        record = INFO.get(dataset)
        if record is None or record.kd_bandwidth is None:
            return cls(bandwidth="scott", standardize=True)
        return cls(bandwidth=record.kd_bandwidth)


class KD(KDEDetector):
    """Feinman et al. 2017: [log density of the last hidden layer under the predicted class's
    KDE, MC-dropout uncertainty]."""

    name = "kd"
    config_cls = KDConfig
    base_model = "undefended"

    def _code(self, x):
        return self.model.hidden(x)[self.config.layer].flatten(1)

    def feature_passes(self) -> float:
        # The predicted class, the hidden layer, and the MC-dropout passes. An upper bound: on an
        # ERNet the MC passes re-run only the head after one embed (features.mc_dropout_uncertainty).
        return 2.0 + self.config.mc_passes

    def reference_passes(self) -> float:
        # The hidden layer of each training image, and its predicted class where no labels are given.
        return 2.0

    def _features(self, x):
        c = self.config
        uncertainty = mc_dropout_uncertainty(self.model, x, c.mc_passes, c.batch_size, c.seed)
        return np.stack([self._density(x), uncertainty], axis=1)

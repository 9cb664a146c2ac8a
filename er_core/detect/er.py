"""The ER-Detector (paper Section 3.3): ER1 on the code z, ER2 on the combined code.

- ``er1``: one KDE per class on the codes z = ``model.embed(x)`` of the training images; the
  feature is the log density of a point under the KDE of its predicted class.
- ``er2``: the same on the combined code, the means of each encoder hidden-layer output
  concatenated with z. "Mean" is taken per channel over spatial positions for convolutional
  blocks (a (N, C) vector per block) and is the block output itself for fully connected blocks
  (no spatial positions to average), see :func:`~er_core.detect.features.combined_code`. The
  paper gives no more detail (its Algorithm 2 is in an appendix our copy lacks).

Both standardise the codes before the KDE (layer means and z live on different scales) and use
Scott's rule for the bandwidth on the standardised codes; the paper gives no bandwidth.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional

from .base import THRESHOLD, Bandwidth, check_bandwidth, check_common
from .features import combined_code
from .kde import KDEDetector


@dataclass(frozen=True)
class ERConfig:
    """ER-Detector (paper Section 3.3): per-class KDE on (combined) codes.

    bandwidth: KDE bandwidth on the standardised codes; default Scott's rule n^(-1/(d+4))
        (the paper gives none).
    standardize: scale codes to unit variance (fit on the training codes) before the KDE.
    max_train: sub-sample this many training images for the KDE (None: all).
    """

    bandwidth: Bandwidth = "scott"
    standardize: bool = True
    max_train: Optional[int] = None
    batch_size: int = 256
    seed: int = 0
    threshold: float = THRESHOLD

    def __post_init__(self) -> None:
        check_bandwidth("er", self.bandwidth)
        check_common("er", self)


class ER1(KDEDetector):
    """ER-Detector on z: log density of the code under its predicted class's KDE."""

    name = "er1"
    config_cls = ERConfig
    base_model = "er"
    code_passes: ClassVar[int] = 1  # forward passes of _code per image: embed

    def feature_passes(self) -> float:
        # The predicted class, whose KDE scores the image, and the code.
        return 1.0 + self.code_passes

    def reference_passes(self) -> float:
        # The code of each training image, and its predicted class where no labels are given.
        return 1.0 + self.code_passes

    def _code(self, x):
        return self.model.embed(x)

    def _features(self, x):
        return self._density(x)[:, None]


class ER2(ER1):
    """ER-Detector on the combined code (block means ⊕ z), see :func:`combined_code`."""

    name = "er2"
    code_passes: ClassVar[int] = 2  # hidden() for the block means, embed for z

    def _code(self, x):
        return combined_code(self.model, x)

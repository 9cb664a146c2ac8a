"""Class-conditional kernel density, shared by KD, ER1 and ER2.

:class:`ClassKDE` fits one Gaussian KDE per class on training features; :class:`KDEDetector`
scores a point by its log density under the KDE of its *predicted* class. Training-set KDEs
group training images by their *true* label when ``y_train`` is given (Feinman's code), by
predicted label when it is None. A class with no training points falls back to one KDE over
all training points.
"""

from __future__ import annotations

import numpy as np
import torch

from ..torch_utils import eval_mode, model_device
from .base import Bandwidth, Detector
from .features import map_batches, predicted_labels

# The grid of bandwidths that ``bandwidth="cv"`` searches, and how many training rows it sees
# (sub-sampled, seeded).
CV_BANDWIDTHS = tuple(float(b) for b in np.logspace(-2, 1, 13))
CV_MAX_POINTS = 2000


class ClassKDE:
    """One sklearn ``KernelDensity`` per class; ``score(f, labels)`` = log density of each row
    under the KDE of its label. Optional ``StandardScaler`` fitted on all training rows first.
    """

    def __init__(self, bandwidth: Bandwidth, standardize: bool, seed: int = 0) -> None:
        self.bandwidth = bandwidth
        self.standardize = standardize
        self.seed = seed

    def fit(self, features: np.ndarray, labels: np.ndarray, num_classes: int) -> "ClassKDE":
        # Imported here, not at the top: scikit-learn imports pandas (and pyarrow) whenever they
        # are installed, and importing er_core must not load them (base.logistic_regression).
        from sklearn.neighbors import KernelDensity
        from sklearn.preprocessing import StandardScaler

        self.scaler_ = StandardScaler().fit(features) if self.standardize else None
        f = self._scale(features)
        self.bandwidth_ = self._choose_bandwidth(f, labels)
        self.fallback_ = KernelDensity(bandwidth=self.bandwidth_).fit(f)
        self.kdes_ = {}
        for c in range(num_classes):
            rows = f[labels == c]
            # A class with no (or one) training point gets the all-class KDE (see module doc).
            self.kdes_[c] = KernelDensity(bandwidth=self.bandwidth_).fit(rows) if len(rows) > 1 else self.fallback_
        return self

    def _choose_bandwidth(self, f: np.ndarray, labels: np.ndarray):
        if self.bandwidth != "cv":
            return self.bandwidth
        from sklearn.model_selection import GridSearchCV, StratifiedKFold
        from sklearn.neighbors import KernelDensity

        rng = np.random.default_rng(self.seed)
        rows = rng.permutation(len(f))[:CV_MAX_POINTS]
        # Stratified folds: the per-class KDEs are what gets scored, so keep classes balanced.
        folds = StratifiedKFold(n_splits=3, shuffle=True, random_state=self.seed)
        search = GridSearchCV(KernelDensity(), {"bandwidth": CV_BANDWIDTHS}, cv=folds)
        search.fit(f[rows], labels[rows])
        return float(search.best_params_["bandwidth"])

    def score(self, features: np.ndarray, labels: np.ndarray) -> np.ndarray:
        f = self._scale(features)
        out = np.empty(len(f), dtype=np.float64)
        for c in np.unique(labels):
            rows = labels == c
            out[rows] = self.kdes_.get(int(c), self.fallback_).score_samples(f[rows])
        # log densities can underflow to -inf far from every training point; keep them finite.
        return np.nan_to_num(out, neginf=np.finfo(np.float64).min / 4)

    def _scale(self, f: np.ndarray) -> np.ndarray:
        return self.scaler_.transform(f) if self.scaler_ is not None else f


class KDEDetector(Detector):
    """Shared by KD, ER1, ER2: class-conditional KDE of ``_code(x)`` under the predicted class.

    The config needs ``bandwidth``, ``standardize``, ``batch_size`` and ``seed``.
    """

    def _code(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _codes(self, x: torch.Tensor) -> np.ndarray:
        with eval_mode(self.model):
            return map_batches(self._code, x, self.config.batch_size, model_device(self.model))

    def _prepare(self, x_train, y_train) -> None:
        labels = (predicted_labels(self.model, x_train, self.config.batch_size) if y_train is None
                  else y_train.cpu().numpy().astype(np.int64))
        num_classes = int(getattr(self.model, "num_classes", int(labels.max()) + 1))
        self.kde_ = ClassKDE(self.config.bandwidth, self.config.standardize, self.config.seed).fit(
            self._codes(x_train), labels, num_classes)

    def _density(self, x: torch.Tensor) -> np.ndarray:
        pred = predicted_labels(self.model, x, self.config.batch_size)
        return self.kde_.score(self._codes(x), pred)

"""The detector contract, :class:`Detector`, and what every detector config shares.

A detector turns images into features (``features(x)``, float64 (N, F)) and features into a
probability of being adversarial with scikit-learn: ``StandardScaler`` →
``LogisticRegressionCV`` (adversarial = 1, natural = 0), as Feinman's and Ma's code do. A
subclass writes ``_prepare`` (reference statistics from the training images) and ``_features``,
and states what they spend: ``reference_passes()`` and ``feature_passes()``, forward passes of
the model per image (the grid's cost model prices the detection stage from them).
"""

from __future__ import annotations

import inspect
import math
from typing import ClassVar, Optional, Union

import numpy as np
import torch
from torch import nn

Bandwidth = Union[float, str]
# "scott"/"silverman": sklearn's rules (they assume unit-scale features); "cv": the bandwidth with
# the best held-out log-likelihood of the training features (3-fold GridSearchCV over
# kde.CV_BANDWIDTHS), which is how Feinman et al. chose theirs.
BANDWIDTH_RULES = ("scott", "silverman", "cv")

THRESHOLD = 0.5  # logistic-regression probability above which an input is flagged adversarial


def check_bandwidth(owner: str, bandwidth) -> None:
    """A KDE bandwidth is a positive finite number or one of :data:`BANDWIDTH_RULES`."""
    if isinstance(bandwidth, str):
        if bandwidth not in BANDWIDTH_RULES:
            raise ValueError(
                f"{owner}: bandwidth must be a positive number or one of {BANDWIDTH_RULES}, got {bandwidth!r}"
            )
    elif not (isinstance(bandwidth, (int, float)) and bandwidth > 0 and math.isfinite(bandwidth)):
        raise ValueError(f"{owner}: bandwidth must be a positive number or one of {BANDWIDTH_RULES}, got {bandwidth!r}")


def check_common(owner: str, cfg) -> None:
    """The fields every detector config has: max_train, batch_size, threshold."""
    if cfg.max_train is not None and cfg.max_train < 1:
        raise ValueError(f"{owner}: max_train must be None or ≥ 1, got {cfg.max_train}")
    if cfg.batch_size < 1:
        raise ValueError(f"{owner}: batch_size must be ≥ 1, got {cfg.batch_size}")
    if not 0.0 < cfg.threshold < 1.0:
        raise ValueError(f"{owner}: threshold must be in (0, 1), got {cfg.threshold}")


def logistic_regression(seed: int, folds: int):
    """StandardScaler → LogisticRegressionCV (accuracy-scored, L2), as Feinman's and Ma's code.

    Options that only newer scikit-learn versions know are passed where accepted, so the same
    model (and no FutureWarning) results on every supported version.
    """
    # scikit-learn is imported where it is used: it imports pandas (and pyarrow) whenever they
    # are installed, and importing er_core must not load them.
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    wanted = {"cv": folds, "max_iter": 1000, "random_state": seed, "scoring": "accuracy",
              "l1_ratios": (0.0,), "use_legacy_attributes": False}
    accepted = inspect.signature(LogisticRegressionCV).parameters
    return make_pipeline(StandardScaler(), LogisticRegressionCV(**{k: v for k, v in wanted.items() if k in accepted}))


class Detector:
    """Common interface. Typical use::

        det = DETECTORS["er1"](ERConfig()).fit(model, x_train, y_train, x_natural, x_adv)
        det.score(x)    # float64 (N,) probability that each x is adversarial
        det.predict(x)  # bool (N,) score ≥ config.threshold

    Step by step (the protocol reuses features across attacks): ``prepare(model, x_train,
    y_train)`` (reference statistics), ``features(x)`` (N, F), ``fit_features(f_natural,
    f_adv)``, ``score_features(f)``. Images are float NCHW in [0, 1].
    """

    name: ClassVar[str] = "detector"
    config_cls: ClassVar[type] = object
    # Which network the paper puts under this detector: "undefended" or "er".
    base_model: ClassVar[str] = "undefended"

    def __init__(self, config=None) -> None:
        if config is None:
            config = self.config_cls()
        if not isinstance(config, self.config_cls):
            raise ValueError(f"{self.name}: config must be a {self.config_cls.__name__}, got {type(config).__name__}")
        self.config = config
        self.model: Optional[nn.Module] = None
        self.classifier_ = None

    # --- the whole fit --------------------------------------------------------------------
    def fit(self, model: nn.Module, x_train: torch.Tensor, y_train: Optional[torch.Tensor],
            x_natural: torch.Tensor, x_adv: torch.Tensor) -> "Detector":
        """Reference statistics from the training images, then the logistic regression on
        natural (negative) vs adversarial (positive) examples of set I."""
        self.prepare(model, x_train, y_train)
        return self.fit_features(self.features(x_natural), self.features(x_adv))

    def score(self, x: torch.Tensor) -> np.ndarray:
        return self.score_features(self.features(x))

    def predict(self, x: torch.Tensor) -> np.ndarray:
        return self.score(x) >= self.config.threshold

    # --- steps ----------------------------------------------------------------------------
    def prepare(self, model: nn.Module, x_train: torch.Tensor, y_train: Optional[torch.Tensor]) -> "Detector":
        self.model = model
        x_train, y_train = self._train_subset(x_train, y_train)
        self._prepare(x_train, y_train)
        return self

    def features(self, x: torch.Tensor) -> np.ndarray:
        if self.model is None:
            raise ValueError(f"{self.name}: call prepare() or fit() before features()")
        f = self._features(x)
        return f.reshape(len(x), -1)

    def fit_features(self, f_natural: np.ndarray, f_adv: np.ndarray) -> "Detector":
        n_min = min(len(f_natural), len(f_adv))
        if n_min < 2:
            raise ValueError(
                f"{self.name}: need at least 2 natural and 2 adversarial examples to fit, "
                f"got {len(f_natural)} and {len(f_adv)}"
            )
        x = np.concatenate([f_natural, f_adv])
        y = np.concatenate([np.zeros(len(f_natural), np.int64), np.ones(len(f_adv), np.int64)])
        self.classifier_ = logistic_regression(self.config.seed, min(5, n_min)).fit(x, y)
        return self

    def score_features(self, f: np.ndarray) -> np.ndarray:
        if self.classifier_ is None:
            raise ValueError(f"{self.name}: call fit() or fit_features() before scoring")
        return self.classifier_.predict_proba(f)[:, 1]

    def predict_features(self, f: np.ndarray) -> np.ndarray:
        return self.score_features(f) >= self.config.threshold

    # --- what it spends, stated by each subclass from its config ----------------------------
    def feature_passes(self) -> float:
        """At most how many forward passes of the model ``features`` makes per image, with this
        config (a detector that works in minibatches counts whole ones). One forward of a
        randomized model (RSE) is its whole ensemble: the caller multiplies by it."""
        raise NotImplementedError

    def reference_passes(self) -> float:
        """At most how many forward passes of the model ``prepare`` makes per training image it
        keeps (:meth:`reference_size`); 0 for a detector that only stores them."""
        raise NotImplementedError

    def reference_size(self, n_train: int) -> int:
        """How many of ``n_train`` training images ``prepare`` keeps: ``config.max_train`` at most."""
        m = self.config.max_train
        return n_train if m is None else min(m, n_train)

    # --- subclass hooks -------------------------------------------------------------------
    def _prepare(self, x_train: torch.Tensor, y_train: Optional[torch.Tensor]) -> None:
        raise NotImplementedError

    def _features(self, x: torch.Tensor) -> np.ndarray:
        raise NotImplementedError

    def _train_subset(self, x_train, y_train):
        m = self.reference_size(len(x_train))
        if m == len(x_train):
            return x_train, y_train
        g = torch.Generator().manual_seed(self.config.seed)
        idx = torch.randperm(len(x_train), generator=g)[:m].sort().values
        return x_train[idx], (None if y_train is None else y_train[idx])

"""Adversarial-example detectors (KD, LID, ER1, ER2) and the paper's detection protocol.

Paper: ER-Classifier, Section 3.3 (ER-Detector) and Section 4.5 (Tables 4–8).

Detectors (registry :data:`DETECTORS`, one config dataclass each, published defaults):

- ``kd``  Feinman et al. 2017, "Detecting Adversarial Samples from Artifacts": Gaussian
  kernel density of the last hidden layer (for an :class:`~er_core.nets.ERNet` the last
  nonlinear block before the linear code z, see :class:`KDConfig`) per class, evaluated
  under the KDE of the *predicted* class, plus the Bayesian uncertainty of ``mc_passes`` Monte-Carlo dropout passes (variance
  of the softmax over passes, averaged over classes, as in Feinman's code). Bandwidth 1.20 on
  MNIST, 0.26 on CIFAR10 (Feinman's cross-validated values, :data:`KD_BANDWIDTH`); 50 passes.
  Needs a network built with dropout > 0 (``er_core.methods.make('none', ds, dropout=0.5)``).
- ``lid`` Ma et al. 2018, "Characterizing Adversarial Subspaces Using Local Intrinsic
  Dimensionality": per layer of ``model.hidden(x)`` (plus the logits), the maximum-likelihood
  LID estimate  −1 / mean_i log(d_i / d_k)  over the k = 20 nearest neighbours among a
  minibatch of 100 natural images. Ma et al. use the natural images of the same minibatch as
  the reference (a natural point excluding itself); here the reference minibatch is drawn from
  the natural *training* images, so ``score(x)`` needs no knowledge of which test points are
  natural (otherwise the feature would leak the label) and natural and adversarial points are
  treated identically.
- ``er1`` ER-Detector on the code z = ``model.embed(x)``: one KDE per class on the codes of the
  training images, density of a point under the KDE of its predicted class.
- ``er2`` ER-Detector on the combined code: the means of each encoder hidden-layer output
  concatenated with z. "Mean" is taken per channel over spatial positions for convolutional
  blocks (a (N, C) vector per block) and is the block output itself for fully connected blocks
  (no spatial positions to average). The paper gives no more detail (its Algorithm 2 is in an
  appendix our copy lacks).

Every detector turns its features into a probability with scikit-learn: ``StandardScaler`` →
``LogisticRegressionCV`` (adversarial = 1, natural = 0), as Feinman's and Ma's code do. The ER
detectors standardise the codes before the KDE (layer means and z live on different scales) and
use Scott's rule for the bandwidth on the standardised codes; the paper gives no bandwidth.
KD keeps Feinman's raw features and fixed bandwidth; for datasets without a published value
(digits, …) :func:`default_config` gives it the ER treatment (standardise + Scott).

Training-set KDEs group training images by their *true* label when ``y_train`` is given
(Feinman's code), by predicted label when it is None. A class with no training points falls
back to one KDE over all training points.

Protocol (Section 4.5.1): :func:`split_test_set` splits the test set 20 % (set I, detectors are
fitted there) / 80 % (set II, evaluated there) with a fixed seed; :data:`PAPER_ATTACKS` gives
FGSM and PGD at ε 0.3 (MNIST) / 0.03 (CIFAR10) and C&W-ℓ2 with RMS-ℓ2 bound 0.007 / 0.004.
C&W is a minimal-distortion attack, so the bound is applied afterwards: a C&W example whose
RMS distortion exceeds the bound is *kept as a failed attempt* with its perturbation scaled
back onto the bound (``overbound="project"``, default; it then almost never fools the model)
or dropped from the adversarial set (``overbound="drop"``). Where C&W found no adversarial
example at all it returns x itself, which stays in the set as a (zero-perturbation) failure.
Only successful-and-bounded C&W examples fool the model; FGSM/PGD examples are all kept whether or not they fool it (ACC-CLA
and ACC-COM count the ones that do not). Digits (8×8) uses the MNIST settings.

Criteria (Table 4, :func:`criteria`), N adversarial and M natural examples:
ACC-ADV = detected / N; ACC-NADV = natural judged natural / M; ACC-CLA = correctly classified
among undetected adversarial; ACC-COM = (detected + undetected-but-correct) / N.

Results are lists of plain dicts (no pandas here); features are numpy float64 arrays.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import math
import time
from dataclasses import dataclass, field
from typing import Callable, ClassVar, Iterable, Mapping, Optional, Sequence, Union

import numpy as np
import torch
from sklearn.linear_model import LogisticRegressionCV
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.neighbors import KernelDensity
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from . import attacks as attack_registry

Bandwidth = Union[float, str]
# "scott"/"silverman": sklearn's rules (they assume unit-scale features); "cv": the bandwidth with
# the best held-out log-likelihood of the training features (3-fold GridSearchCV over
# CV_BANDWIDTHS), which is how Feinman et al. chose theirs.
BANDWIDTH_RULES = ("scott", "silverman", "cv")
CV_BANDWIDTHS = tuple(float(b) for b in np.logspace(-2, 1, 13))
CV_MAX_POINTS = 2000  # training rows the bandwidth search sees (sub-sampled, seeded)

# Feinman et al. 2017, bandwidths chosen by cross-validation on their networks.
KD_BANDWIDTH: dict[str, float] = {"mnist": 1.20, "cifar10": 0.26}

FIT_FRACTION = 0.2  # set I share of the test set (Section 4.5.1)
THRESHOLD = 0.5  # logistic-regression probability above which an input is flagged adversarial


# --------------------------------------------------------------------------------------------
# Configs
# --------------------------------------------------------------------------------------------


def _check_bandwidth(owner: str, bandwidth) -> None:
    if isinstance(bandwidth, str):
        if bandwidth not in BANDWIDTH_RULES:
            raise ValueError(
                f"{owner}: bandwidth must be a positive number or one of {BANDWIDTH_RULES}, got {bandwidth!r}"
            )
    elif not (isinstance(bandwidth, (int, float)) and bandwidth > 0 and math.isfinite(bandwidth)):
        raise ValueError(f"{owner}: bandwidth must be a positive number or one of {BANDWIDTH_RULES}, got {bandwidth!r}")


def _check_common(owner: str, cfg) -> None:
    if cfg.max_train is not None and cfg.max_train < 1:
        raise ValueError(f"{owner}: max_train must be None or ≥ 1, got {cfg.max_train}")
    if cfg.batch_size < 1:
        raise ValueError(f"{owner}: batch_size must be ≥ 1, got {cfg.batch_size}")
    if not 0.0 < cfg.threshold < 1.0:
        raise ValueError(f"{owner}: threshold must be in (0, 1), got {cfg.threshold}")


@dataclass(frozen=True)
class KDConfig:
    """Kernel density + Bayesian uncertainty (Feinman et al. 2017). Defaults: MNIST.

    bandwidth: Gaussian KDE bandwidth on the last hidden layer (1.20 MNIST, 0.26 CIFAR10) or a
        rule name (:data:`BANDWIDTH_RULES`; "scott"/"silverman" only sensible with ``standardize``).
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

    bandwidth: Bandwidth = 1.20
    standardize: bool = False
    layer: int = -2
    mc_passes: int = 50
    max_train: Optional[int] = None
    batch_size: int = 256
    seed: int = 0
    threshold: float = THRESHOLD

    def __post_init__(self) -> None:
        _check_bandwidth("kd", self.bandwidth)
        _check_common("kd", self)
        if self.mc_passes < 2:
            raise ValueError(f"kd: mc_passes must be ≥ 2 (a variance needs two passes), got {self.mc_passes}")


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
        _check_common("lid", self)
        if self.k < 1 or self.minibatch <= self.k:
            raise ValueError(f"lid: need 1 ≤ k < minibatch, got k={self.k}, minibatch={self.minibatch}")


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
        _check_bandwidth("er", self.bandwidth)
        _check_common("er", self)


# --------------------------------------------------------------------------------------------
# Torch feature helpers
# --------------------------------------------------------------------------------------------


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@contextlib.contextmanager
def _eval_mode(model: nn.Module, dropout_on: bool = False):
    """Eval mode (optionally with only the nn.Dropout modules in train mode); restores modes."""
    modes = {m: m.training for m in model.modules()}
    model.eval()
    if dropout_on:
        for m in model.modules():
            if isinstance(m, nn.Dropout):
                m.train()
    try:
        yield model
    finally:
        for m, mode in modes.items():
            m.training = mode


@torch.no_grad()
def _map_batches(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, batch_size: int, device) -> np.ndarray:
    """fn over x in batches on ``device``; concatenated as float64 numpy (N, ...)."""
    outs = [fn(x[i:i + batch_size].to(device)).double().cpu() for i in range(0, len(x), batch_size)]
    if not outs:
        raise ValueError("x must hold at least one example")
    return torch.cat(outs).numpy()


def predicted_labels(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """argmax of the model's logits in eval mode: int64 (N,)."""
    with _eval_mode(model):
        return _map_batches(lambda b: model(b).argmax(1), x, batch_size, _device(model)).astype(np.int64)


def _block_outputs(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Unflattened encoder block outputs (the tensors ``model.hidden`` flattens), without z.

    Captured with forward hooks on ``model.blocks`` while ``model.hidden`` runs, so the values
    are exactly those hidden() sees. Models without ``blocks`` give hidden()[:-1] flattened.
    """
    blocks = getattr(model, "blocks", None)
    if blocks is None:
        return list(model.hidden(x)[:-1])
    captured: list[torch.Tensor] = []
    handles = [b.register_forward_hook(lambda _m, _i, out: captured.append(out)) for b in blocks]
    try:
        model.hidden(x)
    finally:
        for h in handles:
            h.remove()
    return captured


def combined_code(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """ER2's combined code Z': per-block means concatenated with z, shape (N, Σ c_i + k).

    A convolutional block output (N, C, H, W) contributes its channel means over spatial
    positions (N, C); a flat block output (N, d) has no spatial positions and contributes itself.
    """
    parts = [h.flatten(2).mean(2) if h.dim() > 2 else h for h in _block_outputs(model, x)]
    return torch.cat(parts + [model.embed(x)], dim=1)


def mc_dropout_uncertainty(model: nn.Module, x: torch.Tensor, passes: int, batch_size: int, seed: int) -> np.ndarray:
    """Feinman's Bayesian uncertainty: variance over ``passes`` dropout passes of the softmax,
    averaged over classes; float64 (N,). Only nn.Dropout modules run in train mode (BatchNorm
    stays in eval). The global torch RNG is forked, so this does not disturb the caller's.
    For an ERNet (``embed``/``classify``; not RSE) only the head is re-run per pass: its one
    dropout module sits there, so this equals full forward passes at a fraction of the cost.
    """
    if not any(isinstance(m, nn.Dropout) and m.p > 0 for m in model.modules()):
        raise ValueError(
            "kd: the model has no nn.Dropout with p > 0, so MC-dropout uncertainty is 0; build it with "
            "dropout > 0, e.g. er_core.methods.make('none', dataset, dropout=0.5)"
        )
    device = _device(model)
    # An ERNet's only dropout sits in classify() (before the head), so the code z is computed
    # once and only the head is re-sampled: the same distribution as full passes, ~passes× cheaper.
    head_only = hasattr(model, "embed") and hasattr(model, "classify") and not getattr(model, "randomized", False)

    def passes_var(b: torch.Tensor) -> torch.Tensor:
        if head_only:
            z = model.embed(b)
            probs = torch.stack([model.classify(z).softmax(1) for _ in range(passes)])  # (T, B, classes)
        else:
            probs = torch.stack([model(b).softmax(1) for _ in range(passes)])
        return probs.var(0, unbiased=False).mean(1)

    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), _eval_mode(model, dropout_on=True):
        torch.manual_seed(seed)
        return _map_batches(passes_var, x, batch_size, device)


def lid_mle(queries: torch.Tensor, reference: torch.Tensor, k: int) -> torch.Tensor:
    """MLE of local intrinsic dimensionality (Ma et al. 2018, eq. 4) of each query point.

    queries (B, d), reference (R, d), k ≤ R: with d_1 ≤ … ≤ d_k the distances to the k nearest
    reference points, LID = −1 / mean_i log(d_i / d_k). Returns float64 (B,). Distances are
    floored at 1e-12 so a duplicate of a reference point gives a finite (small) value.
    """
    # float64 keeps the matrix-product form of cdist accurate for near neighbours.
    dist = torch.cdist(queries.double(), reference.double())
    knn = dist.topk(k, dim=1, largest=False).values.clamp_min(1e-12)  # ascending
    mean_log = torch.log(knn / knn[:, -1:]).mean(1)
    return -1.0 / mean_log.clamp(max=-1e-12)


# --------------------------------------------------------------------------------------------
# Class-conditional KDE
# --------------------------------------------------------------------------------------------


class ClassKDE:
    """One sklearn ``KernelDensity`` per class; ``score(f, labels)`` = log density of each row
    under the KDE of its label. Optional ``StandardScaler`` fitted on all training rows first.
    """

    def __init__(self, bandwidth: Bandwidth, standardize: bool, seed: int = 0) -> None:
        self.bandwidth = bandwidth
        self.standardize = standardize
        self.seed = seed

    def fit(self, features: np.ndarray, labels: np.ndarray, num_classes: int) -> "ClassKDE":
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


# --------------------------------------------------------------------------------------------
# Detectors
# --------------------------------------------------------------------------------------------


def _logistic_regression(seed: int, folds: int):
    """StandardScaler → LogisticRegressionCV (accuracy-scored, L2), as Feinman's and Ma's code.

    Options that only newer scikit-learn versions know are passed where accepted, so the same
    model (and no FutureWarning) results on every supported version.
    """
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
        self.classifier_ = _logistic_regression(self.config.seed, min(5, n_min)).fit(x, y)
        return self

    def score_features(self, f: np.ndarray) -> np.ndarray:
        if self.classifier_ is None:
            raise ValueError(f"{self.name}: call fit() or fit_features() before scoring")
        return self.classifier_.predict_proba(f)[:, 1]

    def predict_features(self, f: np.ndarray) -> np.ndarray:
        return self.score_features(f) >= self.config.threshold

    # --- subclass hooks -------------------------------------------------------------------
    def _prepare(self, x_train: torch.Tensor, y_train: Optional[torch.Tensor]) -> None:
        raise NotImplementedError

    def _features(self, x: torch.Tensor) -> np.ndarray:
        raise NotImplementedError

    def _train_subset(self, x_train, y_train):
        m = self.config.max_train
        if m is None or m >= len(x_train):
            return x_train, y_train
        g = torch.Generator().manual_seed(self.config.seed)
        idx = torch.randperm(len(x_train), generator=g)[:m].sort().values
        return x_train[idx], (None if y_train is None else y_train[idx])


class _KDEDetector(Detector):
    """Shared by KD, ER1, ER2: class-conditional KDE of ``_code(x)`` under the predicted class."""

    def _code(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _codes(self, x: torch.Tensor) -> np.ndarray:
        with _eval_mode(self.model):
            return _map_batches(self._code, x, self.config.batch_size, _device(self.model))

    def _prepare(self, x_train, y_train) -> None:
        labels = (predicted_labels(self.model, x_train, self.config.batch_size) if y_train is None
                  else y_train.cpu().numpy().astype(np.int64))
        num_classes = int(getattr(self.model, "num_classes", int(labels.max()) + 1))
        self.kde_ = ClassKDE(self.config.bandwidth, self.config.standardize, self.config.seed).fit(
            self._codes(x_train), labels, num_classes)

    def _density(self, x: torch.Tensor) -> np.ndarray:
        pred = predicted_labels(self.model, x, self.config.batch_size)
        return self.kde_.score(self._codes(x), pred)


class KD(_KDEDetector):
    """Feinman et al. 2017: [log density of the last hidden layer under the predicted class's
    KDE, MC-dropout uncertainty]."""

    name = "kd"
    config_cls = KDConfig
    base_model = "undefended"

    def _code(self, x):
        return self.model.hidden(x)[self.config.layer].flatten(1)

    def _features(self, x):
        c = self.config
        uncertainty = mc_dropout_uncertainty(self.model, x, c.mc_passes, c.batch_size, c.seed)
        return np.stack([self._density(x), uncertainty], axis=1)


class ER1(_KDEDetector):
    """ER-Detector on z: log density of the code under its predicted class's KDE."""

    name = "er1"
    config_cls = ERConfig
    base_model = "er"

    def _code(self, x):
        return self.model.embed(x)

    def _features(self, x):
        return self._density(x)[:, None]


class ER2(ER1):
    """ER-Detector on the combined code (block means ⊕ z), see :func:`combined_code`."""

    name = "er2"

    def _code(self, x):
        return combined_code(self.model, x)


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

    def _layers(self, b: torch.Tensor) -> list[torch.Tensor]:
        hs = [h.flatten(1) for h in self.model.hidden(b)]
        if self.config.include_logits:
            hs.append(self.model(b))
        return hs

    @torch.no_grad()
    def _features(self, x):
        c = self.config
        device = _device(self.model)
        # Fresh seeded generator per call: the same x always gets the same reference batches.
        g = torch.Generator().manual_seed(c.seed)
        out = []
        with _eval_mode(self.model):
            for i in range(0, len(x), c.minibatch):
                ref_idx = torch.randperm(len(self.reference_), generator=g)[:c.minibatch]
                q_layers = self._layers(x[i:i + c.minibatch].to(device))
                r_layers = self._layers(self.reference_[ref_idx].to(device))
                out.append(torch.stack([lid_mle(q, r, c.k) for q, r in zip(q_layers, r_layers)], 1).cpu())
        return torch.cat(out).numpy()


DETECTORS: dict[str, type[Detector]] = {"kd": KD, "lid": LID, "er1": ER1, "er2": ER2}


def default_config(name: str, dataset: Optional[str] = None):
    """The published defaults of detector ``name``, with per-dataset values where there are any.

    KD: Feinman's bandwidth for mnist/cifar10; other datasets have no published bandwidth, so
    KD standardises its features and uses Scott's rule there (as the ER detectors do).
    """
    cls = _detector_class(name)
    if cls is KD and dataset is not None:
        if dataset in KD_BANDWIDTH:
            return KDConfig(bandwidth=KD_BANDWIDTH[dataset])
        return KDConfig(bandwidth="scott", standardize=True)
    return cls.config_cls()


def make(name: str, config=None, dataset: Optional[str] = None, **overrides) -> Detector:
    """Build detector ``name`` from ``config`` (default: :func:`default_config`) plus overrides."""
    cls = _detector_class(name)
    config = default_config(name, dataset) if config is None else config
    if overrides:
        valid = {f.name for f in dataclasses.fields(cls.config_cls)}
        unknown = set(overrides) - valid
        if unknown:
            raise ValueError(f"unknown option(s) {sorted(unknown)} for detector {name!r}; valid options: {sorted(valid)}")
        config = dataclasses.replace(config, **overrides)
    return cls(config)


def _detector_class(name: str) -> type[Detector]:
    if name not in DETECTORS:
        raise ValueError(f"unknown detector {name!r}; valid detectors: {', '.join(DETECTORS)}")
    return DETECTORS[name]


# --------------------------------------------------------------------------------------------
# Criteria (Table 4)
# --------------------------------------------------------------------------------------------


def _as_bool(name: str, a) -> np.ndarray:
    arr = a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    if arr.ndim != 1 or (arr.dtype != np.bool_ and not np.isin(arr, (0, 1)).all()):
        raise ValueError(f"{name} must be a 1-D boolean array, got shape {arr.shape} dtype {arr.dtype}")
    return arr.astype(bool)


def _ratio(num: int, den: int) -> float:
    return num / den if den else float("nan")


def criteria(detected, adv_correct, natural_flagged) -> dict:
    """The paper's Table 4 criteria.

    detected: bool (N,) the detector flags adversarial example i.
    adv_correct: bool (N,) the classifier labels adversarial example i correctly.
    natural_flagged: bool (M,) the detector (wrongly) flags natural example j.

    Returns acc_adv = detected / N, acc_nadv = (M − flagged) / M, acc_cla = undetected-and-
    correct / undetected, acc_com = (detected + undetected-and-correct) / N (fractions in
    [0, 1]; NaN where the denominator is 0, e.g. acc_cla when every adversarial example is
    detected), and the counts n_adv, n_nat, n_detected, n_undetected, n_undetected_correct,
    n_natural_flagged.
    """
    det = _as_bool("detected", detected)
    correct = _as_bool("adv_correct", adv_correct)
    flagged = _as_bool("natural_flagged", natural_flagged)
    if len(det) != len(correct):
        raise ValueError(f"detected and adv_correct must have the same length, got {len(det)} and {len(correct)}")
    n_adv, n_nat = len(det), len(flagged)
    n_detected = int(det.sum())
    n_undetected = n_adv - n_detected
    n_und_correct = int((~det & correct).sum())
    n_flagged = int(flagged.sum())
    return {
        "acc_adv": _ratio(n_detected, n_adv),
        "acc_nadv": _ratio(n_nat - n_flagged, n_nat),
        "acc_cla": _ratio(n_und_correct, n_undetected),
        "acc_com": _ratio(n_detected + n_und_correct, n_adv),
        "n_adv": n_adv,
        "n_nat": n_nat,
        "n_detected": n_detected,
        "n_undetected": n_undetected,
        "n_undetected_correct": n_und_correct,
        "n_natural_flagged": n_flagged,
    }


CRITERIA = ("acc_adv", "acc_nadv", "acc_cla", "acc_com")


# --------------------------------------------------------------------------------------------
# Protocol: split, adversarial sets, tables
# --------------------------------------------------------------------------------------------


def split_test_set(n: int, seed: int = 0, fit_fraction: float = FIT_FRACTION) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of set I (``round(fit_fraction·n)``, detectors are fitted there) and set II (the
    rest, evaluated there): disjoint, sorted int64 tensors covering range(n); fixed by ``seed``."""
    if not 0.0 < fit_fraction < 1.0:
        raise ValueError(f"fit_fraction must be in (0, 1), got {fit_fraction}")
    n_fit = int(round(fit_fraction * n))
    if n_fit < 1 or n_fit >= n:
        raise ValueError(f"n={n} is too small to split with fit_fraction={fit_fraction}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))
    return perm[:n_fit].sort().values, perm[n_fit:].sort().values


@dataclass(frozen=True)
class AttackSetting:
    """One attack of the protocol: registry name, ε, options.

    For attacks in :data:`RMS_BOUNDED` (minimal-distortion C&W) ``eps`` is the RMS-ℓ2 bound
    ‖δ‖₂ / sqrt(#values) applied after the attack; for the others it is the attack's own ε.
    """

    attack: str
    eps: float
    options: tuple = ()  # sorted (key, value) pairs, hashable

    @classmethod
    def of(cls, attack: str, eps: float, **options) -> "AttackSetting":
        if attack not in attack_registry.ATTACKS:
            raise ValueError(f"unknown attack {attack!r}; valid attacks: {', '.join(sorted(attack_registry.ATTACKS))}")
        return cls(attack, float(eps), tuple(sorted(options.items())))

    def build(self):
        return attack_registry.make(self.attack, eps=self.eps, **dict(self.options))


RMS_BOUNDED = frozenset({"cw_l2"})
OVERBOUND_POLICIES = ("project", "drop")


def _paper_attacks(eps: float, cw_bound: float) -> dict[str, AttackSetting]:
    return {
        "fgsm": AttackSetting("fgsm", eps),
        "pgd": AttackSetting("pgd", eps),
        "cw_l2": AttackSetting("cw_l2", cw_bound),
    }


# Section 4.5.1. digits (8×8, MNIST-like) takes MNIST's settings.
PAPER_ATTACKS: dict[str, dict[str, AttackSetting]] = {
    "mnist": _paper_attacks(0.3, 0.007),
    "digits": _paper_attacks(0.3, 0.007),
    "cifar10": _paper_attacks(0.03, 0.004),
}


def paper_attacks(dataset: str) -> dict[str, AttackSetting]:
    if dataset not in PAPER_ATTACKS:
        raise ValueError(f"no detection attack settings for dataset {dataset!r}; valid: {', '.join(PAPER_ATTACKS)}")
    return dict(PAPER_ATTACKS[dataset])


@dataclass
class AdversarialSet:
    """Adversarial versions of a natural set: x_adv (N, C, H, W) in [0, 1]; index (N,) into the
    natural set (fewer than it when the ``drop`` policy removed over-bound C&W examples);
    correct (N,) bool: the model classifies x_adv correctly; fooled = ~correct."""

    x_adv: torch.Tensor
    index: torch.Tensor
    correct: torch.Tensor


def craft(model: nn.Module, setting: AttackSetting, x: torch.Tensor, y: torch.Tensor,
          batch_size: int = 256, overbound: str = "project") -> AdversarialSet:
    """Attack ``x`` (labels ``y``) with ``setting`` in batches; see the module doc for C&W."""
    if overbound not in OVERBOUND_POLICIES:
        raise ValueError(f"overbound must be one of {OVERBOUND_POLICIES}, got {overbound!r}")
    attack = setting.build()
    device = _device(model)
    advs, keeps = [], []
    for i in range(0, len(x), batch_size):
        xb, yb = x[i:i + batch_size].to(device), y[i:i + batch_size].to(device)
        x_adv = attack(model, xb, yb).x_adv
        keep = torch.ones(len(xb), dtype=torch.bool, device=device)
        if setting.attack in RMS_BOUNDED:
            delta = (x_adv - xb).flatten(1)
            rms = delta.norm(dim=1) / math.sqrt(delta.shape[1])
            over = rms > setting.eps
            if overbound == "drop":
                keep = ~over
            else:
                scale = (setting.eps / rms.clamp_min(1e-12)).clamp(max=1.0).view(-1, 1, 1, 1)
                x_adv = torch.where(over.view(-1, 1, 1, 1), (xb + (x_adv - xb) * scale).clamp(0, 1), x_adv)
        advs.append(x_adv.detach().cpu())
        keeps.append(keep.cpu())
    x_adv, keep = torch.cat(advs), torch.cat(keeps)
    index = keep.nonzero().flatten()
    x_adv = x_adv[index]
    pred = torch.from_numpy(predicted_labels(model, x_adv, batch_size)) if len(x_adv) else torch.zeros(0, dtype=torch.int64)
    return AdversarialSet(x_adv=x_adv, index=index, correct=pred == y.cpu()[index])


@dataclass
class DetectionMaterial:
    """What the detectors under one model need: the model, its training images, set I (fit) and
    set II (eval) natural images with labels, and per attack their adversarial versions."""

    model: nn.Module
    x_train: torch.Tensor
    y_train: Optional[torch.Tensor]
    x_fit: torch.Tensor
    x_eval: torch.Tensor
    adv_fit: dict[str, AdversarialSet]
    adv_eval: dict[str, AdversarialSet]
    y_fit: Optional[torch.Tensor] = None
    y_eval: Optional[torch.Tensor] = None
    seconds: dict = field(default_factory=dict)  # attack → crafting seconds


def prepare_material(model: nn.Module, x_train: torch.Tensor, y_train: Optional[torch.Tensor],
                     x_test: torch.Tensor, y_test: torch.Tensor, attacks: Mapping[str, AttackSetting],
                     split_seed: int = 0, fit_fraction: float = FIT_FRACTION, batch_size: int = 256,
                     overbound: str = "project") -> DetectionMaterial:
    """Split (x_test, y_test) into set I / set II and craft every attack on both against ``model``."""
    fit_idx, eval_idx = split_test_set(len(x_test), split_seed, fit_fraction)
    x_fit, y_fit, x_eval, y_eval = x_test[fit_idx], y_test[fit_idx], x_test[eval_idx], y_test[eval_idx]
    adv_fit, adv_eval, seconds = {}, {}, {}
    for name, setting in attacks.items():
        t0 = time.perf_counter()
        adv_fit[name] = craft(model, setting, x_fit, y_fit, batch_size, overbound)
        adv_eval[name] = craft(model, setting, x_eval, y_eval, batch_size, overbound)
        seconds[name] = time.perf_counter() - t0
    return DetectionMaterial(model, x_train, y_train, x_fit, x_eval, adv_fit, adv_eval, y_fit, y_eval, seconds)


PAIRS = ("all", "familiar", "cross")


def detection_matrix(material: Mapping[str, DetectionMaterial], configs: Optional[Mapping[str, object]] = None,
                     pairs: str = "all", fit_attacks: Optional[Sequence[str]] = None,
                     test_attacks: Optional[Sequence[str]] = None, dataset: Optional[str] = None) -> list[dict]:
    """Fit every detector on set I for each fit attack and evaluate it on set II for each test
    attack. ``material`` maps detector name → the material of the model it sits on (KD/LID: the
    undefended net, ER1/ER2: the ER-Classifier). ``configs`` maps detector name → config
    (default :func:`default_config` for ``dataset``). ``pairs``: "all", "familiar" (fit = test, Table 5) or
    "cross" (fit ≠ test, Tables 6–8).

    Returns one dict per (detector, fit_attack, test_attack): the :func:`criteria` fields plus
    fit_seconds (reference statistics + set-I features + logistic regression) and score_seconds
    (set-II features + prediction, natural and this attack's adversarial examples).
    """
    if pairs not in PAIRS:
        raise ValueError(f"pairs must be one of {PAIRS}, got {pairs!r}")
    configs = dict(configs or {})
    unknown = set(configs) - set(material)
    if unknown:
        raise ValueError(f"configs for detectors without material: {sorted(unknown)}")
    rows = []
    for name, mat in material.items():
        det = _detector_class(name)(configs[name]) if name in configs else make(name, dataset=dataset)
        rows += _evaluate_detector(det, mat, pairs, fit_attacks, test_attacks)
    return rows


def _timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


def _evaluate_detector(det: Detector, mat: DetectionMaterial, pairs: str,
                       fit_attacks: Optional[Iterable[str]], test_attacks: Optional[Iterable[str]]) -> list[dict]:
    fit_attacks = list(mat.adv_fit) if fit_attacks is None else list(fit_attacks)
    test_attacks = list(mat.adv_eval) if test_attacks is None else list(test_attacks)
    for a in set(fit_attacks) | set(test_attacks):
        if a not in mat.adv_fit or a not in mat.adv_eval:
            raise ValueError(f"attack {a!r} has no adversarial set; available: {sorted(mat.adv_fit)}")
    wanted = {(f, t) for f in fit_attacks for t in test_attacks
              if pairs == "all" or (pairs == "familiar") == (f == t)}
    if not wanted:
        return []
    _, t_prep = _timed(det.prepare, mat.model, mat.x_train, mat.y_train)
    f_nat_fit, t_nat_fit = _timed(det.features, mat.x_fit)
    f_nat_eval, t_nat_eval = _timed(det.features, mat.x_eval)
    adv_fit = {a: _timed(det.features, mat.adv_fit[a].x_adv) for a in {f for f, _ in wanted}}
    adv_eval = {a: _timed(det.features, mat.adv_eval[a].x_adv) for a in {t for _, t in wanted}}
    rows = []
    for fit_attack in fit_attacks:
        tests = [t for t in test_attacks if (fit_attack, t) in wanted]
        if not tests:
            continue
        f_adv, t_adv = adv_fit[fit_attack]
        _, t_lr = _timed(det.fit_features, f_nat_fit, f_adv)
        nat_flagged, t_nat_pred = _timed(det.predict_features, f_nat_eval)
        for test_attack in tests:
            f_test, t_test = adv_eval[test_attack]
            detected, t_pred = _timed(det.predict_features, f_test)
            rows.append({
                "detector": det.name,
                "fit_attack": fit_attack,
                "test_attack": test_attack,
                **criteria(detected, mat.adv_eval[test_attack].correct, nat_flagged),
                "fit_seconds": t_prep + t_nat_fit + t_adv + t_lr,
                "score_seconds": t_nat_eval + t_nat_pred + t_test + t_pred,
            })
    return rows


def familiar_attack_table(material: Mapping[str, DetectionMaterial], configs=None, dataset=None) -> list[dict]:
    """Table 5: each detector fitted and tested on the same attack."""
    return detection_matrix(material, configs, pairs="familiar", dataset=dataset)


def cross_attack_table(material: Mapping[str, DetectionMaterial], configs=None, dataset=None) -> list[dict]:
    """Tables 6–8: each detector fitted on one attack and tested on each of the others."""
    return detection_matrix(material, configs, pairs="cross", dataset=dataset)


__all__ = [
    "AdversarialSet", "AttackSetting", "CRITERIA", "ClassKDE", "DETECTORS", "DetectionMaterial", "Detector",
    "ER1", "ER2", "ERConfig", "KD", "KDConfig", "KD_BANDWIDTH", "LID", "LIDConfig", "PAPER_ATTACKS",
    "combined_code", "craft", "criteria", "cross_attack_table", "default_config", "detection_matrix",
    "familiar_attack_table", "lid_mle", "make", "mc_dropout_uncertainty", "paper_attacks",
    "predicted_labels", "prepare_material", "split_test_set",
]

"""Adversarial-example detectors (KD, LID, ER1, ER2) and the paper's detection protocol.

Paper: ER-Classifier, Section 3.3 (ER-Detector) and Section 4.5 (Tables 4–8).

Detector registry (:data:`DETECTORS`, one module and one config dataclass each, published
defaults; ``make(name, dataset=...)`` builds one):

- ``kd``  (:mod:`.kd`) Feinman et al. 2017: kernel density of the last hidden layer under the
  predicted class's KDE, plus Monte-Carlo-dropout uncertainty.
- ``lid`` (:mod:`.lid`) Ma et al. 2018: local intrinsic dimensionality of every layer against
  natural reference minibatches.
- ``er1`` / ``er2`` (:mod:`.er`) the ER-Detector: per-class KDE on the code z / on the
  combined code (encoder block means ⊕ z).

Every detector turns its features into a probability with scikit-learn: ``StandardScaler`` →
``LogisticRegressionCV`` (adversarial = 1, natural = 0), as Feinman's and Ma's code do
(:mod:`.base`). The torch side (block outputs, combined code, MC dropout, LID estimate) is in
:mod:`.features`, the class-conditional KDE in :mod:`.kde`, the Table 4 criteria in
:mod:`.criteria`, and the Section 4.5.1 protocol (set I / set II split, the paper's attacks,
crafting, the detection matrix and Tables 5–8) in :mod:`.protocol`.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

from .base import BANDWIDTH_RULES, THRESHOLD, Bandwidth, Detector
from .criteria import CRITERIA, criteria
from .er import ER1, ER2, ERConfig
from .features import combined_code, lid_mle, mc_dropout_uncertainty, predicted_labels
from .kd import KD, KDConfig
from .kde import CV_BANDWIDTHS, CV_MAX_POINTS, ClassKDE
from .lid import LID, LIDConfig
from .protocol import (FIT_FRACTION, OVERBOUND_POLICIES, PAIRS, RMS_BOUNDED, AdversarialSet, DetectionMaterial,
                       craft, cross_attack_table, detection_matrix, familiar_attack_table, paper_attacks,
                       prepare_material, split_test_set)

DETECTORS: dict[str, type[Detector]] = {
    "kd": KD,
    "lid": LID,
    "er1": ER1,
    "er2": ER2,
}


def detector_class(name: str) -> type[Detector]:
    if name not in DETECTORS:
        raise ValueError(f"unknown detector {name!r}; valid detectors: {', '.join(DETECTORS)}")
    return DETECTORS[name]


def default_config(name: str, dataset: Optional[str] = None):
    """The published defaults of detector ``name``, with per-dataset values where there are any
    (a config class with a ``for_dataset`` constructor has them: KD's bandwidth, see
    :meth:`KDConfig.for_dataset`)."""
    cls = detector_class(name)
    if dataset is not None and hasattr(cls.config_cls, "for_dataset"):
        return cls.config_cls.for_dataset(dataset)
    return cls.config_cls()


def make(name: str, config=None, dataset: Optional[str] = None, **overrides) -> Detector:
    """Build detector ``name`` from ``config`` (default: :func:`default_config`) plus overrides."""
    cls = detector_class(name)
    config = default_config(name, dataset) if config is None else config
    if overrides:
        valid = {f.name for f in dataclasses.fields(cls.config_cls)}
        unknown = set(overrides) - valid
        if unknown:
            raise ValueError(f"unknown option(s) {sorted(unknown)} for detector {name!r}; valid options: {sorted(valid)}")
        config = dataclasses.replace(config, **overrides)
    return cls(config)


__all__ = [
    "AdversarialSet", "BANDWIDTH_RULES", "Bandwidth", "CRITERIA", "CV_BANDWIDTHS", "CV_MAX_POINTS", "ClassKDE",
    "DETECTORS", "DetectionMaterial", "Detector", "ER1", "ER2", "ERConfig", "FIT_FRACTION", "KD", "KDConfig", "LID",
    "LIDConfig", "OVERBOUND_POLICIES", "PAIRS", "RMS_BOUNDED", "THRESHOLD", "combined_code", "craft", "criteria",
    "cross_attack_table", "default_config", "detection_matrix", "detector_class", "familiar_attack_table", "lid_mle",
    "make", "mc_dropout_uncertainty", "paper_attacks", "predicted_labels", "prepare_material", "split_test_set",
]

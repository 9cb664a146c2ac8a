"""The paper's detection protocol (Section 4.5.1) and its Tables 5–8.

- :func:`split_test_set` splits the test set 20 % (set I, detectors are fitted there) / 80 %
  (set II, evaluated there) with a fixed seed.
- :func:`paper_attacks` gives FGSM and PGD at the dataset's paper ε and C&W-ℓ2 with the
  dataset's RMS-ℓ2 bound (``paper_eps`` / ``detection_cw_rms`` of
  :mod:`er_core.dataset_info`: 0.3 / 0.007 on MNIST, 0.03 / 0.004 on CIFAR10; digits, 8×8 and
  MNIST-like, takes MNIST's).
- :func:`craft` makes the adversarial set of one attack. C&W is a minimal-distortion attack, so
  the bound is applied afterwards: a C&W example whose RMS distortion exceeds the bound is
  *kept as a failed attempt* with its perturbation scaled back onto the bound
  (``overbound="project"``, default; it then almost never fools the model) or dropped from the
  adversarial set (``overbound="drop"``). Where C&W found no adversarial example at all it
  returns x itself, which stays in the set as a (zero-perturbation) failure. Only
  successful-and-bounded C&W examples fool the model; FGSM/PGD examples are all kept whether or
  not they fool it (ACC-CLA and ACC-COM count the ones that do not).
- :func:`prepare_material` splits and crafts every attack on both sets;
  :func:`detection_matrix` fits every detector on set I for each fit attack and scores it on
  set II for each test attack (:func:`familiar_attack_table`: Table 5,
  :func:`cross_attack_table`: Tables 6–8).

Results are lists of plain dicts (no pandas here); features are numpy float64 arrays.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Optional, Sequence

import torch
from torch import nn

from ..attack_spec import AttackSpec
from ..dataset_info import INFO
from ..torch_utils import model_device
from .base import Detector
from .criteria import criteria
from .features import predicted_labels

FIT_FRACTION = 0.2  # set I share of the test set (Section 4.5.1)

# Minimal-distortion attacks: their spec's ``eps`` is the RMS-ℓ2 bound ‖δ‖₂ / sqrt(#values)
# applied after the attack; for every other attack it is the attack's own ε.
RMS_BOUNDED = frozenset({"cw_l2"})
OVERBOUND_POLICIES = ("project", "drop")
PAIRS = ("all", "familiar", "cross")


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


def paper_attacks(dataset: str) -> dict[str, AttackSpec]:
    """Section 4.5.1's attacks on ``dataset``: name → spec (FGSM, PGD at ``paper_eps``; C&W-ℓ2
    bounded at ``detection_cw_rms``); a ValueError for a dataset without detection settings."""
    record = INFO.get(dataset)
    if record is None or record.detection_cw_rms is None:
        valid = [name for name, r in INFO.items() if r.detection_cw_rms is not None]
        raise ValueError(f"no detection attack settings for dataset {dataset!r}; valid: {', '.join(valid)}")
    return {
        "fgsm": AttackSpec("fgsm", record.paper_eps),
        "pgd": AttackSpec("pgd", record.paper_eps),
        "cw_l2": AttackSpec("cw_l2", record.detection_cw_rms),
    }


@dataclass
class AdversarialSet:
    """Adversarial versions of a natural set: x_adv (N, C, H, W) in [0, 1]; index (N,) into the
    natural set (fewer than it when the ``drop`` policy removed over-bound C&W examples);
    correct (N,) bool: the model classifies x_adv correctly; fooled = ~correct."""

    x_adv: torch.Tensor
    index: torch.Tensor
    correct: torch.Tensor


def craft(model: nn.Module, setting: AttackSpec, x: torch.Tensor, y: torch.Tensor,
          batch_size: int = 256, overbound: str = "project") -> AdversarialSet:
    """Attack ``x`` (labels ``y``) with ``setting`` in batches; see the module doc for C&W."""
    if overbound not in OVERBOUND_POLICIES:
        raise ValueError(f"overbound must be one of {OVERBOUND_POLICIES}, got {overbound!r}")
    attack = setting.build()
    device = model_device(model)
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
    pred = torch.from_numpy(predicted_labels(model, x_adv, batch_size))
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
                     x_test: torch.Tensor, y_test: torch.Tensor, attacks: Mapping[str, AttackSpec],
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


def detection_matrix(material: Mapping[str, DetectionMaterial], configs: Optional[Mapping[str, object]] = None,
                     pairs: str = "all", fit_attacks: Optional[Sequence[str]] = None,
                     test_attacks: Optional[Sequence[str]] = None, dataset: Optional[str] = None) -> list[dict]:
    """Fit every detector on set I for each fit attack and evaluate it on set II for each test
    attack. ``material`` maps detector name → the material of the model it sits on (KD/LID: the
    undefended net, ER1/ER2: the ER-Classifier). ``configs`` maps detector name → config
    (default :func:`~er_core.detect.default_config` for ``dataset``). ``pairs``: "all",
    "familiar" (fit = test, Table 5) or "cross" (fit ≠ test, Tables 6–8).

    Returns one dict per (detector, fit_attack, test_attack): the :func:`criteria` fields plus
    fit_seconds (reference statistics + set-I features + logistic regression) and score_seconds
    (set-II features + prediction, natural and this attack's adversarial examples).
    """
    # The registry (the package's __init__) imports this module to re-export it, so it is
    # looked up when a matrix is run.
    from . import detector_class, make

    if pairs not in PAIRS:
        raise ValueError(f"pairs must be one of {PAIRS}, got {pairs!r}")
    configs = dict(configs or {})
    unknown = set(configs) - set(material)
    if unknown:
        raise ValueError(f"configs for detectors without material: {sorted(unknown)}")
    rows = []
    for name, mat in material.items():
        det = detector_class(name)(configs[name]) if name in configs else make(name, dataset=dataset)
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

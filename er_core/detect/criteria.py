"""The paper's detection criteria (Table 4), :func:`criteria`.

With N adversarial and M natural examples: ACC-ADV = detected / N; ACC-NADV = natural judged
natural / M; ACC-CLA = correctly classified among undetected adversarial; ACC-COM = (detected
+ undetected-but-correct) / N.
"""

from __future__ import annotations

import numpy as np
import torch

CRITERIA = ("acc_adv", "acc_nadv", "acc_cla", "acc_com")


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

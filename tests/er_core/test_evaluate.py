"""Per-example evaluation records: keys, types, consistency, randomized-model judging,
and the attack fingerprint."""

import math

import pytest
import torch
from torch import nn

from er_core.attacks import make as make_attack
from er_core.evaluate import RECORD_KEYS, attack_batch, attack_fingerprint


class Linear10(nn.Module):
    """A fixed 10-class linear model on 1×8×8 inputs."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.fc = nn.Linear(64, 10)
        with torch.no_grad():
            self.fc.weight.copy_(torch.randn(10, 64, generator=g))
            self.fc.bias.zero_()

    def forward(self, x):
        return self.fc(x.flatten(1))


class Noisy(nn.Module):
    """Randomized: class 0 wins on average, but each pass flips to class 1 with p ≈ 0.16."""

    randomized = True

    def forward(self, x):
        base = torch.tensor([1.0, 0.0]).expand(len(x), 2)
        return base + torch.randn(len(x), 2) * 0.7 + 0 * x.flatten(1).sum(1, keepdim=True)


@pytest.fixture(scope="module")
def batch():
    model = Linear10()
    x = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = model(x).argmax(1)
    y[:3] = (y[:3] + 1) % 10  # three examples misclassified from the start
    return model, x, y


def test_records_keys_types_and_consistency(batch):
    model, x, y = batch
    idx = list(range(100, 116))
    records = attack_batch(model, "pgd", x, y, 0.05, sample_idx=idx, steps=5)
    assert len(records) == 16 and [r["sample_idx"] for r in records] == idx
    types = {"sample_idx": int, "label": int, "pred_clean": int, "pred_adv": int, "correct_clean": bool,
             "correct_adv": bool, "l2": float, "l2_rms": float, "linf": float, "queries": int,
             "seconds": float, "gradient_failed": bool, "randomized": bool}
    assert set(types) == set(RECORD_KEYS)
    for r in records:
        assert set(r) == set(RECORD_KEYS)
        for key, kind in types.items():
            assert type(r[key]) is kind, (key, type(r[key]))
        assert r["correct_clean"] == (r["pred_clean"] == r["label"])
        assert r["correct_adv"] == (r["pred_adv"] == r["label"])
        assert r["linf"] <= 0.05 + 1e-6
        assert math.isclose(r["l2_rms"], r["l2"] / 8.0, rel_tol=1e-6)
        # 5 steps + the final check; the three misclassified from the start are not attacked.
        assert r["queries"] == (6 if r["correct_clean"] else 0) and r["randomized"] is False and r["seconds"] > 0
    assert [r["correct_clean"] for r in records[:3]] == [False] * 3
    assert sum(r["correct_adv"] for r in records) < sum(r["correct_clean"] for r in records)


def test_distortion_measured_on_returned_images(batch):
    model, x, y = batch
    # x[3:7]: all correct clean, so all attacked (the first three are not: see below).
    records = attack_batch(model, "cw_l2", x[3:7], y[3:7], 0.0, steps=20, search_steps=2)
    result = make_attack("cw_l2", 0.0, steps=20, search_steps=2)(model, x[3:7], y[3:7])
    assert [r["l2"] for r in records] == pytest.approx(result.extra["l2"].tolist(), rel=1e-6)
    fgsm = attack_batch(model, "fgsm", x[:4], y[:4], 0.1)
    assert all(r["queries"] == -1 for r in fgsm)
    assert all(abs(r["linf"] - 0.1) < 1e-6 or r["linf"] < 0.1 for r in fgsm)


def test_randomized_model_counts_robust_only_if_every_pass_is_correct():
    torch.manual_seed(0)
    x = torch.rand(200, 1, 8, 8)
    y = torch.zeros(200, dtype=torch.long)
    one = attack_batch(Noisy(), "fgsm", x, y, 0.0, passes=1)
    many = attack_batch(Noisy(), "fgsm", x, y, 0.0)  # default: 10 passes
    assert all(r["randomized"] for r in many)
    acc_one = sum(r["correct_adv"] for r in one) / 200
    acc_many = sum(r["correct_adv"] for r in many) / 200
    # One pass: ≈ 0.84 correct; every one of 10 passes: ≈ 0.84^10 ≈ 0.18.
    assert 0.7 < acc_one < 0.95 and acc_many < 0.35
    for r in many:
        assert r["correct_adv"] == (r["pred_adv"] == r["label"])
        assert r["correct_clean"] == (r["pred_clean"] == r["label"])


def test_bad_arguments(batch):
    model, x, y = batch
    with pytest.raises(ValueError, match="unknown attack"):
        attack_batch(model, "deepfool", x, y, 0.1)
    with pytest.raises(ValueError, match="eps must be"):
        attack_batch(model, "pgd", x, y, 2.0)
    with pytest.raises(ValueError, match="sample_idx"):
        attack_batch(model, "fgsm", x, y, 0.1, sample_idx=[0, 1])


def test_fingerprint_has_full_config_and_versions():
    fp = attack_fingerprint("rays", 0.3, max_queries=500)
    assert fp["attack"] == "rays" and fp["eps"] == 0.3 and fp["max_queries"] == 500
    assert fp["early_stop"] is True and fp["norm"] == "Linf"
    assert fp["torch_version"] == torch.__version__ and fp["pyautoattack_version"].startswith("0.")
    assert attack_fingerprint("cw_l2", 0.0)["norm"] == "L2"
    with pytest.raises(ValueError, match="unknown option"):
        attack_fingerprint("pgd", 0.1, step=3)


def test_examples_misclassified_clean_are_not_attacked_and_keep_their_verdict():
    """Robust = correct clean and under attack, so attacking an example the model already gets
    wrong is a wasted pass: its row keeps the clean prediction, ``correct_adv`` False, no
    distortion; every other example's row is what attacking the whole batch gives (FGSM, which
    draws nothing, makes that exact)."""
    import er_core.data
    import er_core.methods
    from er_core.evaluate import attack_batch
    from er_core.train import fit

    data = er_core.data.load("digits")
    method = er_core.methods.make("none", "digits")
    fit(method, data, epochs=1, batch_size=64, seed=0)  # one epoch: right on some, wrong on others
    model = method.model.eval()
    x, y = data.x_test[:120], data.y_test[:120]
    for attack in ("fgsm", "pgd"):
        options = {"steps": 5} if attack == "pgd" else {}
        skipped = attack_batch(model, attack, x, y, 0.1, **options)
        full = attack_batch(model, attack, x, y, 0.1, skip_misclassified=False, **options)
        wrong = [r for r in skipped if not r["correct_clean"]]
        assert 5 < len(wrong) < 115, len(wrong)  # both kinds present, so the test can fail
        for r in wrong:
            assert r["pred_adv"] == r["pred_clean"] and not r["correct_adv"] and r["linf"] == 0.0
            assert r["queries"] in (0, -1)
        for mine, theirs in zip(skipped, full):
            assert (mine["correct_clean"], mine["pred_clean"]) == (theirs["correct_clean"], theirs["pred_clean"])
            # (An attack on a misclassified example can even land on the label: robust stays False.)
            if attack == "fgsm" and mine["correct_clean"]:
                assert mine["pred_adv"] == theirs["pred_adv"] and mine["linf"] == theirs["linf"]
        if attack == "fgsm":
            robust = [r["correct_clean"] and r["correct_adv"] for r in skipped]
            assert robust == [r["correct_clean"] and r["correct_adv"] for r in full]

"""Training recipes (er_core.recipes), the crop + flip augmentation (er_core.augment), the
critic's start inside its clip box and its step count.

Checked: each dataset resolves its recipe's optimiser, lr, schedule, weight decay and
augmentation, and a spec's hyperparameter overrides one of them; the crops are what a zero
padded image cut at the drawn offset gives (computed by hand here), the same (seed, epoch) draws
the same crops and flips and another epoch does not; a run with crop + flip, SGD, piecewise lr
and weight decay resumed from epoch k ends with the weights of an uninterrupted run, bit for bit
on CPU; the recipe is part of trial_id; the critic starts inside ±clip and runs critic_steps
updates per batch (a spy on its optimiser counts them).
"""

from __future__ import annotations

import pytest
import torch

import er_core.data
import er_core.methods
from er_core.augment import EpochDraws, crop_flip, draw_epoch
from er_core.recipes import RECIPES
from er_core.train import derive_seed, fit

SGD_AUGMENTED = {"recipe": "sgd_piecewise", "lr": 0.05, "crop_padding": 2}


def test_each_dataset_resolves_its_recipe_and_a_spec_overrides_one_setting():
    cifar = er_core.methods.defaults("madry", "cifar10")
    assert cifar["recipe"] == "sgd_piecewise" and cifar["optimizer"] == "sgd" and cifar["lr"] == 0.1
    assert (cifar["momentum"], cifar["weight_decay"], cifar["lr_schedule"], cifar["augment"], cifar["crop_padding"]) == (
        0.9, 5e-4, "piecewise", "crop_flip", 4)
    mnist = er_core.methods.defaults("er", "mnist")
    assert (mnist["optimizer"], mnist["lr"], mnist["augment"], mnist["encoder_fc"]) == ("adam", 1e-3, "none", 1024)
    method = er_core.methods.make("madry", "digits", **SGD_AUGMENTED)
    assert isinstance(method.optimizers["model"], torch.optim.SGD)
    group = method.optimizers["model"].param_groups[0]
    assert (group["lr"], group["momentum"], group["weight_decay"]) == (0.05, 0.9, 5e-4)
    assert method.hyperparams["recipe"] == "sgd_piecewise" and method.hyperparams["augment"] == "crop_flip"


def test_crops_and_flips_are_the_padded_image_cut_at_the_drawn_offsets():
    x = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)
    draws = draw_epoch(2, 1, torch.Generator().manual_seed(7))
    out = crop_flip(x, 1, draws)
    padded = torch.zeros(2, 3, 6, 7)
    padded[:, :, 1:5, 1:6] = x
    for i in range(2):
        dy, dx = int(draws.dy[i]), int(draws.dx[i])
        want = padded[i, :, dy:dy + 4, dx:dx + 5]
        if bool(draws.flip[i]):
            want = want.flip(-1)
        assert torch.equal(out[i], want)
    zeros = torch.zeros(2, dtype=torch.int64)
    assert torch.equal(crop_flip(x, 0, EpochDraws(zeros, zeros, zeros.bool())), x)
    assert torch.equal(crop_flip(x, 0, EpochDraws(zeros, zeros, ~zeros.bool())), x.flip(-1))


def test_the_same_seed_and_epoch_draw_the_same_crops_and_flips():
    def draws(seed, epoch):
        return draw_epoch(500, 4, torch.Generator().manual_seed(derive_seed(seed, epoch, "augment")))

    a, b, other = draws(0, 3), draws(0, 3), draws(0, 4)
    assert all(torch.equal(getattr(a, k), getattr(b, k)) for k in ("dy", "dx", "flip"))
    assert not torch.equal(a.dy, other.dy)
    assert 0 <= int(a.dy.min()) and int(a.dy.max()) <= 8 and 0.4 < float(a.flip.float().mean()) < 0.6


def test_resume_with_augmentation_sgd_piecewise_and_weight_decay_is_bit_identical():
    torch.set_num_threads(1)
    data = er_core.data.load("digits")
    hp = {**SGD_AUGMENTED, "crop_padding": 1, "train_eps": 0.1, "pgd_steps": 2}
    straight = er_core.methods.make("er", "digits", **hp)
    fit(straight, data, epochs=3, batch_size=128, seed=5)
    first, saved = er_core.methods.make("er", "digits", **hp), {}

    class Interrupted(Exception):
        pass

    def stop_after_one(epoch_done, metrics):  # a kill after epoch 1's checkpoint
        saved.update(first.state_dict())
        raise Interrupted

    with pytest.raises(Interrupted):
        fit(first, data, epochs=3, batch_size=128, seed=5, on_epoch=stop_after_one)
    resumed = er_core.methods.make("er", "digits", **hp)
    resumed.load_state_dict(saved)
    history = fit(resumed, data, epochs=3, batch_size=128, seed=5, start_epoch=1)
    assert [h["lr"] for h in history] == pytest.approx([0.05 * 0.1, 0.05 * 0.01])  # piecewise: decays at 1 and 2
    for name, want in straight.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[name], want), name
    unaugmented = er_core.methods.make("er", "digits", **{**hp, "augment": "none"})
    fit(unaugmented, data, epochs=1, batch_size=128, seed=5)
    assert not torch.equal(unaugmented.model.head.weight, first.model.head.weight)  # the crops changed training


def test_the_recipe_is_part_of_the_trial_id():
    from grid.spec import GridSpec

    spec = {"experiment": "r", "datasets": ["digits"], "methods": ["madry"], "train_eps": [0.1], "epochs": 1,
            "eval_plan": {"digits": [{"attack": "fgsm", "eps": [0.1]}]}, "eval_n": 10}
    default = GridSpec.from_dict(spec).expand()[0]
    sgd = GridSpec.from_dict({**spec, "hyperparams": {"madry": {"recipe": "sgd_piecewise"}}}).expand()[0]
    assert default.recipe == "adam" and sgd.recipe == "sgd_piecewise"
    assert default.trial_id != sgd.trial_id
    assert default.recipe_settings() == RECIPES["adam"].to_dict()


def test_the_critic_starts_inside_its_clip_box_and_takes_critic_steps_per_batch():
    for clip in (0.01, 0.003):
        method = er_core.methods.make("er", "digits", clip=clip)
        weights = [p for n, p in method.critic.named_parameters() if n.endswith("weight")]
        assert all(float(p.detach().abs().max()) <= clip for p in method.critic.parameters())
        assert float(weights[0].detach().abs().max()) > 0.9 * clip  # spread over the box, not collapsed to 0
    data = er_core.data.load("digits")
    x, y = data.x_train[:32], data.y_train[:32]
    for steps in (1, 5):
        method = er_core.methods.make("er", "digits", critic_steps=steps, train_eps=0.1, pgd_steps=1)
        optimizer, calls = method.optimizers["critic"], []
        original = optimizer.step
        optimizer.step = lambda *a, **k: (calls.append(1), original(*a, **k))[1]
        method.train_step(x, y)
        method.train_step(x, y)
        assert len(calls) == 2 * steps

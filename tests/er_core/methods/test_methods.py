"""er_core.methods: every method learns digits; robustness claims; critic clipping; λ; registry errors.

Runtime: dominated by the module-scoped 20-epoch fixture (seven 20-epoch trainings: e_cla and
er_minus on three seeds, madry on one).
"""

import pytest
import torch

from er_core.attacks import make as make_attack
from er_core.methods import METHODS, defaults, describe, make, uses_lambda, uses_train_eps
from er_core.train import fit


ER_FAMILY = ["er", "er_minus", "er_trades"]


def _hp(name):
    return {"train_eps": 0.1, "pgd_steps": 5} if uses_train_eps(name) else {}


def _accuracy(model, x, y):
    model.eval()
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def _pgd20_accuracy(model, data, eps=0.1):
    model.eval()
    x_adv = make_attack("pgd", eps, steps=20)(model, data.x_test, data.y_test).x_adv
    return _accuracy(model, x_adv, data.y_test)


def _prior_distance(z):
    """Fréchet (W2) distance² between a Gaussian fitted to z and the N(0, I) prior."""
    mu, cov = z.mean(0), torch.cov(z.T)
    ev = torch.linalg.eigvalsh(cov).clamp(min=0)
    return (mu.pow(2).sum() + ev.sum() + len(mu) - 2 * ev.sqrt().sum()).item()


@pytest.fixture(scope="module")
def three_epochs(digits):
    trained = {}
    for name in METHODS:
        method = make(name, "digits", **_hp(name))
        fit(method, digits, epochs=3, batch_size=32, seed=0)
        trained[name] = method
    return trained


@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_learns_digits_in_3_epochs(three_epochs, digits, name):
    method = three_epochs[name]
    assert _accuracy(method.model, digits.x_test, digits.y_test) >= 0.85
    assert method.randomized == (name == "rse")


@pytest.mark.parametrize("name", ER_FAMILY)
def test_critic_weights_inside_clip_after_training(three_epochs, name):
    method = three_epochs[name]
    clip = method.hyperparams["clip"]
    params = torch.cat([p.detach().flatten() for p in method.critic.parameters()])
    assert params.abs().max() <= clip + 1e-9
    # clipping is active (the default init exceeds 0.01), not vacuous
    assert (params.abs() >= clip - 1e-9).any()


SEEDS = (0, 1, 2)


@pytest.fixture(scope="module")
def twenty_epochs(digits):
    """PGD-20 (ε 0.1) test accuracy after 20 epochs, batch 32: e_cla and er_minus on SEEDS
    (seed = init_seed = fit seed, as the grid does), madry on seed 0.

    ``e_cla`` trains exactly like ``none`` (same class, clean CE), so it stands for the
    undefended model in the madry claim.
    """
    robust = {"e_cla": {}, "er_minus": {}, "madry": {}}
    runs = [("e_cla", s) for s in SEEDS] + [("er_minus", s) for s in SEEDS] + [("madry", 0)]
    for name, seed in runs:
        method = make(name, "digits", init_seed=seed, **_hp(name))
        fit(method, digits, epochs=20, batch_size=32, seed=seed)
        robust[name][seed] = _pgd20_accuracy(method.model, digits)
    return robust


def test_madry_beats_none_under_pgd(twenty_epochs):
    # Measured: madry − none ≈ +27–30 points on every seed tried; 20 points leaves room.
    assert twenty_epochs["madry"][0] >= twenty_epochs["e_cla"][0] + 0.20, twenty_epochs


def test_er_minus_beats_e_cla_under_pgd(twenty_epochs):
    """The paper's Figure 4 claim: the embedding regulariser alone adds robustness.

    Measured (PGD-20 at ε 0.1, λ 5, RMSProp-5e-5 critic; 2-core CPU), er_minus vs e_cla:
    seed 0 0.725 vs 0.589, seed 1 0.703 vs 0.553, seed 2 0.725 vs 0.572: gains +13.6 / +15.0 /
    +15.3 points, mean +14.6. With the earlier Adam critic the gain over seeds 0–6 ranged from
    +4.7 to +13.6, so a single seed's gain can move by ~9 points with the seed (and a machine
    whose floating point takes another path acts like another seed). The claim is therefore
    on the mean over three seeds, with a bar of +5 points: a third of the measured mean and
    above the smallest single-seed gain ever measured, yet one a regulariser without effect
    (λ 0 trains exactly as e_cla, gain 0) cannot pass. Each seed must also gain: all did.
    """
    gains = [twenty_epochs["er_minus"][s] - twenty_epochs["e_cla"][s] for s in SEEDS]
    assert sum(gains) / len(gains) >= 0.05, twenty_epochs
    assert all(g > 0 for g in gains), twenty_epochs


@pytest.mark.parametrize("reg_update", ["joint", "separate"])
def test_lambda_moves_the_embedding_towards_the_prior(digits, reg_update):
    distance = {}
    for lam in (0.0, 5.0):
        method = make("er_minus", "digits", lam=lam, reg_update=reg_update)
        fit(method, digits, epochs=5, batch_size=32, seed=0)
        method.model.eval()
        with torch.no_grad():
            distance[lam] = _prior_distance(method.model.embed(digits.x_test))
    assert distance[5.0] < 0.5 * distance[0.0], distance


def test_lambda_zero_is_e_cla(digits):
    """With λ = 0 the critic trains but never reaches the encoder: er_minus ≡ e_cla."""
    a, b = make("er_minus", "digits", lam=0.0), make("e_cla", "digits")
    fit(a, digits, epochs=2, batch_size=64, seed=0)
    fit(b, digits, epochs=2, batch_size=64, seed=0)
    for p, q in zip(a.model.parameters(), b.model.parameters()):
        assert torch.allclose(p, q, atol=1e-6)


def test_lambda_scales_the_joint_gradient(digits):
    """In 'joint' the encoder gradient is ∇CE − λ∇mean D: doubling λ doubles the regulariser part."""
    x, y = digits.x_train[:64], digits.y_train[:64]
    grads = {}
    for lam in (0.0, 10.0, 20.0):
        # lr 0: the step leaves weights (and, critic_lr 0, the critic) as built, so every λ
        # sees the same encoder and critic and the gradients stay in .grad to compare.
        method = make("er_minus", "digits", lam=lam, lr=0.0, critic_lr=0.0)
        method.train_step(x, y)
        grads[lam] = method.model.code.weight.grad.clone()
    reg10, reg20 = grads[10.0] - grads[0.0], grads[20.0] - grads[0.0]
    assert reg10.abs().max() > 0
    assert torch.allclose(reg20, 2 * reg10, rtol=1e-3, atol=1e-7)


def test_registry_errors_list_valid_values():
    with pytest.raises(ValueError, match="valid methods: none, madry"):
        make("adv", "digits")
    with pytest.raises(ValueError, match=r"unknown hyperparameter.*'lamda'.*valid hyperparameters: .*'lam'"):
        make("er", "digits", lamda=1.0)
    with pytest.raises(ValueError, match="beta"):
        make("madry", "digits", beta=6.0)  # TRADES' β is not a Madry hyperparameter
    with pytest.raises(ValueError, match="reg_update must be one of"):
        make("er_minus", "digits", reg_update="alternate")
    with pytest.raises(ValueError, match="valid datasets"):
        make("none", "svhn")
    with pytest.raises(ValueError, match="train_eps"):
        make("madry", "digits", train_eps=1.5)
    with pytest.raises(ValueError, match="lam"):
        make("er", "digits", lam=-1.0)
    with pytest.raises(ValueError, match=r"none: encoder_init must be one of \['he', 'torch'\], got 'xavier'"):
        make("none", "digits", encoder_init="xavier")
    with pytest.raises(ValueError, match=r"er: hyperparameter clip=0.0 must be a number in \[1e-12, inf\]"):
        make("er", "digits", clip=0.0)


def test_defaults_and_grid_axes():
    assert {n for n in METHODS if uses_lambda(n)} == set(ER_FAMILY)
    assert {n for n in METHODS if uses_train_eps(n)} == {"madry", "trades", "er", "er_trades"}
    assert defaults("trades")["beta"] == 6.0 and defaults("er_trades")["beta"] == 6.0
    assert defaults("er")["clip"] == 0.01 and defaults("er")["reg_update"] == "joint"
    assert defaults("madry")["train_eps"] is None and defaults("madry", "mnist")["train_eps"] == 0.3
    assert defaults("rse")["init_noise"] == 0.2 and defaults("rse")["ensemble"] == 10
    for name in METHODS:
        method_defaults = defaults(name, "digits")
        assert make(name, "digits").hyperparams == method_defaults
        assert set(describe(name)) == set(method_defaults) and all(describe(name).values())


@pytest.mark.parametrize("name", list(METHODS))
def test_state_dict_round_trip_with_weights_only(digits, tmp_path, name):
    x, y = digits.x_train[:32], digits.y_train[:32]
    method = make(name, "digits", **_hp(name))
    logs = method.train_step(x, y)
    assert "loss" in logs and all(isinstance(v, float) for v in logs.values())
    torch.save(method.state_dict(), tmp_path / "state.pt")
    restored = make(name, "digits", **_hp(name), init_seed=7)
    restored.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    for a, b in zip(method.model.state_dict().values(), restored.model.state_dict().values()):
        assert torch.equal(a, b)
    if name in ER_FAMILY:
        assert set(restored.optimizers) == {"model", "critic"}
        for a, b in zip(method.critic.parameters(), restored.critic.parameters()):
            assert torch.equal(a, b)
    # optimiser moments restored: the next step is identical
    torch.manual_seed(1)
    method.train_step(x, y)
    torch.manual_seed(1)
    restored.train_step(x, y)
    for a, b in zip(method.model.parameters(), restored.model.parameters()):
        assert torch.allclose(a, b, atol=1e-6)
    with pytest.raises(ValueError, match="state_dict is for method"):
        make("none" if name != "none" else "e_cla", "digits").load_state_dict(method.state_dict())

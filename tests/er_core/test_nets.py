"""er_core.nets: shapes for every dataset, normalisation first, hidden ends with z, RSE, critic, VAE."""

import pytest
import torch

from er_core.data import INFO
from er_core.nets import Critic, Normalize, RSEConfig, build_model, build_vae


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.mark.parametrize("dataset", sorted(INFO))
def test_shapes_for_every_dataset(dataset):
    ds = INFO[dataset]
    model = build_model(dataset).eval()
    x = torch.rand(2, *ds.shape)
    with torch.no_grad():
        logits, z, hidden = model(x), model.embed(x), model.hidden(x)
    k = ds.code_dim  # the dataset record's default code size
    assert logits.shape == (2, ds.num_classes)
    assert z.shape == (2, k) and model.code_dim == k and model.num_classes == ds.num_classes
    assert len(hidden) >= 3 and all(h.dim() == 2 and h.shape[0] == 2 for h in hidden)
    assert torch.allclose(hidden[-1], z)
    assert torch.allclose(model.classify(z), logits, atol=1e-5)
    assert model.randomized is False
    # The first layer normalises with the dataset record's statistics.
    assert model.normalize.mean.flatten().tolist() == pytest.approx(ds.mean, abs=1e-7)
    assert model.normalize.std.flatten().tolist() == pytest.approx(ds.std, abs=1e-7)


def test_code_dim_is_configurable_and_normalisation_is_first():
    from sklearn.datasets import load_digits

    model = build_model("mnist", code_dim=5)
    assert model.embed(torch.rand(3, 1, 28, 28)).shape == (3, 5)
    first = next(iter(model.children()))
    assert isinstance(first, Normalize)
    # The model's first layer computes (x − 0.1307) / 0.3081 with MNIST's published statistics.
    x = torch.rand(3, 1, 28, 28)
    assert torch.allclose(model.normalize(x), (x - 0.1307) / 0.3081, atol=1e-6)
    # Every constant of the dataset records (the networks normalise with them), against a source
    # independent of er_core. digits: mean and std
    # computed here from scikit-learn's bundled images (pixel values 0..16 → [0, 1]); the
    # constants are rounded to 4 decimals, hence the 1e-4 tolerance.
    images = load_digits().images / 16.0
    (mean,), (std,) = INFO["digits"].normalization
    assert abs(mean - images.mean()) < 1e-4 and abs(std - images.std()) < 1e-4
    # The others: the usual published per-channel mean and (pixel-level) std of the training sets.
    published = {
        "mnist": ((0.1307,), (0.3081,)),
        "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
        "stl10": ((0.4467, 0.4398, 0.4066), (0.2603, 0.2566, 0.2713)),
        "tiny_imagenet": ((0.4802, 0.4481, 0.3975), (0.2770, 0.2691, 0.2821)),
    }
    assert set(INFO) == set(published) | {"digits"}
    for dataset, (mean, std) in published.items():
        got_mean, got_std = INFO[dataset].normalization
        assert got_mean == pytest.approx(mean, abs=1e-4) and got_std == pytest.approx(std, abs=1e-4), dataset


def test_dropout_before_head_acts_in_train_mode_only():
    model = build_model("digits", dropout=0.5)
    z = torch.ones(4, 16)
    model.train()
    assert not torch.allclose(model.classify(z), model.classify(z))
    model.eval()
    assert torch.equal(model.classify(z), model.classify(z))


def test_rse_noise_in_eval_and_ensemble_log_probs():
    model = build_model("digits", rse=RSEConfig(init_noise=0.2, inner_noise=0.1, ensemble=4)).eval()
    assert model.randomized is True
    x = torch.rand(3, 1, 8, 8, requires_grad=True)
    out1, out2 = model(x), model(x)
    assert not torch.allclose(out1, out2)  # noise stays on at inference
    # log of a mean of softmaxes: exp sums to 1 over classes
    assert torch.allclose(out1.exp().sum(1), torch.ones(3), atol=1e-5)
    out1.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    # the ensemble equals the log-mean of 4 single passes drawn with the same RNG stream
    torch.manual_seed(5)
    ens = model(x.detach())
    torch.manual_seed(5)
    single = model.classify(model.embed(x.detach().repeat(4, 1, 1, 1))).view(4, 3, -1).softmax(-1).mean(0).log()
    assert torch.allclose(ens, single, atol=1e-5)


def test_rse_rejects_bad_config():
    with pytest.raises(ValueError, match="ensemble"):
        RSEConfig(ensemble=0)
    with pytest.raises(ValueError, match="noise"):
        RSEConfig(init_noise=-1.0)


def test_critic_and_vae_shapes():
    assert Critic(16)(torch.randn(7, 16)).shape == (7,)
    vae = build_vae("digits")
    x = torch.rand(5, 1, 8, 8)
    mu, logvar = vae.encode(x)
    assert mu.shape == logvar.shape == (5, 16)
    assert vae.decode(mu).shape == (5, 1, 8, 8)
    vae.eval()
    assert torch.allclose(vae.embed(x), mu) and vae(x).shape == (5, 10)


def test_unknown_dataset():
    with pytest.raises(ValueError, match="valid datasets"):
        build_model("imagenet")


def test_code_scale_at_initialisation_is_near_the_prior(digits):
    """init='he' puts the code's per-dimension std near the prior's 1; PyTorch's default leaves ≈ 0.02.

    Measured on 512 training images: digits 0.74 (He) vs 0.022 (default); MNIST 0.99 vs 0.033.
    The band [0.3, 3] is wide on purpose: it separates the two inits by an order of magnitude
    on either side whatever the init seed.
    """
    x = digits.x_train[:512]
    for seed in (0, 1, 2):
        torch.manual_seed(seed)
        he, default = build_model("digits", init="he"), build_model("digits")
        with torch.no_grad():
            he_std, default_std = he.embed(x).std(0).mean().item(), default.embed(x).std(0).mean().item()
        assert 0.3 <= he_std <= 3.0, (seed, he_std)
        assert default_std <= 0.1, (seed, default_std)
    with pytest.raises(ValueError, match="init must be one of"):
        build_model("digits", init="xavier")

"""Networks: per-dataset encoder → k-dim code z → classifier head; WGAN critic; VAE parts; RSE noise.

Every model takes images in [0, 1], float32 NCHW, and normalises them in its first layer
(fixed per-dataset mean/std buffers), so every ε is measured in [0, 1] image space.

Encoders (the paper's Appendix G is not in our copy; these are standard choices):

- ``digits`` (1×8×8): conv3×3(32)-ReLU-pool → conv3×3(64)-ReLU-pool → fc 256→128-ReLU → code.
- ``mnist`` (1×28×28): conv5×5(32)-ReLU-pool → conv5×5(64)-ReLU-pool → fc 3136→1024-ReLU → code
  (Madry et al.'s MNIST net, the baseline the paper compares against). The fc width is the
  dataset's ``encoder_fc`` (``er_core.dataset_info``) and a setting (``encoder_fc=256`` is the
  narrower net this project used before; measurements in ``dataset_info``).
- ``cifar10`` (3×32×32), ``stl10`` (3×96×96), ``tiny_imagenet`` (3×64×64): VGG19 with
  BatchNorm (16 conv layers in 5 pooled stages). The same conv stack serves all three sizes;
  a global average pool after the last stage (1×1 for 32 px, 3×3 for 96 px, 2×2 for 64 px)
  gives 512 features whatever the input size, then the code layer.

The code layer is linear (no activation), so z can match the N(0, I) prior of ER-Classifier.

Initialisation (``init``): ``"torch"`` (the default) keeps PyTorch's default init
everywhere; ``"he"`` gives every conv and linear layer of the encoder, the code layer
included, He et al.'s (2015) normal init for ReLU inputs (std sqrt(2 / fan_in), zero bias);
the head keeps PyTorch's default. PyTorch's default (uniform, std 1/sqrt(3·fan_in)) shrinks
the signal by about √6 per ReLU layer, so at initialisation each code dimension has std
≈ 0.02 (digits) / 0.03 (MNIST) against the N(0, I) prior's 1; with ``"he"`` it is ≈ 0.7 /
1.0 (measured on 512 training images; the mean is not zero, ReLU features being positive).
Why ``"torch"`` stays the default although ``"he"`` starts the code at the prior's scale:
measured on digits (20 epochs, batch 32, PGD-20 at ε 0.1, RMSProp critic, λ 5; 2-core CPU),
with ``"he"`` ER− lost its robustness gain over E-CLA (seed 0: er_minus 0.553 vs e_cla
0.569; λ 10: 0.514; e_cla seed 1: 0.556), while with ``"torch"`` it kept it (seed 0: 0.725
vs 0.589). With the regulariser on, the codes reach the prior's scale within the first
epoch anyway (er / er_minus on digits: std 0.85–1.3 after one epoch), and with the RMSProp
defaults the critic stays alive from the torch init (``methods.critic``).

The default code size k and the normalisation's per-channel mean/std are the dataset's
record (``er_core.dataset_info``: ``code_dim``, ``normalization``); k ≪ input dimension, as
the paper requires.
The classifier head is ``Dropout(p) → Linear(k, classes)``; the dropout is for KD's
Monte-Carlo passes and is 0 by default.

``hidden(x)`` returns the flattened output of each encoder block, ending with z: digits and
mnist give [conv1, conv2, fc, z]; VGG gives its 5 pooled stages and z. Shapes (N, d_i).

RSE (Liu et al., ECCV 2018, "Towards Robust Neural Networks via Random Self-ensemble"):
Gaussian noise of std ``init_noise`` is added to the (normalised) input of the first conv
block and of std ``inner_noise`` to the input of every later conv block. The noise is on in
train *and* eval mode: it is a randomized model (``randomized = True``). In train mode
``forward`` is one noisy pass (logits). In eval mode ``forward`` runs ``ensemble`` noisy
passes in one batch and returns ``log(mean_e softmax(logits_e))``: these are valid logits
(log-probabilities), their argmax is the ensemble's averaged-probability vote, and gradients
flow through all passes, so attacks see the ensemble (an expectation-over-transformation
gradient) rather than one noisy draw.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .dataset_info import info

VGG19_STAGES = ((64, 64), (128, 128), (256, 256, 256, 256), (512, 512, 512, 512), (512, 512, 512, 512))


@dataclass(frozen=True)
class RSEConfig:
    """RSE noise: std of the input noise, std before inner conv blocks, passes at inference.

    Defaults are the RSE paper's CIFAR10 values (init 0.2, inner 0.1) and an ensemble of 10.
    Stds are in the normalised space the convolutions see.
    """

    init_noise: float = 0.2
    inner_noise: float = 0.1
    ensemble: int = 10

    def __post_init__(self) -> None:
        if self.init_noise < 0 or self.inner_noise < 0:
            raise ValueError(f"RSE noise stds must be ≥ 0, got init_noise={self.init_noise}, inner_noise={self.inner_noise}")
        if self.ensemble < 1:
            raise ValueError(f"RSE ensemble must be ≥ 1, got {self.ensemble}")


class Normalize(nn.Module):
    """(x - mean) / std with fixed per-channel buffers; the first layer of every model."""

    def __init__(self, mean, std) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class GaussianNoise(nn.Module):
    """Adds N(0, std²) noise in train and eval mode (RSE); identity when std is 0."""

    def __init__(self, std: float) -> None:
        super().__init__()
        self.std = float(std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.std == 0:
            return x
        return x + self.std * torch.randn_like(x)

    def extra_repr(self) -> str:
        return f"std={self.std}"


def _small_cnn(channels: int, size: int, kernel: int, widths: tuple[int, int], fc: int, noise: tuple[float, float]):
    """Two conv-ReLU-pool blocks and one fc block; returns (blocks, feature_dim)."""
    pad = kernel // 2
    c1, c2 = widths
    blocks = [
        nn.Sequential(GaussianNoise(noise[0]), nn.Conv2d(channels, c1, kernel, padding=pad), nn.ReLU(), nn.MaxPool2d(2)),
        nn.Sequential(GaussianNoise(noise[1]), nn.Conv2d(c1, c2, kernel, padding=pad), nn.ReLU(), nn.MaxPool2d(2)),
        nn.Sequential(nn.Flatten(), nn.Linear(c2 * (size // 4) ** 2, fc), nn.ReLU()),
    ]
    return blocks, fc


def _vgg19(channels: int, noise: tuple[float, float]):
    """VGG19-BN conv stack in 5 pooled stages + global average pool; returns (blocks, 512)."""
    blocks, c_in = [], channels
    for i, stage in enumerate(VGG19_STAGES):
        layers: list[nn.Module] = [GaussianNoise(noise[0] if i == 0 else noise[1])]
        for c_out in stage:
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]
            c_in = c_out
        layers.append(nn.MaxPool2d(2))
        if i == len(VGG19_STAGES) - 1:
            # 32 px → 1×1, 64 px → 2×2, 96 px → 3×3 here; average to 512 features for all.
            layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        blocks.append(nn.Sequential(*layers))
    return blocks, c_in


# Registry: dataset → builder(channels, noise stds, fc width or None) -> (blocks, feature_dim).
ENCODERS: dict[str, Callable] = {
    "digits": lambda c, noise, fc: _small_cnn(c, 8, 3, (32, 64), fc, noise),
    "mnist": lambda c, noise, fc: _small_cnn(c, 28, 5, (32, 64), fc, noise),
    "cifar10": lambda c, noise, fc: _vgg19(c, noise),
    "stl10": lambda c, noise, fc: _vgg19(c, noise),
    "tiny_imagenet": lambda c, noise, fc: _vgg19(c, noise),
}


ENCODER_INITS = ("he", "torch")


def he_init_(*modules: nn.Module) -> None:
    """He-normal (fan-in, ReLU gain) weights and zero biases for every conv/linear layer in ``modules``."""
    for module in modules:
        for layer in module.modules():
            if isinstance(layer, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
                nn.init.zeros_(layer.bias)


class ERNet(nn.Module):
    """Encoder Q (normalise → blocks → linear code z) and classifier head C on z.

    forward(x) (N, C, H, W) in [0, 1] → logits (N, classes); embed(x) → z (N, code_dim);
    classify(z) → logits; hidden(x) → list of (N, d_i), last is z.
    """

    def __init__(
        self, dataset: str, code_dim: int | None = None, dropout: float = 0.0, rse: RSEConfig | None = None,
        init: str = "torch", encoder_fc: int | None = None,
    ) -> None:
        super().__init__()
        ds = info(dataset)
        if encoder_fc is not None and ds.encoder_fc is None:
            raise ValueError(f"encoder_fc applies to the small CNNs (digits, mnist), not to {dataset}'s VGG19")
        encoder_fc = ds.encoder_fc if encoder_fc is None else int(encoder_fc)
        if encoder_fc is not None and encoder_fc < 1:
            raise ValueError(f"encoder_fc must be ≥ 1, got {encoder_fc}")
        if init not in ENCODER_INITS:
            raise ValueError(f"init must be one of {list(ENCODER_INITS)}, got {init!r}")
        code_dim = ds.code_dim if code_dim is None else int(code_dim)
        if code_dim < 1:
            raise ValueError(f"code_dim must be ≥ 1, got {code_dim}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.dataset = dataset
        self.code_dim = code_dim
        self.num_classes = ds.num_classes
        self.rse = rse
        self.randomized = rse is not None
        noise = (rse.init_noise, rse.inner_noise) if rse is not None else (0.0, 0.0)
        self.normalize = Normalize(*ds.normalization)
        blocks, feature_dim = ENCODERS[dataset](ds.channels, noise, encoder_fc)
        self.blocks = nn.ModuleList(blocks)
        self.feature_dim = feature_dim
        self.code = nn.Linear(feature_dim, code_dim)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(code_dim, ds.num_classes)
        if init == "he":
            he_init_(self.blocks, self.code)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder trunk up to (not including) the code layer: (N, feature_dim)."""
        h = self.normalize(x)
        for block in self.blocks:
            h = block(h)
        return h

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.code(self.features(x))

    def classify(self, z: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(z))

    def hidden(self, x: torch.Tensor) -> list[torch.Tensor]:
        h, out = self.normalize(x), []
        for block in self.blocks:
            h = block(h)
            out.append(h.flatten(1))
        out.append(self.code(h))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.randomized and not self.training and self.rse.ensemble > 1:
            return self._ensemble_log_probs(x, self.rse.ensemble)
        return self.classify(self.embed(x))

    def _ensemble_log_probs(self, x: torch.Tensor, passes: int) -> torch.Tensor:
        n = x.shape[0]
        logits = self.classify(self.embed(x.repeat(passes, 1, 1, 1))).view(passes, n, -1)
        return torch.logsumexp(F.log_softmax(logits, dim=-1), dim=0) - math.log(passes)


class VAENet(ERNet):
    """ERNet whose code is a Gaussian posterior N(mu, diag exp(logvar)) plus an image decoder.

    embed(x) = mu (deterministic inference); encode(x) → (mu, logvar), each (N, k);
    decode(z) → reconstruction *logits* (N, C, H, W) (sigmoid gives the image in [0, 1]).
    The decoder is an MLP k → 512 → C·H·W, which fits every dataset size (a simple choice;
    the paper does not give its VAE-CLA decoder).
    """

    def __init__(self, dataset: str, code_dim: int | None = None, dropout: float = 0.0, init: str = "torch",
                 encoder_fc: int | None = None) -> None:
        super().__init__(dataset, code_dim=code_dim, dropout=dropout, init=init, encoder_fc=encoder_fc)
        ds = info(dataset)
        self.image_shape = ds.shape
        self.logvar = nn.Linear(self.feature_dim, self.code_dim)
        self.decoder = nn.Sequential(
            nn.Linear(self.code_dim, 512), nn.ReLU(), nn.Linear(512, ds.channels * ds.height * ds.width)
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.features(x)
        return self.code(h), self.logvar(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z).view(-1, *self.image_shape)


class Critic(nn.Module):
    """WGAN critic D on codes: MLP k → hidden → hidden → 1 with ReLU; forward(z) (N, k) → (N,).

    Weight clipping (Arjovsky et al., 2017) is applied by the training method after each
    critic step, so the MLP stays K-Lipschitz and its mean gap estimates W1(Q_z, P_z).
    """

    def __init__(self, code_dim: int, hidden: int = 256) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(code_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1)
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).squeeze(-1)

    def hidden_activations(self, z: torch.Tensor) -> list[torch.Tensor]:
        """The outputs of the hidden ReLUs, (N, hidden) each, first layer first (diagnostics)."""
        out, h = [], z
        for layer in self.net:
            h = layer(h)
            if isinstance(layer, nn.ReLU):
                out.append(h)
        return out


def build_model(
    dataset: str, code_dim: int | None = None, dropout: float = 0.0, rse: RSEConfig | None = None, init: str = "torch",
    encoder_fc: int | None = None,
) -> ERNet:
    """The encoder+classifier for ``dataset`` (see module docstring); ``code_dim`` / ``encoder_fc``
    None → the dataset's default."""
    info(dataset)  # one clear error for an unknown dataset
    return ERNet(dataset, code_dim=code_dim, dropout=dropout, rse=rse, init=init, encoder_fc=encoder_fc)


def build_vae(dataset: str, code_dim: int | None = None, dropout: float = 0.0, init: str = "torch",
              encoder_fc: int | None = None) -> VAENet:
    """The VAE-CLA network for ``dataset``."""
    info(dataset)
    return VAENet(dataset, code_dim=code_dim, dropout=dropout, init=init, encoder_fc=encoder_fc)

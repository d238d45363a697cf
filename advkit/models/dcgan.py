"""DCGAN generator and discriminator (Radford, Metz, Chintala 2016), on advkit's [0,1] pixel contract.

The architecture rules of the paper: strided (transposed) convolutions instead of pooling, no fully
connected hidden layers, BatchNorm everywhere except the generator's output layer and the discriminator's
input layer, ReLU in the generator with tanh at its output, LeakyReLU(0.2) in the discriminator, and
weights drawn from N(0, 0.02).

The boundary is [0,1] on both sides: the generator returns ``(tanh + 1) / 2`` and the discriminator maps
its [0,1] input to [-1,1] itself, so generated images go straight into any advkit model or attack.
The discriminator returns one raw logit per image (positive = "real"), never a probability;
:class:`TwoLogit` turns it into an advkit two-class model (index 0 = real, index 1 = fake).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

from advkit.errors import AdvkitError

SUPPORTED_SIZES = (28, 32, 64)
# image side -> (side of the first feature map, number of stride-2 layers)
_LAYOUT = {28: (7, 2), 32: (4, 3), 64: (4, 4)}

REAL, FAKE = 0, 1  # class indices of TwoLogit, the same order as advkit's detectors


def _layout(img_size: int) -> tuple[int, int]:
    if img_size not in _LAYOUT:
        raise AdvkitError(f"DCGAN supports image sizes {', '.join(map(str, SUPPORTED_SIZES))}; got {img_size}")
    return _LAYOUT[img_size]


def _check_ints(minimum: int, **values: int) -> None:
    """Each value an int (not a bool) >= ``minimum`` (1: "positive", 0: "non-negative"), else one-line error."""
    for name, v in values.items():
        if not isinstance(v, int) or isinstance(v, bool) or v < minimum:
            raise AdvkitError(f"{name} must be a {'positive' if minimum == 1 else 'non-negative'} integer, "
                              f"got {v!r}")


@torch.no_grad()
def dcgan_init_(module: nn.Module, generator: torch.Generator | None = None) -> nn.Module:
    """DCGAN initialisation in place: conv weights ~ N(0, 0.02), BatchNorm weights ~ N(1, 0.02), biases 0.

    Works on spectral-normalized convs too (it initialises the unnormalized weight).

    Args:
        module: the net; every conv, transposed conv, linear and affine BatchNorm layer in it is set.
        generator: the random stream; ``None``: torch's global one.

    Returns:
        ``module``.
    """
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            if parametrize.is_parametrized(m, "weight"):
                # the stub types a module's dynamic attributes as Tensor | Module; this one is the weight tensor
                w: torch.Tensor = m.parametrizations.weight.original  # type: ignore[union-attr,assignment]
            else:
                w = m.weight
            w.normal_(0.0, 0.02, generator=generator)
            if m.bias is not None:
                m.bias.zero_()
        elif isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine:
            m.weight.normal_(1.0, 0.02, generator=generator)
            m.bias.zero_()
    return module


class DCGANGenerator(nn.Module):
    """``G(z) -> images in [0,1]``, shape [B, channels, img_size, img_size], from z of shape [B, z_dim].

    A stride-1 transposed conv lifts z (as a 1x1 map) to 4x4 (7x7 for 28), then stride-2 transposed convs
    double the side (28: 7-14-28; 32: 4-8-16-32; 64: 4-8-16-32-64). ``width`` is the channel count of the
    last hidden block; each earlier block has twice as many. ``depth`` adds that many stride-1 3x3
    conv + BatchNorm + ReLU layers after each hidden block (more spatial context per output pixel; still all
    convolutional, as the paper's rules ask; 0 is the paper's net). ``batch_norm=False`` drops the hidden
    BatchNorm layers (the DCGAN paper's ablation; it also makes multi-process training exactly equal to one
    process, since BatchNorm normalizes over each process's share of the batch).
    """

    def __init__(self, z_dim: int = 100, img_size: int = 28, channels: int = 1, width: int = 64,
                 batch_norm: bool = True, depth: int = 0):
        super().__init__()
        _check_ints(1, z_dim=z_dim, channels=channels, width=width)
        _check_ints(0, depth=depth)
        start, n_up = _layout(img_size)
        self.z_dim, self.img_size, self.channels = z_dim, img_size, channels
        self.spec = {"arch": "dcgan_generator", "z_dim": z_dim, "img_size": img_size, "channels": channels,
                     "width": width}
        if not batch_norm:  # absent from the spec means true: older checkpoints load unchanged
            self.spec["batch_norm"] = False
        if depth:  # likewise absent means 0
            self.spec["depth"] = depth
        hidden = [width * 2 ** (n_up - 1 - i) for i in range(n_up)]

        def norm(c: int) -> list[nn.Module]:
            return [nn.BatchNorm2d(c)] if batch_norm else []

        def extra(c: int) -> list[nn.Module]:
            return [m for _ in range(depth) for m in (nn.Conv2d(c, c, 3, 1, 1, bias=not batch_norm), *norm(c),
                                                     nn.ReLU(True))]

        layers: list[nn.Module] = [nn.ConvTranspose2d(z_dim, hidden[0], start, 1, 0, bias=not batch_norm),
                                   *norm(hidden[0]), nn.ReLU(True), *extra(hidden[0])]
        for c_in, c_out in zip(hidden[:-1], hidden[1:]):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=not batch_norm), *norm(c_out), nn.ReLU(True),
                       *extra(c_out)]
        layers += [nn.ConvTranspose2d(hidden[-1], channels, 4, 2, 1), nn.Tanh()]  # output layer: no BatchNorm
        self.net = nn.Sequential(*layers)
        dcgan_init_(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.ndim == 2:
            z = z[:, :, None, None]
        if z.ndim != 4 or z.shape[1:] != (self.z_dim, 1, 1):
            raise AdvkitError(f"generator expects z of shape [B, {self.z_dim}] or [B, {self.z_dim}, 1, 1], "
                              f"got {list(z.shape)}")
        return (self.net(z) + 1) / 2

    def sample(self, n: int, generator: torch.Generator | None = None,
               device: torch.device | str | None = None) -> torch.Tensor:
        """``n`` images from z ~ N(0, I). Runs with autograd on (wrap in ``torch.no_grad()`` to just look).

        z is drawn on ``generator``'s device when one is given (so a CPU generator seeds a GPU model), and
        lands on ``device``.

        Args:
            n: how many images, >= 1.
            generator: the random stream for z; ``None``: torch's global one.
            device: where z and the images go; default the model's device.

        Returns:
            Images [n, channels, img_size, img_size] in [0,1].

        Raises:
            AdvkitError: ``n`` < 1.
        """
        if n < 1:
            raise AdvkitError(f"n must be >= 1, got {n}")
        dev = torch.device(device) if device is not None else next(self.parameters()).device
        draw_on = generator.device if generator is not None else dev
        z = torch.randn(n, self.z_dim, generator=generator, device=draw_on).to(dev)
        return self(z)


class DCGANDiscriminator(nn.Module):
    """``D(x in [0,1]) -> one raw logit per image``, shape [B]; larger means "real". No sigmoid, ever.

    Stride-2 convs with LeakyReLU(0.2) halve the side down to 4x4 (7x7 for 28); a last conv over the whole
    map gives the logit. BatchNorm follows every conv but the input and output ones; ``critic=True`` (the
    Wasserstein critic, e.g. for WGAN-GP, whose per-sample gradient penalty BatchNorm would break) drops
    normalization entirely. ``spectral_norm=True`` wraps every conv in
    ``torch.nn.utils.parametrizations.spectral_norm`` (Miyato et al. 2018). ``depth`` adds that many stride-1
    3x3 conv (+ BatchNorm unless a critic) + LeakyReLU layers after each stride-2 block, as in the generator.
    """

    def __init__(self, img_size: int = 28, channels: int = 1, width: int = 64, spectral_norm: bool = False,
                 critic: bool = False, depth: int = 0):
        super().__init__()
        _check_ints(1, channels=channels, width=width)
        _check_ints(0, depth=depth)
        start, n_down = _layout(img_size)
        self.img_size, self.channels = img_size, channels
        self.spec = {"arch": "dcgan_discriminator", "img_size": img_size, "channels": channels, "width": width,
                     "spectral_norm": bool(spectral_norm), "critic": bool(critic)}
        if depth:  # absent from the spec means 0: older checkpoints load unchanged
            self.spec["depth"] = depth
        hidden = [width * 2 ** i for i in range(n_down)]
        convs: list[nn.Conv2d] = []
        layers: list[nn.Module] = []
        for i, c_out in enumerate(hidden):
            c_in = channels if i == 0 else hidden[i - 1]
            norm = i > 0 and not critic  # never on the input layer
            conv = nn.Conv2d(c_in, c_out, 4, 2, 1, bias=not norm)
            convs.append(conv)
            layers += [conv] + ([nn.BatchNorm2d(c_out)] if norm else []) + [nn.LeakyReLU(0.2, True)]
            for _ in range(depth):
                conv = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=critic)
                convs.append(conv)
                layers += [conv] + ([] if critic else [nn.BatchNorm2d(c_out)]) + [nn.LeakyReLU(0.2, True)]
        convs.append(nn.Conv2d(hidden[-1], 1, start, 1, 0))
        layers.append(convs[-1])
        self.net = nn.Sequential(*layers)
        dcgan_init_(self)
        if spectral_norm:
            for conv in convs:
                _spectral_norm(conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1:] != (self.channels, self.img_size, self.img_size):
            raise AdvkitError(f"discriminator expects images [B, {self.channels}, {self.img_size}, "
                              f"{self.img_size}] in [0,1], got {list(x.shape)}")
        return self.net(x * 2 - 1).view(x.shape[0])


class TwoLogit(nn.Module):
    """An advkit two-class model from a one-logit discriminator: ``f(x) -> [B, 2]`` logits.

    Index 0 = real, index 1 = fake (:data:`REAL`, :data:`FAKE`), as in advkit's detectors. The logits are
    ``(d(x)/2, -d(x)/2)``, so ``softmax(f(x))[:, 0] == sigmoid(d(x))`` and cross-entropy with label 0 (real)
    or 1 (fake) equals BCE-with-logits on ``d(x)`` with target 1 or 0; attacks and evaluation written for
    classifiers work on the discriminator unchanged.
    """

    def __init__(self, d: nn.Module):
        super().__init__()
        self.d = d
        self.spec = {"arch": "two_logit", "d": dict(getattr(d, "spec", {}))}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logit = self.d(x)
        if logit.ndim != 1:
            raise AdvkitError(f"TwoLogit needs a discriminator returning [B] logits, got {list(logit.shape)}")
        half = logit / 2
        return torch.stack([half, -half], dim=1)


def _two_logit(d: dict) -> TwoLogit:
    return TwoLogit(build_gan_net(d))


_ARCHS: dict[str, Callable[..., nn.Module]] = {"dcgan_generator": DCGANGenerator,
                                               "dcgan_discriminator": DCGANDiscriminator,
                                               "two_logit": _two_logit}


def build_gan_net(spec: dict) -> nn.Module:
    """Rebuild a network, freshly initialised, from its ``spec``.

    Args:
        spec: a net's ``spec`` dict (``arch`` and its arguments), e.g. one read from a checkpoint.

    Returns:
        The net: a generator, a discriminator or a ``TwoLogit`` around one.

    Raises:
        AdvkitError: not a spec, an unknown architecture, or arguments it does not take.
    """
    if not isinstance(spec, dict) or "arch" not in spec:
        raise AdvkitError(f"a GAN net spec is a dict with an 'arch' key, got {spec!r}")
    kwargs = dict(spec)
    arch = kwargs.pop("arch")
    if arch not in _ARCHS:
        raise AdvkitError(f"unknown GAN architecture {arch!r}; known: {', '.join(sorted(_ARCHS))}")
    try:
        return _ARCHS[arch](**kwargs)
    except TypeError as e:
        raise AdvkitError(f"GAN net spec {spec!r}: {e}") from None

"""The GAN's own discriminator reused as a fake-image detector (registered model ``gan_discriminator``).

A DCGAN discriminator ``D(x in [0,1]) -> one logit ("real")`` already separates real images from its
generator's. The detector keeps D's convolutional features (every layer but the last conv), flattens its
penultimate feature map and puts a new ``Linear(., 2)`` head on it (index 0 real, 1 fake, as every advkit
detector). The head starts as D's last conv split in two halves, ``(d/2, -d/2)`` as in
:class:`advkit.gan.TwoLogit`: the untrained detector already gives D's verdict, ``fake - real = -d(x)``.

``freeze=True`` trains the head only (linear probing of D's features: they get ``requires_grad=False`` and
their BatchNorm stays in eval mode); ``freeze=False`` fine-tunes everything. Without ``discriminator`` the
model is D's architecture freshly initialised (``width`` as in DCGAN, default 64), trained from scratch;
with more than 2 classes the head starts at PyTorch's default initialisation.

Kwargs (``train.model.kwargs``): ``discriminator`` (a ``discriminator.safetensors``, or the GAN run folder
holding one), ``freeze`` (default true), ``width`` (only without ``discriminator``). Train it with
``normalize: false``: D scales its [0,1] input itself (``x * 2 - 1``), as it was trained.

The model spec records D's architecture (its ``spec`` dict), not the path to D's file: a detector checkpoint
holds all the weights, so :func:`advkit.models.load` rebuilds it after the discriminator file is gone.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, cast

import torch
from torch import nn

from advkit.errors import AdvkitError
from advkit.models.factory import create_model, register_model

if TYPE_CHECKING:
    from advkit.models.dcgan import DCGANDiscriminator
    from advkit.models.wrappers import Normalized

RUN_FILE = "discriminator.safetensors"  # what ``advkit train gan --out DIR`` writes


class DiscriminatorDetector(nn.Module):
    """``f(x in [0,1], [N,C,S,S]) -> logits [N, K]`` from a DCGAN discriminator's features plus a linear head.

    ``features`` are ``d``'s layers up to its last conv (shared with ``d``, not copied); they take D's own
    input scaling (``x * 2 - 1``), so wrap this net without normalization.
    """

    raw_pixels = True  # the trainer must not put a mean/std normalization in front of D's features

    def __init__(self, d: DCGANDiscriminator, freeze: bool = True, num_classes: int = 2):
        super().__init__()
        if not isinstance(freeze, bool):
            raise AdvkitError(f"gan_discriminator: freeze must be true or false, got {freeze!r}")
        if num_classes < 2:
            raise AdvkitError(f"gan_discriminator needs at least 2 classes (real, fake), got {num_classes}")
        last = cast(nn.Conv2d, d.net[-1])  # D's net always ends with its logit conv
        self.channels, self.img_size, self.freeze = d.channels, d.img_size, freeze
        self.features = d.net[:-1]  # keeps D's layer indices, so state-dict names read features.<i>.*
        side = last.kernel_size[0]  # D's last conv covers the whole (side x side) penultimate map
        self.head = nn.Linear(last.in_channels * side * side, num_classes)
        if num_classes == 2:  # (d/2, -d/2): the softmax equals sigmoid(d), as TwoLogit
            with torch.no_grad():
                w = last.weight.detach().flatten()
                b = last.bias.detach() if last.bias is not None else w.new_zeros(1)  # no bias: a zero one
                self.head.weight.copy_(torch.stack([w, -w]) / 2)
                self.head.bias.copy_(torch.cat([b, -b]) / 2)
        # how create_model rebuilds this net with no file: D's architecture, the weights come from the checkpoint
        self.spec_kwargs = {"discriminator": dict(d.spec), "freeze": freeze}
        if freeze:
            self.features.requires_grad_(False)
            self.features.eval()

    def train(self, mode: bool = True) -> DiscriminatorDetector:
        """As ``nn.Module.train``, but frozen features stay in eval mode (BatchNorm keeps D's statistics).

        Args:
            mode: training mode on or off.

        Returns:
            ``self``.
        """
        super().train(mode)
        if self.freeze:  # frozen features: BatchNorm keeps D's running statistics
            self.features.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1:] != (self.channels, self.img_size, self.img_size):
            raise AdvkitError(f"gan_discriminator expects images [N, {self.channels}, {self.img_size}, "
                              f"{self.img_size}] in [0,1], got {list(x.shape)}")
        return self.head(self.features(x * 2 - 1).flatten(1))


def _resolve(path: str | os.PathLike) -> Path:
    """A discriminator file, or a GAN run folder holding ``discriminator.safetensors``."""
    p = Path(path)
    if p.is_dir():
        if not (p / RUN_FILE).is_file():
            raise AdvkitError(f"gan_discriminator: no {RUN_FILE} in {p} (train one with advkit train gan --out DIR)")
        return p / RUN_FILE
    if not p.is_file():
        raise AdvkitError(f"gan_discriminator: discriminator checkpoint not found: {p}")
    return p


def _discriminator(source: str | os.PathLike | dict) -> DCGANDiscriminator:
    """D with its trained weights (a path), or freshly built from its spec (a dict, as in a detector's spec)."""
    from advkit.models.checkpoint import load_discriminator
    from advkit.models.dcgan import DCGANDiscriminator, build_gan_net

    if isinstance(source, dict):
        d = build_gan_net(source)
        if not isinstance(d, DCGANDiscriminator):
            raise AdvkitError(f"gan_discriminator: the spec {source!r} does not describe a DCGAN discriminator")
        return d.eval()
    if not isinstance(source, (str, os.PathLike)):
        raise AdvkitError(f"gan_discriminator: discriminator must be a path, got {source!r}")
    return load_discriminator(_resolve(source))  # refuses generator and classifier checkpoints


@register_model("gan_discriminator")
def _gan_discriminator(num_classes: int, in_chans: int, input_size: int, discriminator: str | dict | None = None,
                       freeze: bool = True, width: int | None = None) -> nn.Module:
    from advkit.models.dcgan import DCGANDiscriminator

    if discriminator is None:  # D's architecture, freshly initialised: a detector trained from scratch
        d = DCGANDiscriminator(img_size=input_size, channels=in_chans, width=64 if width is None else width).eval()
    elif width is not None:
        raise AdvkitError("gan_discriminator: width applies only without a discriminator (D fixes its own)")
    else:
        d = _discriminator(discriminator)
    if (d.channels, d.img_size) != (in_chans, input_size):
        where = discriminator if not isinstance(discriminator, dict) else "its spec"
        raise AdvkitError(f"gan_discriminator: the discriminator ({where}) takes {d.channels}x{d.img_size}x"
                          f"{d.img_size} images, the data are {in_chans}x{input_size}x{input_size}")
    return DiscriminatorDetector(d, freeze=freeze, num_classes=num_classes)


def discriminator_detector(discriminator: str | os.PathLike, *, freeze: bool = True) -> Normalized:
    """The ``gan_discriminator`` detector over a trained DCGAN discriminator, ready for :func:`advkit.models.save`.

    The image shape is taken from D; the spec records D's architecture instead of the path, so a saved
    detector loads without D's file.

    Args:
        discriminator: a ``discriminator.safetensors``, or the GAN run folder holding one.
        freeze: train the new head only (D's features frozen, BatchNorm in eval mode).

    Returns:
        The detector, ``f(x in [0,1]) -> logits [N, 2]`` (0 real, 1 fake).

    Raises:
        AdvkitError: not a discriminator checkpoint.
    """
    from advkit.models.checkpoint import read_gan_metadata

    spec = read_gan_metadata(_resolve(discriminator), "discriminator")["spec"]
    model = create_model("gan_discriminator", num_classes=2, in_chans=spec.get("channels", 1),
                         input_size=spec.get("img_size", 28), discriminator=str(discriminator), freeze=freeze)
    return model  # create_model recorded D's architecture (net.spec_kwargs), not the path

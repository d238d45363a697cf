"""The wrapper that gives every model the advkit contract: ``f(x in [0,1]) -> logits``."""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn


class Normalized(nn.Module):
    """Takes images in [0,1], applies per-channel ``(x - mean) / std``, calls ``net``, returns logits.

    Normalization lives here, never in the data or the attack, so attacks work in pixel units.
    ``spec`` records how the model was built (architecture name and factory arguments); checkpoints
    store it so :func:`advkit.models.load` can rebuild the model from metadata alone.

    Args:
        net: the network; takes normalized images, returns logits ``[N, K]``.
        mean: per-channel mean, in [0,1] pixel units; ``None`` with ``std`` ``None``: no normalization.
        std: per-channel standard deviation, in [0,1] pixel units.
        spec: how the model was built, stored in checkpoints.

    A model from outside advkit (``timm:``/``torchvision:`` with a weights file, ``py:``, TorchScript) also
    ``adapts`` its input: images of another side are resized to ``input_size`` (``interpolation``, with
    antialiasing when shrinking) and grey images are repeated to the model's channels, inside the model, so
    attacks still perturb the data's own pixels. Data already at the model's size passes untouched.
    ``input_size``, ``interpolation`` and ``crop_pct`` tell data pipelines the model's preferred input;
    ``origin`` records what was loaded (form, file, sha256) for reports.
    """

    # buffers, declared for the type checker (torch types unknown module attributes as Tensor | Module)
    mean: torch.Tensor
    std: torch.Tensor
    meta: dict  # only on a model from advkit.models.load: the checkpoint's metadata
    input_size: int | None  # the side of the square images the net takes (None: unknown)
    interpolation: str  # how adapted inputs are resized: bilinear or bicubic
    crop_pct: float | None  # timm's eval centre-crop fraction for streamed images, when published
    origin: dict[str, Any]  # what was loaded: form, spec, weights file and its sha256 (see advkit.models.resolve)
    adapts: bool  # resize and channel-repeat inputs that do not fit (models from outside advkit)

    def __init__(self, net: nn.Module, mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 spec: dict | None = None):
        super().__init__()
        self.net = net
        self.spec = dict(spec or {})
        c = len(mean) if mean is not None else 1
        self.register_buffer("mean", torch.tensor(list(mean) if mean is not None else [0.0] * c)
                             .view(1, c, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(list(std) if std is not None else [1.0] * c)
                             .view(1, c, 1, 1), persistent=False)
        self._identity = mean is None and std is None
        size = self.spec.get("input_size")
        self.input_size = size if isinstance(size, int) else None
        self.in_chans = self.spec.get("in_chans") if isinstance(self.spec.get("in_chans"), int) else None
        self.interpolation, self.crop_pct, self.origin, self.adapts = "bilinear", None, {}, False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.adapts:
            x = self.adapt(x)
        if not self._identity:
            x = (x - self.mean) / self.std
        return self.net(x)

    @property
    def normalization(self) -> dict | None:
        if self._identity:
            return None
        return {"mean": self.mean.flatten().tolist(), "std": self.std.flatten().tolist()}

    def adapt(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` at the net's side and channels: resized (``interpolation``; antialiased when shrinking, bicubic
        clamped to [0,1] as an 8-bit image would be) and grey repeated to the net's channels.

        Args:
            x: images ``[N, C, H, W]`` in [0,1].

        Returns:
            ``[N, C', S, S]`` with ``S = input_size``; ``x`` itself when it already fits.
        """
        s = self.input_size
        if s is not None and tuple(x.shape[-2:]) != (s, s):
            shrink = min(x.shape[-2:]) > s
            x = F.interpolate(x, size=(s, s), mode=self.interpolation, align_corners=False, antialias=shrink)
            if self.interpolation == "bicubic":
                x = x.clamp(0, 1)
        if self.in_chans is not None and self.in_chans > 1 and x.shape[1] == 1:
            x = x.expand(-1, self.in_chans, -1, -1)
        return x

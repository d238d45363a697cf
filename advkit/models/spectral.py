"""A frequency-domain fake-image detector: a classifier on the image's log power spectrum.

GAN up-sampling (transposed convolutions, nearest/bilinear up-sampling) leaves periodic traces that show
as peaks and a raised tail at high spatial frequencies (Frank et al. 2020, "Leveraging frequency analysis
for deep fake image recognition"; Durall et al. 2020, "Watch your up-convolution", which classify the
azimuthally averaged 1-D spectrum). The whole pipeline (FFT, log, standardization, head) is differentiable,
so attacks take input gradients through it like through any other advkit model.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from advkit.errors import AdvkitError
from advkit.models.factory import register_model

HEADS = ("linear", "conv")
# ITU-R BT.601 luma weights: the usual RGB -> gray conversion (OpenCV's too).
LUMA = (0.299, 0.587, 0.114)


def _radial_bins(size: int) -> tuple[torch.Tensor, int]:
    """Averaging matrix [size*size, B] of the centred spectrum over rings of integer radius (B rings)."""
    c = size // 2  # the DC term's position after fftshift
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    r = torch.sqrt(((yy - c) ** 2 + (xx - c) ** 2).double()).round().long().flatten()
    n_bins = int(r.max()) + 1
    onehot = torch.zeros(size * size, n_bins, dtype=torch.float64)
    onehot[torch.arange(size * size), r] = 1
    return (onehot / onehot.sum(0, keepdim=True)).float(), n_bins


class SpectralDetector(nn.Module):
    """``f(x in [0,1], [N,C,H,W]) -> logits [N, num_classes]`` (index 0 real, 1 fake) from the spectrum.

    Steps: RGB -> gray (``gray=True``; else each channel separately), centred 2-D FFT (orthonormal, so
    the scale does not depend on the image size), ``log(|F|^2 + eps)``, optionally the azimuthal average
    over rings (``radial=True``: a 1-D spectrum), per-frequency standardization (BatchNorm without
    affine, statistics learned in training and stored in checkpoints; it flattens the 1/f^2 decay of
    natural images so high frequencies weigh as much as low ones), then ``head``: ``linear`` or ``conv``
    (a small conv net over the 2-D (or 1-D) log spectrum that keeps the coarse position of a peak).
    ``eps`` (default 1e-6) sits near the power of 8-bit quantization noise per coefficient.
    """

    # buffers, declared for the type checker (torch types unknown module attributes as Tensor | Module)
    luma: torch.Tensor
    rings: torch.Tensor  # only with radial=True

    def __init__(self, in_chans: int = 3, input_size: int = 32, num_classes: int = 2, head: str = "linear",
                 radial: bool = False, gray: bool = True, width: int = 8, eps: float = 1e-6):
        super().__init__()
        if head not in HEADS:
            raise AdvkitError(f"unknown spectral head {head!r}; valid: {', '.join(HEADS)}")
        if in_chans not in (1, 3):
            raise AdvkitError(f"spectral detector takes 1 or 3 channels, got {in_chans}")
        if input_size < 4 or width < 1 or not (math.isfinite(eps) and eps > 0):
            raise AdvkitError(f"spectral detector needs input_size >= 4, width >= 1 and eps > 0, got "
                              f"{input_size}, {width}, {eps}")
        self.in_chans, self.input_size, self.radial, self.gray, self.eps = in_chans, input_size, radial, gray, eps
        self.chans = 1 if gray else in_chans
        self.register_buffer("luma", torch.tensor(LUMA).view(1, 3, 1, 1), persistent=False)
        if radial:
            avg, n_bins = _radial_bins(input_size)
            self.register_buffer("rings", avg, persistent=False)  # derived from the size: not in checkpoints
            self.feat_shape: tuple[int, ...] = (self.chans, n_bins)
        else:
            self.feat_shape = (self.chans, input_size, input_size)
        self.norm = nn.BatchNorm1d(math.prod(self.feat_shape), affine=False)
        self.head = self._build_head(head, num_classes, width)

    def _build_head(self, head: str, num_classes: int, width: int) -> nn.Module:
        if head == "linear":
            return nn.Linear(math.prod(self.feat_shape), num_classes)
        conv, pool = (nn.Conv1d, nn.AdaptiveAvgPool1d) if self.radial else (nn.Conv2d, nn.AdaptiveAvgPool2d)
        cells = 8 if self.radial else 16  # 8 radial bands or a 4x4 grid: low to high frequency stays apart
        return nn.Sequential(
            conv(self.chans, width, 3, padding=1), nn.ReLU(),
            conv(width, 2 * width, 3, stride=2, padding=1), nn.ReLU(),
            conv(2 * width, 2 * width, 3, stride=2, padding=1), nn.ReLU(),
            pool(8 if self.radial else 4), nn.Flatten(), nn.Linear(2 * width * cells, num_classes))

    def spectrum(self, x: torch.Tensor) -> torch.Tensor:
        """The centred log power spectrum the head sees, before standardization.

        Args:
            x: images [N, C, S, S] in [0,1], C and S as built.

        Returns:
            [N, C', S, S], or its ring averages [N, C', B] with ``radial`` (C' = 1 with ``gray``).

        Raises:
            AdvkitError: another input shape.
        """
        if x.ndim != 4 or x.shape[1] != self.in_chans or x.shape[2:] != (self.input_size, self.input_size):
            raise AdvkitError(f"spectral detector expects [N, {self.in_chans}, {self.input_size}, "
                              f"{self.input_size}], got {list(x.shape)}")
        x = x.float()
        if self.gray and self.in_chans == 3:
            x = (x * self.luma).sum(1, keepdim=True)
        f = torch.fft.fftshift(torch.fft.fft2(x, norm="ortho"), dim=(-2, -1))
        s = torch.log(f.real ** 2 + f.imag ** 2 + self.eps)  # smooth everywhere, unlike |F| at 0
        if self.radial:
            s = s.flatten(2) @ self.rings
        return s

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.norm(self.spectrum(x).flatten(1))
        if isinstance(self.head, nn.Linear):
            return self.head(s)
        return self.head(s.view(-1, *self.feat_shape))


@register_model("spectral")
def _spectral(num_classes: int, in_chans: int, input_size: int, head: str = "linear", radial: bool = False,
              gray: bool = True, width: int = 8) -> nn.Module:
    return SpectralDetector(in_chans, input_size, num_classes, head=head, radial=radial, gray=gray, width=width)

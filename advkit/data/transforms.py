"""OpenCV image transforms on uint8 batches ``[N, C, H, W]`` (C = 1 or 3, RGB order).

The post-processing a detector meets in the wild (JPEG, blur, resizing) and the augmentation that makes it
robust to them: Wang et al. 2020 ("CNN-generated images are surprisingly easy to spot... for now") train
with Gaussian blur (sigma ~ U[0, 3]) and JPEG (quality ~ U{30..100}), each with probability 0.5.
Every function returns a new tensor on the input's device and never mutates its input; random choices
come from an explicit generator, so a seeded run is reproducible.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Sequence, Union

import cv2
import numpy as np
import torch

from advkit.errors import AdvkitError

# A seed, a numpy or torch generator; None draws fresh OS entropy (not reproducible).
RngLike = Union[int, np.random.Generator, torch.Generator, None]


def make_rng(rng: RngLike) -> np.random.Generator:
    """A numpy generator from a seed or a generator.

    Args:
        rng: a seed, a numpy generator (returned as is), a torch generator (advanced by one draw: its state
            decides the result, as with any torch sampling call), or None for fresh OS entropy.

    Returns:
        The numpy generator.

    Raises:
        AdvkitError: anything else.
    """
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, torch.Generator):
        seed = int(torch.randint(0, 2 ** 62, (1,), generator=rng, device=rng.device).item())
        return np.random.default_rng(seed)
    if rng is None or (isinstance(rng, numbers.Integral) and not isinstance(rng, bool)):
        return np.random.default_rng(rng)
    raise AdvkitError(f"rng must be a seed, a numpy or a torch generator, got {type(rng).__name__}")


def _check_images(images: torch.Tensor) -> None:
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4 \
            or images.shape[1] not in (1, 3):
        got = f"{images.dtype} {tuple(images.shape)}" if isinstance(images, torch.Tensor) else type(images).__name__
        raise AdvkitError(f"images must be a uint8 tensor [N,C,H,W] with C = 1 or 3, got {got}")


def _check_quality(quality: object) -> int:
    if isinstance(quality, bool) or not isinstance(quality, numbers.Integral) or not 1 <= int(quality) <= 100:
        raise AdvkitError(f"JPEG quality must be an integer in 1..100, got {quality!r}")
    return int(quality)


def _check_sigma(sigma: object) -> float:
    if isinstance(sigma, bool) or not isinstance(sigma, numbers.Real) or not math.isfinite(sigma) or sigma < 0:
        raise AdvkitError(f"blur sigma must be a finite number >= 0, got {sigma!r}")
    return float(sigma)


def _check_factor(factor: object) -> float:
    if isinstance(factor, bool) or not isinstance(factor, numbers.Real) or not 0 < float(factor) <= 1:
        raise AdvkitError(f"rescale factor must be in (0, 1], got {factor!r}")
    return float(factor)


def _to_cv(img: torch.Tensor) -> np.ndarray:
    """[C,H,W] uint8 -> HxW (gray) or HxWx3 BGR, contiguous, as OpenCV wants."""
    a = img.numpy()
    if a.shape[0] == 1:
        return np.ascontiguousarray(a[0])
    return np.ascontiguousarray(a.transpose(1, 2, 0)[:, :, ::-1])


def _from_cv(a: np.ndarray) -> torch.Tensor:
    """The inverse of :func:`_to_cv`."""
    if a.ndim == 2:
        return torch.from_numpy(np.ascontiguousarray(a[None]))
    return torch.from_numpy(np.ascontiguousarray(a[:, :, ::-1].transpose(2, 0, 1)))


def _per_image(images: torch.Tensor, fn, params: list | None = None) -> torch.Tensor:
    """Apply ``fn(cv_image, param)`` to each image; the outputs must share one shape."""
    src = images.detach().cpu()
    params = params if params is not None else [None] * len(src)
    out = [_from_cv(fn(_to_cv(img), p)) for img, p in zip(src, params)]
    if not out:
        return images.clone()
    return torch.stack(out).to(images.device)


def _jpeg_cv(a: np.ndarray, quality: int) -> np.ndarray:
    params = [cv2.IMWRITE_JPEG_QUALITY, quality]
    if a.ndim == 3:  # 4:2:0 chroma, as most cameras and web JPEGs: spelled out, not left to a library default
        params += [cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420]
    ok, buf = cv2.imencode(".jpg", a, params)
    if not ok:
        raise AdvkitError(f"OpenCV could not JPEG-encode an image of shape {a.shape}")
    flag = cv2.IMREAD_GRAYSCALE if a.ndim == 2 else cv2.IMREAD_COLOR
    out = cv2.imdecode(buf, flag)
    if out is None:
        raise AdvkitError(f"OpenCV could not decode its own JPEG of an image of shape {a.shape}")
    return out


def _blur_cv(a: np.ndarray, sigma: float) -> np.ndarray:
    if sigma == 0:
        return a.copy()
    k = 2 * math.ceil(3 * sigma) + 1  # +-3 sigma holds 99.7% of the kernel's mass
    return cv2.GaussianBlur(a, (k, k), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT_101)


def _rescale_cv(a: np.ndarray, factor: float) -> np.ndarray:
    if factor == 1:
        return a.copy()
    h, w = a.shape[:2]
    small = cv2.resize(a, (max(1, round(w * factor)), max(1, round(h * factor))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def resize_cv(a: np.ndarray, h: int, w: int) -> np.ndarray:
    """Resize an OpenCV image: area averaging when shrinking (no aliasing), bilinear when enlarging.

    Args:
        a: HxW or HxWxC uint8.
        h: the new height.
        w: the new width.

    Returns:
        The resized image (a copy when the size is already right).
    """
    if a.shape[:2] == (h, w):
        return a.copy()
    shrink = h * w < a.shape[0] * a.shape[1]
    return cv2.resize(a, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def jpeg(images: torch.Tensor, quality: int) -> torch.Tensor:
    """A JPEG encode/decode round trip through OpenCV (4:2:0 chroma for RGB).

    Args:
        images: uint8 [N, C, H, W], C = 1 or 3 (RGB).
        quality: JPEG quality, an integer in 1..100.

    Returns:
        New uint8 images, same shape, on the same device.

    Raises:
        AdvkitError: bad images or quality.
    """
    _check_images(images)
    q = _check_quality(quality)
    return _per_image(images, lambda a, _: _jpeg_cv(a, q))


def blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur (kernel side 2*ceil(3 sigma)+1).

    Args:
        images: uint8 [N, C, H, W], C = 1 or 3 (RGB).
        sigma: standard deviation in pixels, finite and >= 0; 0 is the identity.

    Returns:
        New uint8 images, same shape, on the same device.

    Raises:
        AdvkitError: bad images or sigma.
    """
    _check_images(images)
    s = _check_sigma(sigma)
    return _per_image(images, lambda a, _: _blur_cv(a, s))


def rescale(images: torch.Tensor, factor: float) -> torch.Tensor:
    """Shrink by ``factor`` (area averaging), then enlarge back to the original size (bilinear).

    The resize "laundering" that wipes out high-frequency traces.

    Args:
        images: uint8 [N, C, H, W], C = 1 or 3 (RGB).
        factor: the shrink factor, in (0, 1]; 1 is the identity.

    Returns:
        New uint8 images, same shape, on the same device.

    Raises:
        AdvkitError: bad images or factor.
    """
    _check_images(images)
    f = _check_factor(factor)
    return _per_image(images, lambda a, _: _rescale_cv(a, f))


def hflip(images: torch.Tensor) -> torch.Tensor:
    """Mirror every image left-right.

    Args:
        images: uint8 [N, C, H, W], C = 1 or 3 (RGB).

    Returns:
        New uint8 images, same shape, on the same device.

    Raises:
        AdvkitError: bad images.
    """
    _check_images(images)
    return images.flip(-1)


def _size_hw(size: int | tuple[int, int] | None, images: torch.Tensor) -> tuple[int, int]:
    if size is None:
        return int(images.shape[2]), int(images.shape[3])
    hw = (size, size) if isinstance(size, (int, numbers.Integral)) else tuple(size)
    if len(hw) != 2 or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 1 for v in hw):
        raise AdvkitError(f"size must be a positive integer or (height, width), got {size!r}")
    return int(hw[0]), int(hw[1])


def _check_range(name: str, pair: Sequence[float], lo: float, hi: float) -> tuple[float, float]:
    if len(pair) != 2 or not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in pair) \
            or not lo <= pair[0] <= pair[1] <= hi:
        raise AdvkitError(f"{name} must be (low, high) with {lo} <= low <= high <= {hi}, got {pair!r}")
    return float(pair[0]), float(pair[1])


def _crop_boxes(rng: np.random.Generator, n: int, h: int, w: int, scale: Sequence[float],
                ratio: Sequence[float]) -> list[tuple[int, int, int, int]]:
    """(top, left, height, width) per image: area fraction ~ U(scale), log aspect ~ U(log ratio).

    Exactly four draws per image (boxes that do not fit are clipped, not redrawn), so the stream of random
    numbers, and hence every later choice, does not depend on the image content or size."""
    u = rng.random((n, 4))
    area = h * w * (scale[0] + (scale[1] - scale[0]) * u[:, 0])
    log_r = math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * u[:, 1]
    boxes = []
    for i in range(n):
        r = math.exp(log_r[i])
        cw = min(w, max(1, round(math.sqrt(area[i] * r))))
        ch = min(h, max(1, round(math.sqrt(area[i] / r))))
        top = min(h - ch, int(u[i, 2] * (h - ch + 1)))
        left = min(w - cw, int(u[i, 3] * (w - cw + 1)))
        boxes.append((top, left, ch, cw))
    return boxes


def resize_crop(images: torch.Tensor, size: int | tuple[int, int] | None = None,
                scale: tuple[float, float] = (0.08, 1.0), ratio: tuple[float, float] = (3 / 4, 4 / 3),
                rng: RngLike = None) -> torch.Tensor:
    """Random-resized crop: per image, a box covering a fraction ~ U(``scale``) of the area with aspect
    ratio (width/height) log-uniform in ``ratio``, resized to ``size``.

    Args:
        images: uint8 [N, C, H, W], C = 1 or 3 (RGB).
        size: the output side, or ``(height, width)``; default the input size.
        scale: the range of the box's area, as a fraction of the image's, within (0, 1].
        ratio: the range of the box's aspect ratio.
        rng: the random stream (see :func:`make_rng`).

    Returns:
        New uint8 images [N, C, size], on the same device.

    Raises:
        AdvkitError: bad images, size, scale or ratio.
    """
    _check_images(images)
    oh, ow = _size_hw(size, images)
    sc = _check_range("scale", tuple(scale), 0.0, 1.0)
    if sc[0] <= 0:
        raise AdvkitError(f"scale must be > 0, got {tuple(scale)!r}")
    rt = _check_range("ratio", tuple(ratio), 1e-6, 1e6)
    boxes = _crop_boxes(make_rng(rng), len(images), images.shape[2], images.shape[3], sc, rt)
    return _per_image(images, lambda a, b: resize_cv(a[b[0]:b[0] + b[2], b[1]:b[1] + b[3]], oh, ow), boxes)


def _check_prob(name: str, p: float) -> None:
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0 <= p <= 1:
        raise AdvkitError(f"{name} must be a probability in [0, 1], got {p!r}")


@dataclass(frozen=True)
class Augment:
    """Detector-training augmentation: per image, independently, a random resized crop (``crop_prob``), a
    horizontal flip (``flip_prob``), Gaussian blur with sigma ~ U(``blur_sigma``) (``blur_prob``), then JPEG
    with quality ~ U{``jpeg_quality``} (``jpeg_prob``). The defaults follow Wang et al. 2020's "Blur+JPEG
    (0.5)" recipe plus flips; crops are off by default (they change the pixel grid that spectra see).

    ``aug(images, rng)`` draws every random number up front in a fixed order, so the same seed gives the
    same output whatever the probabilities decide."""

    blur_prob: float = 0.5
    blur_sigma: tuple[float, float] = (0.0, 3.0)
    jpeg_prob: float = 0.5
    jpeg_quality: tuple[int, int] = (30, 100)
    crop_prob: float = 0.0
    crop_scale: tuple[float, float] = (0.5, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_prob: float = 0.5

    def __post_init__(self) -> None:
        for name in ("blur_prob", "jpeg_prob", "crop_prob", "flip_prob"):
            _check_prob(name, getattr(self, name))
        _check_range("blur_sigma", tuple(self.blur_sigma), 0.0, math.inf)
        q = tuple(self.jpeg_quality)
        if len(q) != 2 or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in q) \
                or not 1 <= q[0] <= q[1] <= 100:
            raise AdvkitError(f"jpeg_quality must be (low, high) integers with 1 <= low <= high <= 100, got {q!r}")
        if _check_range("crop_scale", tuple(self.crop_scale), 0.0, 1.0)[0] <= 0:
            raise AdvkitError(f"crop_scale must be > 0, got {tuple(self.crop_scale)!r}")
        _check_range("crop_ratio", tuple(self.crop_ratio), 1e-6, 1e6)

    def __call__(self, images: torch.Tensor, rng: RngLike = None) -> torch.Tensor:
        """Augmented copy of ``images`` (uint8 [N,C,H,W]); shape, dtype and device kept."""
        _check_images(images)
        gen = make_rng(rng)
        n, _, h, w = images.shape
        gates = gen.random((n, 4)) < np.array([self.crop_prob, self.flip_prob, self.blur_prob, self.jpeg_prob])
        sigmas = gen.uniform(self.blur_sigma[0], self.blur_sigma[1], n)
        qualities = gen.integers(self.jpeg_quality[0], self.jpeg_quality[1], n, endpoint=True)
        boxes = _crop_boxes(gen, n, h, w, tuple(self.crop_scale), tuple(self.crop_ratio))

        def one(a: np.ndarray, i: int) -> np.ndarray:
            if gates[i, 0]:
                t, l_, ch, cw = boxes[i]
                a = resize_cv(a[t:t + ch, l_:l_ + cw], h, w)
            if gates[i, 1]:
                a = a[:, ::-1]
            if gates[i, 2]:
                a = _blur_cv(np.ascontiguousarray(a), float(sigmas[i]))
            if gates[i, 3]:
                a = _jpeg_cv(np.ascontiguousarray(a), int(qualities[i]))
            return np.ascontiguousarray(a)

        return _per_image(images, one, list(range(n)))

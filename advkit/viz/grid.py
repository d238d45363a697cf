"""PNG image grids, drawn with OpenCV (no plotting library needed): a plain grid of images (GAN samples) and
the clean / adversarial / amplified-perturbation grid labelled with a model's predictions."""

from __future__ import annotations

import math
from typing import Sequence

import cv2
import numpy as np
import torch

_HEAD = 18  # pixels of label strip above each tile


def _tile(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """CHW float [0,1] -> HWC uint8 BGR, resized (nearest) to ``height`` x ``width`` so small digits stay
    crisp."""
    hwc = (img.transpose(1, 2, 0) * 255).round().clip(0, 255).astype(np.uint8)
    if hwc.shape[2] == 1:
        hwc = np.repeat(hwc, 3, axis=2)
    else:
        hwc = hwc[:, :, ::-1]
    return cv2.resize(hwc, (width, height), interpolation=cv2.INTER_NEAREST)


def encode_png(img: np.ndarray, what: str = "image") -> bytes:
    """PNG bytes of an image.

    Args:
        img: BGR uint8, HxWx3 (or HxW gray).
        what: names the image in the error.

    Returns:
        The encoded PNG.

    Raises:
        RuntimeError: OpenCV could not encode it.
    """
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise RuntimeError(f"OpenCV could not encode the {what} as PNG")
    return buf.tobytes()


def _title_strip(grid: np.ndarray, title: str, height: int, baseline: int, scale: float) -> np.ndarray:
    """``grid`` with a white strip of ``height`` pixels on top holding ``title`` in black."""
    top = np.full((height, grid.shape[1], 3), 255, np.uint8)
    cv2.putText(top, title, (4, baseline), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return np.vstack([top, grid])


def image_grid(x: torch.Tensor, n_cols: int | None = None, pad: int = 2) -> np.ndarray:
    """One grid image of ``x``, square-ish unless ``n_cols`` is given.

    Args:
        x: images [N, C, H, W] in [0,1] (values outside are clamped), C = 1 or 3 (RGB).
        n_cols: tiles per row; default about sqrt(N).
        pad: white pixels between tiles.

    Returns:
        BGR uint8 HxWx3; each tile nearest-upscaled to at least 56 pixels.
    """
    a = x.detach().float().clamp(0, 1).cpu().numpy()
    n, _, h, w = a.shape
    cols = n_cols or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    scale = max(1, 56 // h)
    th, tw = h * scale, w * scale
    grid = np.full((rows * (th + pad) + pad, cols * (tw + pad) + pad, 3), 255, np.uint8)
    for i in range(n):
        r, q = divmod(i, cols)
        y0, x0 = pad + r * (th + pad), pad + q * (tw + pad)
        grid[y0:y0 + th, x0:x0 + tw] = _tile(a[i], th, tw)
    return grid


def sample_grid_png(x: torch.Tensor, title: str = "") -> bytes:
    """PNG bytes of a square-ish grid of images (:func:`image_grid`), with an optional title strip.

    Args:
        x: images [N, C, H, W] in [0,1].
        title: drawn in a strip above the grid; empty: no strip.

    Returns:
        The encoded PNG.
    """
    grid = image_grid(x)
    if title:
        grid = _title_strip(grid, title, 22, 16, 0.45)
    return encode_png(grid, "sample grid")


def _class_name(classes: Sequence[str], label: int) -> str:
    """The name of ``label``, or the number itself for a label the names do not cover (a model with more
    classes than the data names)."""
    return str(classes[label]) if 0 <= label < len(classes) else str(label)


def adversarial_grid_png(x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor, pred_clean: torch.Tensor,
                         pred_adv: torch.Tensor, classes: Sequence[str], n: int = 8,
                         title: str = "") -> bytes:
    """PNG bytes of a 3-row grid for the first ``n`` samples: clean, adversarial, and the perturbation.

    The perturbation row is amplified so that its largest change has full contrast (grey: unchanged).
    Tiles are labelled ``true/pred``, red when the prediction is wrong.

    Args:
        x: clean images [N, C, H, W] in [0,1].
        x_adv: their adversarial versions, same shape.
        y: true labels [N].
        pred_clean: the model's labels on ``x`` [N].
        pred_adv: the model's labels on ``x_adv`` [N].
        classes: class names, indexed by label.
        n: how many samples to draw (at most N).
        title: drawn in a strip above the grid; empty: no strip.

    Returns:
        The encoded PNG.

    Raises:
        ValueError: no images to draw.
    """
    n = min(n, x.shape[0])
    if n == 0:
        raise ValueError("no images to draw")
    clean, adv = x[:n].detach().float().cpu().numpy(), x_adv[:n].detach().float().cpu().numpy()
    delta = adv - clean
    scale = max(float(np.abs(delta).max()), 1e-12)
    amplified = 0.5 + delta / (2 * scale)  # grey = unchanged, full contrast = the largest change
    size = max(96, clean.shape[-1])
    rows = []
    for imgs, preds, name in ((clean, pred_clean, "clean"), (adv, pred_adv, "adversarial"),
                              (amplified, None, f"perturbation x{0.5 / scale:.1f}")):
        tiles = []
        for i in range(n):
            head = np.full((_HEAD, size, 3), 255, np.uint8)
            if preds is not None:
                p = int(preds[i])
                ok = p == int(y[i])
                text = f"{_class_name(classes, int(y[i]))[:6]}/{_class_name(classes, p)[:6]}"
                cv2.putText(head, text, (2, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                            (0, 120, 0) if ok else (0, 0, 220), 1, cv2.LINE_AA)
            tiles.append(np.vstack([head, _tile(imgs[i], size, size)]))
            tiles.append(np.full((size + _HEAD, 4, 3), 255, np.uint8))
        label = np.full((size + _HEAD, 110, 3), 255, np.uint8)
        for j, word in enumerate(name.split(" ")):
            cv2.putText(label, word, (4, 40 + 16 * j), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
        rows.append(np.hstack([label] + tiles))
    grid = np.vstack(rows)
    if title:
        grid = _title_strip(grid, title, 24, 17, 0.5)
    return encode_png(grid, "grid")

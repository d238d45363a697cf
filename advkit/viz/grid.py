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
    """PNG bytes of a BGR uint8 image; ``what`` names it in the error OpenCV's failure raises."""
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
    """One BGR uint8 grid image of ``x`` ([N, C, H, W] in [0,1]; values outside are clamped), square-ish
    unless ``n_cols`` is given, each tile nearest-upscaled to at least 56 pixels, ``pad`` white pixels
    between tiles."""
    x = x.detach().float().clamp(0, 1).cpu().numpy()
    n, _, h, w = x.shape
    cols = n_cols or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    scale = max(1, 56 // h)
    th, tw = h * scale, w * scale
    grid = np.full((rows * (th + pad) + pad, cols * (tw + pad) + pad, 3), 255, np.uint8)
    for i in range(n):
        r, q = divmod(i, cols)
        y0, x0 = pad + r * (th + pad), pad + q * (tw + pad)
        grid[y0:y0 + th, x0:x0 + tw] = _tile(x[i], th, tw)
    return grid


def sample_grid_png(x: torch.Tensor, title: str = "") -> bytes:
    """PNG bytes of a square-ish grid of images in [0,1] (:func:`image_grid`), with an optional title strip."""
    grid = image_grid(x)
    if title:
        grid = _title_strip(grid, title, 22, 16, 0.45)
    return encode_png(grid, "sample grid")


def adversarial_grid_png(x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor, pred_clean: torch.Tensor,
                         pred_adv: torch.Tensor, classes: Sequence[str], n: int = 8,
                         title: str = "") -> bytes:
    """PNG bytes of a 3-row grid for the first ``n`` samples. Labels: ``true/pred``; red when wrong."""
    n = min(n, x.shape[0])
    if n == 0:
        raise ValueError("no images to draw")
    x, x_adv = x[:n].detach().float().cpu().numpy(), x_adv[:n].detach().float().cpu().numpy()
    delta = x_adv - x
    scale = max(float(np.abs(delta).max()), 1e-12)
    amplified = 0.5 + delta / (2 * scale)  # grey = unchanged, full contrast = the largest change
    size = max(96, x.shape[-1])
    rows = []
    for r, (imgs, preds, name) in enumerate(((x, pred_clean, "clean"), (x_adv, pred_adv, "adversarial"),
                                             (amplified, None, f"perturbation x{0.5 / scale:.1f}"))):
        tiles = []
        for i in range(n):
            head = np.full((_HEAD, size, 3), 255, np.uint8)
            if preds is not None:
                p = int(preds[i])
                ok = p == int(y[i])
                text = f"{classes[int(y[i])][:6]}/{classes[p][:6]}"
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

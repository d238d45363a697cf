"""A PNG grid: clean images, adversarial images and their amplified perturbation, labelled with the
model's predictions. Drawn with OpenCV (no plotting library needed)."""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np
import torch

_HEAD = 18  # pixels of label strip above each tile


def _tile(img: np.ndarray, size: int) -> np.ndarray:
    """CHW float [0,1] -> HWC uint8 BGR, upscaled (nearest) so small digits stay crisp."""
    hwc = (img.transpose(1, 2, 0) * 255).round().clip(0, 255).astype(np.uint8)
    if hwc.shape[2] == 1:
        hwc = np.repeat(hwc, 3, axis=2)
    else:
        hwc = hwc[:, :, ::-1]
    return cv2.resize(hwc, (size, size), interpolation=cv2.INTER_NEAREST)


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
            tiles.append(np.vstack([head, _tile(imgs[i], size)]))
            tiles.append(np.full((size + _HEAD, 4, 3), 255, np.uint8))
        label = np.full((size + _HEAD, 110, 3), 255, np.uint8)
        for j, word in enumerate(name.split(" ")):
            cv2.putText(label, word, (4, 40 + 16 * j), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
        rows.append(np.hstack([label] + tiles))
    grid = np.vstack(rows)
    if title:
        top = np.full((24, grid.shape[1], 3), 255, np.uint8)
        cv2.putText(top, title, (4, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        grid = np.vstack([top, grid])
    ok, buf = cv2.imencode(".png", grid)
    if not ok:
        raise RuntimeError("OpenCV could not encode the grid as PNG")
    return buf.tobytes()

"""A PNG line plot of a few curves (training losses per step, a duality gap per estimate), via OpenCV."""

from __future__ import annotations

import math

import cv2
import numpy as np

from advkit.viz.grid import encode_png

_COLORS = [(200, 90, 30), (30, 120, 230), (40, 160, 40), (150, 40, 160)]  # BGR


def loss_curves_png(curves: dict[str, list[float]], width: int = 720, height: int = 360,
                    title: str = "GAN losses per step") -> bytes:
    """PNG bytes of a line plot of ``{name: values per step}``.

    Args:
        curves: each curve's values in order; each is stretched over the full x axis (its own step axis).
            Non-finite values are skipped.
        width, height: the image size in pixels.
        title: drawn top left; the legend follows it on the same strip.

    Returns:
        The encoded PNG.
    """
    img = np.full((height, width, 3), 255, np.uint8)
    left, right, top, bottom = 64, 16, 30, 36
    pw, ph = width - left - right, height - top - bottom
    finite = [v for vals in curves.values() for v in vals if math.isfinite(v)]
    lo, hi = (min(finite), max(finite)) if finite else (0.0, 1.0)
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    n_max = max((len(v) for v in curves.values()), default=1)
    _axes(img, left, top, pw, ph, lo, hi, n_max, title)
    for i, (name, vals) in enumerate(curves.items()):
        color = _COLORS[i % len(_COLORS)]
        pts = [(left + (j / max(len(vals) - 1, 1)) * pw, top + ph - (v - lo) / (hi - lo) * ph)
               for j, v in enumerate(vals) if math.isfinite(v)]
        if len(pts) >= 2:
            arr = np.round(np.array(pts)).astype(np.int32).reshape(-1, 1, 2)
            cv2.polylines(img, [arr], False, color, 1, cv2.LINE_AA)
        elif pts:
            cv2.circle(img, tuple(int(round(c)) for c in pts[0]), 2, color, -1)
        lx = left + 230 + 110 * i  # the legend shares the title strip, right of the title
        cv2.line(img, (lx, 15), (lx + 20, 15), color, 2)
        cv2.putText(img, name, (lx + 24, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.4, color, 1, cv2.LINE_AA)
    return encode_png(img, "loss plot")


def _axes(img: np.ndarray, left: int, top: int, pw: int, ph: int, lo: float, hi: float, n_steps: int,
          title: str) -> None:
    """The plot frame, three y ticks (low, middle, high), the step range and the title."""
    black, font = (0, 0, 0), cv2.FONT_HERSHEY_SIMPLEX
    cv2.rectangle(img, (left, top), (left + pw, top + ph), black, 1)
    for frac in (0.0, 0.5, 1.0):
        yv = lo + frac * (hi - lo)
        py = int(round(top + ph - frac * ph))
        cv2.line(img, (left - 4, py), (left, py), black, 1)
        cv2.putText(img, f"{yv:.3g}", (4, py + 4), font, 0.38, black, 1, cv2.LINE_AA)
    cv2.putText(img, "0", (left - 4, top + ph + 16), font, 0.38, black, 1, cv2.LINE_AA)
    cv2.putText(img, f"{n_steps} steps", (left + pw - 70, top + ph + 16), font, 0.38, black, 1, cv2.LINE_AA)
    cv2.putText(img, title, (left, 20), font, 0.5, black, 1, cv2.LINE_AA)

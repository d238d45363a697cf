"""What a detector scores: PATHs expanded to image and video files, decoded into the detector's input.

Decoding runs in ``DataLoader`` workers (:class:`FrameStream`); each item is one image or one sampled video
frame, already converted to the detector's channels and size (optionally a face crop), or an error.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from advkit.errors import AdvkitError

if TYPE_CHECKING:
    import cv2  # for annotations; the code imports cv2 where it uses it

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".webm")
FACE_SCALE = 1.3  # the face box grows by this factor around its centre: detectors want hair, chin and some background
NO_FACE = "no face"


@dataclass(frozen=True)
class Source:
    """One input file: ``kind`` is ``image`` or ``video``; ``error`` is set when it cannot be scored at all."""

    path: str
    kind: str
    error: str | None = None


def find_inputs(paths: Sequence[str | os.PathLike]) -> tuple[list[Source], int]:
    """Expand PATHs (files; folders recursively, hidden entries skipped) into sources, in a stable order.

    A missing PATH or a folder without images or videos becomes an error source, so it is reported like
    any failed file.

    Args:
        paths: image or video files and folders.

    Returns:
        The sources, and how many files inside folders were skipped for their extension.

    Raises:
        AdvkitError: no paths, or nothing at all left to score.
    """
    if not paths:
        raise AdvkitError("no PATH given: name image files, folders or videos to score")
    sources: list[Source] = []
    seen: set[str] = set()
    skipped = 0

    def add(src: Source) -> None:
        key = os.path.realpath(src.path) if src.error is None else src.path
        if key not in seen:
            seen.add(key)
            sources.append(src)

    for p in map(Path, paths):
        if p.is_dir():
            files, n_skip = _walk(p)
            skipped += n_skip
            if not files:
                add(Source(str(p), "folder", f"no images or videos in this folder ({n_skip} other file(s))"))
            for f in files:
                add(Source(str(f), "video" if f.suffix.lower() in VIDEO_EXTS else "image"))
        elif p.is_file():
            add(Source(str(p), "video" if p.suffix.lower() in VIDEO_EXTS else "image"))
        else:
            add(Source(str(p), "missing", "no such file or folder"))
    if all(s.error for s in sources):
        raise AdvkitError("nothing to score: " + "; ".join(f"{s.path}: {s.error}" for s in sources[:3])
                          + (f"; ... ({len(sources)} PATHs)" if len(sources) > 3 else ""))
    return sources, skipped


def _walk(folder: Path) -> tuple[list[Path], int]:
    """Image and video files under ``folder`` (sorted, hidden files and folders skipped) and the skip count."""
    found, skipped = [], 0
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if name.startswith("."):
                continue
            if name.lower().endswith(IMAGE_EXTS + VIDEO_EXTS):
                found.append(Path(root) / name)
            else:
                skipped += 1
    return found, skipped


def face_box(x: int, y: int, w: int, h: int, img_w: int, img_h: int,
             scale: float = FACE_SCALE) -> tuple[int, int, int, int]:
    """A found face box grown by ``scale`` around its centre and clipped to the image.

    Args:
        x: the box's left edge, in pixels.
        y: its top edge.
        w: its width.
        h: its height.
        img_w: the image's width.
        img_h: the image's height.
        scale: the growth factor of both sides.

    Returns:
        ``(x0, y0, x1, y1)`` with exclusive ends, rounded outwards to whole pixels.
    """
    cx, cy, hw, hh = x + w / 2, y + h / 2, w * scale / 2, h * scale / 2
    # round() first so that 60 - 65.00000000000001 floors to -5, not -6
    x0, y0 = math.floor(round(cx - hw, 6)), math.floor(round(cy - hh, 6))
    x1, y1 = math.ceil(round(cx + hw, 6)), math.ceil(round(cy + hh, 6))
    return max(0, x0), max(0, y0), min(img_w, x1), min(img_h, y1)


def is_sampled(index: int, every: int | None, fps: float | None, video_fps: float) -> bool:
    """Whether video frame ``index`` is scored.

    Args:
        index: the frame's index, from 0.
        every: score every ``every``-th frame from 0 (when ``fps`` is None; None: every frame).
        fps: score the first frame of each 1/fps interval of video time (all frames when
            ``fps >= video_fps``); wins over ``every``.
        video_fps: the video's frame rate.

    Returns:
        True to score the frame.
    """
    if fps is None:
        return index % (every or 1) == 0
    # the 1e-9 keeps 3 * 10 / 30 from landing just below 1 on other rates
    return index == 0 or (math.floor(index * fps / video_fps + 1e-9)
                          != math.floor((index - 1) * fps / video_fps + 1e-9))


class FrameStream(IterableDataset):
    """Decodes sources into items ``{src, frame, x, resized_from, face_box, error, info}``.

    ``x`` is a float tensor [C,S,S] in [0,1] (or None with ``error`` set); ``src`` indexes ``sources``;
    ``frame`` is the frame index for videos, None for images. After each video one item carries ``info``
    (its frame rate and frame count). Workers split the sources (whole files, round-robin), so a video is
    decoded sequentially by one worker: no seeking, which is inexact for many codecs.
    """

    def __init__(self, sources: Sequence[Source], in_chans: int, size: int, *, every: int | None = 10,
                 fps: float | None = None, faces: bool = False):
        self.sources, self.in_chans, self.size = list(sources), in_chans, size
        self.every, self.fps, self.faces = every, fps, faces
        # built in the process that decodes: OpenCV objects do not pickle
        self._cascade: cv2.CascadeClassifier | None = None

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        for i in range(wid, len(self.sources), nw):
            src = self.sources[i]
            if src.error:
                yield _item(i, None, error=src.error)
            elif src.kind == "video":
                yield from self._video(i, src.path)
            else:
                yield self._image(i, src.path)

    def _image(self, i: int, path: str) -> dict:
        import cv2

        from advkit.data import read_image

        try:
            img = read_image(Path(path))
        except AdvkitError as e:  # e.g. a decompression bomb: refused before decoding; the message names it
            return _item(i, None, error=str(e).removeprefix(f"{path}: "))
        except (OSError, ValueError, cv2.error, MemoryError) as e:
            return _item(i, None, error=f"cannot read: {type(e).__name__}: {' '.join(str(e).split())[:200]}")
        if img is None:
            ext = Path(path).suffix.lower()
            hint = "" if ext in IMAGE_EXTS else f" (extension {ext or 'none'} is not an image or video type)"
            return _item(i, None, error=f"not a readable image{hint}")
        return self._prepare(i, None, img)

    def _video(self, i: int, path: str) -> Iterator[dict]:
        import cv2

        try:
            yield from self._frames(i, path)
        except (cv2.error, MemoryError) as e:  # a codec or container OpenCV chokes on: an error row, not a crash
            yield _item(i, None, error=f"cannot decode video: {type(e).__name__}: {' '.join(str(e).split())[:200]}")

    def _frames(self, i: int, path: str) -> Iterator[dict]:
        import cv2

        cap = cv2.VideoCapture(path)
        try:
            if not cap.isOpened():
                yield _item(i, None, error="cannot open video")
                return
            video_fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
            if self.fps is not None and not (math.isfinite(video_fps) and video_fps > 0):
                yield _item(i, None, error="the video does not state its frame rate; use --every")
                return
            n = 0
            while cap.grab():  # grab every frame, decode to pixels only the sampled ones
                if is_sampled(n, self.every, self.fps, video_fps):
                    ok, frame = cap.retrieve()
                    if ok and frame is not None:
                        rgb = frame[:, :, ::-1] if frame.ndim == 3 else frame
                        yield self._prepare(i, n, _to_uint8(rgb))
                    else:
                        yield _item(i, n, error="frame not decodable")
                n += 1
            if n == 0:
                yield _item(i, None, error="no decodable frames")
            yield _item(i, None, info={"fps": video_fps, "frames": n})
        finally:
            cap.release()

    def _prepare(self, i: int, frame: int | None, img: np.ndarray) -> dict:
        """Face crop (optional), channels, then size: the detector's input for one image or frame."""
        import cv2

        box = None
        if self.faces:
            if self._cascade is None:
                self._cascade = load_face_cascade()
            gray = img if img.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2GRAY)
            found = self._cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5)
            if len(found) == 0:
                return _item(i, frame, error=NO_FACE)
            fx, fy, fw, fh = (int(v) for v in max(found, key=lambda b: int(b[2]) * int(b[3])))
            box = face_box(fx, fy, fw, fh, img.shape[1], img.shape[0])
            img = img[box[1]:box[3], box[0]:box[2]]
        if self.in_chans == 1 and img.ndim == 3:
            img = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2GRAY)
        elif self.in_chans == 3 and img.ndim == 2:
            img = np.repeat(img[:, :, None], 3, axis=2)
        h, w = img.shape[:2]
        resized_from = None
        if (h, w) != (self.size, self.size):
            shrink = h >= self.size and w >= self.size
            img = cv2.resize(np.ascontiguousarray(img), (self.size, self.size),
                             interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
            resized_from = f"{w}x{h}"
        x = torch.from_numpy(np.ascontiguousarray(img)).float().div_(255)
        x = x.unsqueeze(0) if x.ndim == 2 else x.permute(2, 0, 1).contiguous()
        return _item(i, frame, x=x, resized_from=resized_from,
                     face_box=None if box is None else ",".join(map(str, box)))


def load_face_cascade() -> cv2.CascadeClassifier:
    """OpenCV's bundled frontal-face Haar cascade (the face finder of ``--faces``).

    Raises:
        AdvkitError: this OpenCV build lacks the cascade file.
    """
    import cv2

    path = os.path.join(getattr(getattr(cv2, "data", None), "haarcascades", ""),
                        "haarcascade_frontalface_default.xml")
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():
        raise AdvkitError(f"--faces needs OpenCV's Haar cascade, not found at {path}")
    return cascade


def _to_uint8(img: np.ndarray) -> np.ndarray:
    if img.dtype == np.uint8:
        return img
    top = 65535.0 if img.dtype == np.uint16 else float(img.max()) or 1.0
    return (img / top * 255).round().clip(0, 255).astype(np.uint8)


def _item(src: int, frame: int | None, *, x: torch.Tensor | None = None, resized_from: str | None = None,
          face_box: str | None = None, error: str | None = None, info: dict | None = None) -> dict:
    return {"src": src, "frame": frame, "x": x, "resized_from": resized_from, "face_box": face_box,
            "error": error, "info": info}


def collate(items: list[dict]) -> tuple[torch.Tensor | None, list[dict]]:
    """Stack the items' tensors into one batch (a DataLoader ``collate_fn``).

    Args:
        items: :class:`FrameStream` items; their ``x`` is taken out and each gets a ``slot``: its row in
            the batch, or None without a tensor.

    Returns:
        ``(batch [B, C, S, S] or None when no item has a tensor, items)``.
    """
    xs: list[torch.Tensor] = []
    for it in items:
        x = it.pop("x")
        it["slot"] = None
        if x is not None:
            it["slot"] = len(xs)
            xs.append(x)
    return (torch.stack(xs) if xs else None), items


def init_worker(_: int) -> None:
    """One OpenCV thread per DataLoader worker (a ``worker_init_fn``): the workers are the parallelism.

    Args:
        _: the worker's id (unused).
    """
    import cv2

    cv2.setNumThreads(1)

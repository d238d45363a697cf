"""Fake-image detection on images, folders and videos: score every image or sampled frame with a 2-class
detector (index 0 real, 1 fake), aggregate per video, write the rows as CSV or JSON.

>>> from advkit.detect.infer import load_detector, detect_paths, write_result
>>> result = detect_paths(load_detector("detector.safetensors"), ["photos/", "clip.mp4"], every=10)
>>> write_result(result, "scores.csv")
"""

from __future__ import annotations

import csv
import io
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader

from advkit.detect.inputs import NO_FACE, FrameStream, collate, find_inputs, init_worker, load_face_cascade
from advkit.errors import AdvkitError

FAKE = 1
OUT_SUFFIXES = (".csv", ".json")
ROW_KEYS = ("path", "kind", "frame", "score_fake", "label", "resized_from", "face_box", "error")
VIDEO_KEYS = ("path", "fps", "frames", "frames_sampled", "frames_scored", "frames_no_face", "frames_error",
              "score_mean", "score_max", "share_fake", "label", "error")
# one CSV holds both: the frame/image rows, then one "video_summary" row per video (score_fake = its mean)
CSV_KEYS = ROW_KEYS + ("score_max", "share_fake", "frames_scored", "frames_no_face")


@dataclass
class DetectResult:
    """``rows``: one dict per image or sampled frame (or failed input), keys :data:`ROW_KEYS`; ``videos``: one
    aggregate per video, keys :data:`VIDEO_KEYS`; ``summary``: counts, threshold, timing."""

    rows: list[dict] = field(default_factory=list)
    videos: list[dict] = field(default_factory=list)
    summary: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """``{"rows", "videos", "summary"}``, JSON-ready."""
        return {"rows": self.rows, "videos": self.videos, "summary": self.summary}


def load_detector(path: str | os.PathLike, device: str | torch.device = "cpu", options: Any = None) -> nn.Module:
    """A detector: an advkit 2-class classifier checkpoint (0 real, 1 fake), loaded without unpickling; or any
    other model form of :mod:`advkit.models.resolve` with two logits (``options``: ``--weights`` etc.).

    Args:
        path: the checkpoint, or a training run folder holding ``model.safetensors``; or ``timm:NAME``,
            ``torchvision:NAME`` (with ``options.weights``), ``py:module:factory``, a TorchScript file.
        device: where the model goes.
        options: :class:`advkit.models.ModelOptions` for a model from outside advkit.

    Returns:
        The model in eval mode.

    Raises:
        AdvkitError: a GAN checkpoint, a non-advkit file, a classifier with another class count, or one
            whose input channels are not 1 or 3.
    """
    from advkit.models import ModelOptions, checkpoint_file, load, read_metadata
    from advkit.models.resolve import model_form, resolve_model

    options = options or ModelOptions()
    if model_form(str(path)) != "checkpoint" or options.given:
        model = resolve_model(str(path), num_classes=2, in_chans=3, input_size=options.input_size or 224,
                              device=device, options=options)
        side = model.input_size or 224
        with torch.no_grad():
            out = model(torch.zeros(1, model.spec.get("in_chans") or 3, side, side, device=device))
        if out.ndim != 2 or out.shape[1] != 2:
            raise AdvkitError(f"model {path} gives {tuple(out.shape[1:])} outputs; a detector has 2 logits "
                              f"(0 real, 1 fake)")
        return model
    path = checkpoint_file(path)
    spec = read_metadata(path)["model"]
    if spec["num_classes"] != 2:
        raise AdvkitError(f"{path} is a {spec['num_classes']}-class classifier; a detector has 2 classes "
                          f"(0 real, 1 fake)")
    if spec["in_chans"] not in (1, 3):
        raise AdvkitError(f"{path} takes {spec['in_chans']} input channels; detectors on images take 1 or 3")
    model = load(path, device=device)
    classes = model.meta.get("classes")
    if isinstance(classes, list) and len(classes) == 2 and [str(c).lower() for c in classes] != ["real", "fake"]:
        warnings.warn(f"{path}: classes are {classes}; class 1 ({classes[1]!r}) is scored as fake", stacklevel=2)
    return model


def detect_paths(model: nn.Module, paths: Sequence[str | os.PathLike], *, threshold: float = 0.5,
                 every: int | None = None, fps: float | None = None, faces: bool = False, batch_size: int = 64,
                 workers: int | None = None, device: str | torch.device | None = None,
                 progress: bool = False) -> DetectResult:
    """Score every image, and every sampled video frame, found under ``paths``.

    ``model`` follows the advkit contract ``f(x in [0,1]) -> logits [B, 2]`` and has a ``spec`` with
    ``in_chans`` and ``input_size`` (as from :func:`load_detector`); each image is converted to those
    channels and resized to ``input_size`` squared (area when shrinking, bilinear when enlarging).
    ``score_fake`` is the softmax probability of class 1; ``label`` is fake when it is >= ``threshold``.
    Videos are sampled every ``every`` frames (default 10) or at ``fps`` frames per second of video time.
    ``faces`` scores the largest Haar-cascade face, grown 1.3x; images without one get a "no face" row.
    Decoding runs in ``workers`` DataLoader processes (default min(4, CPUs), at most one per file; 0 decodes
    in this process). They are forked on Linux; elsewhere they are spawned, and a script that calls this
    there needs ``if __name__ == "__main__":``.

    Unreadable files get an error row and do not stop the run.

    Args:
        model: the detector, e.g. from :func:`load_detector`.
        paths: image and video files and folders (searched recursively).
        threshold: P(fake) from which an input is called fake.
        every: sample every ``every``-th video frame (default 10).
        fps: sample this many frames per second of video time instead.
        faces: score the largest face instead of the whole image.
        batch_size: images per forward pass.
        workers: decoding processes (default min(4, CPUs)); 0 decodes here.
        device: where ``model`` is; default the device of its parameters.
        progress: show a progress bar.

    Returns:
        The rows, per-video aggregates and summary.

    Raises:
        AdvkitError: bad arguments, a model without an advkit ``spec``, or nothing that can be scored at
            all (no PATH exists, only empty folders, only undecodable files).
    """
    every, workers = _check_args(threshold, every, fps, batch_size, workers)
    spec = getattr(model, "spec", None) or {}
    in_chans, size = spec.get("in_chans"), spec.get("input_size")
    if in_chans not in (1, 3) or not isinstance(size, int) or size < 1:
        raise AdvkitError("the detector must be an advkit model taking 1 or 3 channels (model.spec: in_chans, "
                          f"input_size); got {spec or 'no spec'}")
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    sources, skipped = find_inputs(paths)
    if faces:
        load_face_cascade()  # fail now, not in every worker
    stream = FrameStream(sources, in_chans, size, every=every, fps=fps, faces=faces)
    workers = min(workers, sum(s.error is None for s in sources))  # a worker decodes whole files
    import cv2

    # Workers are forked on Linux (spawned ones re-import torch: seconds per run). A forked child inherits
    # OpenCV's thread pool in whatever state the parent left it and can hang in its first cv2 call, so the
    # pool is switched off here, before the fork, and restored afterwards. Elsewhere: spawn.
    context = None
    if workers:
        context = "fork" if sys.platform.startswith("linux") else "spawn"
    cv_threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        loader = DataLoader(stream, batch_size=batch_size, num_workers=workers, collate_fn=collate,
                            worker_init_fn=init_worker if workers else None, pin_memory=dev.type == "cuda",
                            multiprocessing_context=context)
        items, infos, seconds = _score(model, loader, dev, progress)
    finally:
        cv2.setNumThreads(cv_threads)
    rows = _rows(sources, items, threshold)
    videos = _videos(sources, rows, infos, threshold)
    summary = _summary(sources, rows, skipped, seconds, threshold, every, fps, faces)
    summary.update(device=str(dev), workers=workers, batch_size=batch_size, input=f"{in_chans}x{size}x{size}")
    if summary["scored"] == 0 and summary["no_face"] == 0:
        bad = [r for r in rows if r["error"]]
        raise AdvkitError("nothing could be scored: " + "; ".join(f"{r['path']}: {r['error']}" for r in bad[:3])
                          + (f"; ... ({len(bad)} errors)" if len(bad) > 3 else ""))
    return DetectResult(rows, videos, summary)


def _check_args(threshold: float, every: int | None, fps: float | None, batch_size: int,
                workers: int | None) -> tuple[int | None, int]:
    if not 0.0 <= threshold <= 1.0:
        raise AdvkitError(f"--threshold must be in [0, 1], got {threshold}")
    if every is not None and fps is not None:
        raise AdvkitError("give --every or --fps, not both")
    if every is not None and every < 1:
        raise AdvkitError(f"--every must be >= 1, got {every}")
    if fps is not None and not (math.isfinite(fps) and fps > 0):
        raise AdvkitError(f"--fps must be > 0, got {fps}")
    if batch_size < 1:
        raise AdvkitError(f"--batch-size must be >= 1, got {batch_size}")
    if workers is not None and workers < 0:
        raise AdvkitError(f"--workers must be >= 0, got {workers}")
    return (10 if every is None and fps is None else every), (min(4, os.cpu_count() or 1) if workers is None
                                                              else workers)


def _score(model: nn.Module, loader: DataLoader, dev: torch.device,
           progress: bool) -> tuple[list[dict], dict, float]:
    """Run the model on the loader's batches: the items (each with ``score``), per-video info, seconds."""
    from tqdm.auto import tqdm

    out, infos = [], {}
    was_training = model.training
    model.eval()
    bar = tqdm(desc="scoring", unit="img", leave=False, disable=None if progress else True)
    start = time.perf_counter()
    try:
        with torch.no_grad():
            for x, batch in loader:
                scores: list[float] = []
                if x is not None:
                    logits = model(x.to(dev, non_blocking=True))
                    if logits.ndim != 2 or logits.shape[1] != 2:
                        raise AdvkitError(f"the detector returned logits of shape {tuple(logits.shape)}; "
                                          "expected [batch, 2] (real, fake)")
                    scores = logits.float().softmax(1)[:, FAKE].cpu().tolist()
                for it in batch:
                    if it["info"] is not None:
                        infos[it["src"]] = it["info"]
                        continue
                    s = scores[it["slot"]] if it["slot"] is not None else None
                    if s is not None and not math.isfinite(s):
                        s, it["error"] = None, "the detector returned a non-finite score"
                    it["score"] = s
                    out.append(it)
                bar.update(len(scores))
    finally:
        model.train(was_training)
        bar.close()
    return out, infos, time.perf_counter() - start


def _rows(sources: list, items: list[dict], threshold: float) -> list[dict]:
    """Rows in input order (files as listed, frames ascending), whichever worker decoded them."""
    items = sorted(items, key=lambda it: (it["src"], -1 if it["frame"] is None else it["frame"]))
    rows = []
    for it in items:
        src, s = sources[it["src"]], it["score"]
        rows.append({"path": src.path, "kind": "frame" if it["frame"] is not None else src.kind,
                     "frame": it["frame"], "score_fake": s,
                     "label": None if s is None else ("fake" if s >= threshold else "real"),
                     "resized_from": it["resized_from"], "face_box": it["face_box"], "error": it["error"]})
    return rows


def _videos(sources: list, rows: list[dict], infos: dict, threshold: float) -> list[dict]:
    """One aggregate per video source: mean and max score, share over the threshold, frame counts."""
    by_path: dict[str, list[dict]] = {}
    for r in rows:
        by_path.setdefault(r["path"], []).append(r)
    out = []
    for i, src in enumerate(sources):
        if src.kind != "video":
            continue
        mine = by_path.get(src.path, [])
        frames = [r for r in mine if r["frame"] is not None]
        scores = [r["score_fake"] for r in frames if r["score_fake"] is not None]
        whole = next((r["error"] for r in mine if r["frame"] is None and r["error"]), None)
        mean = sum(scores) / len(scores) if scores else None
        info = infos.get(i, {})
        out.append({"path": src.path, "fps": info.get("fps"), "frames": info.get("frames"),
                    "frames_sampled": len(frames), "frames_scored": len(scores),
                    "frames_no_face": sum(r["error"] == NO_FACE for r in frames),
                    "frames_error": sum(bool(r["error"]) and r["error"] != NO_FACE for r in frames),
                    "score_mean": mean, "score_max": max(scores) if scores else None,
                    "share_fake": sum(s >= threshold for s in scores) / len(scores) if scores else None,
                    "label": None if mean is None else ("fake" if mean >= threshold else "real"),
                    "error": whole})
    return out


def _summary(sources: list, rows: list[dict], skipped: int, seconds: float, threshold: float,
             every: int | None, fps: float | None, faces: bool) -> dict:
    scored = sum(r["score_fake"] is not None for r in rows)
    return {"inputs": len(sources), "images": sum(s.kind == "image" for s in sources),
            "videos": sum(s.kind == "video" for s in sources), "rows": len(rows), "scored": scored,
            "fake": sum(r["label"] == "fake" for r in rows), "real": sum(r["label"] == "real" for r in rows),
            "errors": sum(bool(r["error"]) and r["error"] != NO_FACE for r in rows),
            "no_face": sum(r["error"] == NO_FACE for r in rows),
            "resized": sum(r["resized_from"] is not None for r in rows), "skipped_files": skipped,
            "threshold": threshold, "every": every, "fps": fps, "faces": faces,
            "seconds": seconds, "images_per_s": scored / seconds if seconds > 0 else None}


def check_out_path(path: str | os.PathLike) -> Path:
    """Check an output path before any work is done.

    Args:
        path: where the results will go.

    Returns:
        ``path`` as a Path.

    Raises:
        AdvkitError: it does not end in ``.csv`` or ``.json``, or it is a folder.
    """
    path = Path(path)
    if path.suffix.lower() not in OUT_SUFFIXES:
        raise AdvkitError(f"--out must end in .csv or .json, got {str(path)!r}")
    if path.is_dir():
        raise AdvkitError(f"--out {path} is a folder; name a .csv or .json file")
    return path


def csv_cell(value: object) -> object:
    """A CSV cell that a spreadsheet shows as text: a string starting with ``= + - @``, a tab or a carriage
    return (a formula to Excel or LibreOffice, e.g. a file named ``=HYPERLINK(...).png``) gets a leading ``'``.

    Args:
        value: the cell; None becomes empty, numbers stay numbers.

    Returns:
        The value to write.
    """
    if value is None:
        return ""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def write_result(result: DetectResult, path: str | os.PathLike) -> Path:
    """Write ``result`` atomically, in the format the suffix names.

    ``.json`` holds ``{"rows", "videos", "summary"}``; ``.csv`` the rows followed by one ``video_summary``
    row per video (its ``score_fake`` is the mean over its frames).

    Args:
        result: what :func:`detect_paths` returned.
        path: a ``.csv`` or ``.json`` file.

    Returns:
        ``path``.

    Raises:
        AdvkitError: a path :func:`check_out_path` refuses.
    """
    from advkit.runtime.io import atomic_write_json, atomic_write_text

    path = check_out_path(path)
    if path.suffix.lower() == ".json":
        atomic_write_json(path, result.to_dict())
        return path
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_KEYS, extrasaction="ignore")
    writer.writeheader()
    for r in result.rows:
        writer.writerow({k: csv_cell(r.get(k)) for k in CSV_KEYS})
    for v in result.videos:
        row = {**v, "kind": "video_summary", "score_fake": v["score_mean"]}
        writer.writerow({k: csv_cell(row.get(k)) for k in CSV_KEYS})
    atomic_write_text(path, buf.getvalue())
    return path

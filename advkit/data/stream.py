"""Image sets read lazily from disk: ``imagefolder:PATH`` and ``csv:FILE``.

A :class:`StreamDataset` holds file paths and labels only. Images are decoded batch by batch (in DataLoader
workers when ``num_workers > 0``) with :func:`advkit.data.read_image`, then resized and center-cropped the way
timm's eval transform does: the shorter side to ``floor(size / crop_pct)``, then a ``size`` x ``size`` center
crop; always 3 channels (gray images are repeated). Memory does not grow with the number of files.

Files that cannot be read are reported by path; :func:`bad_files_error` turns them into one error line, or a
set opened with ``skip_bad=True`` leaves them out. :func:`iter_batches` gives in-memory and streamed data one
shape, :class:`Batch`, so the eval harness has one batch loop.
"""

from __future__ import annotations

import csv
import ctypes
import ctypes.util
import dataclasses
import functools
import hashlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, NamedTuple, cast

import numpy as np
import torch
import torch.nn.functional as F

from advkit.data.core import ArrayDataset, register_prefix
from advkit.data.sources import IMAGE_EXTS, read_image
from advkit.errors import AdvkitError

DEFAULT_SIZE = 224          # timm's default input size, used until a model says otherwise
DEFAULT_CROP_PCT = 0.875    # timm's default eval crop
INTERPOLATIONS = ("bilinear", "bicubic")


class Batch(NamedTuple):
    """One batch of evaluated samples, from memory or from disk.

    Attributes:
        batch_index: the batch's position (batch ``i`` holds samples ``i * batch_size`` onwards); seeds its
            attacks.
        x: uint8 images ``[B, C, H, W]`` (or float in [0,1], as the caller gave them).
        y: int64 labels ``[B]``.
        positions: int64 ``[B]``: each sample's index in the data (unreadable files leave gaps).
        digests: a streamed batch: the sha256 digests (32 bytes each) of its samples' pixels, else ``b""``.
        bad: ``(path, reason)`` of the files in this batch that could not be read.
    """

    batch_index: int
    x: torch.Tensor
    y: torch.Tensor
    positions: torch.Tensor
    digests: bytes = b""
    bad: tuple[tuple[str, str], ...] = ()


def eval_transform(img: np.ndarray, size: int, crop_pct: float = DEFAULT_CROP_PCT,
                   interpolation: str = "bilinear") -> torch.Tensor:
    """Resize and center-crop one image as timm's eval transform does (PIL-like antialiasing).

    Args:
        img: HWC uint8 RGB or HW uint8 gray (what :func:`advkit.data.read_image` returns).
        size: the side of the square output, in pixels.
        crop_pct: the crop's share of the resized image: the shorter side goes to ``floor(size / crop_pct)``.
        interpolation: ``bilinear`` or ``bicubic``.

    Returns:
        uint8 ``[3, size, size]``.
    """
    t = torch.from_numpy(np.ascontiguousarray(img))
    if t.ndim == 2:
        t = t[:, :, None].expand(-1, -1, 3)
    t = t.permute(2, 0, 1)
    h, w = int(t.shape[1]), int(t.shape[2])
    short = math.floor(size / crop_pct)
    nh, nw = (short, int(short * w / h)) if h <= w else (int(short * h / w), short)
    if (nh, nw) != (h, w):
        x = F.interpolate(t[None].float(), size=(nh, nw), mode=interpolation, align_corners=False, antialias=True)
        t = x[0].round_().clamp_(0, 255).to(torch.uint8)
    top, left = int(round((nh - size) / 2.0)), int(round((nw - size) / 2.0))
    return t[:, top:top + size, left:left + size].contiguous()


@dataclass
class StreamDataset:
    """Image files and their labels, decoded only when a batch is read (see the module docstring).

    Attributes:
        files: the image paths, in evaluation order.
        labels: int64 ``[N]``.
        classes: class names; label ``i`` is ``classes[i]``.
        name: the spec it was opened from (``imagefolder:PATH``).
        source: the folder or csv file.
        image_size: the output side; ``None``: :data:`DEFAULT_SIZE` until a model says otherwise.
        crop_pct: see :func:`eval_transform`.
        interpolation: ``bilinear`` or ``bicubic``.
        skip_bad: leave unreadable files out instead of failing.
        num_workers: DataLoader worker processes decoding ahead of the consumer (0: in this process).
    """

    files: list[str]
    labels: torch.Tensor
    classes: list[str]
    name: str = "stream"
    source: str = ""
    image_size: int | None = None
    crop_pct: float = DEFAULT_CROP_PCT
    interpolation: str = "bilinear"
    skip_bad: bool = False
    num_workers: int = 0
    mean: tuple[float, ...] | None = None  # the ArrayDataset interface: streamed data leaves it to the model
    std: tuple[float, ...] | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.files) != len(self.labels):
            raise AdvkitError(f"{self.name}: {len(self.files)} files but {len(self.labels)} labels")
        if self.interpolation not in INTERPOLATIONS:
            raise AdvkitError(f"{self.name}: unknown interpolation {self.interpolation!r}; valid: "
                              f"{', '.join(INTERPOLATIONS)}")
        if not 0 < self.crop_pct <= 1:
            raise AdvkitError(f"{self.name}: crop_pct must be in (0, 1], got {self.crop_pct}")
        if self.image_size is not None and self.image_size < 1:
            raise AdvkitError(f"{self.name}: input size must be >= 1, got {self.image_size}")
        if self.num_workers < 0:
            raise AdvkitError(f"{self.name}: num_workers must be >= 0, got {self.num_workers}")

    def __len__(self) -> int:
        return len(self.files)

    @property
    def size(self) -> int:
        """The output side in pixels (``image_size``, else :data:`DEFAULT_SIZE`)."""
        return self.image_size or DEFAULT_SIZE

    @property
    def num_classes(self) -> int:
        """The number of classes."""
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(3, size, size)``."""
        return 3, self.size, self.size

    def subset(self, n: int | None, offset: int = 0) -> StreamDataset:
        """The first ``n`` files after ``offset`` (nothing is read).

        Args:
            n: how many; ``None``: all after ``offset``.
            offset: the first file's index.

        Returns:
            A dataset over those files, with the same transform.
        """
        end = len(self) if n is None else min(len(self), offset + n)
        return dataclasses.replace(self, files=self.files[offset:end], labels=self.labels[offset:end])

    def take(self, index: torch.Tensor) -> StreamDataset:
        """The files at ``index`` (int64 positions, in that order; nothing is read)."""
        pos = [int(i) for i in index]
        return dataclasses.replace(self, files=[self.files[i] for i in pos], labels=self.labels[index])

    def with_transform(self, size: int | None = None, crop_pct: float | None = None,
                       interpolation: str | None = None) -> StreamDataset:
        """The same files under another transform; ``None`` keeps the current value.

        Args:
            size: the output side.
            crop_pct: see :func:`eval_transform`.
            interpolation: ``bilinear`` or ``bicubic``.

        Returns:
            The new dataset.
        """
        return dataclasses.replace(self, image_size=size or self.image_size, crop_pct=crop_pct or self.crop_pct,
                                   interpolation=interpolation or self.interpolation)

    def for_model(self, model: object, *, input_size: int | None = None, crop_pct: float | None = None,
                  interpolation: str | None = None) -> StreamDataset:
        """The same files at the size ``model`` takes: the arguments, else the model's own ``input_size``,
        ``crop_pct`` and ``interpolation`` attributes (timm's pretrained config, for ``timm:`` models), else
        the current values.

        Args:
            model: the resolved model (any object; only those attributes are read).
            input_size: overrides the model's side.
            crop_pct: overrides the model's crop.
            interpolation: overrides the model's interpolation.

        Returns:
            The dataset under the transform for that model.
        """
        size = getattr(model, "input_size", None)
        size = size[-1] if isinstance(size, (tuple, list)) else size
        return self.with_transform(input_size or (size if isinstance(size, int) else None),
                                   crop_pct or getattr(model, "crop_pct", None),
                                   interpolation or getattr(model, "interpolation", None))

    def load(self, i: int) -> tuple[torch.Tensor | None, str]:
        """Read and transform file ``i``.

        Args:
            i: the file's index.

        Returns:
            ``(image, "")``, the image uint8 ``[3, size, size]``; or ``(None, reason)`` when it cannot be read.
        """
        path = self.files[i]
        if not os.path.isfile(path):
            return None, "no such file"
        try:
            img = read_image(Path(path))
        except Exception as e:  # any decoder failure is this file's fault: reported by path, never a traceback
            why = (str(e).splitlines() or [type(e).__name__])[0]
            return None, why.removeprefix(f"{path}: ")
        if img is None:
            return None, "not a readable image"
        return eval_transform(img, self.size, self.crop_pct, self.interpolation), ""

    def relative(self, path: str) -> str:
        """``path`` relative to ``source`` when it lies inside it (for reports), else as it is.

        Args:
            path: one of ``files``.

        Returns:
            The shorter path.
        """
        base = Path(self.source)
        base = base.parent if base.is_file() else base
        try:
            return str(Path(path).relative_to(base))
        except ValueError:
            return path

    def materialize(self) -> ArrayDataset:
        """Read every file into memory (for commands that keep all images anyway, e.g. ``advkit attack``).

        Returns:
            An :class:`ArrayDataset` at this dataset's size; ``meta["skipped"]`` lists the files left out.

        Raises:
            AdvkitError: unreadable files and not ``skip_bad`` (one line: the count and the first paths).
        """
        xs, ys = [], []
        bad: list[tuple[str, str]] = []
        for b in iter_batches(self, 64):
            xs.append(b.x)
            ys.append(b.y)
            bad += b.bad
        if bad and not self.skip_bad:
            raise bad_files_error(bad, self.name)
        x = torch.cat(xs) if xs else torch.empty(0, *self.image_shape, dtype=torch.uint8)
        y = torch.cat(ys) if ys else torch.empty(0, dtype=torch.int64)
        return ArrayDataset(x, y, self.classes, self.name, self.mean, self.std, self.source,
                            {"skipped": [p for p, _ in bad]})


def check_stream_keys(num_workers: int, input_size: int | None, crop_pct: float | None,
                      interpolation: str | None, *, null_size: str) -> None:
    """Validate a config's ``data`` keys for streamed sets (train and eval configs share them).

    Args:
        num_workers: decoding processes, >= 0.
        input_size: crop side, >= 1, or ``None``.
        crop_pct: in (0, 1], or ``None``.
        interpolation: one of :data:`INTERPOLATIONS`, or ``None``.
        null_size: what a null ``input_size`` means, for the message.

    Raises:
        ValueError: the first bad key, named as ``data.KEY``.
    """
    if num_workers < 0:
        raise ValueError(f"data.num_workers must be >= 0, got {num_workers}")
    if input_size is not None and input_size < 1:
        raise ValueError(f"data.input_size must be >= 1 (or null for {null_size}), got {input_size}")
    if crop_pct is not None and not 0 < crop_pct <= 1:
        raise ValueError(f"data.crop_pct must be in (0, 1], got {crop_pct}")
    if interpolation is not None and interpolation not in INTERPOLATIONS:
        raise ValueError(f"data.interpolation must be bilinear or bicubic, got {interpolation!r}")


def spread(n_total: int, n: int) -> torch.Tensor:
    """``n`` positions out of ``n_total``, evenly spaced from the first to the last (int64, increasing).

    An image folder lists its files class by class, so its first or last ``n`` files are one or two classes;
    evenly spaced ones cover every class in proportion.
    """
    n = max(0, min(n, n_total))
    if n == 0:
        return torch.zeros(0, dtype=torch.long)
    return (torch.arange(n, dtype=torch.float64) * (n_total / n)).floor().long()


def bad_files_error(bad: list[tuple[str, str]] | tuple[tuple[str, str], ...], where: str) -> AdvkitError:
    """The one-line error for unreadable image files.

    Args:
        bad: ``(path, reason)`` pairs.
        where: the dataset's name.

    Returns:
        The error: the count, the first three paths with their reasons, and how to skip them.
    """
    first = ", ".join(f"{p} ({why})" for p, why in bad[:3]) + (", ..." if len(bad) > 3 else "")
    return AdvkitError(f"{where}: {len(bad)} unreadable image file(s): {first}; fix or remove them, or skip "
                       f"them with --skip-bad (config: data.skip_bad: true)")


@functools.cache
def _malloc_trim() -> Any:
    """glibc's ``malloc_trim``, or None (another C library, or none found)."""
    try:
        return getattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), "malloc_trim", None)
    except OSError:
        return None


def release_freed_memory() -> bool:
    """Give the pages of freed heap memory back to the system (glibc's ``malloc_trim(0)``; elsewhere nothing).

    A batch loop frees its activations, images and attack buffers after each batch while small objects it keeps
    (per-batch results) stay scattered through the heap; glibc then keeps the freed pages between them resident,
    and the process grows with the number of batches although nothing leaks. Called once per batch by the
    streamed readers and the eval loop, this keeps memory flat in the number of samples (about a millisecond).

    Returns:
        Whether memory was trimmed (False where glibc is absent).
    """
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


def _decode_worker_init(_worker_id: int) -> None:
    """Run a decoding worker at the lowest CPU priority.

    The attack's torch threads meet at a barrier after every parallel op, so a thread that a worker preempts
    stalls the whole step; on a machine with no spare core, overlapping decoding at equal priority cost more
    than decoding did (PGD-10 on 224 px, 2 cores: 0.71x the in-memory rate). At the lowest priority a worker
    takes only the time the attack leaves idle, and when its batch is late the main process waits for it with
    the cores free, which is no worse than decoding in the main process.
    """
    try:
        os.nice(19)
    except OSError:  # not permitted (some containers): decoding then runs at the normal priority
        pass


def _same(item: Batch) -> Batch:
    """The DataLoader's collate: each item already is a whole batch (module level: workers pickle it)."""
    return item


class _IndexReader(torch.utils.data.Dataset):
    """Item ``i`` is the files ``batches[i]`` of a :class:`StreamDataset` (any indices, in that order), decoded
    by whichever worker takes it."""

    def __init__(self, data: StreamDataset, batches: list[torch.Tensor]):
        self.data, self.batches = data, batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> Batch:
        return _read_batch(self.data, i, self.batches[i].tolist())


def _read_batch(d: StreamDataset, i: int, indices: Iterable[int]) -> Batch:
    """Decode the files ``indices`` of ``d`` as batch ``i`` (the one decode path of both readers)."""
    xs, keep, digests = [], [], []
    bad: list[tuple[str, str]] = []
    for j in indices:
        img, why = d.load(j)
        if img is None:
            bad.append((d.files[j], why))
            continue
        xs.append(img)
        keep.append(j)
        digests.append(hashlib.sha256(img.numpy().tobytes()).digest())
    x = torch.stack(xs) if xs else torch.empty(0, *d.image_shape, dtype=torch.uint8)
    pos = torch.tensor(keep, dtype=torch.int64)
    batch = Batch(i, x, d.labels[pos], pos, b"".join(digests), tuple(bad))
    del xs
    release_freed_memory()  # the decoded and resized images' buffers (a worker decodes for the whole run)
    return batch


def iter_batches(data: ArrayDataset | StreamDataset, batch_size: int, *, rank: int = 0, world: int = 1,
                 num_workers: int | None = None, pin_memory: bool = False) -> Iterator[Batch]:
    """This rank's batches, in order: batch ``i`` goes to rank ``i % world`` (the others are never read).

    Args:
        data: in memory (sliced, uint8) or streamed (decoded by ``num_workers`` DataLoader workers, which
            read ahead while the caller works on the current batch).
        batch_size: samples per batch (a streamed batch holds fewer when files in it cannot be read).
        rank: this process's rank.
        world: the number of processes.
        num_workers: for streamed data: decoding processes; ``None``: the dataset's own ``num_workers``.
        pin_memory: pin streamed batches (for a CUDA consumer).

    Yields:
        :class:`Batch` es.
    """
    if batch_size < 1:
        raise AdvkitError(f"batch size must be >= 1, got {batch_size}")
    n_batches = -(-len(data) // batch_size)
    mine = range(rank, n_batches, world)
    if isinstance(data, ArrayDataset):
        for i in mine:
            s = i * batch_size
            e = min(len(data), s + batch_size)
            yield Batch(i, data.images[s:e], data.labels[s:e], torch.arange(s, e))
        return
    batches = [torch.arange(i * batch_size, min(len(data), (i + 1) * batch_size)) for i in range(n_batches)]
    yield from _decode(data, batches, mine, num_workers, pin_memory)


def iter_index_batches(data: StreamDataset, batches: list[torch.Tensor], *, num_workers: int | None = None,
                       pin_memory: bool = False) -> Iterator[Batch]:
    """The files ``batches[i]`` of ``data``, batch after batch, decoded ahead by DataLoader workers (a training
    epoch's shuffled order: the caller draws the order, this only reads it).

    Args:
        data: streamed data.
        batches: int64 file indices per batch (any order, any sizes).
        num_workers: decoding processes; ``None``: the dataset's own ``num_workers``.
        pin_memory: pin the batches (for a CUDA consumer).

    Yields:
        :class:`Batch` es, ``batch_index`` counting from 0; ``positions`` are the indices read, ``bad`` the
        files of the batch that could not be read (left out of ``x`` and ``y``).
    """
    yield from _decode(data, batches, range(len(batches)), num_workers, pin_memory)


def _decode(data: StreamDataset, batches: list[torch.Tensor], which: Iterable[int], num_workers: int | None,
            pin_memory: bool) -> Iterator[Batch]:
    """Batches ``which`` of ``batches`` (file indices), in that order, decoded ahead by DataLoader workers."""
    workers = data.num_workers if num_workers is None else num_workers
    if not batches:
        workers = 0
    loader = torch.utils.data.DataLoader(_IndexReader(data, batches), batch_size=None, sampler=which,
                                         num_workers=workers, collate_fn=cast(Any, _same), pin_memory=pin_memory,
                                         worker_init_fn=_decode_worker_init, prefetch_factor=2 if workers else None,
                                         # its own stream for the workers' seeds (decoding draws nothing): the
                                         # global one, which a caller's training draws from, stays as it was
                                         generator=torch.Generator())
    yield from loader


def head(data: ArrayDataset | StreamDataset, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` samples as float images in [0,1] and labels (unreadable files left out).

    Args:
        data: in memory or streamed.
        n: how many.

    Returns:
        ``(x [<=n, C, H, W], y [<=n])``.
    """
    if isinstance(data, ArrayDataset):
        return data.subset(n).tensors()
    got = [(b.x, b.y) for b in iter_batches(data.subset(n), max(n, 1), num_workers=0)]
    x = torch.cat([g[0] for g in got]) if got else torch.empty(0, *data.image_shape, dtype=torch.uint8)
    y = torch.cat([g[1] for g in got]) if got else torch.empty(0, dtype=torch.int64)
    return x.float().div_(255), y


def stream_fingerprint(digests: bytes, labels: torch.Tensor, shape: tuple[int, ...]) -> str:
    """A short hash of streamed samples, from their per-sample pixel digests (any batching, any sharding).

    Args:
        digests: the samples' sha256 digests, 32 bytes each, in data order.
        labels: their labels.
        shape: one sample's ``(C, H, W)``.

    Returns:
        ``sha256:`` and 16 hex digits.
    """
    h = hashlib.sha256(b"advkit-stream-v1")
    h.update(str((len(labels), *shape)).encode())
    h.update(digests)
    h.update(labels.to(torch.int64).contiguous().numpy().tobytes())
    return "sha256:" + h.hexdigest()[:16]


def _split_dir(path: Path, split: str) -> Path:
    """``PATH/<split>`` when it exists (``val`` also serves ``test``), else ``PATH``."""
    for name in (split, "val") if split == "test" else (split,):
        if (path / name).is_dir():
            return path / name
    return path


def _is_image(name: str) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTS


@register_prefix("imagefolder", streamed=True)
def imagefolder(path: Path, split: str) -> StreamDataset:
    """The dataset ``imagefolder:PATH``: ``PATH/<class>/<image>`` (ImageNet layout), read lazily.

    ``PATH/<split>`` is used when it exists (``PATH/val`` for ``test``). Classes are the sorted subfolder names;
    files with an image suffix (``.jpg``, ``.png``, ...) are listed in sorted order, others are ignored.

    Args:
        path: the folder.
        split: ``train`` or ``test``.

    Returns:
        The dataset (nothing decoded yet).

    Raises:
        AdvkitError: no folder, no class subfolders, or no image files.
    """
    if not path.is_dir():
        raise AdvkitError(f"no such folder: {path}")
    base = _split_dir(path, split)
    classes = sorted(e.name for e in os.scandir(base) if e.is_dir() and not e.name.startswith("."))
    if not classes:
        raise AdvkitError(f"{base}: expected one subfolder per class (ImageNet layout), found none")
    files: list[str] = []
    labels: list[int] = []
    for ci, cname in enumerate(classes):
        names = sorted(e.name for e in os.scandir(base / cname) if _is_image(e.name) and not e.is_dir())
        files += [str(base / cname / f) for f in names]
        labels += [ci] * len(names)
    if not files:
        raise AdvkitError(f"{base}: no image files ({', '.join(sorted(IMAGE_EXTS))}) in {len(classes)} class "
                          f"folder(s)")
    return StreamDataset(files, torch.tensor(labels, dtype=torch.int64), classes, f"imagefolder:{path}", str(base))


@register_prefix("csv", streamed=True)
def csv_list(path: Path, split: str) -> StreamDataset:
    """The dataset ``csv:FILE``: rows ``path,label``, paths relative to the csv file's folder, read lazily.

    An optional first row ``path,label`` is a header. When every label is a non-negative integer the labels are
    class indices (classes ``"0"`` .. ``"K-1"``, K = the largest + 1); otherwise they are class names, mapped to
    indices in sorted order (as folder names are). ``split`` is ignored: one file is one split.

    Args:
        path: the csv file.
        split: ignored.

    Returns:
        The dataset (nothing decoded yet).

    Raises:
        AdvkitError: no such file, a row without exactly two fields, or no rows.
    """
    if not path.is_file():
        raise AdvkitError(f"no such file: {path}")
    base = path.parent
    files: list[str] = []
    raw: list[str] = []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            for line, row in enumerate(csv.reader(f), 1):
                if not row or all(not c.strip() for c in row):
                    continue
                if len(row) != 2:
                    raise AdvkitError(f"{path}:{line}: expected 'path,label', got {len(row)} field(s)")
                p, lab = row[0].strip(), row[1].strip()
                if line == 1 and (p.lower(), lab.lower()) == ("path", "label"):
                    continue
                if not p or not lab:
                    raise AdvkitError(f"{path}:{line}: empty path or label")
                files.append(str(base / p))
                raw.append(lab)
    except (UnicodeDecodeError, csv.Error) as e:
        raise AdvkitError(f"{path}: not a readable csv file: {e}") from None
    if not files:
        raise AdvkitError(f"{path}: no 'path,label' rows")
    if all(r.isascii() and r.isdigit() for r in raw):
        ints = [int(r) for r in raw]
        classes = [str(i) for i in range(max(ints) + 1)]
    else:
        classes = sorted(set(raw))
        index = {c: i for i, c in enumerate(classes)}
        ints = [index[r] for r in raw]
    return StreamDataset(files, torch.tensor(ints, dtype=torch.int64), classes, f"csv:{path}", str(path))

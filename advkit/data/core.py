"""Dataset registry, search roots, and the in-memory dataset type."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import numpy as np
import torch

from advkit.errors import AdvkitError
from advkit.registry import Family, Registry, register_family, split_name

# The repository's own datasets/ folder (holds the embedded MNIST); found for editable installs and clones.
EMBEDDED_ROOT = Path(__file__).resolve().parents[2] / "datasets"

# sha256 of every file advkit knows by name; verified the first time a process reads it.
KNOWN_SHA256 = {
    "mnist.npz": "094b831e432331f1f6d6829ab9bfff4551410a81e1f816c9cce482d3e9b3ba57",
    "fashion_mnist.npz": "c2c37d617253c9f5a6fc23ba8553045734f3682da04a81934b27e6c7c2363beb",
    "cifar10_test.npz": "ccc1a3f100461a52dd857c95a685d862f199fac7bb5d51118388d3beb9402bfe",
    "cifar10_train_1.npz": "366d86d77563675446440fe10e598123e8326745ba0e2b7ec14e3c5e000b4c3e",
    "cifar10_train_2.npz": "0d06177fc5e14ea3c7b01a1d49fb55a4516e0c7d40c033441c4f912db82cf56c",
}
# An npz array may state at most this many bytes: a few-KB file can claim a terabyte-sized array.
MAX_NPZ_ARRAY_BYTES = 16 * 2**30
# (path, size, mtime) of files already verified in this process: skips re-hashing, never changes results.
_verified: set[tuple[str, int, int]] = set()


@dataclass
class ArrayDataset(torch.utils.data.Dataset):
    """An in-memory image dataset: items and batches come out as float images in [0,1] and int64 labels.

    Images are kept as uint8 [N, C, H, W] (a quarter of the memory of float). ``mean`` and ``std`` are
    per-channel statistics in [0,1] pixel units for a model's normalization wrapper (the data itself is
    never normalized); ``meta`` holds per-sample entries (lists or tensors of length N, cut along with
    the samples by :meth:`subset`) and whole-dataset ones.
    """

    images: torch.Tensor  # uint8 [N, C, H, W]
    labels: torch.Tensor  # int64 [N]
    classes: list[str]
    name: str = "dataset"
    mean: tuple[float, ...] | None = None  # per-channel statistics, for a model's normalization wrapper
    std: tuple[float, ...] | None = None
    source: str = ""
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise AdvkitError(f"{self.name}: images must be uint8 [N,C,H,W], got {self.images.dtype} "
                              f"{tuple(self.images.shape)}")
        if self.labels.shape != (self.images.shape[0],):
            raise AdvkitError(f"{self.name}: {self.images.shape[0]} images but labels of shape "
                              f"{tuple(self.labels.shape)}")

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[i].float().div_(255), self.labels[i]

    @property
    def num_classes(self) -> int:
        """The number of classes (of ``classes``, whether or not each occurs)."""
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)``."""
        _, c, h, w = self.images.shape
        return c, h, w

    def subset(self, n: int | None, offset: int = 0) -> "ArrayDataset":
        """The first ``n`` samples after ``offset``: a deterministic, cheap view.

        Args:
            n: how many; ``None``: all after ``offset``.
            offset: the first sample's index.

        Returns:
            A dataset sharing this one's storage, its per-sample ``meta`` cut to match.
        """
        end = len(self) if n is None else min(len(self), offset + n)
        return ArrayDataset(self.images[offset:end], self.labels[offset:end], self.classes, self.name,
                            self.mean, self.std, self.source, self._meta_slice(slice(offset, end)))

    def _meta_slice(self, sl: slice) -> dict:
        """``meta`` with its per-sample entries (lists, arrays, tensors of length N) cut to ``sl``."""
        out = {}
        for k, v in self.meta.items():
            per_sample = isinstance(v, (list, tuple, np.ndarray, torch.Tensor)) and len(v) == len(self)
            out[k] = v[sl] if per_sample else v
        return out

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All images as float [N, C, H, W] in [0,1], and the labels [N]."""
        return self.images.float().div_(255), self.labels

    def batches(self, batch_size: int, *, shuffle: bool = False, generator: torch.Generator | None = None,
                drop_last: bool = False, indices: torch.Tensor | None = None
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Float batches straight from memory (much faster on a CPU than a per-item DataLoader).

        Args:
            batch_size: samples per batch; the last one may be smaller.
            shuffle: draw a random order (from ``generator``) instead of the stored one.
            generator: the random stream for ``shuffle``.
            drop_last: leave out a last, smaller batch.
            indices: which samples, in this order; default all.

        Yields:
            ``(images, labels)``: float [B, C, H, W] in [0,1] and int64 [B].
        """
        idx = indices if indices is not None else torch.arange(len(self))
        for b in batch_order(idx, batch_size, shuffle=shuffle, generator=generator, drop_last=drop_last):
            yield self.images[b].float().div_(255), self.labels[b]


def batch_order(indices: torch.Tensor, batch_size: int, *, shuffle: bool = False,
                generator: torch.Generator | None = None, drop_last: bool = False) -> list[torch.Tensor]:
    """An epoch's batches as sample indices: ``indices`` in a random order drawn from ``generator`` (one
    ``randperm``) when ``shuffle``, cut into ``batch_size`` pieces, a last smaller one left out when
    ``drop_last``. In-memory and streamed training both cut their epochs with it, so they see the same order.
    """
    idx = indices[torch.randperm(len(indices), generator=generator)] if shuffle else indices
    stop = len(idx) - (len(idx) % batch_size if drop_last else 0)
    return [idx[s:s + batch_size] for s in range(0, stop, batch_size)]


Loader = Callable[..., ArrayDataset]
_DATASETS: Registry[Loader] = Registry("dataset")
_FAMILY_LOADERS: dict[Family, Callable[..., Any]] = {}
_L = TypeVar("_L", bound=Callable[..., Any])  # a family's loader, returning an ArrayDataset or a StreamDataset
# families read lazily (advkit.data.stream): their loaders return a StreamDataset, not an ArrayDataset
_STREAMED: set[Family] = set()


def register_dataset(name: str) -> Callable[[Loader], Loader]:
    """Decorator: register a dataset loader under the plain name ``name``.

    Args:
        name: the dataset's name for :func:`load_dataset`.

    Returns:
        A decorator taking ``loader(split, roots, download=False) -> ArrayDataset`` and returning it
        unchanged.

    Raises:
        KeyError: ``name`` is already registered.
    """
    return _DATASETS.register(name)


def register_prefix(prefix: str, *, streamed: bool = False) -> Callable[[_L], _L]:
    """Decorator: register a loader for the dataset names ``prefix:PATH``.

    The prefix becomes a ``dataset`` family of :mod:`advkit.registry`, the one parser of name prefixes.

    Args:
        prefix: the family's name, without the colon (``npz``).
        streamed: the loader returns a lazy :class:`advkit.data.stream.StreamDataset` (files listed, nothing
            decoded); :func:`open_dataset` hands it over as it is, :func:`load_dataset` reads it into memory.

    Returns:
        A decorator taking ``loader(path, split) -> ArrayDataset`` (or a ``StreamDataset``) and returning it
        unchanged.

    Raises:
        KeyError: the family already exists.
    """
    family = register_family(prefix, "dataset", "FILE" if prefix == "csv" else "PATH")
    if streamed:
        _STREAMED.add(family)

    def deco(fn: _L) -> _L:
        _FAMILY_LOADERS[family] = fn
        return fn
    return deco


def _family_names() -> list[str]:
    return [f.join(f.help) for f in sorted(_FAMILY_LOADERS, key=lambda f: f.name)]


def list_datasets() -> list[str]:
    """The names :func:`load_dataset` takes.

    Returns:
        The registered names, sorted, then ``PREFIX:PATH`` for each family (``npz:PATH``, ``folder:PATH``).
    """
    return _DATASETS.names() + _family_names()


def data_roots(root: str | os.PathLike | None = None) -> list[Path]:
    """Where named datasets are looked for, in order.

    Args:
        root: the first folder (``--data-root``); default ``$ADVKIT_DATA``, else ``./datasets``.

    Returns:
        That folder, then the repository's embedded ``datasets/`` (once).
    """
    first = root or os.environ.get("ADVKIT_DATA") or "datasets"
    roots = [Path(first).expanduser()]
    if EMBEDDED_ROOT.resolve() not in {r.resolve() for r in roots}:
        roots.append(EMBEDDED_ROOT)
    return roots


def load_dataset(spec: str, split: str = "test", *, root: str | os.PathLike | None = None,
                 download: bool = False) -> ArrayDataset:
    """Load a dataset into memory.

    Args:
        spec: a registered name (:func:`list_datasets`), ``npz:PATH`` or ``folder:PATH``; a streamed family
            (``imagefolder:PATH``, ``csv:FILE``) is read whole at 224 px (:func:`open_dataset` streams it).
        split: ``train`` or ``test``.
        root: where named datasets are (see :func:`data_roots`).
        download: let torchvision fetch a named dataset into the first root (off by default: nothing
            downloads unless asked).

    Returns:
        The dataset.

    Raises:
        AdvkitError: an unknown name or split, a missing or corrupt file.
    """
    data = open_dataset(spec, split, root=root, download=download)
    if not isinstance(data, ArrayDataset):  # a streamed family, read whole at its default size
        data = data.materialize()
    return data


def open_dataset(spec: str, split: str = "test", *, root: str | os.PathLike | None = None, download: bool = False,
                 skip_bad: bool = False, num_workers: int = 0, input_size: int | None = None,
                 crop_pct: float | None = None, interpolation: str | None = None) -> Any:
    """A dataset, in memory or streamed: ``imagefolder:PATH`` and ``csv:FILE`` are listed, never read whole.

    Args:
        spec: as :func:`load_dataset` takes, or ``imagefolder:PATH`` / ``csv:FILE``.
        split: ``train`` or ``test``.
        root: where named datasets are (see :func:`data_roots`).
        download: as :func:`load_dataset`.
        skip_bad: streamed data: leave unreadable files out instead of failing.
        num_workers: streamed data: DataLoader worker processes decoding ahead (0: in the caller's process).
        input_size: streamed data: the side images are cropped to (``None``: the model's, else 224).
        crop_pct: streamed data: the center crop's share (``None``: 0.875, timm's default).
        interpolation: streamed data: ``bilinear`` or ``bicubic`` (``None``: bilinear).

    Returns:
        An :class:`ArrayDataset`, or a :class:`advkit.data.stream.StreamDataset` for a streamed family.

    Raises:
        AdvkitError: an unknown name or split, a missing or corrupt file.
    """
    if split not in ("train", "test"):
        raise AdvkitError(f"unknown split {split!r}; valid: train, test")
    family, rest = split_name(spec, kind="dataset")  # unknown prefixes raise here, listing the known ones
    if family is not None:
        data = _FAMILY_LOADERS[family](Path(rest).expanduser(), split)
        if family in _STREAMED:
            data = dataclasses.replace(data, skip_bad=skip_bad, num_workers=num_workers).with_transform(
                input_size, crop_pct, interpolation)
        return data
    if spec not in _DATASETS:
        raise AdvkitError(_DATASETS.unknown_message(spec, _family_names()))
    return _DATASETS.get(spec)(split=split, roots=data_roots(root), download=download)


def verify_checksum(path: Path) -> None:
    """Compare a known file against its published sha256 (files not on the list pass).

    Args:
        path: the file.

    Raises:
        AdvkitError: a mismatch (an error, never a warning).
    """
    expected = KNOWN_SHA256.get(path.name)
    if expected is None:
        return
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key in _verified:
        return
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    if h.hexdigest() != expected:
        raise AdvkitError(f"checksum mismatch for {path}: sha256 {h.hexdigest()[:16]}..., expected "
                          f"{expected[:16]}...; the file is corrupt or not the published one")
    _verified.add(key)


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """Read an npz without unpickling anything (known files are checked against their sha256).

    Args:
        path: the ``.npz`` file.

    Returns:
        Array name -> array.

    Raises:
        AdvkitError: a missing or unreadable file, one holding pickled objects, or a checksum mismatch.
    """
    if not path.is_file():
        raise AdvkitError(f"no such file: {path}")
    verify_checksum(path)
    _check_npz_headers(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as e:
        # numpy's own wording may advise unpickling (allow_pickle=): never pass that on
        reason = "it holds pickled data" if "pickle" in str(e) else f"{type(e).__name__}: {e}"
        raise AdvkitError(f"cannot read {path} as an npz of plain arrays ({reason})") from None


def _check_npz_headers(path: Path) -> None:
    """Refuse an npz before reading any array: not a zip, a member that is not a plain array, or one that states
    an object dtype or an absurd size (each array's header is read; the data is not)."""
    where = f"cannot read {path} as an npz of plain arrays"
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if not info.filename.endswith(".npy"):
                    raise AdvkitError(f"{where} (member {info.filename!r} is not a .npy array)")
                with zf.open(info) as f:
                    version = np.lib.format.read_magic(f)
                    read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                            else np.lib.format.read_array_header_2_0)
                    shape, _, dtype = read(f)
                if dtype.hasobject:
                    raise AdvkitError(f"{where} (array {info.filename[:-4]!r} holds Python objects, which "
                                      f"advkit never unpickles; save plain numeric arrays)")
                size = dtype.itemsize * int(np.prod(shape, dtype=object))
                if size > MAX_NPZ_ARRAY_BYTES:
                    raise AdvkitError(f"{where} (array {info.filename[:-4]!r} states shape {shape}, "
                                      f"{size / 2**30:.3g} GiB, over the {MAX_NPZ_ARRAY_BYTES // 2**30} GiB limit)")
    except (zipfile.BadZipFile, EOFError, ValueError, OSError, zlib.error, NotImplementedError) as e:
        if isinstance(e, AdvkitError):
            raise
        reason = ("not a zip archive" if isinstance(e, zipfile.BadZipFile)
                  else "it holds pickled data" if "pickle" in str(e) else f"{type(e).__name__}: {e}")
        raise AdvkitError(f"{where} ({reason})") from None


def to_nchw_uint8(x: np.ndarray, where: str) -> torch.Tensor:
    """Images as advkit stores them: a uint8 tensor [N, C, H, W].

    Args:
        x: [N,H,W], [N,H,W,C] or [N,C,H,W] with C = 1 or 3, uint8 or float in [0,1] (rounded to 255ths).
        where: names the source in the error.

    Returns:
        The uint8 tensor.

    Raises:
        AdvkitError: another shape or dtype, or float values outside [0,1].
    """
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.transpose(0, 3, 1, 2)
    elif not (x.ndim == 4 and x.shape[1] in (1, 3)):
        raise AdvkitError(f"{where}: images must be [N,H,W], [N,H,W,C] or [N,C,H,W] with 1 or 3 channels, "
                          f"got shape {x.shape}")
    if x.dtype == np.uint8:
        return torch.from_numpy(np.ascontiguousarray(x))
    if np.issubdtype(x.dtype, np.floating):
        if x.size and (not np.isfinite(x).all() or x.min() < 0 or x.max() > 1):
            raise AdvkitError(f"{where}: float images must be finite and in [0,1]")
        return torch.from_numpy(np.ascontiguousarray(np.round(x * 255).astype(np.uint8)))
    raise AdvkitError(f"{where}: images must be uint8 or float, got {x.dtype}")


def to_labels(y: np.ndarray, n: int, where: str) -> torch.Tensor:
    """Labels as advkit stores them: an int64 tensor [N].

    Args:
        y: ``n`` integers >= 0.
        n: the number of images they label.
        where: names the source in the error.

    Returns:
        The int64 tensor.

    Raises:
        AdvkitError: another shape, non-integers or negative labels.
    """
    if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer):
        raise AdvkitError(f"{where}: labels must be {n} integers, got {y.dtype} {y.shape}")
    if n and y.min() < 0:
        raise AdvkitError(f"{where}: labels must be >= 0")
    return torch.from_numpy(y.astype(np.int64))


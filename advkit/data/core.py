"""Dataset registry, search roots, and the in-memory dataset type."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

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
# (path, size, mtime) of files already verified in this process: skips re-hashing, never changes results.
_verified: set[tuple[str, int, int]] = set()


@dataclass
class ArrayDataset(torch.utils.data.Dataset):
    """Images kept as uint8 NCHW (4x less memory than float); items and batches come out as float in [0,1]."""

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
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def subset(self, n: int | None, offset: int = 0) -> "ArrayDataset":
        """The first ``n`` samples (after ``offset``): a deterministic, cheap view."""
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
        """All images as float [0,1] and labels."""
        return self.images.float().div_(255), self.labels

    def batches(self, batch_size: int, *, shuffle: bool = False, generator: torch.Generator | None = None,
                drop_last: bool = False, indices: torch.Tensor | None = None
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Float batches straight from memory: much faster on a CPU than a per-item DataLoader."""
        idx = indices if indices is not None else torch.arange(len(self))
        if shuffle:
            idx = idx[torch.randperm(len(idx), generator=generator)]
        stop = len(idx) - (len(idx) % batch_size if drop_last else 0)
        for s in range(0, stop, batch_size):
            b = idx[s:s + batch_size]
            yield self.images[b].float().div_(255), self.labels[b]


Loader = Callable[..., ArrayDataset]
_DATASETS: Registry[Loader] = Registry("dataset")
_FAMILY_LOADERS: dict[Family, Loader] = {}


def register_dataset(name: str) -> Callable[[Loader], Loader]:
    """Register ``loader(split, roots, download=False) -> ArrayDataset`` under the plain name ``name``."""
    return _DATASETS.register(name)


def register_prefix(prefix: str) -> Callable[[Loader], Loader]:
    """Register ``loader(path, split) -> ArrayDataset`` for the names ``prefix:PATH``.

    The prefix becomes a ``dataset`` family of :mod:`advkit.registry`, the one parser of name prefixes.

    Raises:
        KeyError: the family already exists.
    """
    family = register_family(prefix, "dataset", "PATH")

    def deco(fn: Loader) -> Loader:
        _FAMILY_LOADERS[family] = fn
        return fn
    return deco


def _family_names() -> list[str]:
    return [f.join(f.help) for f in sorted(_FAMILY_LOADERS, key=lambda f: f.name)]


def list_datasets() -> list[str]:
    """Registered dataset names, then ``PREFIX:PATH`` for each family (``npz:PATH``, ``folder:PATH``)."""
    return _DATASETS.names() + _family_names()


def data_roots(root: str | os.PathLike | None = None) -> list[Path]:
    """Where named datasets are looked for, in order: ``root`` (``--data-root``), else ``ADVKIT_DATA``,
    else ``./datasets``; the repository's embedded ``datasets/`` always comes last."""
    first = root or os.environ.get("ADVKIT_DATA") or "datasets"
    roots = [Path(first).expanduser()]
    if EMBEDDED_ROOT.resolve() not in {r.resolve() for r in roots}:
        roots.append(EMBEDDED_ROOT)
    return roots


def load_dataset(spec: str, split: str = "test", *, root: str | os.PathLike | None = None,
                 download: bool = False) -> ArrayDataset:
    """Load ``spec`` (a registered name, ``npz:PATH`` or ``folder:PATH``) as an :class:`ArrayDataset`.

    ``split`` is ``train`` or ``test``. With ``download=True`` torchvision may fetch a named dataset into
    the first root (off by default: nothing downloads unless asked).
    """
    if split not in ("train", "test"):
        raise AdvkitError(f"unknown split {split!r}; valid: train, test")
    family, rest = split_name(spec, kind="dataset")  # unknown prefixes raise here, listing the known ones
    if family is not None:
        return _FAMILY_LOADERS[family](Path(rest).expanduser(), split)
    if spec not in _DATASETS:
        raise AdvkitError(_DATASETS.unknown_message(spec, _family_names()))
    return _DATASETS.get(spec)(split=split, roots=data_roots(root), download=download)


def verify_checksum(path: Path) -> None:
    """Compare a known file against its published sha256; a mismatch is an error, never a warning."""
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
    """Read an npz without unpickling anything."""
    if not path.is_file():
        raise AdvkitError(f"no such file: {path}")
    verify_checksum(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (ValueError, OSError) as e:
        raise AdvkitError(f"cannot read {path} as an npz of plain arrays: {e}") from None


def to_nchw_uint8(x: np.ndarray, where: str) -> torch.Tensor:
    """Accept [N,H,W], [N,H,W,C] or [N,C,H,W] with C in 1/3, as uint8 or float in [0,1]."""
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
        if not np.isfinite(x).all() or x.min() < 0 or x.max() > 1:
            raise AdvkitError(f"{where}: float images must be finite and in [0,1]")
        return torch.from_numpy(np.ascontiguousarray(np.round(x * 255).astype(np.uint8)))
    raise AdvkitError(f"{where}: images must be uint8 or float, got {x.dtype}")


def to_labels(y: np.ndarray, n: int, where: str) -> torch.Tensor:
    if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer):
        raise AdvkitError(f"{where}: labels must be {n} integers, got {y.dtype} {y.shape}")
    if n and y.min() < 0:
        raise AdvkitError(f"{where}: labels must be >= 0")
    return torch.from_numpy(y.astype(np.int64))


"""Balanced real-vs-fake datasets (class 0 "real", 1 "fake") with per-sample provenance.

Real images come from any dataset spec (their labels are ignored); fakes from generator checkpoints
(sampled with a seeded z stream), ``.npz`` files as ``advkit generate`` writes them, or dataset specs; or one
source already labelled 0 real / 1 fake (the shared faces). Classes are balanced, several fake sources
share the fake class equally, and ``debias_jpeg`` passes both classes through the same JPEG round trip
so a detector cannot separate them by file format alone (the shared faces are PNG real vs JPEG fake).

Sources given as ``imagefolder:PATH`` or ``csv:FILE`` are listed, never read whole: their images are selected by
index and decoded (at ``size``, as timm's eval transform crops) only when a batch needs them. With ``stream=True``
the training split stays on disk (:class:`RealFakeStream`, read in the trainer's DataLoader workers); val and
test, which the evaluation holds anyway, are decoded into memory. Generated and ``.npz`` fakes are in memory.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import numbers
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Union, overload

import cv2
import numpy as np
import torch

from advkit.data import transforms
from advkit.data.core import ArrayDataset, open_dataset, read_npz, to_nchw_uint8
from advkit.data.stream import StreamDataset, bad_files_error, iter_batches
from advkit.errors import AdvkitError

if TYPE_CHECKING:
    from advkit.models.dcgan import DCGANGenerator

log = logging.getLogger(__name__)

CLASSES = ["real", "fake"]
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class RealFakeConfig:
    """What :func:`build_realfake` builds. A spec may hold ``{split}``, replaced by ``train`` or ``test``
    (e.g. ``npz:/data/faces_{split}.npz``)."""

    real: str | None = None          # real images, labels ignored: mnist, cifar10, npz:PATH, folder:PATH, PATH.npz
    fakes: tuple[str, ...] = ()      # generator checkpoints (*.safetensors or a run folder), PATH.npz (array x), specs
    labelled: str | None = None      # one spec already labelled 0 real / 1 fake; adds to both classes
    n_per_class: int | None = None   # cap per class (per source pool); None: the smaller class decides
    val_frac: float = 0.1            # of each class, carved from the training pool
    test_frac: float = 0.2           # of each class (split="fractions" only)
    split: str = "fractions"         # fractions: cut one pool (the sources' train split); source: their train/test
    seed: int = 0                    # selection, shuffling and the generators' z stream
    size: int | None = None          # common square side; None: the sources must already share one size
    channels: int | None = None      # 1 or 3; None: 3 when any source is RGB (gray is repeated), else 1
    debias_jpeg: int | None = None   # JPEG quality applied to BOTH classes (format debiasing); None: off
    gen_batch_size: int = 500        # z batch size (the z stream matches `advkit generate` with the same size)
    # imagefolder:/csv: sources only (read lazily, as advkit eval's data section)
    skip_bad: bool = False           # leave unreadable image files out (a warning) instead of failing
    num_workers: int = 2             # DataLoader processes decoding ahead (0: in the main process)

    def __post_init__(self) -> None:
        if isinstance(self.fakes, str):
            object.__setattr__(self, "fakes", (self.fakes,))
        object.__setattr__(self, "fakes", tuple(self.fakes))
        if not all(isinstance(f, str) and f for f in self.fakes):
            raise AdvkitError(f"fakes must be non-empty strings, got {list(self.fakes)!r}")
        if len(set(self.fakes)) != len(self.fakes):
            raise AdvkitError(f"a fake source is listed twice: {list(self.fakes)}")
        if self.split not in ("fractions", "source"):
            raise AdvkitError(f"split must be 'fractions' or 'source', got {self.split!r}")
        for name in ("val_frac", "test_frac"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not 0 <= float(v) < 1:
                raise AdvkitError(f"{name} must be in [0, 1), got {v!r}")
        if self.val_frac + self.test_frac >= 1:
            raise AdvkitError(f"val_frac + test_frac must be < 1, got {self.val_frac} + {self.test_frac}")
        for name in ("n_per_class", "size", "gen_batch_size"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1):
                raise AdvkitError(f"{name} must be a positive integer, got {v!r}")
        if isinstance(self.num_workers, bool) or not isinstance(self.num_workers, int) or self.num_workers < 0:
            raise AdvkitError(f"num_workers must be an integer >= 0, got {self.num_workers!r}")
        if self.channels not in (None, 1, 3):
            raise AdvkitError(f"channels must be 1 or 3, got {self.channels!r}")
        if self.debias_jpeg is not None:
            transforms._check_quality(self.debias_jpeg)


# a source's images: in memory (uint8 [N,C,H,W]) or files listed, decoded when read
Images = Union[torch.Tensor, StreamDataset]


@dataclass
class _Pool:
    """The images one source offers for one pool (``train`` or ``test``); ``images`` None = a generator."""

    images: Images | None
    index: torch.Tensor | None  # position of each image in the loaded source

    def loaded(self) -> tuple[Images, torch.Tensor]:
        """``(images, index)``, once there are images (a generator's pool has them after generating)."""
        if self.images is None or self.index is None:
            raise RuntimeError("a generator's pool was read before its images were generated")
        return self.images, self.index


@dataclass
class _Source:
    name: str        # provenance: "real" for real images, the source itself for fakes
    spec: str        # where it came from
    label: int
    shape: tuple[int, int, int]
    pools: dict[str, _Pool]
    generator: DCGANGenerator | None = None


def _with_split(spec: str, split: str) -> str:
    return spec.replace("{split}", split)


def _generator_path(spec: str) -> Path | None:
    """The checkpoint a fake spec names, when it names one."""
    p = Path(spec).expanduser()
    if spec.endswith(".safetensors"):
        return p
    if p.is_dir() and (p / "generator.safetensors").is_file():
        return p / "generator.safetensors"
    return None


def _load_images(spec: str, split: str, root: str | os.PathLike | None,
                 cfg: RealFakeConfig = RealFakeConfig()) -> ArrayDataset | StreamDataset:
    """A dataset spec, or a bare ``.npz`` path whose array ``x`` (or ``x_<split>``) is all that is needed;
    ``imagefolder:``/``csv:`` specs listed only, at ``cfg.size`` (else 224)."""
    if spec.endswith(".npz") and ":" not in spec.split("/")[0]:
        path = Path(spec).expanduser()
        z = read_npz(path)
        key = f"x_{split}" if f"x_{split}" in z else "x"
        if key not in z:
            raise AdvkitError(f"{path}: needs an image array 'x' (or 'x_{split}'); has {', '.join(sorted(z))}")
        x = to_nchw_uint8(z[key], str(path))
        return ArrayDataset(x, torch.zeros(len(x), dtype=torch.int64), ["images"], spec, source=str(path))
    return open_dataset(spec, split, root=root, skip_bad=cfg.skip_bad, num_workers=cfg.num_workers,
                        input_size=cfg.size)


def _same_images(a: ArrayDataset | StreamDataset, b: ArrayDataset | StreamDataset) -> bool:
    if isinstance(a, StreamDataset) or isinstance(b, StreamDataset):
        return isinstance(a, StreamDataset) and isinstance(b, StreamDataset) and a.files == b.files
    return a.images.shape == b.images.shape and torch.equal(a.images, b.images)


def _images(ds: ArrayDataset | StreamDataset) -> Images:
    return ds if isinstance(ds, StreamDataset) else ds.images


def _take(images: Images, idx: torch.Tensor) -> Images:
    """The images ``idx`` (listed files stay unread)."""
    if isinstance(images, StreamDataset):
        return dataclasses.replace(images, files=[images.files[i] for i in idx.tolist()], labels=images.labels[idx])
    return images[idx]


def _load_pools(spec: str, pools: tuple[str, ...], root: str | os.PathLike | None,
                cfg: RealFakeConfig) -> dict[str, ArrayDataset | StreamDataset]:
    out = {p: _load_images(_with_split(spec, p), p, root, cfg) for p in pools}
    if len(pools) == 2 and "{split}" not in spec:
        if _same_images(out["train"], out["test"]):
            raise AdvkitError(f"{spec}: has no separate test split; use split='fractions' or a {{split}} "
                              f"placeholder in the spec")
    return out


def _plain_source(spec: str, label: int, pools: tuple[str, ...], root: str | os.PathLike | None,
                  cfg: RealFakeConfig) -> _Source:
    data = _load_pools(spec, pools, root, cfg)
    for p, ds in data.items():
        if len(ds) == 0:
            raise AdvkitError(f"{_with_split(spec, p)}: empty source (no images)")
    shape = next(iter(data.values())).image_shape
    return _Source("real" if label == 0 else spec, spec, label, shape,
                   {p: _Pool(_images(ds), torch.arange(len(ds))) for p, ds in data.items()})


def _labelled_sources(spec: str, pools: tuple[str, ...], root: str | os.PathLike | None,
                      cfg: RealFakeConfig) -> list[_Source]:
    data = _load_pools(spec, pools, root, cfg)
    for p, ds in data.items():
        names = [c.lower() for c in ds.classes]
        if names[:2] == ["fake", "real"]:
            raise AdvkitError(f"{_with_split(spec, p)}: classes are {ds.classes}; a labelled source needs 0 = real, "
                              f"1 = fake")
        if len(ds) and int(ds.labels.max()) > 1:
            raise AdvkitError(f"{_with_split(spec, p)}: labels must be 0 (real) or 1 (fake), found "
                              f"{int(ds.labels.max())}")
    out = []
    for label in (0, 1):
        got = {}
        for p, ds in data.items():
            idx = torch.nonzero(ds.labels == label).flatten()
            if len(idx) == 0:
                raise AdvkitError(f"{_with_split(spec, p)}: empty source: no images labelled {label} "
                                  f"({CLASSES[label]})")
            got[p] = _Pool(_take(_images(ds), idx), idx)
        out.append(_Source("real" if label == 0 else spec, spec, label,
                           next(iter(data.values())).image_shape, got))
    return out


def _generator_source(spec: str, path: Path, pools: tuple[str, ...]) -> _Source:
    from advkit.models.checkpoint import load_generator

    g = load_generator(path)  # refuses classifier and discriminator checkpoints with a clear error
    return _Source(spec, spec, 1, (g.channels, g.img_size, g.img_size), {p: _Pool(None, None) for p in pools},
                   generator=g)


def _generate(g: DCGANGenerator, n: int, seed: int, batch_size: int) -> torch.Tensor:
    """``n`` uint8 images from ``g``, z drawn in batches from one CPU stream seeded with ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    chunks = []
    was_training = g.training
    g.eval()
    try:
        with torch.no_grad():
            for s in range(0, n, batch_size):
                z = torch.randn(min(batch_size, n - s), g.z_dim, generator=gen)
                chunks.append((g(z).float().clamp(0, 1) * 255).round().to(torch.uint8))
    finally:
        g.train(was_training)
    return torch.cat(chunks) if chunks else torch.zeros(0, g.channels, g.img_size, g.img_size, dtype=torch.uint8)


def _quotas(supplies: list[float], target: int) -> list[int]:
    """Split ``target`` as equally as the supplies allow (water-filling; inf = a generator)."""
    quotas = [0] * len(supplies)
    left, remaining = len(supplies), target
    for i in sorted(range(len(supplies)), key=lambda j: supplies[j]):
        q = int(min(supplies[i], math.ceil(remaining / left)))
        quotas[i], remaining, left = q, remaining - q, left - 1
    return quotas


def _conform(images: torch.Tensor, c: int, h: int, w: int) -> torch.Tensor:
    """Bring uint8 [N,C',H',W'] to [N,c,h,w]: OpenCV resize, RGB -> gray (luma) or gray -> RGB (repeat)."""
    if images.shape[1:] == (c, h, w):
        return images
    out = []
    for img in images.numpy():
        a = img.transpose(1, 2, 0)
        a = transforms.resize_cv(a[:, :, 0] if a.shape[2] == 1 else a, h, w)
        if a.ndim == 3 and c == 1:
            a = cv2.cvtColor(np.ascontiguousarray(a), cv2.COLOR_RGB2GRAY)
        a = a[:, :, None] if a.ndim == 2 else a
        if a.shape[2] != c:
            a = np.repeat(a, c, axis=2)
        out.append(torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))))
    return torch.stack(out) if out else torch.zeros(0, c, h, w, dtype=torch.uint8)


@dataclass
class _Mixed:
    """Conformed images of several sources, in sample order: rows of ``memory`` and files of ``streams`` (those
    decoded, conformed and debiased when read). ``src[i]`` is -1 for ``memory[pos[i]]``, else ``k`` for file
    ``pos[i]`` of ``streams[k]``."""

    memory: torch.Tensor             # uint8 [M, c, h, w], conformed and debiased
    streams: list[StreamDataset]
    src: torch.Tensor                # int64 [N]
    pos: torch.Tensor                # int64 [N]

    @staticmethod
    def of(images: Images) -> _Mixed:
        n = len(images)
        if isinstance(images, StreamDataset):
            return _Mixed(torch.zeros(0, dtype=torch.uint8), [images], torch.zeros(n, dtype=torch.int64),
                          torch.arange(n))
        return _Mixed(images, [], torch.full((n,), -1, dtype=torch.int64), torch.arange(n))

    @staticmethod
    def cat(parts: list[_Mixed], shape: tuple[int, int, int]) -> _Mixed:
        """The parts one after another; only the memory rows they use are copied."""
        mems, src, pos, rows = [], [], [], 0
        streams: list[StreamDataset] = []
        for p in parts:
            mine = p.src < 0
            m = int(mine.sum())
            if m:
                mems.append(p.memory[p.pos[mine]])
            q = p.pos.clone()
            q[mine] = torch.arange(rows, rows + m)
            src.append(torch.where(mine, p.src, p.src + len(streams)))
            pos.append(q)
            rows += m
            streams += p.streams
        memory = torch.cat(mems) if mems else torch.zeros(0, *shape, dtype=torch.uint8)
        return _Mixed(memory, streams, torch.cat(src) if src else torch.zeros(0, dtype=torch.int64),
                      torch.cat(pos) if pos else torch.zeros(0, dtype=torch.int64))

    def __len__(self) -> int:
        return len(self.src)

    def __getitem__(self, idx: slice | torch.Tensor) -> _Mixed:
        return _Mixed(self.memory, self.streams, self.src[idx], self.pos[idx])

    def in_memory(self) -> torch.Tensor | None:
        """All the images as uint8 [N, c, h, w] when none is on disk, else None."""
        return self.memory[self.pos] if bool((self.src < 0).all()) else None


@dataclass
class RealFakeStream(StreamDataset):
    """A real/fake split whose ``imagefolder:``/``csv:`` images stay on disk: sample ``i`` is a file decoded,
    brought to ``shape`` and JPEG round-tripped (``debias_jpeg``) when read, or an image held in memory
    (generated and ``.npz`` fakes). The trainer reads it batch by batch as any :class:`StreamDataset`.

    Attributes (besides :class:`StreamDataset`'s; ``files[i]`` names an in-memory sample by its source):
        mixed: where each sample is.
        shape: ``(C, H, W)`` of every sample.
        debias_jpeg: the JPEG quality applied to decoded files (in-memory ones already have it), or None.
    """

    mixed: _Mixed = field(default_factory=lambda: _Mixed.of(torch.zeros(0, 1, 1, 1, dtype=torch.uint8)))
    shape: tuple[int, int, int] = (3, 1, 1)
    debias_jpeg: int | None = None

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)``."""
        return self.shape

    def load(self, i: int) -> tuple[torch.Tensor | None, str]:
        """Sample ``i`` as uint8 ``[C, H, W]``, or ``(None, reason)`` for a file that cannot be read."""
        k, p = int(self.mixed.src[i]), int(self.mixed.pos[i])
        if k < 0:
            return self.mixed.memory[p], ""
        img, why = self.mixed.streams[k].load(p)
        if img is None:
            return None, why
        img = _conform(img[None], *self.shape)
        if self.debias_jpeg is not None:
            img = transforms.jpeg(img, self.debias_jpeg)
        return img[0], ""

    def subset(self, n: int | None, offset: int = 0) -> RealFakeStream:
        """The samples ``offset`` .. ``offset + n`` (nothing is read); per-sample ``meta`` cut to match."""
        end = len(self) if n is None else min(len(self), offset + n)
        meta = {k: v[offset:end] if isinstance(v, list) and len(v) == len(self) else v for k, v in self.meta.items()}
        return dataclasses.replace(self, files=self.files[offset:end], labels=self.labels[offset:end],
                                   mixed=self.mixed[offset:end], meta=meta)


def _read_all(ds: RealFakeStream, per_sample: dict[str, list]) -> tuple[ArrayDataset, list[tuple[str, str]]]:
    """``ds`` decoded into memory (in its DataLoader workers), unreadable files left out of the images, the
    labels and the per-sample lists; returns the dataset and those files."""
    xs, keep = [], []
    bad: list[tuple[str, str]] = []
    for b in iter_batches(ds, 256):
        xs.append(b.x)
        keep += b.positions.tolist()
        bad += b.bad
    x = torch.cat(xs) if xs else torch.zeros(0, *ds.shape, dtype=torch.uint8)
    meta = {k: [v[i] for i in keep] for k, v in per_sample.items()}
    return ArrayDataset(x, ds.labels[torch.tensor(keep, dtype=torch.int64)], list(ds.classes), ds.name,
                        source=ds.source, meta=meta), bad


def _stream_stats(ds: RealFakeStream) -> tuple[tuple[float, ...], tuple[float, ...], list[tuple[str, str]]]:
    """Per-channel mean and (unbiased) std of ``ds``'s images in [0,1], from one pass in float64 sums (no image
    kept), and the unreadable files it met."""
    c = ds.shape[0]
    s1, s2, n = torch.zeros(c, dtype=torch.float64), torch.zeros(c, dtype=torch.float64), 0
    bad: list[tuple[str, str]] = []
    for b in iter_batches(ds, 256):
        x = b.x.double().div_(255)
        s1 += x.sum(dim=(0, 2, 3))
        s2 += x.square().sum(dim=(0, 2, 3))
        n += x.numel() // c
        bad += b.bad
    mean = s1 / max(n, 1)
    var = (s2 - n * mean.square()) / max(n - 1, 1)
    std = var.clamp_min(0).sqrt().clamp_min(1e-3)
    return tuple(mean.tolist()), tuple(std.tolist()), bad


def _target_shape(cfg: RealFakeConfig, sources: list[_Source]) -> tuple[int, int, int]:
    c = cfg.channels or (3 if any(s.shape[0] == 3 for s in sources) else 1)
    if cfg.size is not None:
        return c, cfg.size, cfg.size
    sizes = {s.shape[1:] for s in sources}
    if len(sizes) > 1:
        listed = ", ".join(f"{s.spec}: {s.shape[1]}x{s.shape[2]}" for s in sources)
        raise AdvkitError(f"sources differ in image size ({listed}); set size to bring them to one")
    h, w = sizes.pop()
    return c, h, w


def _pool_quotas(pool: str, sources: list[_Source], n_per_class: int | None) -> list[int]:
    """How many images each source gives to ``pool``: both classes get the same count, shared equally
    among a class's sources as far as their supply allows; generators supply any number."""
    supply = [math.inf if s.generator is not None else float(len(s.pools[pool].loaded()[0])) for s in sources]
    per_class = [sum(n for n, s in zip(supply, sources) if s.label == k) for k in (0, 1)]
    target = int(min(per_class + [n_per_class or math.inf]))
    if target == 0:
        raise AdvkitError(f"cannot balance the {pool} pool: {per_class[0]:.0f} real and {per_class[1]:.0f} fake")
    quotas = [0] * len(sources)
    for k in (0, 1):
        ids = [i for i, s in enumerate(sources) if s.label == k]
        for i, q in zip(ids, _quotas([supply[i] for i in ids], target)):
            quotas[i] = q
    return quotas


@overload
def build_realfake(cfg: RealFakeConfig, root: str | os.PathLike | None = None, *,
                   stream: Literal[False] = False) -> dict[str, ArrayDataset]: ...
@overload
def build_realfake(cfg: RealFakeConfig, root: str | os.PathLike | None = None, *,
                   stream: bool) -> dict[str, ArrayDataset | RealFakeStream]: ...
def build_realfake(cfg: RealFakeConfig, root: str | os.PathLike | None = None, *, stream: bool = False
                   ) -> dict[str, Any]:
    """Balanced ``train``/``val``/``test`` real-vs-fake sets (classes ``["real", "fake"]``).

    Per pool (``split="fractions"``: one pool from each source's train split, cut by ``val_frac`` and
    ``test_frac``; ``"source"``: the sources' own train and test splits, val cut from train), each class
    takes ``min(real, fake, n_per_class)`` images, shared equally among its sources. Images are brought to
    one size and channel count, optionally JPEG round-tripped (``debias_jpeg``), and shuffled with ``seed``.

    ``meta`` of each set: ``generator`` ("real" or the fake source, per sample), ``generators`` (the fake
    sources), ``source``/``source_split``/``source_index`` (where each sample came from: the dataset spec,
    its split and the index in it; for a generator the position in its z stream), and ``config``.

    ``imagefolder:``/``csv:`` sources are selected by index and only the chosen files are decoded (in
    ``cfg.num_workers`` processes, at ``size``); unreadable ones are fatal with their list, or left out with
    ``cfg.skip_bad`` (then their class holds fewer samples).

    Args:
        cfg: the sources and how to balance, split and conform them.
        root: where named datasets are (see :func:`advkit.data.data_roots`).
        stream: leave the training split's files on disk (a :class:`RealFakeStream`, when it has any; its
            statistics come from one decoding pass that keeps no image).

    Returns:
        ``{"train", "val", "test"}`` datasets; their ``mean``/``std`` are the training images' per-channel
        statistics.

    Raises:
        AdvkitError: no real or no fake source, a source that cannot be loaded, sources that cannot be
            brought to one shape, a pool that cannot be balanced, or unreadable files (without ``skip_bad``).
    """
    from advkit.config import to_dict

    if cfg.real is None and cfg.labelled is None:
        raise AdvkitError("no real images: set real (a dataset spec) or labelled")
    if not cfg.fakes and cfg.labelled is None:
        raise AdvkitError("no fake images: set fakes (generator checkpoints, .npz files, specs) or labelled")
    pools = ("train",) if cfg.split == "fractions" else ("train", "test")
    sources: list[_Source] = []
    if cfg.real is not None:
        sources.append(_plain_source(cfg.real, 0, pools, root, cfg))
    if cfg.labelled is not None:
        sources += _labelled_sources(cfg.labelled, pools, root, cfg)
    for spec in cfg.fakes:
        gpath = _generator_path(spec)
        sources.append(_generator_source(spec, gpath, pools) if gpath is not None
                       else _plain_source(spec, 1, pools, root, cfg))
    c, h, w = _target_shape(cfg, sources)
    rng = np.random.default_rng(cfg.seed)

    quotas = {p: _pool_quotas(p, sources, cfg.n_per_class) for p in pools}

    # Select (or generate), conform and debias; per pool and class: images and provenance.
    parts: dict[tuple[str, int], list] = {(p, k): [] for p in pools for k in (0, 1)}
    for i, s in enumerate(sources):
        if s.generator is not None:
            made = _generate(s.generator, sum(quotas[p][i] for p in pools), cfg.seed, cfg.gen_batch_size)
            start = 0
            for p in pools:
                q = quotas[p][i]
                s.pools[p] = _Pool(made[start:start + q], torch.arange(start, start + q))
                start += q
        for p in pools:
            (images, index), q = s.pools[p].loaded(), quotas[p][i]
            pick = torch.from_numpy(rng.permutation(len(images))[:q]) if s.generator is None \
                else torch.arange(q)
            chosen = _take(images, pick)
            if isinstance(chosen, StreamDataset):  # conformed and debiased when decoded (RealFakeStream.load)
                imgs = _Mixed.of(chosen)
            else:
                chosen = _conform(chosen, c, h, w)
                imgs = _Mixed.of(transforms.jpeg(chosen, cfg.debias_jpeg) if cfg.debias_jpeg is not None else chosen)
            spec = _with_split(s.spec, p) if s.generator is None else s.spec
            parts[(p, s.label)].append((imgs, [s.name] * q, [spec] * q, [p] * q, index[pick].tolist()))

    def gather(p: str, k: int) -> tuple[_Mixed, list[str], list[str], list[str], list[int]]:
        chunks = parts[(p, k)]
        order = torch.from_numpy(rng.permutation(sum(len(ch[0]) for ch in chunks)))
        imgs = _Mixed.cat([ch[0] for ch in chunks], (c, h, w))[order]
        cols = [[v for ch in chunks for v in ch[j]] for j in range(1, 5)]
        return (imgs, *[[col[o] for o in order.tolist()] for col in cols])  # type: ignore[return-value]

    # Per class: cut into splits, so every split is balanced too.
    pieces: dict[str, list] = {sp: [] for sp in SPLITS}
    for k in (0, 1):
        train = gather("train", k)
        n = len(train[0])
        n_test = round(n * cfg.test_frac) if cfg.split == "fractions" else 0
        n_val = round(n * cfg.val_frac)
        cuts = {"test": (0, n_test), "val": (n_test, n_test + n_val), "train": (n_test + n_val, n)}
        for sp, (a, b) in cuts.items():
            pieces[sp].append((*(col[a:b] for col in train), k))
        if cfg.split == "source":  # the test split is the sources' own
            pieces["test"][-1] = (*gather("test", k), k)

    generators = [s.name for s in sources if s.label == 1]
    config = to_dict(cfg)
    out: dict[str, ArrayDataset | RealFakeStream] = {}
    bad: list[tuple[str, str]] = []
    for sp in SPLITS:
        imgs = _Mixed.cat([pc[0] for pc in pieces[sp]], (c, h, w))
        labels = torch.cat([torch.full((len(pc[0]),), pc[-1], dtype=torch.int64) for pc in pieces[sp]])
        cols = [[v for pc in pieces[sp] for v in pc[j]] for j in range(1, 5)]
        order = torch.from_numpy(rng.permutation(len(imgs)))
        per_sample = {key: [col[o] for o in order.tolist()]
                      for key, col in zip(("generator", "source", "source_split", "source_index"), cols)}
        whole = {"generators": generators, "config": config, "split": sp}
        name, source = f"realfake:{sp}", cfg.labelled or cfg.real or ""
        mixed = imgs[order]
        in_memory = mixed.in_memory()
        if in_memory is not None:
            out[sp] = ArrayDataset(in_memory, labels[order], list(CLASSES), name, source=source,
                                   meta={**per_sample, **whole})
            continue
        files = [mixed.streams[int(k)].files[int(p)] if k >= 0 else f"{g}#{i}" for k, p, g, i in
                 zip(mixed.src.tolist(), mixed.pos.tolist(), per_sample["source"], per_sample["source_index"])]
        lazy = RealFakeStream(files, labels[order], list(CLASSES), name, source, image_size=h,
                              skip_bad=cfg.skip_bad, num_workers=cfg.num_workers, meta={**per_sample, **whole},
                              mixed=mixed, shape=(c, h, w), debias_jpeg=cfg.debias_jpeg)
        if stream and sp == "train":
            out[sp] = lazy
            continue
        ds, missed = _read_all(lazy, per_sample)
        ds.meta.update(whole)
        out[sp], bad = ds, bad + missed
    train_set = out["train"]
    if isinstance(train_set, RealFakeStream):
        mean, std, missed = _stream_stats(train_set)  # also finds the training split's unreadable files up front
        bad += missed
    elif len(train_set):
        x = train_set.images.float().div_(255)
        mean = tuple(x.mean(dim=(0, 2, 3)).tolist())
        std = tuple(x.std(dim=(0, 2, 3)).clamp_min(1e-3).tolist())
    if bad and not cfg.skip_bad:
        raise bad_files_error(sorted(bad), data_name(cfg))
    if bad:
        log.warning("real/fake: left out %d unreadable file(s): %s", len(bad),
                    ", ".join(p for p, _ in sorted(bad)[:3]) + (", ..." if len(bad) > 3 else ""))
    if len(train_set):
        for d in out.values():
            d.mean, d.std = mean, std
    log.info("real/fake: %s", ", ".join(f"{sp} {len(ds)}" for sp, ds in out.items()))
    return out

def data_name(cfg: RealFakeConfig) -> str:
    """The real/fake data's name, as a checkpoint's ``dataset`` field records it.

    Args:
        cfg: the real/fake data config.

    Returns:
        The sources, e.g. ``realfake(mnist vs g.safetensors)``.
    """
    real = [s for s in (cfg.real, cfg.labelled) if s]
    return f"realfake({' + '.join(real)}{' vs ' + ', '.join(cfg.fakes) if cfg.fakes else ''})"

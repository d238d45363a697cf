"""Balanced real-vs-fake datasets (class 0 "real", 1 "fake") with per-sample provenance.

Real images come from any dataset spec (their labels are ignored); fakes from generator checkpoints
(sampled with a seeded z stream), ``.npz`` files as ``advkit generate`` writes them, or dataset specs; or one
source already labelled 0 real / 1 fake (the shared faces). Classes are balanced, several fake sources
share the fake class equally, and ``debias_jpeg`` passes both classes through the same JPEG round trip
so a detector cannot separate them by file format alone (the shared faces are PNG real vs JPEG fake).
"""

from __future__ import annotations

import logging
import math
import numbers
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import torch

from advkit.data import transforms
from advkit.data.core import ArrayDataset, load_dataset, read_npz, to_nchw_uint8
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
        if self.channels not in (None, 1, 3):
            raise AdvkitError(f"channels must be 1 or 3, got {self.channels!r}")
        if self.debias_jpeg is not None:
            transforms._check_quality(self.debias_jpeg)


@dataclass
class _Pool:
    """The images one source offers for one pool (``train`` or ``test``); ``images`` None = a generator."""

    images: torch.Tensor | None
    index: torch.Tensor | None  # position of each image in the loaded source

    def loaded(self) -> tuple[torch.Tensor, torch.Tensor]:
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


def _load_images(spec: str, split: str, root: str | os.PathLike | None) -> ArrayDataset:
    """A dataset spec, or a bare ``.npz`` path whose array ``x`` (or ``x_<split>``) is all that is needed."""
    if spec.endswith(".npz") and ":" not in spec.split("/")[0]:
        path = Path(spec).expanduser()
        z = read_npz(path)
        key = f"x_{split}" if f"x_{split}" in z else "x"
        if key not in z:
            raise AdvkitError(f"{path}: needs an image array 'x' (or 'x_{split}'); has {', '.join(sorted(z))}")
        x = to_nchw_uint8(z[key], str(path))
        return ArrayDataset(x, torch.zeros(len(x), dtype=torch.int64), ["images"], spec, source=str(path))
    return load_dataset(spec, split, root=root)


def _load_pools(spec: str, pools: tuple[str, ...], root: str | os.PathLike | None) -> dict[str, ArrayDataset]:
    out = {p: _load_images(_with_split(spec, p), p, root) for p in pools}
    if len(pools) == 2 and "{split}" not in spec:
        a, b = out["train"].images, out["test"].images
        if a.shape == b.shape and torch.equal(a, b):
            raise AdvkitError(f"{spec}: has no separate test split; use split='fractions' or a {{split}} "
                              f"placeholder in the spec")
    return out


def _plain_source(spec: str, label: int, pools: tuple[str, ...], root: str | os.PathLike | None) -> _Source:
    data = _load_pools(spec, pools, root)
    for p, ds in data.items():
        if len(ds) == 0:
            raise AdvkitError(f"{_with_split(spec, p)}: empty source (no images)")
    shape = next(iter(data.values())).image_shape
    return _Source("real" if label == 0 else spec, spec, label, shape,
                   {p: _Pool(ds.images, torch.arange(len(ds))) for p, ds in data.items()})


def _labelled_sources(spec: str, pools: tuple[str, ...], root: str | os.PathLike | None) -> list[_Source]:
    data = _load_pools(spec, pools, root)
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
            got[p] = _Pool(ds.images[idx], idx)
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


def build_realfake(cfg: RealFakeConfig, root: str | os.PathLike | None = None) -> dict[str, ArrayDataset]:
    """Balanced ``train``/``val``/``test`` real-vs-fake sets (classes ``["real", "fake"]``).

    Per pool (``split="fractions"``: one pool from each source's train split, cut by ``val_frac`` and
    ``test_frac``; ``"source"``: the sources' own train and test splits, val cut from train), each class
    takes ``min(real, fake, n_per_class)`` images, shared equally among its sources. Images are brought to
    one size and channel count, optionally JPEG round-tripped (``debias_jpeg``), and shuffled with ``seed``.

    ``meta`` of each set: ``generator`` ("real" or the fake source, per sample), ``generators`` (the fake
    sources), ``source``/``source_split``/``source_index`` (where each sample came from: the dataset spec,
    its split and the index in it; for a generator the position in its z stream), and ``config``.

    Args:
        cfg: the sources and how to balance, split and conform them.
        root: where named datasets are (see :func:`advkit.data.data_roots`).

    Returns:
        ``{"train", "val", "test"}`` datasets; their ``mean``/``std`` are the training images' per-channel
        statistics.

    Raises:
        AdvkitError: no real or no fake source, a source that cannot be loaded, sources that cannot be
            brought to one shape, or a pool that cannot be balanced.
    """
    from advkit.config import to_dict

    if cfg.real is None and cfg.labelled is None:
        raise AdvkitError("no real images: set real (a dataset spec) or labelled")
    if not cfg.fakes and cfg.labelled is None:
        raise AdvkitError("no fake images: set fakes (generator checkpoints, .npz files, specs) or labelled")
    pools = ("train",) if cfg.split == "fractions" else ("train", "test")
    sources: list[_Source] = []
    if cfg.real is not None:
        sources.append(_plain_source(cfg.real, 0, pools, root))
    if cfg.labelled is not None:
        sources += _labelled_sources(cfg.labelled, pools, root)
    for spec in cfg.fakes:
        gpath = _generator_path(spec)
        sources.append(_generator_source(spec, gpath, pools) if gpath is not None
                       else _plain_source(spec, 1, pools, root))
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
            imgs = _conform(images[pick], c, h, w)
            if cfg.debias_jpeg is not None:
                imgs = transforms.jpeg(imgs, cfg.debias_jpeg)
            spec = _with_split(s.spec, p) if s.generator is None else s.spec
            parts[(p, s.label)].append((imgs, [s.name] * q, [spec] * q, [p] * q, index[pick].tolist()))

    def gather(p: str, k: int) -> tuple[torch.Tensor, list[str], list[str], list[str], list[int]]:
        chunks = parts[(p, k)]
        order = torch.from_numpy(rng.permutation(sum(len(ch[0]) for ch in chunks)))
        imgs = torch.cat([ch[0] for ch in chunks])[order]
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
    out: dict[str, ArrayDataset] = {}
    for sp in SPLITS:
        imgs = torch.cat([pc[0] for pc in pieces[sp]])
        labels = torch.cat([torch.full((len(pc[0]),), pc[-1], dtype=torch.int64) for pc in pieces[sp]])
        cols = [[v for pc in pieces[sp] for v in pc[j]] for j in range(1, 5)]
        order = torch.from_numpy(rng.permutation(len(imgs)))
        meta: dict[str, Any] = {key: [col[o] for o in order.tolist()]
                                for key, col in zip(("generator", "source", "source_split", "source_index"), cols)}
        meta.update(generators=generators, config=config, split=sp)
        out[sp] = ArrayDataset(imgs[order], labels[order], list(CLASSES), f"realfake:{sp}",
                               source=cfg.labelled or cfg.real or "", meta=meta)
    if len(out["train"]):
        x = out["train"].images.float().div_(255)
        mean = tuple(x.mean(dim=(0, 2, 3)).tolist())
        std = tuple(x.std(dim=(0, 2, 3)).clamp_min(1e-3).tolist())
        for ds in out.values():
            ds.mean, ds.std = mean, std
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

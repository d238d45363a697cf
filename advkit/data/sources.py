"""Where the named datasets come from: the ``.npz`` layout of the shared data folder, advkit's embedded
``datasets/``, or torchvision's own layout (which ``download=True`` fills)."""

from __future__ import annotations

import logging
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from advkit.data.core import ArrayDataset, read_npz, register_dataset, register_prefix, to_labels, to_nchw_uint8
from advkit.errors import AdvkitError

log = logging.getLogger(__name__)

DIGITS = [str(i) for i in range(10)]
FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
           "Ankle boot"]
CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
MAX_CLASSES = 100_000  # labels beyond this without class_names are a mistake, not a dataset
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}


def _missing(name: str, looked: list[Path], tv_class: str) -> AdvkitError:
    places = ", ".join(str(p) for p in looked)
    return AdvkitError(
        f"dataset {name!r} not found (looked in: {places}); either point --data-root / ADVKIT_DATA at a "
        f"folder holding {_layout(name)} (the shared npz layout), or pass --download to let torchvision "
        f"fetch {tv_class} into the data root")


def _layout(name: str) -> str:
    """The files the shared npz layout holds for a named dataset."""
    if name == "cifar10":
        return "cifar10/cifar10_test.npz and cifar10/cifar10_train_*.npz"
    return f"{name}/{name}.npz"


def _from_torchvision(cls_name: str, root: Path, split: str, download: bool):
    import torchvision

    cls = getattr(torchvision.datasets, cls_name)
    try:
        ds = cls(str(root), train=(split == "train"), download=download)
    except RuntimeError:  # torchvision's "Dataset not found" when not downloaded
        return None
    return np.asarray(ds.data), np.asarray(ds.targets)


def _mnist_like(name: str, tv_class: str, classes: list[str], mean: float, std: float, split: str,
                roots: list[Path], download: bool) -> ArrayDataset:
    looked: list[Path] = []
    for root in roots:
        for path in (root / name / f"{name}.npz", root / f"{name}.npz"):
            looked.append(path)
            if path.is_file():
                z = read_npz(path)
                x, y = z[f"x_{split}"], z[f"y_{split}"]
                return ArrayDataset(to_nchw_uint8(x, str(path)), to_labels(y, len(x), str(path)), classes,
                                    name, (mean,), (std,), str(path))
    for root in roots[:1]:
        looked.append(root / tv_class)
        got = _from_torchvision(tv_class, root, split, download)
        if got is not None:
            x, y = got
            return ArrayDataset(to_nchw_uint8(x, tv_class), to_labels(y.astype(np.int64), len(x), tv_class),
                                classes, name, (mean,), (std,), str(root / tv_class))
    raise _missing(name, looked, tv_class)


@register_dataset("mnist")
def mnist(split: str, roots: list[Path], download: bool = False) -> ArrayDataset:
    """MNIST digits, 28x28 gray, 10 classes.

    Args:
        split: ``train`` or ``test``.
        roots: the folders to search (see :func:`advkit.data.data_roots`).
        download: let torchvision fetch it into the first root when it is found nowhere.

    Returns:
        The dataset, with its published per-channel mean and std.

    Raises:
        AdvkitError: not found (the message names the folders searched).
    """
    return _mnist_like("mnist", "MNIST", DIGITS, 0.1307, 0.3081, split, roots, download)


@register_dataset("fashion_mnist")
def fashion_mnist(split: str, roots: list[Path], download: bool = False) -> ArrayDataset:
    """Fashion-MNIST, 28x28 gray, 10 classes.

    Args:
        split: ``train`` or ``test``.
        roots: the folders to search (see :func:`advkit.data.data_roots`).
        download: let torchvision fetch it into the first root when it is found nowhere.

    Returns:
        The dataset, with its published per-channel mean and std.

    Raises:
        AdvkitError: not found (the message names the folders searched).
    """
    return _mnist_like("fashion_mnist", "FashionMNIST", FASHION, 0.2860, 0.3530, split, roots, download)


@register_dataset("cifar10")
def cifar10(split: str, roots: list[Path], download: bool = False) -> ArrayDataset:
    """CIFAR-10, 32x32 RGB, 10 classes, from advkit's npz files (torchvision's pickles only with download).

    Args:
        split: ``train`` or ``test``.
        roots: the folders to search (see :func:`advkit.data.data_roots`).
        download: let torchvision fetch it into the first root when it is found nowhere.

    Returns:
        The dataset, with its published per-channel mean and std.

    Raises:
        AdvkitError: not found (the message names the folders searched).
    """
    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
    looked: list[Path] = []
    for root in roots:
        folder = root / "cifar10"
        looked.append(folder)
        files = ([folder / "cifar10_test.npz"] if split == "test"
                 else sorted(folder.glob("cifar10_train_*.npz")))
        files = [f for f in files if f.is_file()]
        if files:
            parts = [read_npz(f) for f in files]
            x = np.concatenate([p["x"] for p in parts])
            y = np.concatenate([p["y"] for p in parts])
            if split == "train" and len(files) < 5:
                log.info("cifar10 train: %d of 5 batches present (%d images)", len(files), len(x))
            return ArrayDataset(to_nchw_uint8(x, str(folder)), to_labels(y, len(x), str(folder)), CIFAR10,
                                "cifar10", mean, std, str(folder))
    # torchvision's CIFAR files are pickles: read them only when the user opts in with --download.
    if download:
        looked.append(roots[0] / "cifar-10-batches-py")
        got = _from_torchvision("CIFAR10", roots[0], split, download)
        if got is not None:
            x, y = got
            return ArrayDataset(to_nchw_uint8(x, "CIFAR10"), to_labels(y.astype(np.int64), len(x), "CIFAR10"),
                                CIFAR10, "cifar10", mean, std, str(roots[0]))
    raise _missing("cifar10", looked, "CIFAR10")


@register_prefix("npz")
def npz(path: Path, split: str) -> ArrayDataset:
    """The dataset ``npz:PATH``: arrays ``x`` and ``y`` (or ``x_train``/``y_train``, ``x_test``/``y_test``).

    Args:
        path: the ``.npz`` file; an optional ``class_names`` array names the classes.
        split: ``train`` or ``test``: picks ``x_<split>``/``y_<split>`` when the file has them.

    Returns:
        The dataset.

    Raises:
        AdvkitError: an unreadable file, missing arrays, or labels beyond the class names.
    """
    z = read_npz(path)
    xk, yk = (f"x_{split}", f"y_{split}") if f"x_{split}" in z else ("x", "y")
    if xk not in z or yk not in z:
        raise AdvkitError(f"{path}: needs arrays 'x' and 'y' (or 'x_{split}', 'y_{split}'); has "
                          f"{', '.join(sorted(z)) or 'none'}")
    images = to_nchw_uint8(z[xk], str(path))
    if images.shape[0] == 0:
        raise AdvkitError(f"{path}: holds no images ({xk!r} has shape {tuple(z[xk].shape)})")
    labels = to_labels(z[yk], images.shape[0], str(path))
    if "class_names" in z:
        names = z["class_names"]
        if names.ndim != 1 or not (names.dtype.kind in "US" or np.issubdtype(names.dtype, np.integer)):
            raise AdvkitError(f"{path}: class_names must be a 1-d array of strings, got {names.dtype} "
                              f"{names.shape}")
        classes = [str(c) for c in names]
    elif int(labels.max()) >= MAX_CLASSES:
        raise AdvkitError(f"{path}: label {int(labels.max())} implies more than {MAX_CLASSES:,} classes; give "
                          f"class_names or fix the labels")
    else:
        classes = [str(i) for i in range(int(labels.max()) + 1 if len(labels) else 0)]
    if len(labels) and int(labels.max()) >= len(classes):
        raise AdvkitError(f"{path}: label {int(labels.max())} out of range for {len(classes)} classes")
    return ArrayDataset(images, labels, classes, f"npz:{path}", source=str(path))


# Images may hold at most this many pixels (about PIL's limit): a small file can state 100,000 x 100,000 in
# its header, which decodes to tens of gigabytes. The header is checked before anything is decoded.
MAX_IMAGE_PIXELS = 2**26


def image_header_size(data: bytes) -> tuple[int, int] | None:
    """The (width, height) a PNG, JPEG, BMP, GIF or WebP file states in its header, before decoding.

    Args:
        data: the file's first bytes (the whole file for JPEG, whose size marker may come late).

    Returns:
        ``(width, height)``, or None for another format or a header too short to say.
    """
    import struct

    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24 and data[12:16] == b"IHDR":
        w, h = struct.unpack(">II", data[16:24])
        return w, h
    if data[:2] == b"BM" and len(data) >= 26:
        w, h = struct.unpack("<ii", data[18:26])
        return abs(w), abs(h)
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        w, h = struct.unpack("<HH", data[6:10])
        return w, h
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP" and len(data) >= 30:
        kind = data[12:16]
        if kind == b"VP8X":
            return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
        if kind == b"VP8L" and len(data) >= 25:
            bits = int.from_bytes(data[21:25], "little")
            return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
        if kind == b"VP8 ":
            w, h = struct.unpack("<HH", data[26:30])
            return w & 0x3FFF, h & 0x3FFF
    if data[:2] == b"\xff\xd8":  # JPEG: walk the segments to a start-of-frame marker
        i = 2
        while i + 9 <= len(data):
            if data[i] != 0xFF:
                return None
            marker = data[i + 1]
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
                i += 2
                continue
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                h, w = struct.unpack(">HH", data[i + 5:i + 9])
                return w, h
            i += 2 + struct.unpack(">H", data[i + 2:i + 4])[0]
    return None


def read_image(path: Path) -> np.ndarray | None:
    """Read one image file with OpenCV, whatever its format and bit depth.

    16-bit images are scaled to 8 bits, palette and CMYK images converted to RGB, alpha dropped. The size the
    header states is checked against :data:`MAX_IMAGE_PIXELS` before anything is decoded.

    Args:
        path: the image file.

    Returns:
        HWC uint8 RGB (alpha dropped) or HW uint8 gray; ``None`` when OpenCV cannot decode the file.

    Raises:
        AdvkitError: the image states more than :data:`MAX_IMAGE_PIXELS` pixels (a decompression bomb).
    """
    import cv2

    data = np.fromfile(str(path), dtype=np.uint8)
    size = image_header_size(data.tobytes())
    if size is not None and size[0] * size[1] > MAX_IMAGE_PIXELS:
        raise AdvkitError(f"{path}: the image states {size[0]} x {size[1]} pixels, over the limit of "
                          f"{MAX_IMAGE_PIXELS:,}; not decoded")
    try:
        img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    except cv2.error:  # OpenCV's own limits (CV_IO_MAX_IMAGE_PIXELS) and decoder failures
        return None
    if img is None or img.size == 0:
        return None
    if img.dtype != np.uint8:  # 16-bit PNG and friends
        top = 65535.0 if img.dtype == np.uint16 else float(np.nanmax(img)) if np.isfinite(img).any() else 1.0
        img = (np.nan_to_num(img.astype(np.float64)) / (top if top > 0 else 1.0) * 255).round().clip(0, 255)
        img = img.astype(np.uint8)
    if img.ndim == 3 and img.shape[2] == 4:
        img = img[:, :, :3]
    if img.ndim == 3 and img.shape[2] in (1, 2):  # gray, or gray + alpha
        img = img[:, :, 0]
    if img.ndim == 3:
        img = img[:, :, ::-1]  # BGR -> RGB
    return img


@register_prefix("folder")
def folder(path: Path, split: str) -> ArrayDataset:
    """ImageFolder layout: ``PATH/<class>/<image>`` (or ``PATH/<split>/<class>/<image>``).

    Files OpenCV cannot decode are skipped with one warning that counts them and names the first few.
    Images of another size than the most common one are resized to it (bilinear); all-gray folders
    load as one channel, mixed ones as RGB.

    Args:
        path: the folder.
        split: ``train`` or ``test``: picks ``PATH/<split>`` when it exists.

    Returns:
        The dataset, classes in sorted folder order.

    Raises:
        AdvkitError: no folder, no class subfolders, or no decodable image.
    """
    import cv2

    if not path.is_dir():
        raise AdvkitError(f"no such folder: {path}")
    base = path / split if (path / split).is_dir() else path
    classes = sorted(d.name for d in base.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise AdvkitError(f"{base}: expected one subfolder per class, found none")
    imgs, labels, bad = [], [], []
    for ci, cname in enumerate(classes):
        for f in sorted((base / cname).iterdir()):
            if not f.is_file() or f.name.startswith("."):
                continue
            try:
                img = read_image(f)
            except AdvkitError:  # a decompression bomb: skipped and counted like an unreadable file
                img = None
            if img is None:
                bad.append(f)
                continue
            imgs.append(img)
            labels.append(ci)
    names = ", ".join(str(b) for b in bad[:3]) + (", ..." if len(bad) > 3 else "")
    if not imgs:  # one error that says it all, no warning before it
        raise AdvkitError(f"{base}: no readable images in {len(classes)} class folder(s)"
                          + (f" ({len(bad)} unreadable: {names})" if bad else ""))
    if bad:
        warnings.warn(f"{base}: skipped {len(bad)} file(s) that are not readable images: {names}",
                      stacklevel=3)
    size = Counter(i.shape[:2] for i in imgs).most_common(1)[0][0]
    gray = all(i.ndim == 2 for i in imgs)
    out = []
    for img in imgs:
        if img.shape[:2] != size:
            img = cv2.resize(img, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
        if not gray and img.ndim == 2:
            img = np.repeat(img[:, :, None], 3, axis=2)
        out.append(img)
    x = np.stack(out)
    images = to_nchw_uint8(x if not gray else x, str(base))
    return ArrayDataset(images, torch.tensor(labels, dtype=torch.int64), classes, f"folder:{path}",
                        source=str(base), meta={"skipped": len(bad)})

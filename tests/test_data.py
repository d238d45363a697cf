"""Datasets: the embedded MNIST, npz:/folder: sources, search roots, checksums, shared CIFAR-10, batching."""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from advkit import AdvkitError
from advkit.data import ArrayDataset, data_roots, list_datasets, load_dataset
from advkit.data.core import EMBEDDED_ROOT
from conftest import REPO, SHARED, skip_without_data

EMBEDDED_MNIST = REPO / "datasets" / "mnist.npz"


@pytest.fixture
def no_data_env(monkeypatch, tmp_path):
    """No ADVKIT_DATA, and a working directory without a ./datasets folder."""
    monkeypatch.delenv("ADVKIT_DATA", raising=False)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return cwd


def _mnist_root(root: Path, flat: bool = False) -> Path:
    """A data root holding (a link to) the embedded MNIST, in the shared layout or flat."""
    target = root / "mnist.npz" if flat else root / "mnist" / "mnist.npz"
    target.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(EMBEDDED_MNIST, target)
    return root


# --------------------------------------------------------------------------------------- embedded MNIST

def test_mnist_test_split_shape_dtype_range_labels(mnist_test):
    ds = mnist_test
    assert len(ds) == 10_000
    assert ds.images.shape == (10_000, 1, 28, 28)
    assert ds.images.dtype == torch.uint8
    assert ds.labels.dtype == torch.int64 and ds.labels.shape == (10_000,)
    assert ds.image_shape == (1, 28, 28)
    assert ds.classes == [str(i) for i in range(10)] and ds.num_classes == 10
    assert sorted(ds.labels.unique().tolist()) == list(range(10))
    # the official test set, original order: the first digits are 7, 2, 1, 0, 4
    assert ds.labels[:5].tolist() == [7, 2, 1, 0, 4]
    x, y = ds[0]
    assert x.dtype == torch.float32 and x.shape == (1, 28, 28)
    assert 0.0 <= x.min().item() and x.max().item() == 1.0
    assert y.item() == 7
    xs, ys = ds.tensors()
    assert xs.dtype == torch.float32 and xs.min().item() == 0.0 and xs.max().item() == 1.0
    assert torch.equal(ys, ds.labels)
    assert ds.mean == (0.1307,) and ds.std == (0.3081,)


def test_mnist_train_statistics_match_published():
    ds = load_dataset("mnist", "train", root=str(REPO / "datasets"))
    assert ds.images.shape == (60_000, 1, 28, 28)
    assert ds.labels[:3].tolist() == [5, 0, 4]  # the official training set, original order
    # exact statistics from the pixel histogram (no float accumulation error)
    counts = torch.bincount(ds.images.flatten().long(), minlength=256).double()
    v = torch.arange(256, dtype=torch.float64) / 255
    n = counts.sum()
    mean = (counts * v).sum() / n
    std = ((counts * (v - mean) ** 2).sum() / n).sqrt()
    assert abs(mean.item() - 0.1307) < 1e-3
    assert abs(std.item() - 0.3081) < 1e-3


def test_unknown_split_is_an_error():
    with pytest.raises(AdvkitError, match="split"):
        load_dataset("mnist", "val")


# ----------------------------------------------------------------------------------------------- npz:

def _npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def test_npz_nhw_uint8(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (5, 6, 6), dtype=np.uint8)
    y = np.array([0, 1, 2, 1, 0])
    ds = load_dataset(f"npz:{_npz(tmp_path / 'a.npz', x=x, y=y)}")
    assert ds.images.shape == (5, 1, 6, 6) and ds.images.dtype == torch.uint8
    assert np.array_equal(ds.images[:, 0].numpy(), x)
    assert ds.labels.tolist() == [0, 1, 2, 1, 0] and ds.labels.dtype == torch.int64
    assert ds.classes == ["0", "1", "2"]


def test_npz_nhwc_uint8_is_transposed(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (4, 6, 5, 3), dtype=np.uint8)  # H != W so a wrong transpose shows
    ds = load_dataset(f"npz:{_npz(tmp_path / 'a.npz', x=x, y=np.arange(4))}")
    assert ds.images.shape == (4, 3, 6, 5)
    assert np.array_equal(ds.images.numpy(), x.transpose(0, 3, 1, 2))


def test_npz_nchw_float_in_unit_range(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.random((4, 3, 8, 8), dtype=np.float32)
    x[0, 0, 0, 0], x[0, 0, 0, 1] = 0.0, 1.0
    ds = load_dataset(f"npz:{_npz(tmp_path / 'a.npz', x=x, y=np.array([3, 0, 1, 2]))}")
    assert ds.images.shape == (4, 3, 8, 8)
    assert np.array_equal(ds.images.numpy(), np.round(x * 255).astype(np.uint8))
    xs, _ = ds.tensors()
    err = (xs.numpy() - x).__abs__().max()
    assert err <= 0.5 / 255 + 1e-6
    assert ds.num_classes == 4


def test_npz_train_and_test_splits(tmp_path):
    xtr = np.full((4, 6, 6), 10, np.uint8)
    xte = np.full((3, 6, 6), 200, np.uint8)
    path = _npz(tmp_path / "s.npz", x_train=xtr, y_train=np.array([0, 1, 0, 1]), x_test=xte,
                y_test=np.array([1, 1, 0]))
    tr, te = load_dataset(f"npz:{path}", "train"), load_dataset(f"npz:{path}", "test")
    assert len(tr) == 4 and len(te) == 3
    assert (tr.images == 10).all() and (te.images == 200).all()
    assert te.labels.tolist() == [1, 1, 0]


def test_npz_class_names_are_used(tmp_path):
    path = _npz(tmp_path / "c.npz", x=np.zeros((2, 4, 4), np.uint8), y=np.array([0, 1]),
                class_names=np.array(["cat", "dog", "bird"]))
    assert load_dataset(f"npz:{path}").classes == ["cat", "dog", "bird"]


def test_npz_missing_arrays_names_them(tmp_path):
    path = _npz(tmp_path / "m.npz", images=np.zeros((2, 4, 4), np.uint8), labels=np.array([0, 1]))
    with pytest.raises(AdvkitError) as e:
        load_dataset(f"npz:{path}")
    msg = str(e.value)
    assert "'x'" in msg and "'y'" in msg
    assert "images" in msg and "labels" in msg  # says what the file has


@pytest.mark.parametrize("bad", [1.5, -0.1, np.nan])
def test_npz_float_out_of_range_is_an_error(tmp_path, bad):
    x = np.zeros((2, 1, 4, 4), np.float32)
    x[1, 0, 2, 2] = bad
    path = _npz(tmp_path / "f.npz", x=x, y=np.array([0, 1]))
    with pytest.raises(AdvkitError, match=r"\[0,1\]"):
        load_dataset(f"npz:{path}")


def test_npz_bad_labels_and_shapes(tmp_path):
    neg = _npz(tmp_path / "neg.npz", x=np.zeros((2, 4, 4), np.uint8), y=np.array([0, -1]))
    with pytest.raises(AdvkitError, match=">= 0"):
        load_dataset(f"npz:{neg}")
    flt = _npz(tmp_path / "flt.npz", x=np.zeros((2, 4, 4), np.uint8), y=np.array([0.0, 1.0]))
    with pytest.raises(AdvkitError, match="integers"):
        load_dataset(f"npz:{flt}")
    short = _npz(tmp_path / "short.npz", x=np.zeros((3, 4, 4), np.uint8), y=np.array([0, 1]))
    with pytest.raises(AdvkitError, match="labels"):
        load_dataset(f"npz:{short}")
    chans = _npz(tmp_path / "chans.npz", x=np.zeros((2, 5, 4, 4), np.uint8), y=np.array([0, 1]))
    with pytest.raises(AdvkitError, match="channels"):
        load_dataset(f"npz:{chans}")


def test_npz_missing_file_and_empty_path(tmp_path):
    with pytest.raises(AdvkitError, match="no such file"):
        load_dataset(f"npz:{tmp_path / 'nope.npz'}")
    with pytest.raises(AdvkitError, match="needs a path"):
        load_dataset("npz:")


def test_npz_with_pickled_objects_is_refused(tmp_path):
    path = tmp_path / "obj.npz"
    np.savez(path, x=np.array([{"a": 1}], dtype=object), y=np.array([0]))
    with pytest.raises(AdvkitError, match="cannot read"):
        load_dataset(f"npz:{path}")


# -------------------------------------------------------------------------------------------- folder:

def _png(path: Path, img: np.ndarray) -> None:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), img)


def _bgr(b: int, g: int, r: int, size: int = 8) -> np.ndarray:
    img = np.zeros((size, size, 3), np.uint8)
    img[..., 0], img[..., 1], img[..., 2] = b, g, r
    return img


def test_folder_rgb_order_classes_and_skipped_files(tmp_path):
    import cv2

    root = tmp_path / "imgs"
    _png(root / "red" / "a.png", _bgr(0, 0, 255))      # OpenCV writes BGR: this is pure red
    _png(root / "red" / "b.png", _bgr(0, 0, 255))
    _png(root / "blue" / "c.png", _bgr(255, 0, 0))
    ok, buf = cv2.imencode(".png", _bgr(0, 255, 0))
    (root / "red" / "corrupt.png").write_bytes(buf.tobytes()[:40])  # truncated PNG
    (root / "blue" / "notes.txt").write_text("not an image")
    (root / "blue" / ".hidden.png").write_bytes(b"ignored: hidden")
    with pytest.warns(UserWarning) as rec:
        ds = load_dataset(f"folder:{root}")
    skipped = [w for w in rec if "skipped" in str(w.message)]
    assert len(skipped) == 1
    msg = str(skipped[0].message)
    assert "skipped 2 file" in msg and "corrupt.png" in msg and "notes.txt" in msg
    assert ds.meta["skipped"] == 2
    assert ds.classes == ["blue", "red"]
    assert ds.labels.tolist() == [0, 1, 1]
    x, _ = ds.tensors()
    assert x.shape == (3, 3, 8, 8)
    # blue image: channel 2 full, red images: channel 0 full (RGB order preserved)
    assert (x[0, 2] == 1.0).all() and (x[0, :2] == 0.0).all()
    for i in (1, 2):
        assert (x[i, 0] == 1.0).all() and (x[i, 1:] == 0.0).all()


def test_folder_gray_images_load_as_one_channel(tmp_path):
    root = tmp_path / "gray"
    a = np.arange(64, dtype=np.uint8).reshape(8, 8)
    _png(root / "zero" / "a.png", a)
    _png(root / "one" / "b.png", 255 - a)
    ds = load_dataset(f"folder:{root}")
    assert ds.image_shape == (1, 8, 8)
    assert ds.classes == ["one", "zero"]
    assert np.array_equal(ds.images[1, 0].numpy(), a)  # "zero" is class 1 (sorted)
    assert np.array_equal(ds.images[0, 0].numpy(), 255 - a)


def test_folder_mixed_gray_and_color_and_sizes(tmp_path):
    root = tmp_path / "mixed"
    _png(root / "a" / "1.png", np.full((8, 8), 128, np.uint8))   # gray -> repeated to RGB
    _png(root / "a" / "2.png", _bgr(0, 0, 255))
    _png(root / "b" / "3.png", _bgr(0, 255, 0, size=16))        # other size -> resized to 8x8
    ds = load_dataset(f"folder:{root}")
    assert ds.images.shape == (3, 3, 8, 8)
    assert (ds.images[0] == 128).all()
    assert (ds.images[2, 1] == 255).all() and (ds.images[2, 0] == 0).all()


def test_folder_split_subfolders(tmp_path):
    root = tmp_path / "split"
    _png(root / "train" / "x" / "a.png", np.zeros((4, 4), np.uint8))
    _png(root / "train" / "y" / "b.png", np.zeros((4, 4), np.uint8))
    _png(root / "test" / "y" / "c.png", np.full((4, 4), 255, np.uint8))
    assert len(load_dataset(f"folder:{root}", "train")) == 2
    te = load_dataset(f"folder:{root}", "test")
    assert len(te) == 1 and te.classes == ["y"] and (te.images == 255).all()


def test_folder_all_corrupt_is_an_error(tmp_path):
    root = tmp_path / "bad"
    (root / "a").mkdir(parents=True)
    (root / "a" / "x.png").write_bytes(b"\x89PNG garbage")
    (root / "a" / "y.jpg").write_bytes(b"")
    # one error that counts the unreadable files, and no warning before it (the CLI prints exactly one line)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(AdvkitError, match=r"no readable images in 1 class folder\(s\) \(2 unreadable: "):
            load_dataset(f"folder:{root}")


def test_folder_without_class_folders_or_missing(tmp_path):
    (tmp_path / "flat").mkdir()
    _png(tmp_path / "flat" / "a.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(AdvkitError, match="subfolder per class"):
        load_dataset(f"folder:{tmp_path / 'flat'}")
    with pytest.raises(AdvkitError, match="no such folder"):
        load_dataset(f"folder:{tmp_path / 'nope'}")


# ------------------------------------------------------------------------------ names, roots, checksums

def test_unknown_dataset_lists_valid_names_and_suggests():
    with pytest.raises(AdvkitError) as e:
        load_dataset("mnsit")
    msg = str(e.value)
    assert "did you mean 'mnist'" in msg
    for name in ("mnist", "fashion_mnist", "cifar10", "npz:PATH", "folder:PATH"):
        assert name in msg
    assert set(list_datasets()) >= {"mnist", "fashion_mnist", "cifar10", "npz:PATH", "folder:PATH"}


@pytest.mark.parametrize("name", ["fashion_mnist", "cifar10"])
def test_missing_dataset_says_where_it_looked(tmp_path, no_data_env, name):
    empty = tmp_path / "empty-root"
    empty.mkdir()
    with pytest.raises(AdvkitError) as e:
        load_dataset(name, "test", root=str(empty))
    msg = str(e.value)
    assert "not found" in msg
    assert str(empty) in msg  # the places looked
    assert "--download" in msg and "--data-root" in msg


def test_data_roots_order(tmp_path, monkeypatch, no_data_env):
    a, b = tmp_path / "a", tmp_path / "b"
    assert data_roots() == [Path("datasets"), EMBEDDED_ROOT]
    monkeypatch.setenv("ADVKIT_DATA", str(b))
    assert data_roots() == [b, EMBEDDED_ROOT]
    assert data_roots(str(a)) == [a, EMBEDDED_ROOT]  # explicit root beats the environment
    assert data_roots(str(EMBEDDED_ROOT)) == [EMBEDDED_ROOT]  # never listed twice


def test_advkit_data_env_is_honoured_and_explicit_root_wins(tmp_path, monkeypatch, no_data_env):
    env_root = _mnist_root(tmp_path / "env", flat=True)       # flat layout: ROOT/mnist.npz
    arg_root = _mnist_root(tmp_path / "arg")                   # shared layout: ROOT/mnist/mnist.npz
    assert load_dataset("mnist", "test").source == str(EMBEDDED_ROOT / "mnist.npz")  # nothing set: embedded
    monkeypatch.setenv("ADVKIT_DATA", str(env_root))
    ds = load_dataset("mnist", "test")
    assert ds.source == str(env_root / "mnist.npz")
    assert len(ds) == 10_000
    ds = load_dataset("mnist", "test", root=str(arg_root))
    assert ds.source == str(arg_root / "mnist" / "mnist.npz")


def test_checksum_mismatch_is_an_error(tmp_path, no_data_env):
    root = tmp_path / "root"
    bad = root / "mnist" / "mnist.npz"
    bad.parent.mkdir(parents=True)
    shutil.copyfile(EMBEDDED_MNIST, bad)
    data = bytearray(bad.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad.write_bytes(bytes(data))
    with pytest.raises(AdvkitError, match="checksum") as e:
        load_dataset("mnist", "test", root=str(root))
    assert str(bad) in str(e.value)


def test_intact_copy_passes_the_checksum(tmp_path, no_data_env):
    root = tmp_path / "root"
    (root / "mnist").mkdir(parents=True)
    shutil.copyfile(EMBEDDED_MNIST, root / "mnist" / "mnist.npz")
    ds = load_dataset("mnist", "test", root=str(root))
    assert ds.source == str(root / "mnist" / "mnist.npz") and len(ds) == 10_000


# -------------------------------------------------------------------------------- shared CIFAR-10 data

@pytest.fixture(scope="module")
def cifar_train():
    skip_without_data("cifar10")
    return load_dataset("cifar10", "train", root=str(SHARED))


def test_cifar10_train_from_shared_data(cifar_train):
    ds = cifar_train
    n_files = len(list((SHARED / "cifar10").glob("cifar10_train_*.npz")))
    assert n_files >= 1
    assert len(ds) == 10_000 * n_files  # 20,000 today: 2 of the 5 official batches
    assert ds.image_shape == (3, 32, 32)
    assert ds.classes[0] == "airplane" and ds.classes[-1] == "truck" and ds.num_classes == 10
    assert sorted(ds.labels.unique().tolist()) == list(range(10))
    means = ds.images.float().mean(dim=(0, 2, 3)) / 255
    # published means are over all 50,000 images; the first two batches differ by < 0.0015 per channel
    tol = 0.005 if n_files < 5 else 0.001
    for got, want in zip(means.tolist(), [0.4914, 0.4822, 0.4465]):
        assert abs(got - want) < tol


def test_cifar10_test_from_shared_data():
    skip_without_data("cifar10", "cifar10_test.npz")
    ds = load_dataset("cifar10", "test", root=str(SHARED))
    assert len(ds) == 10_000 and ds.image_shape == (3, 32, 32)
    assert ds.mean == (0.4914, 0.4822, 0.4465)


# ------------------------------------------------------------------------------------------ ArrayDataset

def _counting_dataset(n: int = 10) -> ArrayDataset:
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 2, 2).contiguous()
    return ArrayDataset(images, torch.arange(n), [str(i) for i in range(n)], "count")


def test_batches_cover_every_sample_once_with_shuffle():
    ds = _counting_dataset(10)
    gen = torch.Generator().manual_seed(0)
    batches = list(ds.batches(3, shuffle=True, generator=gen))
    assert [len(y) for _, y in batches] == [3, 3, 3, 1]
    ys = torch.cat([y for _, y in batches])
    assert sorted(ys.tolist()) == list(range(10))
    assert ys.tolist() != list(range(10))  # actually shuffled (1 in 10! chance of a false alarm)
    for x, y in batches:  # images travel with their labels
        assert x.dtype == torch.float32
        assert torch.equal((x[:, 0, 0, 0] * 255).round().long(), y)
    again = torch.cat([y for _, y in ds.batches(3, shuffle=True, generator=torch.Generator().manual_seed(0))])
    assert torch.equal(again, ys)  # same seed, same order


def test_batches_plain_drop_last_and_indices():
    ds = _counting_dataset(10)
    assert torch.cat([y for _, y in ds.batches(4)]).tolist() == list(range(10))
    assert [len(y) for _, y in ds.batches(4, drop_last=True)] == [4, 4]
    got = torch.cat([y for _, y in ds.batches(2, indices=torch.tensor([7, 3, 5]))])
    assert got.tolist() == [7, 3, 5]


def test_array_dataset_validates_and_subsets():
    with pytest.raises(AdvkitError, match="uint8"):
        ArrayDataset(torch.zeros(2, 1, 2, 2), torch.zeros(2, dtype=torch.int64), ["a"])
    with pytest.raises(AdvkitError, match="labels"):
        ArrayDataset(torch.zeros(2, 1, 2, 2, dtype=torch.uint8), torch.zeros(3, dtype=torch.int64), ["a"])
    ds = _counting_dataset(10)
    sub = ds.subset(4, offset=3)
    assert sub.labels.tolist() == [3, 4, 5, 6] and sub.classes == ds.classes
    assert len(ds.subset(None)) == 10 and len(ds.subset(100)) == 10

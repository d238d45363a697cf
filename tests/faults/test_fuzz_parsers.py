"""Fuzzing the parsers (Hypothesis): every generated input parses to a valid value or raises ``AdvkitError``;
nothing else escapes, and nothing hangs (a deadline per example).

Deterministic: ``derandomize=True`` and no example database, so CI sees the same examples every run.
"""

from __future__ import annotations

import io
import math
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from advkit.errors import AdvkitError

FUZZ = settings(derandomize=True, database=None, deadline=10_000, max_examples=100,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
WORK = Path(tempfile.mkdtemp(prefix="advkit-fuzz-"))  # one scratch folder (function fixtures do not mix with @given)

number_text = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-10**30, 10**30).map(str),
    st.tuples(st.integers(-300, 300), st.integers(-5, 300)).map(lambda t: f"{t[0]}/{t[1]}"),
    st.sampled_from(["nan", "-inf", "inf", "1e309", "8/255", "0x10", "1_000", " 0.1 ", "", "/", "1/0", "--1"]),
    st.text(max_size=12),
)


# ---------------------------------------------------------------------------------------------- eps lists

@FUZZ
@given(st.lists(number_text, max_size=6).map(",".join) | st.text(max_size=40))
def test_eps_lists_parse_to_finite_radii_or_refuse(text):
    from advkit.cli._common import parse_eps_list

    try:
        eps = parse_eps_list(text)
    except AdvkitError:
        return
    assert eps and all(isinstance(e, float) and math.isfinite(e) and e >= 0 for e in eps)


# ---------------------------------------------------------------------------------- --set and config files

def _train_keys():
    import dataclasses

    from advkit.train import TrainConfig

    keys = []
    for f in dataclasses.fields(TrainConfig):
        sub = getattr(TrainConfig(), f.name)
        if dataclasses.is_dataclass(sub):
            keys += [f"{f.name}.{g.name}" for g in dataclasses.fields(sub)]
        else:
            keys.append(f.name)
    return keys


yaml_scalar = st.one_of(number_text, st.booleans().map(str), st.sampled_from(
    ["null", "~", "[1, 2]", "{a: 1}", "!!python/name:os.system", "&a [*a]", "[", "'x", ".nan", ".inf", "-.inf",
     "sgd", "cosine", "linf", "0o17", "2026-01-01", "!!binary aGk=", "*x"]), st.text(max_size=20))


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(_train_keys()) | st.text(max_size=10), yaml_scalar), max_size=4))
def test_set_values_give_a_valid_config_or_refuse(pairs):
    from advkit.config import load_config
    from advkit.train import TrainConfig

    try:
        cfg = load_config(TrainConfig, None, [f"{k}={v}" for k, v in pairs])
    except AdvkitError:
        return
    assert isinstance(cfg, TrainConfig)
    assert cfg.epochs >= 1 and cfg.batch_size >= 1 and cfg.eval.n >= 1
    assert math.isfinite(cfg.optim.lr) and math.isfinite(cfg.optim.momentum) and cfg.optim.lr > 0


plain = st.recursive(
    st.none() | st.booleans() | st.integers(-10**20, 10**20) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8) | st.integers(), inner,
                                                                   max_size=4),
    max_leaves=20)


@FUZZ
@given(st.one_of(
    st.dictionaries(st.sampled_from(["epochs", "seed", "optim", "eval", "objective", "data", "model",
                                     "schedule", "batch_size", "ema", "guard"]) | st.text(max_size=6),
                    plain, max_size=4).map(lambda d: yaml.safe_dump(d)),
    plain.map(lambda d: yaml.safe_dump(d)),
    st.text(max_size=200),
    st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
))
def test_config_files_give_a_valid_config_or_refuse(text):
    from advkit.config import load_config
    from advkit.eval.config import EvalConfig
    from advkit.train import TrainConfig

    path = WORK / "fuzz.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogateescape")
    for cls in (TrainConfig, EvalConfig):
        try:
            cfg = load_config(cls, path)
        except AdvkitError:
            continue
        assert isinstance(cfg, cls)


@FUZZ
@given(st.integers(1, 9), st.integers(1, 12))
def test_alias_expansion_is_bounded(width, depth):
    """Anchors of anchors: refused exactly when the expansion passes the limit, quickly either way."""
    from advkit.config import MAX_YAML_NODES, load_yaml

    lines = ["l0: &l0 [" + ", ".join(["x"] * width) + "]"]
    lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]" for i in range(1, depth)]
    text = "\n".join(lines) + "\n"
    # nodes once expanded: the root mapping, its keys, and each level's list of lists
    size, level = 1 + depth, 1 + width
    for _ in range(depth):
        size += level
        level = 1 + width * level
    if size > MAX_YAML_NODES:
        with pytest.raises(AdvkitError, match="billion laughs"):
            load_yaml(text)
    else:
        assert len(load_yaml(text)) == depth


# ---------------------------------------------------------------------------------------------- npz files

arrays = hnp.arrays(
    dtype=st.sampled_from([np.uint8, np.int64, np.float32, np.float64, np.bool_, np.int8, np.uint16, np.complex64,
                           np.dtype("U3"), np.float16]),
    shape=hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=6))


def _valid_npz() -> bytes:
    buf = io.BytesIO()
    np.savez(buf, x=np.zeros((3, 4, 4), np.uint8), y=np.array([0, 1, 2]))
    return buf.getvalue()


def _check_npz(data: bytes) -> None:
    from advkit.data import load_dataset
    from advkit.data.core import ArrayDataset

    path = WORK / "fuzz.npz"
    path.write_bytes(data)
    try:
        ds = load_dataset(f"npz:{path}")
    except AdvkitError:
        return
    assert isinstance(ds, ArrayDataset) and len(ds) >= 1
    assert ds.images.dtype.is_floating_point is False and int(ds.labels.max()) < ds.num_classes


@FUZZ
@given(st.dictionaries(st.sampled_from(["x", "y", "x_test", "y_test", "class_names", "other"]), arrays,
                       max_size=4))
def test_npz_arrays_load_or_refuse(members):
    buf = io.BytesIO()
    np.savez(buf, **members)
    _check_npz(buf.getvalue())


@FUZZ
@given(st.data())
def test_corrupted_npz_bytes_load_or_refuse(data):
    raw = bytearray(_valid_npz())
    for _ in range(data.draw(st.integers(1, 8))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    _check_npz(bytes(raw[:cut]) if data.draw(st.booleans()) else bytes(raw))


@FUZZ
@given(st.binary(max_size=300), st.sampled_from(["x.npy", "y.npy", "x", "../x.npy"]))
def test_npz_with_foreign_members_loads_or_refuses(payload, name):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(name, payload)
        if name != "y.npy":
            zf.writestr("y.npy", payload[::-1])
    _check_npz(buf.getvalue())


# ------------------------------------------------------------------------------------------------ images

def _images() -> list[bytes]:
    import cv2

    g = np.random.default_rng(0)
    img = g.integers(0, 256, (6, 7, 3), dtype=np.uint8)
    out = []
    for ext in (".png", ".jpg", ".bmp", ".webp", ".tiff"):
        ok, buf = cv2.imencode(ext, img)
        if ok:
            out.append(buf.tobytes())
    return out


IMAGES = _images()


def _check_image(data: bytes) -> None:
    from advkit.data import read_image

    path = WORK / "fuzz.img"
    path.write_bytes(data)
    try:
        img = read_image(path)
    except AdvkitError:
        return
    if img is not None:
        assert img.dtype == np.uint8 and (img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 3))


@FUZZ
@given(st.data())
def test_corrupted_images_decode_or_refuse(data):
    raw = bytearray(data.draw(st.sampled_from(IMAGES)))
    for _ in range(data.draw(st.integers(0, 6))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        raw = raw[:data.draw(st.integers(0, len(raw)))]
    _check_image(bytes(raw))


@FUZZ
@given(st.binary(max_size=400))
def test_random_bytes_as_images_decode_or_refuse(raw):
    _check_image(raw)


@FUZZ
@given(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1))
def test_stated_png_sizes_are_checked_before_decoding(width, height):
    from inputs import bomb_png

    from advkit.data.sources import MAX_IMAGE_PIXELS, image_header_size

    data = bomb_png(width, height)
    assert image_header_size(data) == (width, height)
    path = WORK / "fuzz.png"
    path.write_bytes(data)
    from advkit.data import read_image

    if width * height > MAX_IMAGE_PIXELS:
        with pytest.raises(AdvkitError, match="over the limit"):
            read_image(path)
    else:
        _check_image(data)


# ------------------------------------------------------------------------------------------------ videos

def _video() -> bytes | None:
    from inputs import write_video

    path = WORK / "seed.avi"
    return path.read_bytes() if write_video(path, 4) else None


VIDEO = _video()


@pytest.mark.skipif(VIDEO is None, reason="this OpenCV build cannot write an MJPG AVI to mutate")
@settings(FUZZ, max_examples=60)
@given(st.data())
def test_corrupted_videos_give_rows_not_crashes(data):
    from advkit.detect.inputs import FrameStream, Source

    assert VIDEO is not None
    raw = bytearray(VIDEO)
    for _ in range(data.draw(st.integers(0, 10))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        raw = raw[:data.draw(st.integers(0, len(raw)))]
    path = WORK / "fuzz.avi"
    path.write_bytes(bytes(raw))
    items = list(FrameStream([Source(str(path), "video")], in_chans=1, size=8, every=1))
    assert items, "a video gives at least one item: frames, an error or its info"
    for it in items:
        assert (it["x"] is None) or tuple(it["x"].shape) == (1, 8, 8)
        assert it["x"] is not None or it["error"] or it["info"] is not None

"""Hostile and broken inputs for the fault suite, built small and once: checkpoints, npz files, images, videos,
YAML configs and reports, each broken in one way (and a few valid ones to break them against)."""

from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

SIZE = 8  # side of the tiny images and models


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A PNG whose header states ``width`` x ``height`` gray pixels, with a few bytes of (wrong) data: decoding
    it would allocate width * height bytes; it must be refused from the header alone."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + _png_chunk(b"IEND", b""))


def bomb_jpeg(width: int = 60_000, height: int = 60_000) -> bytes:
    """A JPEG start (SOI, a JFIF APP0, a baseline SOF0) stating ``width`` x ``height``."""
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    return b"\xff\xd8" + app0 + sof + b"\xff\xd9"


def encode(img: np.ndarray, ext: str = ".png", params: tuple = ()) -> bytes:
    import cv2

    ok, buf = cv2.imencode(ext, img, list(params))
    assert ok
    return buf.tobytes()


def palette_png(size: int = SIZE) -> bytes:
    """An 8-bit palette (colour type 3) PNG, written by hand (OpenCV writes no palettes)."""
    ihdr = struct.pack(">IIBBBBB", size, size, 8, 3, 0, 0, 0)
    plte = bytes([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255])
    raw = b"".join(b"\x00" + bytes((i + j) % 4 for j in range(size)) for i in range(size))
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"PLTE", plte)
            + _png_chunk(b"IDAT", zlib.compress(raw)) + _png_chunk(b"IEND", b""))


def cmyk_jpeg(size: int = SIZE) -> bytes | None:
    """A 4-component (CMYK) JPEG, from PIL when it is installed."""
    try:
        from PIL import Image
    except ImportError:
        return None
    import io

    buf = io.BytesIO()
    Image.new("CMYK", (size, size), (10, 200, 30, 0)).save(buf, format="JPEG")
    return buf.getvalue()


def write_video(path: Path, frames: int, size: int = 16) -> bool:
    import cv2

    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (size, size))
    if not w.isOpened():
        return False
    for i in range(frames):
        w.write(np.full((size, size, 3), 20 * i % 255, np.uint8))
    w.release()
    return path.is_file() and path.stat().st_size > 0


def _npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def build(root: Path) -> dict[str, Path]:
    """Every input the bad-input table uses, under ``root``; names -> paths."""
    from advkit.models import create_model, save
    from advkit.models.checkpoint import save_gan_net
    from advkit.models.dcgan import DCGANGenerator

    root.mkdir(parents=True, exist_ok=True)
    f: dict[str, Path] = {}
    g = np.random.default_rng(0)
    x = g.integers(0, 256, (16, SIZE, SIZE), dtype=np.uint8)
    y = np.arange(16) % 10

    # ---------------------------------------------------------------- good inputs to break
    torch.manual_seed(0)
    clf = create_model("lenet", num_classes=10, in_chans=1, input_size=SIZE, width=4, mean=[0.5], std=[0.25])
    f["clf"] = save(clf, root / "clf.safetensors", classes=[str(i) for i in range(10)])
    f["clf_rgb"] = save(create_model("lenet", num_classes=10, in_chans=3, input_size=SIZE, width=4),
                        root / "clf_rgb.safetensors")
    det = create_model("lenet", num_classes=2, in_chans=1, input_size=SIZE, width=4)
    f["det"] = save(det, root / "det.safetensors", kind="detector", classes=["real", "fake"])
    f["gen"] = save_gan_net(DCGANGenerator(z_dim=4, img_size=28, channels=1, width=4), root / "gen.safetensors",
                            "generator")
    f["npz"] = _npz(root / "data.npz", x=x, y=y)

    # ---------------------------------------------------------------- checkpoints
    good = f["clf"].read_bytes()
    (root / "ck_zero.safetensors").write_bytes(b"")
    (root / "ck_trunc.safetensors").write_bytes(good[: len(good) // 2])
    (root / "ck_random.safetensors").write_bytes(np.random.default_rng(1).bytes(4096))
    (root / "ck_header.safetensors").write_bytes(struct.pack("<Q", 1 << 40) + good[8:])  # header size: 1 TB
    from safetensors.torch import save as st_save
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(3)}, str(root / "ck_foreign.safetensors"))  # no advkit metadata
    header_len = struct.unpack("<Q", good[:8])[0]
    header = json.loads(good[8:8 + header_len])
    meta = json.loads(header["__metadata__"]["advkit"])

    def with_meta(name: str, change, state: dict | None = None) -> Path:
        m = json.loads(json.dumps(meta))
        change(m)
        path = root / f"{name}.safetensors"
        st = state if state is not None else {k: v.contiguous() for k, v in clf.state_dict().items()}
        path.write_bytes(st_save(st, metadata={"advkit": json.dumps(m)}))
        return path

    with_meta("ck_arch", lambda m: m["model"].update(arch="no_such_net"))
    with_meta("ck_huge", lambda m: m["model"].update(input_size=1_000_000_000))
    with_meta("ck_std0", lambda m: m.update(normalization={"mean": [0.5], "std": [0.0]}))
    raw = {k: v.contiguous() for k, v in clf.state_dict().items()}
    with_meta("ck_fit", lambda m: None, state={k: v[..., :1].contiguous() if v.ndim else v for k, v in raw.items()})
    nan = dict(raw)
    k0 = next(k for k, v in raw.items() if v.is_floating_point() and v.ndim > 1)
    nan[k0] = raw[k0].clone().fill_(float("nan"))
    with_meta("ck_nan", lambda m: None, state=nan)
    dmeta = json.loads(f["det"].with_suffix(".json").read_text())
    dstate = {k: v.clone().fill_(float("inf")) if v.is_floating_point() and v.ndim > 1 else v.contiguous()
              for k, v in det.state_dict().items()}
    (root / "det_nan.safetensors").write_bytes(st_save(dstate, metadata={"advkit": json.dumps(dmeta)}))
    (root / "ck_meta_json.safetensors").write_bytes(st_save(raw, metadata={"advkit": "{not json"}))
    gnan = {k: v.clone().fill_(float("nan")) if v.is_floating_point() else v
            for k, v in DCGANGenerator(z_dim=4, img_size=28, channels=1, width=4).state_dict().items()}
    gmeta = json.loads(f["gen"].with_suffix(".json").read_text())
    (root / "gen_nan.safetensors").write_bytes(st_save(gnan, metadata={"advkit": json.dumps(gmeta)}))

    # ---------------------------------------------------------------- npz files
    np.savez(root / "np_object.npz", x=np.array([{"a": 1}] * 4, dtype=object), y=np.zeros(4, np.int64))
    _npz(root / "np_nan.npz", x=np.full((4, SIZE, SIZE), np.nan, np.float32), y=np.zeros(4, np.int64))
    _npz(root / "np_range.npz", x=np.full((4, SIZE, SIZE), 3.0, np.float32), y=np.zeros(4, np.int64))
    _npz(root / "np_rank.npz", x=np.zeros((4, SIZE), np.uint8), y=np.zeros(4, np.int64))
    _npz(root / "np_dtype.npz", x=np.zeros((4, SIZE, SIZE), np.complex64), y=np.zeros(4, np.int64))
    _npz(root / "np_str.npz", x=np.array([["a"] * SIZE] * 4), y=np.zeros(4, np.int64))
    _npz(root / "np_labels2d.npz", x=x[:4], y=np.zeros((4, 2), np.int64))
    _npz(root / "np_labels_float.npz", x=x[:4], y=np.zeros(4, np.float32) + 0.5)
    _npz(root / "np_labels_neg.npz", x=x[:4], y=-np.ones(4, np.int64))
    _npz(root / "np_labels_huge.npz", x=x[:4], y=np.full(4, 2**40, np.int64))
    _npz(root / "np_labels_beyond.npz", x=x[:4], y=np.full(4, 5, np.int64), class_names=np.array(["a", "b"]))
    _npz(root / "np_missing.npz", images=x, labels=y)
    _npz(root / "np_lengths.npz", x=x, y=y[:5])
    _npz(root / "np_empty.npz", x=np.zeros((0, SIZE, SIZE), np.uint8), y=np.zeros(0, np.int64))
    _npz(root / "np_channels.npz", x=np.zeros((4, 5, SIZE, SIZE), np.uint8), y=np.zeros(4, np.int64))
    npz_bytes = f["npz"].read_bytes()
    (root / "np_trunc.npz").write_bytes(npz_bytes[: len(npz_bytes) // 2])
    (root / "np_zero.npz").write_bytes(b"")
    (root / "np_random.npz").write_bytes(np.random.default_rng(2).bytes(2048))
    np.save(root / "plain.npy", x)
    os.replace(root / "plain.npy", root / "np_npy.npz")
    _bomb_npz(root / "np_bomb.npz")
    f["npz_small_classes"] = _npz(root / "five.npz", x=x[:10], y=np.arange(10) % 5)  # fewer classes than the model

    # ---------------------------------------------------------------- images (folder: datasets and detect)
    img = g.integers(0, 256, (SIZE, SIZE), dtype=np.uint8)
    files = {
        "zero.png": b"", "trunc.png": encode(img)[:30], "text.png": b"hello, I am not an image\n" * 4,
        "bomb.png": bomb_png(), "bomb.jpg": bomb_jpeg(), "random.jpg": np.random.default_rng(3).bytes(500),
    }
    for name, data in files.items():
        d = root / "img" / name.replace(".", "_")
        (d / "a").mkdir(parents=True, exist_ok=True)
        (d / "a" / name).write_bytes(data)
        f[f"img_{name}"] = d / "a" / name
        f[f"folder_{name}"] = d
    odd = {"16bit.png": encode((img.astype(np.uint16) * 257)), "alpha.png": encode(
        np.dstack([img, img, img, img])), "palette.png": palette_png(), "gray.png": encode(img)}
    cmyk = cmyk_jpeg()
    if cmyk is not None:
        odd["cmyk.jpg"] = cmyk
    for name, data in odd.items():
        (root / "odd").mkdir(exist_ok=True)
        (root / "odd" / name).write_bytes(data)
        f[f"odd_{name}"] = root / "odd" / name
    (root / "odd_folder" / "a").mkdir(parents=True, exist_ok=True)
    (root / "odd_folder" / "b").mkdir(parents=True, exist_ok=True)
    for i, (name, data) in enumerate(odd.items()):
        (root / "odd_folder" / "ab"[i % 2] / name).write_bytes(data)
    f["odd_folder"] = root / "odd_folder"
    f["hostile_names"] = root / "hostile"
    f["hostile_names"].mkdir(exist_ok=True)
    (f["hostile_names"] / "=HYPERLINK(\"http:x\",\"y\").png").write_bytes(encode(img))
    (f["hostile_names"] / "+1.png").write_bytes(encode(img))

    # ---------------------------------------------------------------- videos
    vids = root / "vid"
    vids.mkdir(exist_ok=True)
    (vids / "empty.mp4").write_bytes(b"")
    (vids / "random.avi").write_bytes(np.random.default_rng(4).bytes(3000))
    if write_video(vids / "ok.avi", 6):
        data = (vids / "ok.avi").read_bytes()
        (vids / "trunc.avi").write_bytes(data[: len(data) // 3])
        f["video_ok"] = vids / "ok.avi"
    write_video(vids / "zero_frames.avi", 0)
    (vids / "codec.mkv").write_bytes(b"\x1aE\xdf\xa3" + b"\x00" * 200)  # an EBML head, then nothing readable
    for p in vids.iterdir():
        f[f"video_{p.stem}"] = p

    # ---------------------------------------------------------------- YAML configs
    ydir = root / "yaml"
    ydir.mkdir(exist_ok=True)
    laughs = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(8))
    configs = {
        "unknown": "epoks: 3\n", "type": "epochs: three\n",
        "python": "epochs: !!python/object/apply:os.system ['true']\n",
        "laughs": laughs, "intkey": "1: 2\n", "list": "- 1\n- 2\n", "invalid": "epochs: [1, 2\n",
        "nan": "optim:\n  lr: .nan\n", "neg": "epochs: -1\n", "bigint": "seed: 99999999999999999999999\n",
        "recursive": "a: &a [*a]\n",
    }
    for name, text in configs.items():
        (ydir / f"{name}.yaml").write_text(text)
        f[f"yaml_{name}"] = ydir / f"{name}.yaml"
    (ydir / "latin1.yaml").write_bytes("epochs: 2 # caf\xe9\n".encode("latin-1"))
    f["yaml_latin1"] = ydir / "latin1.yaml"
    f["eval_cfg"] = ydir / "eval.yaml"
    f["eval_cfg"].write_text(
        f"models: [{{model: {f['clf']}}}]\ndata: {{dataset: 'npz:{f['npz']}', n: 8}}\ndevice: cpu\n"
        "threat_models: [{norm: linf, eps: [0.1], attacks: [{name: fgsm}]}]\nchecks: {enabled: false}\n")

    # ---------------------------------------------------------------- reports
    rdir = root / "reports"
    rdir.mkdir(exist_ok=True)
    (rdir / "zero.json").write_bytes(b"")
    (rdir / "text.json").write_text("not json at all\n")
    (rdir / "list.json").write_text("[1, 2, 3]\n")
    (rdir / "schema.json").write_text(json.dumps({"schema": "advkit.report/999", "models": "x"}) + "\n")
    (rdir / "nan.json").write_text('{"models": [{"name": "m", "clean_acc": NaN}]}\n')
    (rdir / "latin1.json").write_bytes(b'{"a": "caf\xe9"}')
    for p in rdir.iterdir():
        f[f"report_{p.stem}"] = p
    return {k.replace(".", "_"): v for k, v in f.items()}  # keys usable in str.format templates


def _bomb_npz(path: Path) -> None:
    """An npz whose one array's header states 10^12 x 10^3 bytes (the data is a few bytes)."""
    import io
    import zipfile

    header = "{'descr': '|u1', 'fortran_order': False, 'shape': (1000000000000, 1000), }"
    header = header + " " * (63 - (10 + len(header)) % 64) + "\n"
    npy = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + b"\x00" * 16
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("x.npy", npy)
        zf.writestr("y.npy", npy)
    path.write_bytes(buf.getvalue())

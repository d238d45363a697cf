"""Streamed data (imagefolder:, csv:): listing, the timm-style eval transform, unreadable files, and the eval
harness's one batch loop over streamed and in-memory data."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest
import torch

from advkit.config import load_config
from advkit.data import ArrayDataset, StreamDataset, head, iter_batches, load_dataset, open_dataset
from advkit.data.stream import eval_transform, stream_fingerprint
from advkit.errors import AdvkitError
from advkit.eval.config import EvalConfig
from advkit.eval.harness import run_eval
from conftest import one_error_line, run_cli

CLASSES = ("cat", "dog", "emu")


def _write(path, img) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(path.suffix, img)
    assert ok
    path.write_bytes(buf.tobytes())


@pytest.fixture
def folder(tmp_path):
    """3 classes x 4 PNGs of assorted sizes (some gray); image k of class c is a flat gray of level 20c+5k."""
    rng = np.random.default_rng(0)
    for c, name in enumerate(CLASSES):
        for k in range(4):
            h, w = int(rng.integers(20, 60)), int(rng.integers(20, 60))
            img = np.full((h, w, 3), 20 * c + 5 * k, np.uint8) if k != 3 else np.full((h, w), 20 * c + 5 * k,
                                                                                      np.uint8)
            _write(tmp_path / "set" / name / f"img{k}.png", img)
    (tmp_path / "set" / "cat" / "notes.txt").write_text("not an image, and not listed")
    return tmp_path / "set"


def test_imagefolder_lists_classes_sorted_and_decodes_nothing_up_front(folder):
    ds = open_dataset(f"imagefolder:{folder}")
    assert isinstance(ds, StreamDataset)
    assert ds.classes == list(CLASSES)
    assert len(ds) == 12
    assert ds.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert ds.image_shape == (3, 224, 224)


@pytest.mark.parametrize("workers", [0, 2])
def test_batches_are_the_transformed_images_in_order(folder, workers):
    ds = open_dataset(f"imagefolder:{folder}", input_size=16, num_workers=workers)
    got = list(iter_batches(ds, 5))
    assert [b.batch_index for b in got] == [0, 1, 2]
    x = torch.cat([b.x for b in got])
    assert x.shape == (12, 3, 16, 16) and x.dtype == torch.uint8
    # flat images stay flat through resize and crop: pixel value = 20 * class + 5 * k
    want = torch.tensor([20 * c + 5 * k for c in range(3) for k in range(4)], dtype=torch.uint8)
    torch.testing.assert_close(x.amin((1, 2, 3)), want, rtol=0, atol=0)
    torch.testing.assert_close(x.amax((1, 2, 3)), want, rtol=0, atol=0)
    assert torch.cat([b.positions for b in got]).tolist() == list(range(12))


def test_sharding_by_batch_covers_every_batch_once(folder):
    ds = open_dataset(f"imagefolder:{folder}", input_size=8)
    ranks = [[b.batch_index for b in iter_batches(ds, 2, rank=r, world=3)] for r in range(3)]
    assert ranks == [[0, 3], [1, 4], [2, 5]]


@pytest.mark.parametrize("h, w", [(300, 400), (401, 299), (224, 224), (50, 80)])
@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
def test_eval_transform_matches_timm(h, w, interpolation):
    """timm's eval transform (resize the shorter side to floor(size / crop_pct), center crop) on a PIL image."""
    timm_data = pytest.importorskip("timm.data")
    from PIL import Image

    rng = np.random.default_rng(h * w)
    # a smooth image: interpolation kernels then agree to within rounding
    yy, xx = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
    img = np.stack([255 * yy, 255 * xx, 127 + 100 * np.sin(6 * yy + 3 * xx)], -1)
    img = (img + rng.normal(0, 2, img.shape)).clip(0, 255).astype(np.uint8)
    tf = timm_data.create_transform(input_size=(3, 64, 64), crop_pct=0.875, interpolation=interpolation,
                                    mean=(0, 0, 0), std=(1, 1, 1))
    ref = tf(Image.fromarray(img)) * 255
    ours = eval_transform(img, 64, 0.875, interpolation).float()
    assert ours.shape == ref.shape == (3, 64, 64)
    diff = (ours - ref).abs()
    # PIL and torch's antialiased kernels agree to within a rounding step (measured: mean 0.1-0.2, max 1)
    assert float(diff.mean()) < 0.5, float(diff.mean())
    assert float(diff.max()) <= 2, float(diff.max())


def test_eval_transform_geometry():
    """The crop is centered on the resized image (a marker at the center stays at the center)."""
    img = np.zeros((100, 200), np.uint8)
    img[45:55, 95:105] = 255
    out = eval_transform(img, 35, crop_pct=0.875, interpolation="bilinear")
    short = math.floor(35 / 0.875)
    assert short == 40 and out.shape == (3, 35, 35)
    ys, xs = torch.nonzero(out[0] > 128, as_tuple=True)
    assert abs(float(ys.float().mean()) - 17) <= 1 and abs(float(xs.float().mean()) - 17) <= 1


def test_csv_labels_as_names_and_as_ints(folder, tmp_path):
    rows = [f"{c}/img{k}.png" for c in CLASSES for k in range(4)]
    by_name = tmp_path / "set" / "names.csv"
    by_name.write_text("path,label\n" + "".join(f"{r},{r.split('/')[0]}\n" for r in rows))
    ds = open_dataset(f"csv:{by_name}")
    assert ds.classes == list(CLASSES)
    assert ds.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    by_int = tmp_path / "set" / "ints.csv"
    by_int.write_text("".join(f"{r},{4 - i // 4}\n" for i, r in enumerate(rows)))
    ds = open_dataset(f"csv:{by_int}")
    assert ds.classes == ["0", "1", "2", "3", "4"]
    assert ds.labels.tolist() == [4] * 4 + [3] * 4 + [2] * 4


def test_csv_bad_row_is_one_line(tmp_path):
    f = tmp_path / "l.csv"
    f.write_text("a.png,cat\nb.png\n")
    with pytest.raises(AdvkitError, match=r"l\.csv:2: expected 'path,label', got 1 field"):
        open_dataset(f"csv:{f}")


def _break(folder):
    (folder / "dog" / "img1.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (folder / "emu" / "img2.png").write_bytes(b"")


def test_unreadable_files_are_fatal_with_the_list(folder):
    _break(folder)
    with pytest.raises(AdvkitError) as e:
        load_dataset(f"imagefolder:{folder}")
    msg = str(e.value)
    assert "\n" not in msg
    assert "2 unreadable image file(s)" in msg and "img1.png" in msg and "img2.png" in msg and "--skip-bad" in msg


def test_unreadable_files_skipped_on_request(folder):
    _break(folder)
    ds = open_dataset(f"imagefolder:{folder}", input_size=8, skip_bad=True).materialize()
    assert isinstance(ds, ArrayDataset)
    assert len(ds) == 10 and sorted(p.split("/")[-1] for p in ds.meta["skipped"]) == ["img1.png", "img2.png"]
    assert ds.labels.tolist() == [0] * 4 + [1] * 3 + [2] * 3


def test_head_and_fingerprint_do_not_depend_on_batching(folder):
    ds = open_dataset(f"imagefolder:{folder}", input_size=8)
    x, y = head(ds, 5)
    assert x.shape == (5, 3, 8, 8) and y.tolist() == [0, 0, 0, 0, 1]
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    fps = set()
    for bs in (1, 5, 12):
        got = list(iter_batches(ds, bs))
        fps.add(stream_fingerprint(b"".join(b.digests for b in got), torch.cat([b.y for b in got]), (3, 8, 8)))
    assert len(fps) == 1


# ---------------------------------------------------------------------------------------------- the harness

def _cfg(spec: str, *extra: str) -> EvalConfig:
    return load_config(EvalConfig, None, [
        f"data.dataset={spec}", "data.n=null", "data.input_size=16", "data.num_workers=0", "batch_size=5",
        "models=[{model: small_cnn}]", "seed=3", "examples=2", "checks.n=10",
        "threat_models=[{norm: linf, eps: [0.02, 0.1], attacks: [fgsm, {name: pgd, steps: 2}]}]", *extra])


def test_eval_on_streamed_equals_eval_on_the_same_tensors(folder, one_thread):
    """A streamed set and the same images in memory share the batch loop: identical outcomes."""
    cfg = _cfg(f"imagefolder:{folder}")
    torch.manual_seed(0)
    rep = run_eval(cfg, device=torch.device("cpu"))
    assert rep is not None
    assert rep["data"]["classes"] == list(CLASSES)
    assert rep["data"]["n"] == 12 and rep["data"]["shape"] == [3, 16, 16]
    assert rep["data"]["transform"] == {"input_size": 16, "crop_pct": 0.875, "interpolation": "bilinear"}
    assert rep["data"]["skipped"] == []
    mem = open_dataset(f"imagefolder:{folder}", input_size=16).materialize()
    torch.manual_seed(0)
    rep2 = run_eval(cfg, device=torch.device("cpu"), data=mem)
    assert rep2 is not None
    a, b = rep["models"][0], rep2["models"][0]
    assert a["clean_acc"] == b["clean_acc"]
    assert a["threat_models"][0]["per_sample"] == b["threat_models"][0]["per_sample"]
    assert [w["robust"] for w in a["threat_models"][0]["worst_case"]] == \
           [w["robust"] for w in b["threat_models"][0]["worst_case"]]
    assert [c["name"] for c in a["checks"]] == [c["name"] for c in b["checks"]]


def test_eval_fatal_and_skipped_bad_files(folder, one_thread):
    _break(folder)
    with pytest.raises(AdvkitError, match=r"2 unreadable image file\(s\)"):
        run_eval(_cfg(f"imagefolder:{folder}"), device=torch.device("cpu"))
    rep = run_eval(_cfg(f"imagefolder:{folder}", "data.skip_bad=true"), device=torch.device("cpu"))
    assert rep is not None
    assert rep["data"]["n"] == 10 and rep["models"][0]["n"] == 10
    assert sorted(rep["data"]["skipped"]) == ["dog/img1.png", "emu/img2.png"]
    fooled = rep["models"][0]["threat_models"][0]["per_sample"]["fooled_by"]
    assert all(len(row) == 10 for row in fooled)


def test_in_memory_batches_are_the_old_slices(mnist_test):
    data = mnist_test.subset(70)
    got = list(iter_batches(data, 32, rank=1, world=2))
    assert [b.batch_index for b in got] == [1]
    torch.testing.assert_close(got[0].x, data.images[32:64], rtol=0, atol=0)
    torch.testing.assert_close(got[0].y, data.labels[32:64], rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------- the CLI

def test_cli_eval_bad_files_one_line_then_skip(folder, tmp_path, capsys, one_thread):
    _break(folder)
    sets = [f"data.dataset=imagefolder:{folder}", "data.n=null", "data.input_size=16", "data.num_workers=0",
            "models=[{model: small_cnn}]", "checks.enabled=false", "batch_size=6",
            "threat_models=[{norm: linf, eps: [0.05], attacks: [fgsm]}]"]
    args = ["eval", "--quiet", *[a for s in sets for a in ("--set", s)]]
    code, _, err = run_cli(capsys, *args, "--out", tmp_path / "r1")
    assert code == 2
    # the note that small_cnn starts from random weights comes first; then exactly one error line
    line = one_error_line("\n".join(ln for ln in err.splitlines() if "random initialisation" not in ln))
    assert "2 unreadable image file(s)" in line and "--skip-bad" in line
    assert not (tmp_path / "r1" / "report.json").exists()
    code, _, err = run_cli(capsys, *args, "--skip-bad", "--out", tmp_path / "r2")
    assert code == 0, err
    rep = json.loads((tmp_path / "r2" / "report.json").read_text())
    assert rep["data"]["n"] == 10 and sorted(rep["data"]["skipped"]) == ["dog/img1.png", "emu/img2.png"]
    assert rep["data"]["classes"] == list(CLASSES)


def test_cli_attack_reads_an_imagefolder_at_the_model_size(folder, tmp_path, capsys, one_thread):
    code, _, err = run_cli(capsys, "attack", "--fgsm", "--eps", "0.05", "--model", "small_cnn", "--data",
                           f"imagefolder:{folder}", "-n", "7", "--batch-size", "4", "--out", tmp_path / "a")
    assert code == 0, err
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["n"] == 7
    with np.load(tmp_path / "a" / "adversarial.npz") as z:
        assert z["x"].shape == (7, 3, 224, 224)
        assert z["y"].tolist() == [0, 0, 0, 0, 1, 1, 1]


def test_in_memory_report_keeps_its_old_data_section_and_config(one_thread):
    """In-memory data: the fingerprint is still report.paired's over all images, no streaming keys appear."""
    from advkit.report.paired import fingerprint

    g = torch.Generator().manual_seed(0)
    data = ArrayDataset(torch.randint(0, 256, (12, 1, 8, 8), dtype=torch.uint8, generator=g),
                        torch.arange(12) % 3, list(CLASSES), "tiny")
    cfg = load_config(EvalConfig, None, [
        "data.n=null", "models=[{model: small_cnn}]", "checks.enabled=false", "batch_size=5",
        "threat_models=[{norm: linf, eps: [0.05], attacks: [fgsm]}]"])
    torch.manual_seed(0)
    rep = run_eval(cfg, device=torch.device("cpu"), data=data)
    assert rep is not None
    assert rep["data"] == {"dataset": cfg.data.dataset, "split": "test", "n": 12, "num_classes": 3, "shape": [1, 8, 8],
                           "fingerprint": fingerprint(data.images, data.labels)}
    assert set(rep["config"]["data"]) == {"dataset", "split", "n", "root"}


def test_csv_missing_file_is_reported_by_path(folder, tmp_path):
    f = tmp_path / "set" / "l.csv"
    f.write_text("cat/img0.png,cat\ncat/gone.png,cat\ndog/img0.png,dog\n")
    with pytest.raises(AdvkitError, match=r"1 unreadable image file\(s\): .*gone\.png \(no such file\)"):
        open_dataset(f"csv:{f}", input_size=8).materialize()
    ds = open_dataset(f"csv:{f}", input_size=8, skip_bad=True).materialize()
    assert ds.labels.tolist() == [0, 1] and ds.classes == ["cat", "dog"]

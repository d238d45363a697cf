"""``advkit detect`` and :mod:`advkit.detect.infer`: scores equal the detector's own softmax on the same
preprocessed tensor, resizing and channel conversion, video frame sampling, face crops, error rows, fatal
cases (exit 2, one line), CSV/JSON outputs, and worker-count invariance. Tiny random detectors, CPU only."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from advkit.detect.infer import CSV_KEYS, ROW_KEYS, VIDEO_KEYS, detect_paths, load_detector
from advkit.detect.inputs import FrameStream, Source, face_box, is_sampled
from advkit.models import create_model, ensemble, save
from conftest import one_error_line, run_cli, shared_data, skip_without_data

N_FRAMES, VIDEO_FPS = 30, 10


@pytest.fixture(autouse=True)
def _cwd(tmp_path, monkeypatch):
    """Run from an empty folder so stray outputs land in tmp."""
    monkeypatch.delenv("ADVKIT_DEBUG", raising=False)
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")




def _detector(path: Path, in_chans: int = 3, size: int = 32, num_classes: int = 2, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    model = create_model("small_cnn", num_classes=num_classes, in_chans=in_chans, input_size=size)
    return save(model, path, classes=["real", "fake"][:num_classes] + ["other"] * (num_classes - 2))


@pytest.fixture(scope="module")
def det(tmp_path_factory) -> Path:
    """A random-init RGB 32x32 detector checkpoint."""
    return _detector(tmp_path_factory.mktemp("det") / "det.safetensors")


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    """30 frames of 64x64 noise, 10 fps, MJPG in .avi (each frame different, so indices are checkable)."""
    path = tmp_path_factory.mktemp("video") / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), VIDEO_FPS, (64, 64))
    assert writer.isOpened()
    rng = np.random.default_rng(3)
    for _ in range(N_FRAMES):
        writer.write(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    writer.release()
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    assert n == N_FRAMES, "OpenCV on this machine cannot read back its own MJPG .avi"
    return path


def _rgb(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _write_rgb(path: Path, rgb: np.ndarray) -> Path:
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb[:, :, ::-1]))
    return path


def _expected_score(model, img: np.ndarray) -> float:
    """The detector's softmax(class 1) on an HWC/HW uint8 image already at the model's size and channels."""
    x = torch.from_numpy(np.ascontiguousarray(img)).float() / 255
    x = x[None] if x.ndim == 2 else x.permute(2, 0, 1)
    with torch.no_grad():
        return model(x[None]).softmax(1)[0, 1].item()


def _video_frames(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f[:, :, ::-1])
    cap.release()
    return frames


# ---------------------------------------------------------------- scores and preprocessing

def test_scores_equal_the_models_softmax_on_the_same_input(det, tmp_path):
    model = load_detector(det)
    rgb, gray = _rgb(32, 32, 0), _rgb(32, 32, 1)[:, :, 0]
    big, small, mixed = _rgb(60, 80, 2), _rgb(16, 16, 3), _rgb(20, 40, 4)
    files = {"a_rgb.png": (_write_rgb(tmp_path / "a_rgb.png", rgb), rgb, None),
             "b_gray.png": (tmp_path / "b_gray.png", np.repeat(gray[:, :, None], 3, axis=2), None),
             "c_big.png": (_write_rgb(tmp_path / "c_big.png", big),
                           cv2.resize(big, (32, 32), interpolation=cv2.INTER_AREA), "80x60"),
             "d_small.png": (_write_rgb(tmp_path / "d_small.png", small),
                             cv2.resize(small, (32, 32), interpolation=cv2.INTER_LINEAR), "16x16"),
             "e_mixed.png": (_write_rgb(tmp_path / "e_mixed.png", mixed),
                             cv2.resize(mixed, (32, 32), interpolation=cv2.INTER_LINEAR), "40x20")}
    assert cv2.imwrite(str(tmp_path / "b_gray.png"), gray)
    res = detect_paths(model, [tmp_path], workers=0, threshold=0.5)
    assert [Path(r["path"]).name for r in res.rows] == sorted(files)
    for r in res.rows:
        _, img, resized = files[Path(r["path"]).name]
        assert set(r) == set(ROW_KEYS)
        torch.testing.assert_close(r["score_fake"], _expected_score(model, img), rtol=0, atol=1e-6)
        assert r["label"] == ("fake" if r["score_fake"] >= 0.5 else "real")
        assert r["frame"] is None and r["error"] is None and r["kind"] == "image"
        assert r["resized_from"] == resized
    assert res.summary["scored"] == 5 and res.summary["resized"] == 3 and res.summary["errors"] == 0
    assert res.summary["images_per_s"] > 0 and res.videos == []


def test_an_ensemble_detector_scores_the_mean_of_its_members_logits(tmp_path):
    members = [load_detector(_detector(tmp_path / f"m{i}.safetensors", seed=i)) for i in range(2)]
    path = save(ensemble(members), tmp_path / "ens.safetensors", classes=["real", "fake"])
    model = load_detector(path)
    rgb = _rgb(32, 32, 6)
    res = detect_paths(model, [_write_rgb(tmp_path / "x.png", rgb)], workers=0)
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        expected = ((members[0](x) + members[1](x)) / 2).softmax(1)[0, 1].item()
        alone = [m(x).softmax(1)[0, 1].item() for m in members]
    torch.testing.assert_close(res.rows[0]["score_fake"], expected, rtol=0, atol=1e-6)
    assert min(abs(expected - a) for a in alone) > 1e-4  # not one member's score


def test_gray_detector_takes_rgb_images_as_luma(tmp_path):
    model = load_detector(_detector(tmp_path / "gray.safetensors", in_chans=1, size=28))
    rgb = _rgb(28, 28, 5)
    res = detect_paths(model, [_write_rgb(tmp_path / "x.png", rgb)], workers=0)
    expected = _expected_score(model, cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
    torch.testing.assert_close(res.rows[0]["score_fake"], expected, rtol=0, atol=1e-6)
    assert res.rows[0]["resized_from"] is None


def test_threshold_sets_the_label(det, tmp_path):
    model = load_detector(det)
    path = _write_rgb(tmp_path / "x.png", _rgb(32, 32, 6))
    s = detect_paths(model, [path], workers=0).rows[0]["score_fake"]
    assert detect_paths(model, [path], workers=0, threshold=s).rows[0]["label"] == "fake"
    assert detect_paths(model, [path], workers=0, threshold=min(1.0, s + 1e-4)).rows[0]["label"] == "real"


# ---------------------------------------------------------------- videos

@pytest.mark.parametrize("every", [1, 7, 10, 30])
def test_video_every_n_frames(det, video, every):
    model = load_detector(det)
    res = detect_paths(model, [video], every=every, workers=0)
    assert [r["frame"] for r in res.rows] == list(range(0, N_FRAMES, every))
    assert len(res.rows) == math.ceil(N_FRAMES / every)
    frames = _video_frames(video)
    for r in res.rows[:3]:
        img = cv2.resize(frames[r["frame"]], (32, 32), interpolation=cv2.INTER_AREA)
        torch.testing.assert_close(r["score_fake"], _expected_score(model, img), rtol=0, atol=1e-6)
        assert r["kind"] == "frame" and r["resized_from"] == "64x64"
    (v,) = res.videos
    scores = [r["score_fake"] for r in res.rows]
    assert set(v) == set(VIDEO_KEYS)
    assert v["frames"] == N_FRAMES and v["fps"] == pytest.approx(VIDEO_FPS)
    assert v["frames_sampled"] == v["frames_scored"] == len(scores) and v["frames_no_face"] == 0
    torch.testing.assert_close(v["score_mean"], sum(scores) / len(scores))
    assert v["score_max"] == max(scores)
    assert v["share_fake"] == sum(s >= 0.5 for s in scores) / len(scores)


def test_video_fps_sampling(det, video):
    res = detect_paths(load_detector(det), [video], fps=2.5, workers=0)
    assert [r["frame"] for r in res.rows] == list(range(0, N_FRAMES, 4))  # 10 fps video: every 4th frame
    assert [i for i in range(N_FRAMES) if is_sampled(i, None, 3.0, 30.0)] == [0, 10, 20]
    assert [i for i in range(6) if is_sampled(i, None, 60.0, 30.0)] == list(range(6))


# ---------------------------------------------------------------- faces

def test_face_box_grows_1_3x_around_the_centre_and_clips():
    assert face_box(50, 60, 40, 40, 200, 200) == (44, 54, 96, 106)      # 52x52 box, same centre (70, 80)
    assert face_box(10, 20, 100, 50, 200, 200) == (0, 12, 125, 78)     # x clipped at 0
    assert face_box(150, 150, 50, 50, 200, 180) == (142, 142, 200, 180)  # clipped right and bottom
    assert face_box(0, 0, 10, 10, 10, 10) == (0, 0, 10, 10)


class _StubCascade:
    def __init__(self, boxes):
        self.boxes = boxes

    def detectMultiScale(self, gray, **kw):
        assert gray.ndim == 2
        return np.array(self.boxes, dtype=np.int32).reshape(-1, 4)


def test_face_crop_takes_the_largest_face(tmp_path):
    rgb = _rgb(200, 200, 7)
    path = _write_rgb(tmp_path / "x.png", rgb)
    stream = FrameStream([Source(str(path), "image")], in_chans=3, size=32, faces=True)
    stream._cascade = _StubCascade([[0, 0, 20, 20], [50, 60, 40, 40]])
    (item,) = list(stream)
    assert item["face_box"] == "44,54,96,106" and item["resized_from"] == "52x52"
    expected = cv2.resize(rgb[54:106, 44:96], (32, 32), interpolation=cv2.INTER_AREA)
    torch.testing.assert_close(item["x"], torch.from_numpy(expected).permute(2, 0, 1).float() / 255)
    stream._cascade = _StubCascade([])
    (item,) = list(stream)
    assert item["x"] is None and item["error"] == "no face"


def test_faces_missing_are_rows_and_counts(capsys, det, video, tmp_path):
    img = _write_rgb(tmp_path / "noise.png", _rgb(64, 64, 8))
    out = tmp_path / "r.json"
    code, stdout, err = run_cli(capsys, "detect", "--ckpt", str(det), str(img), str(video), "--faces", "--every", "10",
                             "--workers", "0", "--out", str(out))
    assert code == 0, err
    data = json.loads(out.read_text())
    assert [(Path(r["path"]).name, r["frame"], r["error"]) for r in data["rows"]] == \
        [("noise.png", None, "no face"), ("clip.avi", 0, "no face"), ("clip.avi", 10, "no face"),
         ("clip.avi", 20, "no face")]
    assert all(r["score_fake"] is None and r["label"] is None for r in data["rows"])
    assert data["summary"]["no_face"] == 4 and data["summary"]["scored"] == 0 and data["summary"]["errors"] == 0
    (v,) = data["videos"]
    assert v["frames_no_face"] == 3 and v["frames_scored"] == 0 and v["score_mean"] is None
    assert "without a face 4" in stdout and "error: no face" in stdout


# ---------------------------------------------------------------- the command, its outputs and errors

def _mixed_folder(root: Path, video: Path) -> Path:
    folder = root / "in"
    (folder / "sub").mkdir(parents=True)
    _write_rgb(folder / "a.png", _rgb(32, 32, 10))
    _write_rgb(folder / "sub" / "b.jpg", _rgb(48, 48, 11))
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (folder / "notes.txt").write_text("not an image")
    (folder / "clip.avi").write_bytes(video.read_bytes())
    return folder


@pytest.mark.parametrize("suffix", [".csv", ".json"])
def test_outputs_have_every_row_and_parse(capsys, det, video, tmp_path, suffix):
    folder = _mixed_folder(tmp_path, video)
    out = tmp_path / f"scores{suffix}"
    code, stdout, err = run_cli(capsys, "detect", "--ckpt", str(det), str(folder), "--every", "15", "--workers", "0",
                             "--out", str(out))
    assert code == 0, err
    expect = [("a.png", None), ("clip.avi", 0), ("clip.avi", 15), ("corrupt.png", None), ("b.jpg", None)]
    if suffix == ".csv":
        with out.open(newline="") as f:
            reader = csv.DictReader(f)
            assert tuple(reader.fieldnames) == CSV_KEYS
            rows = list(reader)
        frames = [r for r in rows if r["kind"] != "video_summary"]
        assert [(Path(r["path"]).name, int(r["frame"]) if r["frame"] else None) for r in frames] == expect
        (summary,) = [r for r in rows if r["kind"] == "video_summary"]
        assert summary["frames_scored"] == "2" and 0 <= float(summary["score_fake"]) <= 1
        bad = frames[3]
    else:
        data = json.loads(out.read_text())
        assert set(data) == {"rows", "videos", "summary"}
        frames = data["rows"]
        assert [(Path(r["path"]).name, r["frame"]) for r in frames] == expect
        assert data["summary"]["scored"] == 4 and data["summary"]["errors"] == 1
        assert data["summary"]["skipped_files"] == 1 and data["summary"]["resized"] == 3
        assert data["videos"][0]["frames_scored"] == 2
        bad = frames[3]
    assert bad["error"] == "not a readable image" and bad["score_fake"] in ("", None)
    assert "error: not a readable image" in stdout and "summary: 4 images/frames scored" in stdout
    assert "images/s" in stdout and f"wrote {out}" in stdout


def test_missing_path_among_others_is_an_error_row(capsys, det, tmp_path):
    img = _write_rgb(tmp_path / "a.png", _rgb(32, 32, 12))
    code, stdout, err = run_cli(capsys, "detect", "--ckpt", str(det), str(img), str(tmp_path / "nope.png"),
                             "--workers", "0")
    assert code == 0, err
    assert "error: no such file or folder" in stdout and "errors 1" in stdout


def test_long_tables_are_cut(capsys, det, tmp_path):
    for i in range(25):
        _write_rgb(tmp_path / f"{i:02d}.png", _rgb(8, 8, i))
    code, stdout, _ = run_cli(capsys, "detect", "--ckpt", str(det), str(tmp_path), "--workers", "0")
    assert code == 0
    assert "24.png" not in stdout and "19.png" in stdout and "... 5 more rows" in stdout
    assert "summary: 25 images/frames scored" in stdout


def test_fatal_cases_exit_2_with_one_line(capsys, det, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("x")
    code, out, err = run_cli(capsys, "detect", "--ckpt", str(det), str(empty))
    assert code == 2 and "no images or videos" in one_error_line(err) and out == ""

    code, _, err = run_cli(capsys, "detect", "--ckpt", str(det), str(tmp_path / "missing.png"))
    assert code == 2 and "no such file" in one_error_line(err)

    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 4096)
    code, _, err = run_cli(capsys, "detect", "--ckpt", str(det), str(broken), "--workers", "0")
    assert code == 2 and "nothing could be scored" in one_error_line(err)

    img = _write_rgb(tmp_path / "a.png", _rgb(32, 32, 13))
    code, _, err = run_cli(capsys, "detect", "--ckpt", str(det), str(img), "--every", "2", "--fps", "1")
    assert code == 2 and "not both" in one_error_line(err)


def test_refuses_generators_and_non_detectors(capsys, tmp_path):
    from advkit.gan import DCGANGenerator, save_gan_net

    img = _write_rgb(tmp_path / "a.png", _rgb(28, 28, 14))
    gen = save_gan_net(DCGANGenerator(z_dim=8, img_size=28, channels=1, width=4), tmp_path / "g", "generator")
    code, out, err = run_cli(capsys, "detect", "--ckpt", str(gen), str(img))
    assert code == 2 and "GAN generator checkpoint" in one_error_line(err) and out == ""

    three = _detector(tmp_path / "three.safetensors", num_classes=3)
    code, _, err = run_cli(capsys, "detect", "--ckpt", str(three), str(img))
    assert code == 2 and "3-class classifier" in one_error_line(err)


def test_bad_out_suffix_exits_2_before_any_work(capsys, tmp_path):
    img = _write_rgb(tmp_path / "a.png", _rgb(32, 32, 15))
    out = tmp_path / "scores.txt"
    code, stdout, err = run_cli(capsys, "detect", "--ckpt", str(tmp_path / "no-such.safetensors"), str(img),
                             "--out", str(out))
    assert code == 2 and ".csv or .json" in one_error_line(err) and stdout == ""
    assert not out.exists()


def test_workers_do_not_change_results(det, video, tmp_path):
    folder = _mixed_folder(tmp_path, video)
    model = load_detector(det)
    one = detect_paths(model, [folder], every=5, workers=0, batch_size=3)
    two = detect_paths(model, [folder], every=5, workers=2, batch_size=4)
    def strip(rows: list[dict]) -> list[dict]:
        return [{k: v for k, v in r.items() if k != "score_fake"} for r in rows]

    def scores(rows: list[dict]) -> list[float]:
        return [math.nan if r["score_fake"] is None else r["score_fake"] for r in rows]

    assert strip(one.rows) == strip(two.rows) and len(one.rows) == 3 + 6
    torch.testing.assert_close(scores(one.rows), scores(two.rows), rtol=0, atol=1e-6, equal_nan=True)
    assert two.summary["workers"] == 2 and one.summary["scored"] == two.summary["scored"] == 2 + 6
    assert [v["frames_scored"] for v in one.videos] == [v["frames_scored"] for v in two.videos] == [6]


def test_faces_in_a_real_video(capsys, tmp_path):
    """A short video made here from two of the shared faces (a real FFHQ face, then a StyleGAN2 one, at two
    places on a gray canvas, a faceless stretch between): OpenCV's cascade finds each face where it was put,
    the scores are the detector's own on the 1.3x crops, and the faceless frames are rows saying so."""
    skip_without_data("faces_real_vs_gan", "faces_test.npz")
    faces = np.load(shared_data("faces_real_vs_gan", "faces_test.npz"))
    real, fake = faces["x"][faces["y"] == 0][0], faces["x"][faces["y"] == 1][0]
    canvas = np.full((240, 320, 3), 128, np.uint8)
    spots = {"real": (20, 40), "fake": (150, 40)}  # (x, y) of the 160x160 face image

    def frame(face, spot):
        f = canvas.copy()
        if face is not None:
            f[spot[1]:spot[1] + 160, spot[0]:spot[0] + 160] = cv2.resize(face, (160, 160),
                                                                         interpolation=cv2.INTER_CUBIC)
        return f

    path = tmp_path / "faces.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), VIDEO_FPS, (320, 240))
    for i in range(N_FRAMES):
        face, spot = (real, spots["real"]) if i < 10 else (None, None) if i < 20 else (fake, spots["fake"])
        writer.write(np.ascontiguousarray(frame(face, spot)[:, :, ::-1]))
    writer.release()
    det = _detector(tmp_path / "det.safetensors", size=128)
    out = tmp_path / "r.json"
    code, stdout, err = run_cli(capsys, "detect", "--ckpt", str(det), str(path), "--faces", "--every", "5",
                                "--workers", "0", "--out", str(out))
    assert code == 0, err
    data = json.loads(out.read_text())
    rows = {r["frame"]: r for r in data["rows"]}
    assert sorted(rows) == [0, 5, 10, 15, 20, 25]
    assert [rows[f]["error"] for f in (10, 15)] == ["no face", "no face"]
    model, decoded = load_detector(det), _video_frames(path)
    for f, who in ((0, "real"), (5, "real"), (20, "fake"), (25, "fake")):
        r = rows[f]
        assert r["error"] in (None, "") and r["face_box"], r
        x0, y0, x1, y1 = map(int, r["face_box"].split(","))
        sx, sy = spots[who]
        assert sx <= (x0 + x1) / 2 <= sx + 160 and sy <= (y0 + y1) / 2 <= sy + 160, (f, r["face_box"])
        assert 60 <= x1 - x0 <= 320 and r["resized_from"] == f"{x1 - x0}x{y1 - y0}"
        crop = decoded[f][y0:y1, x0:x1]
        interp = cv2.INTER_AREA if min(crop.shape[:2]) >= 128 else cv2.INTER_LINEAR
        expected = _expected_score(model, cv2.resize(np.ascontiguousarray(crop), (128, 128), interpolation=interp))
        assert r["score_fake"] == pytest.approx(expected, abs=1e-5)
    (v,) = data["videos"]
    assert v["frames_scored"] == 4 and v["frames_no_face"] == 2
    assert data["summary"]["no_face"] == 2 and data["summary"]["scored"] == 4
    # without --faces every sampled frame is scored whole (resized from 320x240)
    code, _, err = run_cli(capsys, "detect", "--ckpt", str(det), str(path), "--every", "5", "--workers", "0",
                           "--out", str(out))
    assert code == 0, err
    rows = json.loads(out.read_text())["rows"]
    assert len(rows) == 6 and all(r["score_fake"] is not None and r["resized_from"] == "320x240" for r in rows)

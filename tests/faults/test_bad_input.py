"""Bad input, systematically: every command and every kind of input it takes, each broken in one way.

Each case asserts what the CLI promises for bad input: exit code 2, exactly one ``advkit: error:`` line on
stderr that names the bad thing, no traceback, and no new or changed file in the output folder. A few
odd-but-valid inputs (16-bit, palette, alpha and CMYK images; data with fewer classes than the model) are
accepted instead, and their cases assert that.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from inputs import build

from conftest import one_error_line, run_cli

CPU = ("--device", "cpu")
ATTACK = ("attack", "--fgsm", "--model", "{clf}", "--data", "npz:{npz}", "-n", "4", *CPU, "--quiet",
          "--out", "{out}/run")
EVAL = ("eval", "-c", "{eval_cfg}", "--quiet", "--out", "{out}/run")
TRAIN = ("train", "classifier", "--out", "{out}/run")
GAN = ("train", "gan", "--out", "{out}/run")
DETECTOR = ("train", "detector", "--out", "{out}/run")
GENERATE = ("generate", "--ckpt", "{gen}", "-n", "2", *CPU, "--out", "{out}/gen.npz")
DETECT = ("detect", "--ckpt", "{det}", "--workers", "0", *CPU, "--out", "{out}/scores.csv")
DIFF = ("report", "diff")


def _with(base: tuple, **changes: str) -> tuple:
    """``base`` with option values replaced (``model="{ck_nan}"`` replaces the value after ``--model``) or
    added."""
    args = list(base)
    for opt, value in changes.items():
        flag = "--" + opt.replace("_", "-") if len(opt) > 1 else "-" + opt
        if flag in args:
            args[args.index(flag) + 1] = value
        else:
            args += [flag, value]
    return tuple(args)


def _ck(name: str) -> str:
    return "{root}/" + name + ".safetensors"


def _np(name: str) -> str:
    return "npz:{root}/" + name + ".npz"


# (case id, argv with {placeholders}, a fragment the one error line must hold: it names the bad thing)
CASES: list[tuple[str, tuple, str]] = [
    # ------------------------------------------------------------------ checkpoints (attack --model)
    ("ckpt-zero-bytes", _with(ATTACK, model=_ck("ck_zero")), "ck_zero.safetensors"),
    ("ckpt-truncated", _with(ATTACK, model=_ck("ck_trunc")), "ck_trunc.safetensors"),
    ("ckpt-random-bytes", _with(ATTACK, model=_ck("ck_random")), "ck_random.safetensors"),
    ("ckpt-header-size-1TB", _with(ATTACK, model=_ck("ck_header")), "ck_header.safetensors"),
    ("ckpt-foreign-safetensors", _with(ATTACK, model=_ck("ck_foreign")), "without advkit metadata"),
    ("ckpt-metadata-not-json", _with(ATTACK, model=_ck("ck_meta_json")), "not valid json"),
    ("ckpt-unknown-arch", _with(ATTACK, model=_ck("ck_arch")), "no_such_net"),
    ("ckpt-input-size-1e9", _with(ATTACK, model=_ck("ck_huge")), "input_size"),
    ("ckpt-tensors-do-not-fit", _with(ATTACK, model=_ck("ck_fit")), "do not match"),
    ("ckpt-nan-weights", _with(ATTACK, model=_ck("ck_nan")), "nan"),
    ("ckpt-std-zero", _with(ATTACK, model=_ck("ck_std0")), "std"),
    ("ckpt-gan-as-classifier", _with(ATTACK, model="{gen}"), "generator"),
    ("ckpt-missing", _with(ATTACK, model="{root}/nothing.safetensors"), "nothing"),
    # ------------------------------------------------------------------ npz data (attack --data)
    ("npz-object-array", _with(ATTACK, data=_np("np_object")), "python objects"),
    ("npz-nan-images", _with(ATTACK, data=_np("np_nan")), "finite"),
    ("npz-values-out-of-range", _with(ATTACK, data=_np("np_range")), "[0,1]"),
    ("npz-wrong-rank", _with(ATTACK, data=_np("np_rank")), "shape"),
    ("npz-complex-dtype", _with(ATTACK, data=_np("np_dtype")), "complex"),
    ("npz-string-images", _with(ATTACK, data=_np("np_str")), "np_str.npz"),
    ("npz-labels-2d", _with(ATTACK, data=_np("np_labels2d")), "labels"),
    ("npz-labels-float", _with(ATTACK, data=_np("np_labels_float")), "labels"),
    ("npz-labels-negative", _with(ATTACK, data=_np("np_labels_neg")), ">= 0"),
    ("npz-labels-2^40", _with(ATTACK, data=_np("np_labels_huge")), "classes"),
    ("npz-labels-beyond-class-names", _with(ATTACK, data=_np("np_labels_beyond")), "out of range"),
    ("npz-missing-keys", _with(ATTACK, data=_np("np_missing")), "'x' and 'y'"),
    ("npz-mismatched-lengths", _with(ATTACK, data=_np("np_lengths")), "labels"),
    ("npz-no-images", _with(ATTACK, data=_np("np_empty")), "no images"),
    ("npz-five-channels", _with(ATTACK, data=_np("np_channels")), "channels"),
    ("npz-truncated", _with(ATTACK, data=_np("np_trunc")), "np_trunc.npz"),
    ("npz-zero-bytes", _with(ATTACK, data=_np("np_zero")), "np_zero.npz"),
    ("npz-random-bytes", _with(ATTACK, data=_np("np_random")), "np_random.npz"),
    ("npz-plain-npy", _with(ATTACK, data=_np("np_npy")), "np_npy.npz"),
    ("npz-header-states-1TB", _with(ATTACK, data=_np("np_bomb")), "limit"),
    ("npz-missing-file", _with(ATTACK, data=_np("nothing")), "nothing.npz"),
    ("cifar10-missing-names-the-real-layout", _with(ATTACK, data="cifar10"), "cifar10_train_*.npz"),
    # ------------------------------------------------------------------ image folders (attack --data folder:)
    *[(f"folder-{name}", _with(ATTACK, data="folder:{folder_" + name.replace(".", "_") + "}"), "no readable images")
      for name in ("zero.png", "trunc.png", "text.png", "bomb.png", "bomb.jpg", "random.jpg")],
    # ------------------------------------------------------------------ attack parameters
    ("attack-eps-negative", _with(ATTACK, eps="-0.1"), "eps"),
    ("attack-eps-nan", _with(ATTACK, eps="nan"), "eps"),
    ("attack-eps-inf", _with(ATTACK, eps="inf"), "eps"),
    ("attack-eps-absurd", _with(ATTACK, eps="1e9"), "eps"),
    ("attack-eps-not-a-number", _with(ATTACK, eps="abc"), "eps"),
    ("attack-eps-empty", _with(ATTACK, eps=","), "eps"),
    ("attack-eps-divide-by-zero", _with(ATTACK, eps="8/0"), "eps"),
    ("attack-steps-zero", (*ATTACK[:1], "--pgd", *ATTACK[2:], "--steps", "0"), "steps"),
    ("attack-steps-negative", (*ATTACK[:1], "--pgd", *ATTACK[2:], "--steps", "-1"), "steps"),
    ("attack-steps-absurd", (*ATTACK[:1], "--pgd", *ATTACK[2:], "--steps", "10000000000"), "steps"),
    ("attack-restarts-zero", (*ATTACK[:1], "--pgd", *ATTACK[2:], "--restarts", "0"), "restarts"),
    ("attack-alpha-nan", (*ATTACK[:1], "--pgd", *ATTACK[2:], "--alpha", "nan"), "alpha"),
    ("attack-alpha-negative", (*ATTACK[:1], "--pgd", *ATTACK[2:], "--alpha", "-0.1"), "alpha"),
    ("attack-alpha-inf", (*ATTACK[:1], "--pgd", *ATTACK[2:], "--alpha", "inf"), "alpha"),
    ("attack-n-zero", _with(ATTACK, n="0"), "-n"),
    ("attack-n-negative", _with(ATTACK, n="-5"), "-n"),
    ("attack-batch-size-zero", (*ATTACK, "--batch-size", "0"), "batch-size"),
    ("attack-seed-huge", (*ATTACK, "--seed", "99999999999999999999999"), "seed"),
    ("attack-two-attacks", (*ATTACK, "--pgd"), "exactly one"),
    ("attack-unknown-option", (*ATTACK, "--epz", "0.1"), "--epz"),
    ("attack-bad-norm", (*ATTACK[:1], "--pgd", *ATTACK[2:], "--norm", "l3"), "l3"),
    ("attack-n-not-int", _with(ATTACK, n="many"), "many"),
    ("attack-unknown-attack", (*ATTACK[:1], "--attack", "no_such_attack", *ATTACK[2:]), "no_such_attack"),
    ("attack-data-fewer-classes-wrong-shape", _with(ATTACK, model="{det}", data="mnist"), "shape"),
    ("attack-out-is-a-file", _with(ATTACK, out="{out}/keep.txt"), "keep.txt"),
    ("attack-out-under-a-file", _with(ATTACK, out="{out}/keep.txt/run"), "keep.txt"),
    # ------------------------------------------------------------------ eval configs
    *[(f"eval-yaml-{name}", _with(EVAL, c="{yaml_" + name + "}"), needle) for name, needle in (
        ("unknown", "epoks"), ("type", "epochs"), ("python", "python"), ("laughs", "billion laughs"),
        ("intkey", "not a name"), ("list", "mapping"), ("invalid", "not valid yaml"), ("latin1", "utf-8"),
        ("recursive", "refers to itself"))],
    ("eval-config-missing", _with(EVAL, c="{root}/nothing.yaml"), "nothing.yaml"),
    ("eval-set-n-zero", (*EVAL, "--set", "data.n=0"), "data.n"),
    ("eval-set-batch-size-text", (*EVAL, "--set", "batch_size=abc"), "batch_size"),
    ("eval-set-batch-size-negative", (*EVAL, "--set", "batch_size=-3"), "batch_size"),
    ("eval-set-eps-nan", (*EVAL, "--set", "threat_models=[{{norm: linf, eps: [.nan]}}]"), "nan"),
    ("eval-set-seed-huge", (*EVAL, "--set", "seed=99999999999999999999999"), "seed"),
    ("eval-gate-eps-not-evaluated", (*EVAL, "--set", "gates.min_robust_acc={{0.5: 0.1}}"), "0.5"),
    ("eval-gate-attack-not-evaluated", (*EVAL, "--set", "gates.max_robust_acc={{apgd-ce: {{0.1: 0.5}}}}"), "apgd-ce"),
    ("eval-baseline-zero-bytes", (*EVAL, "--baseline", "{report_zero}"), "zero.json"),
    ("eval-baseline-not-json", (*EVAL, "--baseline", "{report_text}"), "text.json"),
    ("eval-model-nan-weights", (*EVAL, "--set", "models=[{{model: " + _ck("ck_nan") + "}}]"), "nan"),
    ("eval-data-object-npz", (*EVAL, "--set", "data.dataset=" + _np("np_object")), "python objects"),
    ("eval-out-is-a-file", _with(EVAL, out="{out}/keep.txt"), "keep.txt"),
    # ------------------------------------------------------------------ train classifier
    *[(f"train-yaml-{name}", (*TRAIN, "-c", "{yaml_" + name + "}"), needle) for name, needle in (
        ("unknown", "epoks"), ("type", "epochs"), ("python", "python"), ("laughs", "billion laughs"),
        ("intkey", "not a name"), ("latin1", "utf-8"), ("bigint", "seed"), ("nan", "optim.lr"),
        ("neg", "epochs"))],
    ("train-set-momentum-nan", (*TRAIN, "--set", "optim.momentum=.nan"), "optim.momentum"),
    ("train-set-eval-n-zero", (*TRAIN, "--set", "eval.n=0"), "eval.n"),
    ("train-set-eval-steps-negative", (*TRAIN, "--set", "eval.steps=-1"), "eval.steps"),
    ("train-set-lr-inf", (*TRAIN, "--set", "optim.lr=.inf"), "optim.lr"),
    ("train-set-eps-negative", (*TRAIN, "--set", "objective.eps=-0.1"), "objective.eps"),
    ("train-set-wrong-type", (*TRAIN, "--set", "epochs=[1, 2]"), "epochs"),
    ("train-set-no-equals", (*TRAIN, "--set", "epochs"), "key=value"),
    ("train-resume-plain-tensor", ("train", "classifier", "--out", "{out}/tensor_run", "--resume",
                                   "--set", "data.dataset=npz:{npz}", "--set", "device=cpu",
                                   "--set", "tensorboard=false"), "last.ckpt"),
    ("train-out-is-a-file", _with(TRAIN, out="{out}/keep.txt"), "keep.txt"),
    # ------------------------------------------------------------------ train gan / detector
    ("gan-yaml-unknown", (*GAN, "-c", "{yaml_unknown}"), "epoks"),
    ("gan-set-lr-negative", (*GAN, "--set", "lr_d=-1"), "lr_d"),
    ("gan-set-epochs-zero", (*GAN, "--set", "epochs=0"), "epochs"),
    ("gan-set-batch-nan", (*GAN, "--set", "batch_size=.nan"), "batch_size"),
    ("detector-yaml-laughs", (*DETECTOR, "-c", "{yaml_laughs}"), "billion laughs"),
    ("detector-set-ensemble-zero", (*DETECTOR, "--set", "ensemble=0"), "ensemble"),
    ("detector-set-eval-n-one", (*DETECTOR, "--set", "evaluation.n=1"), "evaluation.n"),
    # ------------------------------------------------------------------ generate
    ("generate-ckpt-zero-bytes", _with(GENERATE, ckpt=_ck("ck_zero")), "ck_zero"),
    ("generate-ckpt-classifier", _with(GENERATE, ckpt="{clf}"), "classifier"),
    ("generate-ckpt-nan-weights", _with(GENERATE, ckpt="{root}/gen_nan.safetensors"), "nan"),
    ("generate-n-zero", _with(GENERATE, n="0"), "-n"),
    ("generate-batch-size-zero", (*GENERATE, "--batch-size", "0"), "batch-size"),
    ("generate-out-txt", _with(GENERATE, out="{out}/x.txt"), "x.txt"),
    ("generate-seed-huge", (*GENERATE, "--seed", "99999999999999999999999"), "seed"),
    # ------------------------------------------------------------------ detect: images, videos, options
    *[(f"detect-only-{name}", (*DETECT, "{" + key + "}"), name.split("-")[0]) for name, key in (
        ("zero.png", "img_zero_png"), ("trunc.png", "img_trunc_png"), ("text.png", "img_text_png"),
        ("bomb.png-100000x100000", "img_bomb_png"), ("bomb.jpg-60000x60000", "img_bomb_jpg"),
        ("random.jpg", "img_random_jpg"), ("empty.mp4", "video_empty"), ("random.avi", "video_random"),
        ("zero_frames.avi", "video_zero_frames"), ("codec.mkv", "video_codec"))],
    ("detect-missing-path", (*DETECT, "{root}/nothing.png"), "nothing.png"),
    ("detect-ckpt-10-classes", (*_with(DETECT, ckpt="{clf}"), "{odd_gray_png}"), "10-class"),
    ("detect-ckpt-nan-weights", (*_with(DETECT, ckpt=_ck("det_nan")), "{odd_gray_png}"), "nan"),
    ("detect-ckpt-random-bytes", (*_with(DETECT, ckpt=_ck("ck_random")), "{odd_gray_png}"), "ck_random"),
    ("detect-out-txt", (*_with(DETECT, out="{out}/scores.txt"), "{odd_gray_png}"), "scores.txt"),
    ("detect-out-is-a-folder", (*_with(DETECT, out="{out}"), "{odd_gray_png}"), "is a directory"),
    ("detect-out-under-a-file", (*_with(DETECT, out="{out}/keep.txt/s.csv"), "{odd_gray_png}"), "keep.txt"),
    ("detect-threshold-nan", (*DETECT, "--threshold", "nan", "{odd_gray_png}"), "threshold"),
    ("detect-every-zero", (*DETECT, "--every", "0", "{odd_gray_png}"), "every"),
    ("detect-fps-negative", (*DETECT, "--fps", "-1", "{odd_gray_png}"), "fps"),
    ("detect-batch-size-zero", (*DETECT, "--batch-size", "0", "{odd_gray_png}"), "batch-size"),
    ("detect-workers-negative", (*DETECT, "--workers", "-1", "{odd_gray_png}"), "workers"),
    # ------------------------------------------------------------------ report diff
    *[(f"diff-{name}", (*DIFF, "{report_" + name + "}", "{report_" + name + "}"), name) for name in (
        "zero", "text", "list", "schema", "nan", "latin1")],
    ("diff-missing-file", (*DIFF, "{root}/nothing.json", "{report_zero}"), "nothing.json"),
    ("diff-tol-negative", (*DIFF, "{report_zero}", "{report_zero}", "--tol", "-1"), "tol"),
]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("bad_inputs")
    files = {k: str(v) for k, v in build(root).items()}
    files["root"] = str(root)
    return files


def _snapshot(folder: Path) -> dict[str, tuple]:
    """Every file and folder under ``folder``: kind, size, mtime and content hash."""
    out = {}
    for dirpath, dirs, names in os.walk(folder):
        for d in dirs:
            out[os.path.relpath(os.path.join(dirpath, d), folder)] = ("dir",)
        for n in names:
            p = Path(dirpath, n)
            st = p.stat()
            out[str(p.relative_to(folder))] = (st.st_size, st.st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
    return out


@pytest.fixture
def out_dir(tmp_path) -> Path:
    """The output folder: a file in it already (``keep.txt``), and a run folder whose ``last.ckpt`` is a plain
    tensor (the resume case); a bad input must change none of it."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("already here\n")
    (out / "tensor_run").mkdir()
    torch.save(torch.zeros(3), out / "tensor_run" / "last.ckpt")
    return out


def test_the_table_is_large_and_its_ids_unique():
    ids = [c[0] for c in CASES]
    assert len(ids) == len(set(ids))
    assert len(ids) >= 60
    commands = {" ".join(a for a in c[1][:2] if not a.startswith("-") and "{" not in a) for c in CASES}
    assert {"attack", "eval", "train classifier", "train gan", "train detector", "generate", "detect",
            "report diff"} <= commands


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case, inputs, out_dir, capsys, one_thread, monkeypatch):
    name, template, needle = case
    monkeypatch.setenv("ADVKIT_DATA", str(Path(inputs["root"]) / "no-datasets-here"))
    args = [a.format(out=out_dir, **inputs) for a in template]
    before = _snapshot(out_dir)
    code, _, err = run_cli(capsys, *args)
    assert "Traceback" not in err
    line = one_error_line(err)
    assert code == 2, (code, err)
    assert needle.lower() in line.lower(), line
    assert "allow_pickle" not in line  # never advise loading a file unsafely
    assert _snapshot(out_dir) == before


# ---------------------------------------------------------------------- odd but valid: accepted


def test_odd_image_modes_are_converted_and_scored(inputs, tmp_path, capsys, one_thread):
    """16-bit, alpha, palette, gray (and CMYK when PIL can write one) images are converted, not refused."""
    odd = sorted(k for k in inputs if k.startswith("odd_") and k != "odd_folder")
    assert len(odd) >= 4
    out = tmp_path / "scores.json"
    code, _, err = run_cli(capsys, "detect", "--ckpt", inputs["det"], "--workers", "0", *CPU, "--out", out,
                           *[inputs[k] for k in odd])
    assert code == 0, err
    import json

    rows = json.loads(out.read_text())["rows"]
    assert len(rows) == len(odd)
    assert all(r["error"] is None and 0 <= r["score_fake"] <= 1 for r in rows), rows


def test_read_image_converts_odd_modes(inputs):
    from advkit.data import read_image

    for key in ("odd_16bit_png", "odd_alpha_png", "odd_palette_png", "odd_gray_png", "odd_cmyk_jpg"):
        if key not in inputs:
            continue
        img = read_image(Path(inputs[key]))
        assert img is not None and img.dtype == np.uint8, key
        assert img.shape[:2] == (8, 8) and (img.ndim == 2 or img.shape[2] == 3), (key, img.shape)
    gray16 = read_image(Path(inputs["odd_16bit_png"]))
    gray8 = read_image(Path(inputs["odd_gray_png"]))
    np.testing.assert_array_equal(gray16, gray8)  # v * 257 / 65535 * 255 rounds back to v


def test_a_folder_of_odd_images_loads_for_attack(inputs, tmp_path, capsys, one_thread):
    """A ``folder:`` set of odd-mode images attacks like any other (two classes, fewer than the model's 10)."""
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "attack", "--fgsm", "--model", inputs["clf_rgb"], "--data",
                           f"folder:{inputs['odd_folder']}", *CPU, "--quiet", "--out", out)
    assert code == 0, err
    assert (out / "summary.json").is_file() and (out / "adversarial.npz").is_file()


def test_data_with_fewer_classes_than_the_model_is_attacked(inputs, tmp_path, capsys, one_thread):
    """Defect 2: a 5-class npz against a 10-class model drew the grid with an IndexError after writing
    adversarial.npz; now the run completes (a prediction beyond the data's names is shown as its number)."""
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "attack", "--fgsm", "--model", inputs["clf"], "--data",
                           f"npz:{inputs['npz_small_classes']}", "-n", "10", *CPU, "--quiet", "--out", out)
    assert code == 0, err
    import json

    summary = json.loads((out / "summary.json").read_text())
    assert summary["n"] == 10 and len(list(out.glob("grid_eps*.png"))) == 1


def test_detect_csv_cells_cannot_be_formulas(inputs, tmp_path, capsys, one_thread, monkeypatch):
    """Defect 7: a file named ``=HYPERLINK(...).png`` lands in the CSV as text (a leading quote), as does
    any cell starting with = + - @, a tab or a carriage return."""
    import csv

    out = tmp_path / "scores.csv"
    monkeypatch.chdir(inputs["hostile_names"])  # relative paths: the cells start with the hostile names
    code, _, err = run_cli(capsys, "detect", "--ckpt", inputs["det"], "--workers", "0", *CPU, "--out", out,
                           *sorted(os.listdir(".")))
    assert code == 0, err
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    paths = sorted(r["path"] for r in rows)
    assert len(paths) == 2
    for p in paths:
        assert p.startswith("'"), p
        assert Path(p[1:]).name in ("+1.png", '=HYPERLINK("http:x","y").png')
    for r in rows:
        for cell in r.values():
            assert not cell or cell[0] not in "=+-@\t\r", r


def test_a_bomb_among_good_images_is_one_error_row(inputs, tmp_path, capsys, one_thread):
    """Defect 1: a decompression bomb aborted the whole detect run; now it is one error row, refused from its
    header, and the other images are scored."""
    out = tmp_path / "scores.json"
    code, _, err = run_cli(capsys, "detect", "--ckpt", inputs["det"], "--workers", "0", *CPU, "--out", out,
                           inputs["img_bomb_png"], inputs["odd_gray_png"])
    assert code == 0, err
    import json

    rows = {Path(r["path"]).name: r for r in json.loads(out.read_text())["rows"]}
    assert "100000 x 100000" in rows["bomb.png"]["error"] and rows["bomb.png"]["score_fake"] is None
    assert rows["gray.png"]["error"] is None


@pytest.mark.parametrize("size, refused", [((100_000, 100_000), True), ((9000, 8000), True),
                                           ((8192, 8192), False), ((8, 8), False)])
def test_image_header_size_is_checked_before_decoding(size, refused, tmp_path):
    from inputs import bomb_jpeg, bomb_png

    from advkit.data.sources import MAX_IMAGE_PIXELS, image_header_size, read_image
    from advkit.errors import AdvkitError

    jpeg_size = (min(size[0], 65535), min(size[1], 65535))  # JPEG states at most 65535 per side
    for ext, data, stated in ((".png", bomb_png(*size), size), (".jpg", bomb_jpeg(*jpeg_size), jpeg_size)):
        assert image_header_size(data) == stated
        assert (stated[0] * stated[1] > MAX_IMAGE_PIXELS) == refused
        path = tmp_path / f"x{ext}"
        path.write_bytes(data)
        if refused:
            with pytest.raises(AdvkitError, match=f"{stated[0]} x {stated[1]}"):
                read_image(path)
        else:
            assert read_image(path) is None  # a header without decodable data: unreadable, not refused


# ---------------------------------------------------------------------- output folders that cannot take files

# every command that writes, with its output as {target}
WRITERS = {
    "attack": _with(ATTACK, out="{target}"),
    "eval": _with(EVAL, out="{target}"),
    "train-classifier": ("train", "classifier", "--out", "{target}", "--set", "data.dataset=npz:{npz}",
                         "--set", "device=cpu", "--set", "epochs=1", "--set", "eval.n=4", "--set", "tensorboard=false",
                         "--set", "guard.enabled=false", "--set", "model.kwargs={{width: 4}}"),
    "generate": _with(GENERATE, out="{target}.npz"),
    "detect": (*_with(DETECT, out="{target}.csv"), "{odd_gray_png}"),
}


def _read_only_folder(tmp_path: Path) -> Path:
    """A folder this process cannot create files in: a chmod 555 folder, or (as root, whom permissions do not
    stop) a read-only system folder."""
    from advkit.runtime.io import ensure_writable_dir

    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        return ro
    for candidate in (Path("/sys"), Path("/proc")):
        try:
            ensure_writable_dir(candidate)
        except Exception:
            return candidate
    pytest.skip("running as root with no read-only folder to write into")


@pytest.mark.parametrize("command", list(WRITERS))
def test_an_unwritable_out_is_refused_before_any_work(command, inputs, tmp_path, capsys, one_thread, monkeypatch):
    """Defect 5: an unwritable --out was found only after the work (eval: 52 s), and detect named its temp
    file; now it is refused first, naming the folder."""
    ro = _read_only_folder(tmp_path)
    monkeypatch.setenv("ADVKIT_DATA", str(Path(inputs["root"]) / "no-datasets-here"))
    before = sorted(os.listdir(ro))
    args = [a.format(target=ro / "run", out=tmp_path, **inputs) for a in WRITERS[command]]
    code, _, err = run_cli(capsys, *args)
    line = one_error_line(err)
    assert code == 2, err
    assert f"cannot write in {ro}" in line and ".tmp" not in line, line
    assert sorted(os.listdir(ro)) == before


@pytest.mark.parametrize("command", list(WRITERS))
def test_a_full_disk_leaves_the_previous_files_and_says_so(command, inputs, tmp_path, capsys, one_thread,
                                                           monkeypatch):
    """ENOSPC during the output writes (simulated at the fsync of every atomic write): one error line, exit 2,
    and whatever the output held before is intact."""
    import errno

    from advkit.runtime import io as rio

    monkeypatch.setenv("ADVKIT_DATA", str(Path(inputs["root"]) / "no-datasets-here"))
    out = tmp_path / "out"
    out.mkdir()
    target = out / "run"
    for previous in (target / "summary.json", target / "report.json", target / "model.safetensors",
                     out / "run.npz", out / "run.csv"):
        previous.parent.mkdir(exist_ok=True)
        previous.write_text("the previous run's file\n")
    before = _snapshot(out)

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(rio.os, "fsync", full)
    args = [a.format(target=target, out=out, **inputs) for a in WRITERS[command]]
    code, _, err = run_cli(capsys, *args)
    line = one_error_line(err)
    assert code == 2, err
    assert "no space left on device" in line.lower(), line
    assert _snapshot(out) == before

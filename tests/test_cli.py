"""The ``advkit`` command line, in-process through ``advkit.cli.main`` (plus two real subprocesses):
``advkit attack`` outputs and numbers, ``advkit train classifier`` outputs, the cached default model, and
the one-line error contract for bad input."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from advkit.models import read_metadata, save
from conftest import REPO, SHARED, needs_data, one_error_line, tiny_cnn

ATTACK_SUMMARY_KEYS = {"attack", "params", "norm", "model", "data", "split", "n", "device", "seed", "targeted",
                       "target", "results", "total_time_s"}
RESULT_KEYS = {"eps", "clean_acc", "robust_acc", "success_rate", "mean_norm", "max_norm", "time_s",
               "images_per_s"}


@pytest.fixture(autouse=True)
def _cli_env(tmp_path, monkeypatch):
    """Run every command from an empty folder (stray outputs land in tmp), without ADVKIT_DEBUG/DATA."""
    monkeypatch.delenv("ADVKIT_DEBUG", raising=False)
    monkeypatch.delenv("ADVKIT_DATA", raising=False)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)


def run_cli(capsys, *args) -> tuple[int, str, str]:
    """``advkit ARGS`` in-process: (exit code, stdout, stderr)."""
    from advkit.cli import main

    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_error_line(code: int, err: str, *fragments: str) -> str:
    assert code == 2, err
    assert "Traceback" not in err and "internal error" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("advkit: error:")]
    assert len(errors) == 1, err
    assert lines == errors, f"stderr has more than the error line: {err!r}"
    for f in fragments:
        assert f in errors[0], errors[0]
    return errors[0]


def _table_row(out: str, eps: float) -> list[float]:
    """The numbers of the table row for ``eps`` (percent signs stripped)."""
    for line in out.splitlines():
        parts = line.split()
        if parts and re.fullmatch(r"[0-9][0-9.e+-]*", parts[0]) and abs(float(parts[0]) - eps) < 1e-3 \
                and len(parts) >= 7:
            return [float(p.rstrip("%")) for p in parts]
    raise AssertionError(f"no table row for eps {eps} in:\n{out}")


# ----------------------------------------------------------------------------------------------- help

def test_help_in_process(capsys):
    code, out, err = run_cli(capsys, "--help")
    assert code == 0 and "attack" in out and "train" in out
    code, out, _ = run_cli(capsys, "attack", "--help")
    assert code == 0 and "--fgsm" in out and "--pgd" in out and "--eps" in out
    code, out, _ = run_cli(capsys, "--version")
    assert code == 0 and "advkit" in out and re.search(r"\d+\.\d+", out)


def test_help_subprocess():
    r = subprocess.run([sys.executable, "-m", "advkit", "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "attack" in r.stdout and "train" in r.stdout
    assert "Traceback" not in r.stderr


def test_bad_input_subprocess_has_no_traceback(tmp_path):
    missing = tmp_path / "missing.safetensors"
    r = subprocess.run([sys.executable, "-m", "advkit", "attack", "--fgsm", "--model", str(missing), "-n", "4",
                        "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert_one_error_line(r.returncode, r.stderr, "not found", str(missing))
    assert not (tmp_path / "out" / "summary.json").exists()


# ------------------------------------------------------------------------------------------- attack

def test_fgsm_attack_outputs(capsys, trained_lenet, tmp_path, mnist_test):
    model, ckpt = trained_lenet
    out_dir = tmp_path / "fgsm"
    code, out, err = run_cli(capsys, "attack", "--fgsm", "--model", ckpt, "-n", 64, "--eps", "0.1",
                             "--out", out_dir)
    assert code == 0, err
    summary = json.loads((out_dir / "summary.json").read_text())
    assert ATTACK_SUMMARY_KEYS <= set(summary)
    assert summary["attack"] == "fgsm" and summary["norm"] == "linf" and summary["n"] == 64
    assert summary["data"] == "mnist" and summary["split"] == "test" and summary["targeted"] is False
    (r,) = summary["results"]
    assert RESULT_KEYS <= set(r)
    assert r["eps"] == pytest.approx(0.1)
    assert 0.9 <= r["clean_acc"] <= 1.0
    assert 0.0 <= r["robust_acc"] < r["clean_acc"]
    assert 0.0 < r["success_rate"] <= 1.0
    assert 0.0 < r["mean_norm"] <= r["max_norm"] <= 0.1 + 1e-6
    # the table shows these numbers
    row = _table_row(out, 0.1)
    assert row[1] == pytest.approx(100 * r["clean_acc"], abs=0.01)
    assert row[2] == pytest.approx(100 * r["robust_acc"], abs=0.01)
    assert row[3] == pytest.approx(100 * r["success_rate"], abs=0.1)
    assert row[5] == pytest.approx(r["max_norm"], abs=1e-4)

    with np.load(out_dir / "adversarial.npz", allow_pickle=False) as z:
        assert {"x", "y", "eps", "x_adv", "pred_adv"} <= set(z.files)
        x, y, x_adv, pred_adv = z["x"], z["y"], z["x_adv"], z["pred_adv"]
        assert x_adv.shape == (1, 64, 1, 28, 28) and x.shape == (64, 1, 28, 28)
        assert pred_adv.shape == (1, 64) and z["eps"].tolist() == pytest.approx([0.1])
    xs, ys = mnist_test.subset(64).tensors()
    assert np.array_equal(x, xs.numpy()) and np.array_equal(y, ys.numpy())
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    assert np.abs(x_adv - x).max() <= 0.1 + 1e-6
    assert (pred_adv[0] == y).mean() == pytest.approx(r["robust_acc"])
    with torch.no_grad():  # the saved predictions are the model's on the saved adversarial images
        assert torch.equal(model(torch.from_numpy(x_adv[0])).argmax(1), torch.from_numpy(pred_adv[0]))

    import cv2
    png = out_dir / "grid_eps0.1.png"
    img = cv2.imread(str(png))
    assert img is not None and img.ndim == 3
    assert img.shape[0] >= 3 * 96 and img.shape[1] >= 8 * 96  # 3 rows of 8 upscaled tiles
    assert img.std() > 10  # not a blank image


def test_pgd_eps_sweep(capsys, trained_lenet, tmp_path):
    _, ckpt = trained_lenet
    out_dir = tmp_path / "pgd"
    code, out, err = run_cli(capsys, "attack", "--pgd", "--model", ckpt, "-n", 64, "--eps", "0.1,0.2,0.3",
                             "--out", out_dir)
    assert code == 0, err
    summary = json.loads((out_dir / "summary.json").read_text())
    res = summary["results"]
    assert [r["eps"] for r in res] == pytest.approx([0.1, 0.2, 0.3])
    robust = [r["robust_acc"] for r in res]
    assert robust[0] >= robust[1] >= robust[2]
    assert robust[2] < 0.1
    assert robust[0] < res[0]["clean_acc"]
    for r in res:
        assert r["max_norm"] <= r["eps"] + 1e-6
        assert r["clean_acc"] == res[0]["clean_acc"]
    for eps in ("0.1", "0.2", "0.3"):
        assert (out_dir / f"grid_eps{eps}.png").stat().st_size > 1000
    with np.load(out_dir / "adversarial.npz", allow_pickle=False) as z:
        assert z["x_adv"].shape == (3, 64, 1, 28, 28) and z["pred_adv"].shape == (3, 64)


def test_fraction_eps_and_json_output(capsys, trained_lenet, tmp_path):
    _, ckpt = trained_lenet
    out_dir = tmp_path / "json"
    code, out, err = run_cli(capsys, "attack", "--fgsm", "--model", ckpt, "-n", 32, "--eps", "8/255",
                             "--json", "--out", out_dir)
    assert code == 0, err
    printed = json.loads(out)  # stdout is only the JSON
    assert printed == json.loads((out_dir / "summary.json").read_text())
    assert printed["results"][0]["eps"] == pytest.approx(8 / 255, abs=1e-12)
    assert printed["results"][0]["max_norm"] <= 8 / 255 + 1e-6


def test_foolbox_attack(capsys, trained_lenet, tmp_path):
    _, ckpt = trained_lenet
    out_dir = tmp_path / "fb"
    code, out, err = run_cli(capsys, "attack", "--attack", "foolbox:LinfPGD", "--steps", 5, "--model", ckpt,
                             "-n", 32, "--eps", "0.3", "--out", out_dir)
    assert code == 0, err
    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["attack"] == "foolbox:LinfPGD" and summary["norm"] == "linf"
    assert summary["params"] == {"steps": 5}
    (r,) = summary["results"]
    assert r["max_norm"] <= 0.3 + 1e-5
    assert r["robust_acc"] < r["clean_acc"]


def test_registry_model_name_is_random_init(capsys, tmp_path):
    code, out, err = run_cli(capsys, "attack", "--fgsm", "--model", "lenet", "-n", 16, "--out", tmp_path / "r")
    assert code == 0, err
    assert "random init" in out
    assert (tmp_path / "r" / "summary.json").is_file()


@pytest.mark.parametrize("mode", ["random", "least-likely", "next"])
def test_targeted_attack_aims_at_targets_never_the_true_label(capsys, trained_lenet, tmp_path, mode):
    model, ckpt = trained_lenet
    out_dir = tmp_path / mode
    code, out, err = run_cli(capsys, "attack", "--pgd", "--targeted", "--target", mode, "--model", ckpt, "-n", 64,
                             "--eps", "0.05,0.3", "--steps", 20, "--out", out_dir)
    assert code == 0, err
    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["targeted"] is True and summary["target"] == mode
    assert f"targeted ({mode} targets" in out
    with np.load(out_dir / "adversarial.npz", allow_pickle=False) as z:
        x, y, targets, pred_clean, pred_adv = z["x"], z["y"], z["targets"], z["pred_clean"], z["pred_adv"]
    assert targets.shape == y.shape and (targets != y).all()
    with torch.no_grad():
        logits = model(torch.from_numpy(x))
    if mode == "next":
        assert (targets == (y + 1) % 10).all()
    elif mode == "least-likely":
        assert (targets == logits.scatter(1, torch.from_numpy(y)[:, None], np.inf).argmin(1).numpy()).all()
    else:
        assert len(set(((targets - y) % 10).tolist())) > 4  # spread over the wrong classes
    correct = pred_clean == y
    for i, r in enumerate(summary["results"]):
        # success is reaching the target (not merely leaving the true class), among samples right when clean
        assert r["success_rate"] == pytest.approx((pred_adv[i] == targets)[correct].mean())
        assert r["robust_acc"] == pytest.approx((pred_adv[i] == y).mean())
    small, large = summary["results"]
    assert small["success_rate"] < 0.5 < large["success_rate"]  # hard at 0.05, done at 0.3
    # the same seed draws the same targets
    code, _, err = run_cli(capsys, "attack", "--fgsm", "--targeted", "--target", mode, "--model", ckpt, "-n", 64,
                           "--out", tmp_path / "again")
    assert code == 0, err
    with np.load(tmp_path / "again" / "adversarial.npz", allow_pickle=False) as z:
        assert (z["targets"] == targets).all()


def test_targeted_on_a_random_model_is_not_a_free_success(capsys, tmp_path):
    """The true labels as targets made a random model look 100% attackable: the attack only had to keep them."""
    code, out, err = run_cli(capsys, "attack", "--fgsm", "--targeted", "--model", "lenet", "-n", 64, "--eps", "0.01",
                             "--out", tmp_path / "r")
    assert code == 0, err
    (r,) = json.loads((tmp_path / "r" / "summary.json").read_text())["results"]
    assert r["success_rate"] < 0.5


def test_target_without_targeted_is_a_usage_error(capsys, trained_lenet, tmp_path):
    _, ckpt = trained_lenet
    code, out, err = run_cli(capsys, "attack", "--fgsm", "--target", "next", "--model", ckpt, "-n", 8,
                             "--out", tmp_path / "o")
    assert code == 2 and "--targeted" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("tty, quiet, shown", [(True, False, True), (True, True, False), (False, False, False)],
                         ids=["terminal", "quiet", "not-a-terminal"])
def test_attack_progress_bar_on_stderr(capsys, monkeypatch, trained_lenet, tmp_path, tty, quiet, shown):
    _, ckpt = trained_lenet
    monkeypatch.setattr(sys.stderr, "isatty", lambda: tty)
    code, out, err = run_cli(capsys, "attack", "--fgsm", "--model", ckpt, "-n", 48, "--batch-size", 16, "--eps",
                             "0.1,0.2", *(["--quiet"] if quiet else []), "--out", tmp_path / "o")
    assert code == 0, err
    assert ("/96 [" in err) is shown, err  # 48 images x 2 eps, counted in images
    assert "/96 [" not in out


# ---------------------------------------------------------------------------------------- bad input

@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad-inputs")
    rng = np.random.default_rng(0)
    np.savez(d / "labels12.npz", x=rng.integers(0, 256, (16, 28, 28), dtype=np.uint8), y=np.arange(16) % 12)
    np.savez(d / "cifar_like.npz", x=rng.integers(0, 256, (16, 32, 32, 3), dtype=np.uint8), y=np.arange(16) % 10)
    (d / "notes.txt").write_text("not a checkpoint\n")
    return d


@pytest.mark.parametrize("args", [[], ["--fgsm", "--attack", "pgd"], ["--pgd", "--attack", "foolbox:LinfPGD"]],
                         ids=["none", "fgsm+attack", "pgd+attack"])
def test_attack_choice_usage_errors(capsys, trained_lenet, tmp_path, args):
    _, ckpt = trained_lenet
    code, out, err = run_cli(capsys, "attack", *args, "--model", ckpt, "-n", 8, "--out", tmp_path / "o")
    assert code == 2
    assert "exactly one" in one_error_line(err)  # a usage error is one line too, not Usage / Try / Error
    assert not (tmp_path / "o").exists()


def test_two_attack_flags_are_a_usage_error(capsys, trained_lenet, tmp_path):
    _, ckpt = trained_lenet
    code, out, err = run_cli(capsys, "attack", "--fgsm", "--pgd", "--model", ckpt, "-n", 8,
                             "--out", tmp_path / "o")
    assert code == 2 and "Traceback" not in err
    assert not (tmp_path / "o" / "summary.json").exists()


BAD = {
    "eps-negative": (["--fgsm", "--eps", "-1"], ["eps", ">= 0"]),
    "eps-linf-over-1": (["--fgsm", "--eps", "1.5"], ["1.5", "L-inf"]),
    "eps-not-a-number": (["--fgsm", "--eps", "abc"], ["--eps", "abc"]),
    "eps-empty": (["--fgsm", "--eps", ","], ["--eps"]),
    "unknown-attack": (["--attack", "fgsmm"], ["unknown attack 'fgsmm'", "fgsm"]),
    "unknown-foolbox-attack": (["--attack", "foolbox:LinfPGDD"], ["LinfPGDD", "foolbox:LinfPGD"]),
    "attack-param-not-taken": (["--fgsm", "--steps", "3"], ["steps"]),
    "pgd-zero-steps": (["--pgd", "--steps", "0"], ["steps"]),
    "n-zero": (["--fgsm", "-n", "0"], ["-n"]),
    "unknown-dataset": (["--fgsm", "--data", "mnsit"], ["unknown dataset 'mnsit'", "mnist"]),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_attack_bad_input_one_error_line(capsys, trained_lenet, tmp_path, case):
    _, ckpt = trained_lenet
    args, fragments = BAD[case]
    n = [] if "-n" in args else ["-n", 8]
    code, out, err = run_cli(capsys, "attack", "--model", ckpt, *n, *args, "--out", tmp_path / "o")
    assert_one_error_line(code, err, *fragments)
    assert not (tmp_path / "o" / "summary.json").exists()


def test_unknown_model_name(capsys, tmp_path):
    code, _, err = run_cli(capsys, "attack", "--fgsm", "--model", "lenett", "-n", 8, "--out", tmp_path / "o")
    assert_one_error_line(code, err, "unknown model 'lenett'", "lenet")
    assert not (tmp_path / "o" / "summary.json").exists()


def test_model_path_missing(capsys, tmp_path):
    missing = tmp_path / "gone" / "model.safetensors"
    code, _, err = run_cli(capsys, "attack", "--fgsm", "--model", missing, "-n", 8, "--out", tmp_path / "o")
    assert_one_error_line(code, err, "not found", str(missing))
    assert not (tmp_path / "o" / "summary.json").exists()


def test_model_path_not_a_checkpoint(capsys, tmp_path, bad_inputs):
    code, _, err = run_cli(capsys, "attack", "--fgsm", "--model", bad_inputs / "notes.txt", "-n", 8,
                           "--out", tmp_path / "o")
    assert_one_error_line(code, err, "not an advkit checkpoint")
    assert not (tmp_path / "o" / "summary.json").exists()


def test_labels_beyond_the_models_classes(capsys, trained_lenet, tmp_path, bad_inputs):
    _, ckpt = trained_lenet
    code, _, err = run_cli(capsys, "attack", "--fgsm", "--model", ckpt, "--data",
                           f"npz:{bad_inputs / 'labels12.npz'}", "--out", tmp_path / "o")
    assert_one_error_line(code, err, "11", "10")
    assert not (tmp_path / "o" / "summary.json").exists()


def test_model_input_shape_does_not_match_data(capsys, trained_lenet, tmp_path, bad_inputs):
    _, ckpt = trained_lenet
    code, _, err = run_cli(capsys, "attack", "--fgsm", "--model", ckpt, "--data",
                           f"npz:{bad_inputs / 'cifar_like.npz'}", "--out", tmp_path / "o")
    assert_one_error_line(code, err, "(1, 28, 28)", "(3, 32, 32)")
    assert not (tmp_path / "o" / "summary.json").exists()


def test_shape_mismatch_without_input_shape_metadata(capsys, tmp_path, bad_inputs):
    ckpt = save(tiny_cnn(in_chans=1, size=28), tmp_path / "bare.safetensors")
    code, _, err = run_cli(capsys, "attack", "--fgsm", "--model", ckpt, "--data",
                           f"npz:{bad_inputs / 'cifar_like.npz'}", "--out", tmp_path / "o")
    assert_one_error_line(code, err, "(3, 32, 32)")


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here: --device cuda is valid")
def test_device_cuda_without_cuda(capsys, trained_lenet, tmp_path):
    _, ckpt = trained_lenet
    code, _, err = run_cli(capsys, "attack", "--fgsm", "--model", ckpt, "-n", 8, "--device", "cuda",
                           "--out", tmp_path / "o")
    assert_one_error_line(code, err, "CUDA is not available")
    assert not (tmp_path / "o" / "summary.json").exists()


# -------------------------------------------------------------------------------------------- train

def test_train_classifier_outputs(capsys, tmp_path):
    out_dir = tmp_path / "run"
    code, out, err = run_cli(capsys, "train", "classifier", "--set", "epochs=1", "--set", "data.train_limit=2000",
                             "--set", "data.test_limit=500", "--set", "device=cpu", "--out", out_dir)
    assert code == 0, err
    for name in ("model.safetensors", "model.json", "config.yaml", "metrics.jsonl"):
        assert (out_dir / name).is_file(), name
    lines = (out_dir / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 1
    m = json.loads(lines[0])
    assert m["epoch"] == 1
    acc = m["clean_acc"] if "clean_acc" in m else m["test_acc"]
    assert 0.5 <= acc <= 1.0
    cfg_yaml = yaml.safe_load((out_dir / "config.yaml").read_text())
    assert cfg_yaml["epochs"] == 1 and cfg_yaml["data"]["train_limit"] == 2000
    meta = read_metadata(out_dir / "model.safetensors")
    assert meta["config"] == cfg_yaml
    assert json.loads((out_dir / "model.json").read_text()) == meta
    assert meta["metrics"]["epoch"] == 1 and meta["input_shape"] == [1, 28, 28]


def test_train_unknown_set_key(capsys, tmp_path):
    out_dir = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "classifier", "--set", "epoch=1", "--out", out_dir)
    assert_one_error_line(code, err, "'epoch'", "epochs")
    assert not (out_dir / "model.safetensors").exists()
    assert not out_dir.exists()


def test_train_missing_config_file(capsys, tmp_path):
    code, _, err = run_cli(capsys, "train", "classifier", "-c", tmp_path / "nope.yaml", "--out", tmp_path / "r")
    assert_one_error_line(code, err, "nope.yaml")


def test_training_is_deterministic_on_cpu():
    from advkit.train import DataConfig, TrainConfig, train_classifier

    def run(seed):
        cfg = TrainConfig(data=DataConfig(root=str(REPO / "datasets"), train_limit=640, test_limit=100),
                          epochs=1, batch_size=64, seed=seed, device="cpu")
        model, metrics = train_classifier(cfg)
        return model.state_dict(), metrics

    a, ma = run(0)
    b, mb = run(0)
    c, _ = run(1)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert ma == {**mb, **{k: ma[k] for k in ma if k.endswith("time_s")}}  # same numbers but timings
    assert not all(torch.equal(a[k], c[k]) for k in a)  # the seed matters


# ----------------------------------------------------------------------------------- default model

def _small_cfg():
    from advkit.train import DataConfig, TrainConfig

    return TrainConfig(data=DataConfig(train_limit=1000, test_limit=200), epochs=1, batch_size=64, device="cpu")


def test_default_model_trains_once_and_is_cached(tmp_path, monkeypatch):
    import advkit.train.default as default

    cache = tmp_path / "cache"
    monkeypatch.setenv("ADVKIT_CACHE", str(cache))
    cfg = _small_cfg()
    model, path, trained = default.get_default_model(cfg=cfg)
    assert trained is True
    assert path.is_file() and path.parent == cache and path.suffix == ".safetensors"
    assert path == default.default_model_path(cfg)
    assert sorted(p.name for p in cache.iterdir()) == sorted([path.name, path.with_suffix(".json").name])
    assert not any(m.training for m in model.modules())
    stat = path.stat()

    def no_training(*a, **k):
        raise AssertionError("the cached default model was retrained")

    monkeypatch.setattr(default, "train_classifier", no_training)
    again, path2, trained2 = default.get_default_model(cfg=cfg)
    assert trained2 is False and path2 == path
    assert path.stat().st_mtime_ns == stat.st_mtime_ns
    sa, sb = model.state_dict(), again.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(model(x), again(x))


def test_default_model_path_depends_on_config(tmp_path, monkeypatch):
    from advkit.train.default import DEFAULT_CONFIG, default_model_path

    monkeypatch.setenv("ADVKIT_CACHE", str(tmp_path / "c"))
    assert default_model_path().parent == tmp_path / "c"
    assert default_model_path(_small_cfg()) != default_model_path(DEFAULT_CONFIG)
    other_root = dataclasses.replace(DEFAULT_CONFIG, data=dataclasses.replace(DEFAULT_CONFIG.data, root="/x"))
    assert default_model_path(other_root) == default_model_path(DEFAULT_CONFIG)  # where data lives: no matter


def test_default_model_path_depends_on_data_limits():
    from advkit.train.default import DEFAULT_CONFIG, default_model_path

    limited = dataclasses.replace(DEFAULT_CONFIG, data=dataclasses.replace(DEFAULT_CONFIG.data, train_limit=100))
    assert default_model_path(limited) != default_model_path(DEFAULT_CONFIG)


@needs_data("fashion_mnist")
def test_default_model_honours_cfg_data_root(tmp_path, monkeypatch):
    from advkit.train import DataConfig, TrainConfig
    from advkit.train.default import get_default_model

    monkeypatch.setenv("ADVKIT_CACHE", str(tmp_path / "cache"))
    cfg = TrainConfig(data=DataConfig(dataset="fashion_mnist", root=str(SHARED), train_limit=256, test_limit=64),
                      epochs=1, batch_size=64, device="cpu")
    _, path, trained = get_default_model(cfg=cfg)
    assert trained and path.is_file()

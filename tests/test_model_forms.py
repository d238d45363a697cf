"""Models from anywhere: every spec form gives the same logits as the same module in memory, records what it
loaded, and every bad spec is one error line (exit 2)."""

from __future__ import annotations

import hashlib
import json
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

from advkit.errors import AdvkitError
from advkit.models import ModelOptions, resolve_model
from advkit.models.external import is_torchscript, read_weights
from conftest import one_error_line, run_cli

K, C, S = 3, 3, 16  # classes, channels, side of the tiny test images
DATA = {"num_classes": K, "in_chans": C, "input_size": S}
MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)


def _tiny_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                         nn.Linear(16, K)).eval()


FACTORY = textwrap.dedent("""
    import torch
    from torch import nn

    def make():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                             nn.Linear(16, 3)).eval()

    def bad():
        raise ValueError("no GPU here")

    def not_a_module():
        return 42
""")


@pytest.fixture(scope="module")
def timm_net():
    import timm

    torch.manual_seed(0)
    return timm.create_model("resnet10t", num_classes=K).eval()


def _x(n: int = 2, side: int = S, c: int = C) -> torch.Tensor:
    return torch.rand(n, c, side, side, generator=torch.Generator().manual_seed(3))


def _expect(net: nn.Module, x: torch.Tensor, mean=MEAN, std=STD) -> torch.Tensor:
    with torch.no_grad():
        return net((x - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1))


def _save(state: dict, path, how: str):
    if how == "safetensors":
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in state.items()}, str(path.with_suffix(".safetensors")))
        return path.with_suffix(".safetensors")
    wrapped = {"plain": state, "state_dict": {"state_dict": state, "epoch": 3},
               "model": {"model": state, "optimizer": {"lr": torch.tensor(0.1)}},
               "module.": {f"module.{k}": v for k, v in state.items()},
               "lightning": {"state_dict": {f"model.{k}": v for k, v in state.items()}, "global_step": 7}}[how]
    torch.save(wrapped, path)
    return path


@pytest.mark.parametrize("how", ["plain", "state_dict", "model", "module.", "lightning", "safetensors"])
def test_timm_with_weights_gives_the_in_memory_logits_whatever_the_wrapping(tmp_path, timm_net, how, one_thread):
    path = _save(timm_net.state_dict(), tmp_path / "w.pt", how)
    m = resolve_model("timm:resnet10t", **DATA, options=ModelOptions(weights=str(path), mean=MEAN, std=STD,
                                                                       input_size=S))
    x = _x()
    torch.testing.assert_close(m(x), _expect(timm_net, x), rtol=0, atol=0)
    assert m.origin["form"] == "timm" and m.origin["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert m.origin["mean"] == pytest.approx(MEAN) and m.origin["std"] == pytest.approx(STD)


def test_timm_takes_mean_std_size_and_interpolation_from_its_published_config(tmp_path, timm_net, one_thread):
    import timm.models

    cfg = timm.models.get_pretrained_cfg("resnet10t")
    path = _save(timm_net.state_dict(), tmp_path / "w.pt", "plain")
    m = resolve_model("timm:resnet10t", **DATA, options=ModelOptions(weights=str(path)))
    assert (m.input_size, m.interpolation) == (cfg.input_size[-1], cfg.interpolation)
    assert m.origin["mean"] == pytest.approx(cfg.mean) and m.origin["std"] == pytest.approx(cfg.std)
    x = _x(side=S)  # the data's 16 px images are resized inside the model to the published side
    big = torch.nn.functional.interpolate(x, size=cfg.input_size[1:], mode="bicubic", align_corners=False).clamp(0, 1)
    torch.testing.assert_close(m(x), _expect(timm_net, big, cfg.mean, cfg.std), rtol=1e-5, atol=1e-5)


def test_torchvision_with_weights_gives_the_in_memory_logits(tmp_path, one_thread):
    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.get_model("resnet18", weights=None, num_classes=K).eval()
    path = tmp_path / "r18.pth"
    torch.save(net.state_dict(), path)
    m = resolve_model("torchvision:resnet18", **DATA, options=ModelOptions(weights=str(path), input_size=32))
    assert m.origin["mean"] == pytest.approx([0.485, 0.456, 0.406])  # torchvision's published ImageNet stats
    x = _x(side=32)
    torch.testing.assert_close(m(x), _expect(net, x, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
                               rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("form", ["file", "module"])
def test_a_py_factory_gives_its_modules_logits_with_and_without_weights(tmp_path, monkeypatch, form):
    (tmp_path / "mynets.py").write_text(FACTORY)
    spec = f"{tmp_path}/mynets.py:make" if form == "file" else "py:mynets:make"
    monkeypatch.syspath_prepend(str(tmp_path))
    m = resolve_model(spec, **DATA)  # no normalization, the data's size: the module cannot say otherwise
    x = _x()
    torch.testing.assert_close(m(x), _tiny_net()(x), rtol=0, atol=0)
    assert m.origin["form"] == "py" and m.origin["mean"] is None and m.origin["weights"] is None
    other = _tiny_net(seed=5)
    torch.save(other.state_dict(), tmp_path / "w.pt")
    m = resolve_model(spec, **DATA, options=ModelOptions(weights=str(tmp_path / "w.pt"), mean=MEAN, std=STD))
    torch.testing.assert_close(m(x), _expect(other, x), rtol=0, atol=0)


@pytest.mark.parametrize("suffix", [".pt", ".ts"])
def test_a_torchscript_archive_gives_the_traced_modules_logits(tmp_path, suffix):
    net = _tiny_net()
    path = tmp_path / f"net{suffix}"
    torch.jit.save(torch.jit.trace(net, _x()), str(path))
    torch.save(net.state_dict(), tmp_path / "state.pt")
    assert is_torchscript(path) and not is_torchscript(tmp_path / "state.pt")  # a .pt may be either
    m = resolve_model(str(path), **DATA, options=ModelOptions(mean=MEAN, std=STD))
    x = _x()
    torch.testing.assert_close(m(x), _expect(net, x), rtol=0, atol=0)
    assert m.origin["form"] == "torchscript" and len(m.origin["sha256"]) == 64


def test_grey_small_images_are_resized_and_repeated_inside_the_model(tmp_path, timm_net, one_thread):
    path = _save(timm_net.state_dict(), tmp_path / "w.pt", "plain")
    m = resolve_model("timm:resnet10t", num_classes=K, in_chans=1, input_size=8,
                      options=ModelOptions(weights=str(path), mean=MEAN, std=STD, input_size=S))
    x = _x(side=8, c=1)
    up = torch.nn.functional.interpolate(x, size=(S, S), mode="bicubic", align_corners=False).clamp(0, 1)
    torch.testing.assert_close(m(x), _expect(timm_net, up.expand(-1, 3, -1, -1)), rtol=1e-6, atol=1e-6)


def test_a_head_of_another_size_is_an_error_unless_num_classes_says_so(tmp_path, timm_net, one_thread):
    path = _save(timm_net.state_dict(), tmp_path / "w.pt", "plain")
    with pytest.raises(AdvkitError, match="classifier head does not fit.*--num-classes"):
        resolve_model("timm:resnet10t", num_classes=5, in_chans=3, input_size=S,
                      options=ModelOptions(weights=str(path), input_size=S))
    said: list[str] = []
    m = resolve_model("timm:resnet10t", num_classes=K, in_chans=3, input_size=S, say=said.append,
                      options=ModelOptions(weights=str(path), num_classes=5, input_size=S))
    assert m(_x()).shape == (2, 5) and any("starts fresh" in s for s in said)
    for k, v in timm_net.state_dict().items():  # everything but the head came from the file
        if not k.startswith("fc."):
            torch.testing.assert_close(m.net.state_dict()[k], v, rtol=0, atol=0)


def test_non_finite_weights_are_refused_naming_the_file(tmp_path):
    state = _tiny_net().state_dict()
    state["0.weight"][0, 0, 0, 0] = float("nan")
    torch.save(state, tmp_path / "nan.pt")
    with pytest.raises(AdvkitError, match=r"nan\.pt: tensor '0\.weight' holds NaN"):
        read_weights(tmp_path / "nan.pt")


@pytest.fixture(scope="module")
def forms_dir(tmp_path_factory, timm_net):
    """A tiny 3-class npz set and one model saved in every form."""
    d = tmp_path_factory.mktemp("forms")
    g = np.random.default_rng(0)
    np.savez(d / "data.npz", x=g.integers(0, 256, (8, S, S, 3), dtype=np.uint8), y=np.arange(8) % K,
             class_names=np.array(["a", "b", "c"]))
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in timm_net.state_dict().items()}, str(d / "w.safetensors"))
    torch.save({"state_dict": {f"module.{k}": v for k, v in timm_net.state_dict().items()}}, d / "w.pt")
    (d / "factory.py").write_text("import timm, torch\n\ndef make():\n    net = timm.create_model('resnet10t', "
                                  f"num_classes={K})\n    net.load_state_dict(torch.load({str(d / 'w.pt')!r}, "
                                  "weights_only=True)['state_dict'], strict=False)\n    return net\n")
    net = timm_net
    torch.jit.save(torch.jit.trace(net, _x(side=S)), str(d / "net.ts"))
    return d


def _attack(capsys, d, tmp_path, *model_args):
    out = tmp_path / f"out{len(list(tmp_path.iterdir()))}"
    code, _, err = run_cli(capsys, "attack", "--fgsm", "--eps", "8/255", "--data", f"npz:{d / 'data.npz'}", "-n",
                           "8", "--quiet", "--out", str(out), *model_args)
    assert code == 0, err
    return json.loads((out / "summary.json").read_text())


def test_cli_attack_gives_identical_results_through_every_form_and_records_the_sha256(capsys, forms_dir, tmp_path,
                                                                                      one_thread):
    d = forms_dir
    norm = ["--mean", ",".join(map(str, MEAN)), "--std", ",".join(map(str, STD)), "--input-size", str(S)]
    runs = {"safetensors": _attack(capsys, d, tmp_path, "--model", "timm:resnet10t", "--weights",
                                   str(d / "w.safetensors"), *norm),
            "pt": _attack(capsys, d, tmp_path, "--model", "timm:resnet10t", "--weights", str(d / "w.pt"), *norm),
            "py": _attack(capsys, d, tmp_path, "--model", f"{d / 'factory.py'}:make", *norm),
            "torchscript": _attack(capsys, d, tmp_path, "--model", str(d / "net.ts"), *norm)}
    st = runs["safetensors"]["model_loaded"]
    assert st["sha256"] == hashlib.sha256((d / "w.safetensors").read_bytes()).hexdigest()
    assert st["form"] == "timm" and st["mean"] == pytest.approx(MEAN) and st["input_size"] == S
    results = {k: [(r["clean_acc"], r["robust_acc"]) for r in v["results"]] for k, v in runs.items()}
    assert len(set(map(tuple, results.values()))) == 1, results


BAD = {
    "missing weights": (["--model", "timm:resnet10t", "--weights", "{d}/nope.pt"], "weights file not found"),
    "wrong keys": (["--model", "torchvision:resnet18", "--weights", "{d}/w.pt"], "weights do not fit"),
    "head mismatch": (["--model", "timm:resnet10t", "--weights", "{d}/w.pt", "--input-size", "16"],
                      "classifier head does not fit"),
    "factory raises": (["--model", "{d}/factory.py:bad"], "the factory raised ValueError: no GPU here"),
    "not a module": (["--model", "{d}/factory.py:not_a_module"], "returned a int, not a torch nn.Module"),
    "no attribute": (["--model", "{d}/factory.py:nope"], "has no attribute 'nope'"),
    "unknown timm": (["--model", "timm:resnet_nope", "--weights", "{d}/w.pt"], "unknown timm model"),
    "unknown torchvision": (["--model", "torchvision:resnet_nope"], "unknown torchvision model"),
    "weights without model": (["--weights", "{d}/w.pt"], "need a --model"),
    "state dict as model": (["--model", "{d}/w.pt"], "holds weights, not a model"),
    "std zero": (["--model", "timm:resnet10t", "--mean", "0.5", "--std", "0"], "--std must be > 0"),
    "nan weights": (["--model", "timm:resnet10t", "--weights", "{d}/nan.pt"], "holds NaN or infinite"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_model_specs_are_one_error_line(capsys, tmp_path, timm_net, case):
    d = tmp_path
    np.savez(d / "data.npz", x=np.zeros((2, S, S, 3), np.uint8), y=np.array([0, 1]), class_names=np.array(["a", "b"]))
    torch.save(timm_net.state_dict(), d / "w.pt")  # a 3-class head; the data has 2 classes
    (d / "factory.py").write_text(FACTORY)
    state = timm_net.state_dict()
    state["conv1.0.weight"] = state["conv1.0.weight"].clone().fill_(float("inf"))
    torch.save(state, d / "nan.pt")
    args, expected = BAD[case]
    code, _, err = run_cli(capsys, "attack", "--fgsm", "--data", f"npz:{d / 'data.npz'}", "-n", "2", "--quiet",
                           "--out", str(d / "out"), *[a.format(d=d) for a in args])
    assert code == 2, err
    line = one_error_line(err)
    assert expected in line, line
    assert not (d / "out" / "summary.json").exists()


def test_eval_config_model_entry_takes_the_same_keys_and_the_report_records_what_was_loaded(capsys, forms_dir,
                                                                                           tmp_path, one_thread):
    d = forms_dir
    cfg = tmp_path / "eval.yaml"
    cfg.write_text(textwrap.dedent(f"""
        models:
          - {{name: st, model: "timm:resnet10t", weights: "{d / 'w.safetensors'}", mean: {list(MEAN)},
             std: {list(STD)}, input_size: {S}}}
          - {{name: ts, model: "{d / 'net.ts'}", mean: {list(MEAN)}, std: {list(STD)}}}
        data: {{dataset: "npz:{d / 'data.npz'}", n: 8}}
        threat_models:
          - {{norm: linf, eps: [0.03], attacks: [fgsm]}}
        checks: {{enabled: false}}
        batch_size: 8
    """))
    code, _, err = run_cli(capsys, "eval", "-c", str(cfg), "--out", str(tmp_path / "ev"))
    assert code in (0, 1), err
    report = json.loads((tmp_path / "ev" / "report.json").read_text())
    st, ts = report["models"]
    assert st["loaded"]["sha256"] == hashlib.sha256((d / "w.safetensors").read_bytes()).hexdigest()
    assert st["loaded"]["form"] == "timm" and ts["loaded"]["form"] == "torchscript"
    assert st["clean_acc"] == ts["clean_acc"]
    robust = [[w["robust_acc"] for w in m["threat_models"][0]["worst_case"]] for m in (st, ts)]
    assert len(robust[0]) == 1 and robust[0] == robust[1]
    assert "Loaded: timm, file" in (tmp_path / "ev" / "report.md").read_text()
    from advkit.report import Report
    assert Report.from_dict(report).models[0].loaded.sha256 == st["loaded"]["sha256"]


def test_train_classifier_fine_tunes_from_plain_weights_with_a_new_head(capsys, tmp_path, one_thread):
    from safetensors.torch import load_file

    from advkit.models import create_model

    g = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=g.integers(0, 256, (16, 8, 8), dtype=np.uint8), y=np.arange(16) % 2)
    source = create_model("lenet", num_classes=5, in_chans=1, input_size=8, width=4)
    torch.save({"model": source.net.state_dict()}, tmp_path / "w.pt")  # a 5-class head; the data has 2 classes
    args = ["train", "classifier", "--model", "lenet", "--weights", str(tmp_path / "w.pt"), "--set",
            f"data.dataset=npz:{tmp_path / 'd.npz'}", "--set", "model.kwargs={width: 4}", "--set", "epochs=1",
            "--set", "optim.lr=1e-12", "--set", "eval.n=8", "--set", "eval.steps=1", "--set", "batch_size=8",
            "--set", "tensorboard=false"]
    code, _, err = run_cli(capsys, *args, "--out", str(tmp_path / "no"))
    assert code == 2 and "model.num_classes: 2" in one_error_line(err)
    code, _, err = run_cli(capsys, *args, "--num-classes", "2", "--out", str(tmp_path / "run"))
    assert code == 0, err
    tuned = load_file(str(tmp_path / "run" / "model.safetensors"))
    for k, v in source.net.state_dict().items():
        if tuned[f"net.{k}"].shape == v.shape:  # the body starts from the file (lr 1e-12 barely moves it)
            torch.testing.assert_close(tuned[f"net.{k}"], v, rtol=0, atol=1e-6)
        else:
            assert tuned[f"net.{k}"].shape[0] == 2  # the head is new, for the data's 2 classes


def test_detect_scores_images_with_a_two_logit_model_from_a_factory(capsys, tmp_path):
    from PIL import Image

    (tmp_path / "det.py").write_text(FACTORY.replace("nn.Linear(16, 3)", "nn.Linear(16, 2)"))
    Image.fromarray(np.full((20, 24, 3), 128, np.uint8)).save(tmp_path / "a.png")
    code, out, err = run_cli(capsys, "detect", str(tmp_path / "a.png"), "--ckpt", f"{tmp_path / 'det.py'}:make",
                             "--input-size", "16", "--workers", "0", "--out", str(tmp_path / "r.json"))
    assert code == 0, err
    rows = json.loads((tmp_path / "r.json").read_text())["rows"]
    assert len(rows) == 1 and 0 <= rows[0]["score_fake"] <= 1 and rows[0]["error"] is None
    code, _, err = run_cli(capsys, "detect", str(tmp_path / "a.png"), "--ckpt", f"{tmp_path / 'det.py'}:not_a_module")
    assert code == 2 and "not a torch nn.Module" in one_error_line(err)

"""Detector training (``advkit train detector``): real MNIST vs two tiny untrained DCGANs (easy to tell apart,
so a couple of seconds of training gives a real detector), the targeted PGD evasion attack, laundering, the
report, the trainer hooks (``datasets=``, ``batch_transform``) and the CLI contract."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from advkit.config import load_config
from advkit.data import ArrayDataset
from advkit.data.transforms import Augment
from advkit.detect.config import NO_AUGMENT, DetectEvalConfig, DetectorConfig
from advkit.detect.data import build_realfake
from advkit.detect.evaluate import LAUNDERING, evaluate_detector, fake_scores, roc_points
from advkit.detect.metrics import roc_auc
from advkit.detect.train import REPORT, augment_batch, data_name, train_detector
from advkit.errors import AdvkitError
from advkit.eval.config import LAUNDERING_NAMES
from advkit.gan import DCGANGenerator, save_gan_net
from advkit.models import load, read_metadata
from advkit.train import TrainConfig, train_classifier

REPO = Path(__file__).resolve().parents[1]
EPS = [16 / 255, 64 / 255, 128 / 255]  # the untrained fakes sit far from the digits: it takes a large radius


def _tiny_sets(gens: list[str], n: int = 300, **data) -> list[str]:
    return [f"data.fakes=[{','.join(gens)}]", "data.real=mnist", f"data.n_per_class={n}",
            f"data_root={REPO / 'datasets'}", "train.model.name=small_cnn", "train.epochs=2", "train.batch_size=32",
            "train.tensorboard=false", "train.device=cpu", *[f"data.{k}={v}" for k, v in data.items()]]


@pytest.fixture(scope="module")
def gens(tmp_path_factory) -> list[str]:
    """Two tiny untrained DCGAN generators saved as checkpoints: two fake sources."""
    d = tmp_path_factory.mktemp("gens")
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        paths.append(str(save_gan_net(DCGANGenerator(z_dim=8, img_size=28, channels=1, width=4),
                                      d / f"g{seed}.safetensors", "generator")))
    return paths


@pytest.fixture(scope="module")
def report_renames() -> list[str]:
    """The content of each file renamed onto the detector report during the ``trained`` run, at its rename."""
    return []


@pytest.fixture(scope="module")
def trained(gens, tmp_path_factory, report_renames):
    """(config, model, report, out folder) of one small detector run through the Python API."""
    out = tmp_path_factory.mktemp("detector")
    cfg = load_config(DetectorConfig, None, [*_tiny_sets(gens), f"evaluation.eps=[{','.join(map(str, EPS))}]"])
    replace = os.replace

    def recording_replace(src, dst, *args, **kwargs):
        if Path(dst).name == REPORT:
            report_renames.append(Path(src).read_text())
        return replace(src, dst, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, "replace", recording_replace)
        model, report = train_detector(cfg, out)
    return cfg, model, report, out


@pytest.fixture(scope="module")
def sets(trained):
    cfg = trained[0]
    return build_realfake(cfg.data, root=cfg.data_root)


def test_detector_separates_real_from_fake(trained, sets):
    cfg, model, report, out = trained
    ev = report["evaluation"]
    assert ev["clean"]["auc"] > 0.95 and ev["clean"]["acc"] > 0.9
    assert ev["calibrated_threshold"] is not None and ev["clean"]["acc_calibrated"] > 0.9
    assert set(ev["per_generator"]) == set(cfg.data.fakes)
    for g, r in ev["per_generator"].items():
        assert r["n_fake"] > 0 and r["auc"] > 0.95, g
    data = report["data"]
    assert data["generators"] == list(cfg.data.fakes)
    for sp in ("train", "val", "test"):
        s = data["splits"][sp]
        assert s["real"] == s["fake"] > 0 and sum(s["per_generator"].values()) == s["fake"]
    # the checkpoint is a plain 2-class advkit classifier that scores as the returned model does
    path = out / "model.safetensors"
    meta = read_metadata(path)
    assert meta["classes"] == ["real", "fake"] and meta["dataset"] == data_name(cfg.data)
    x = sets["test"].tensors()[0][:64]
    with torch.no_grad():
        torch.testing.assert_close(load(path)(x), model(x))


def test_evasion_attack_pushes_fakes_to_real(trained):
    ev = trained[2]["evaluation"]
    rows = ev["robust"]
    assert [r["eps"] for r in rows] == pytest.approx(EPS)
    clean = ev["subset"]
    assert rows[-1]["auc"] < clean["auc"] - 0.3  # the attack works
    assert rows[-1]["fake_score_mean"] < clean["fake_score_mean"] - 0.3  # attacked fakes look real
    assert rows[-1]["fakes_called_real"] > 0.5
    aucs, means = [r["auc"] for r in rows], [r["fake_score_mean"] for r in rows]
    assert all(b <= a for a, b in zip(aucs, aucs[1:])), aucs  # non-increasing in eps
    assert all(b <= a for a, b in zip(means, means[1:])), means
    assert all(0 <= r["auc_reals_attacked"] <= 1 for r in rows)
    assert rows[-1]["auc_reals_attacked"] < clean["auc"]  # pushing reals towards "fake" works too
    assert set(ev["roc"]) == {"clean", *(f"pgd@{r['label']}" for r in rows), *(n for n, _ in LAUNDERING)}
    for name, c in ev["roc"].items():
        fpr, tpr = np.array(c["fpr"]), np.array(c["tpr"])
        assert len(fpr) == len(tpr) <= 200, name
        assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0, 0, 1, 1)
        assert (np.diff(fpr) >= 0).all() and (np.diff(tpr) >= 0).all()


def test_laundering_grid(trained, sets):
    """Each laundering entry is the detector's own score on the evaluation subset after that transform, which
    really changes the images."""
    cfg, model, report, _ = trained
    ev = report["evaluation"]
    lau = ev["laundering"]
    assert list(lau) == ["jpeg_q95", "jpeg_q75", "jpeg_q50", "jpeg_q30", "blur_s1", "blur_s2", "rescale_0.75",
                         "rescale_0.5"] == [name for name, _ in LAUNDERING] == list(LAUNDERING_NAMES)
    sub = sets["test"].subset(cfg.evaluation.n)
    y, t = sub.labels, ev["threshold"]
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            for name, fn in LAUNDERING:
                laundered = fn(sub.images)
                assert not torch.equal(laundered, sub.images), name
                s = fake_scores(model, laundered)
                assert lau[name]["auc"] == pytest.approx(roc_auc(s, y), abs=1e-9), name
                assert lau[name]["acc"] == pytest.approx(((s >= t).long() == y).double().mean().item()), name
    finally:
        model.train(was)


def test_report_is_written_atomically_and_parses(trained, report_renames):
    cfg, _, report, out = trained
    on_disk = json.loads((out / REPORT).read_text())
    # the report reached its name only by renames of complete files, the last one what is on disk now
    assert report_renames and all(json.loads(text) is not None for text in report_renames)
    assert json.loads(report_renames[-1]) == on_disk
    assert on_disk == json.loads(json.dumps({k: v for k, v in report.items() if k != "report"}))
    assert on_disk["config"]["evaluation"]["eps"] == pytest.approx(EPS)
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]  # no half-written leftovers
    assert load_config(DetectorConfig, out / "detector.yaml") == cfg
    assert {"model.safetensors", "metrics.jsonl", "last.ckpt", "config.yaml"} <= {p.name for p in out.iterdir()}


def test_evaluate_is_seeded_and_leaves_the_model_alone(trained, sets):
    model = trained[1]
    model.train()
    for p in model.parameters():
        p.grad = None  # what the last training step left
    cfg = DetectEvalConfig(eps=(64 / 255,), pgd_steps=5, n=40, laundering=False)
    a = evaluate_detector(model, sets["test"], sets["val"], cfg, seed=3)
    b = evaluate_detector(model, sets["test"], sets["val"], cfg, seed=3)
    assert a.pop("time_s").keys() == b.pop("time_s").keys() == {"clean", "robust", "laundering"}
    assert a == b
    assert model.training and all(p.grad is None for p in model.parameters())
    model.eval()
    assert a["subset"]["n"] == 40 and a["laundering"] == {}
    test = sets["test"]
    order = torch.argsort(test.labels, stable=True)  # the reals first: the first n hold one class
    by_class = ArrayDataset(test.images[order], test.labels[order], test.classes)
    with pytest.raises(AdvkitError, match="one class"):
        evaluate_detector(model, by_class, cfg=DetectEvalConfig(n=2))


def test_roc_points_are_thinned_with_their_ends():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(1000) % 2
    s = torch.rand(1000, generator=g) + 0.3 * y
    c = roc_points(s, y)
    assert len(c["fpr"]) <= 200 and c["fpr"][0] == c["tpr"][0] == 0 and c["fpr"][-1] == c["tpr"][-1] == 1


def _plain_cfg(*sets: str) -> TrainConfig:
    # the dataset name does not exist: with datasets= given, the trainer must not try to load it
    return load_config(TrainConfig, None, ["data.dataset=no-such-dataset", "model.name=small_cnn", "epochs=2",
                                           "batch_size=32", "tensorboard=false", "device=cpu", *sets])


def test_datasets_are_honoured_and_batch_transform_applied(sets, tmp_path):
    calls = []

    def zero(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        calls.append((x.device.type, x.dtype, float(x.min()), float(x.max()), isinstance(gen, torch.Generator)))
        return torch.zeros_like(x)

    train = sets["train"]
    model, m = train_classifier(_plain_cfg(), tmp_path, datasets=(train, sets["val"]), batch_transform=zero)
    assert model(torch.zeros(1, 1, 28, 28)).shape == (1, 2)  # the given data's 2 classes, not the config's
    assert read_metadata(tmp_path / "model.safetensors")["dataset"] == train.name
    assert len(calls) == 2 * -(-len(train) // 32)
    assert all(c[0] == "cpu" and c[1] == torch.float32 and 0 <= c[2] <= c[3] <= 1 and c[4] for c in calls)
    # trained on blank images only, the detector is at chance
    assert 0.35 < m["train_acc"] < 0.65 and m["train_loss"] > 0.6
    _, plain = train_classifier(_plain_cfg(), datasets=(train, sets["val"]))
    assert plain["train_acc"] > 0.9


def test_batch_transform_is_reproducible_across_resume(sets, tmp_path):
    def noise(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return (x + 0.3 * torch.randn(x.shape, generator=gen)).clamp(0, 1)

    data = (sets["train"], sets["val"])
    full, cut = tmp_path / "full", tmp_path / "cut"
    train_classifier(_plain_cfg(), full, datasets=data, batch_transform=noise)

    class Killed(Exception):
        pass

    def stop_after_first(m: dict) -> None:
        if m["epoch"] == 1:
            raise Killed  # as if killed right after the epoch-1 checkpoint was written

    with pytest.raises(Killed):
        train_classifier(_plain_cfg(), cut, datasets=data, batch_transform=noise, on_epoch=stop_after_first)
    train_classifier(_plain_cfg(), cut, datasets=data, batch_transform=noise, resume=True)
    a, b = load(full / "model.safetensors"), load(cut / "model.safetensors")
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k


def test_augment_batch():
    assert augment_batch(NO_AUGMENT) is None
    x = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8).float() / 255
    flip = augment_batch(Augment(blur_prob=0, jpeg_prob=0, flip_prob=1))
    torch.testing.assert_close(flip(x, torch.Generator().manual_seed(0)), x.flip(-1), rtol=0, atol=0)
    aug = augment_batch(Augment())
    a, b = aug(x, torch.Generator().manual_seed(5)), aug(x, torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and a.shape == x.shape and a.dtype == torch.float32 and 0 <= a.min() <= a.max() <= 1


def test_config_validation():
    with pytest.raises(AdvkitError, match="train.data is not used"):
        load_config(DetectorConfig, None, ["train.data.dataset=cifar10"])
    with pytest.raises(AdvkitError, match="evaluation.eps"):
        load_config(DetectorConfig, None, ["evaluation.eps=[0]"])
    with pytest.raises(AdvkitError, match="did you mean 'evaluation.eps'"):
        load_config(DetectorConfig, None, ["evaluation.epz=[0.1]"])
    cfg = load_config(DetectorConfig, None, ["evaluation.eps=[16/255, 0.5]"])
    assert cfg.evaluation.eps == pytest.approx((16 / 255, 0.5))
    assert cfg.augment == NO_AUGMENT  # augmentation is off unless a config asks for it
    assert cfg.ensemble == 1
    for bad in ("0", "-1", "1.5", "true", "two"):
        with pytest.raises(AdvkitError, match="ensemble"):
            load_config(DetectorConfig, None, [f"ensemble={bad}"])


def test_resume_refuses_other_data(trained):
    cfg, _, _, out = trained
    import dataclasses
    other = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, n_per_class=200))
    with pytest.raises(AdvkitError, match="cannot resume .* data"):
        train_detector(other, out, resume=True)


def test_empty_val_split_is_refused(gens):
    cfg = load_config(DetectorConfig, None, [*_tiny_sets(gens, n=100), "data.val_frac=0"])
    with pytest.raises(AdvkitError, match="val split"):
        train_detector(cfg)


def _run(capsys, *args) -> tuple[int, str, str]:
    from advkit.cli import main

    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_end_to_end_and_errors(gens, tmp_path, capsys):
    conf = tmp_path / "tiny.yaml"
    conf.write_text(yaml.safe_dump({
        "data": {"real": "mnist", "fakes": gens, "n_per_class": 100},
        "train": {"model": {"name": "small_cnn"}, "epochs": 1, "batch_size": 32, "tensorboard": False,
                  "device": "cpu"},
        "evaluation": {"eps": ["8/255", "128/255"], "pgd_steps": 5}}))
    out = tmp_path / "run"
    code, stdout, err = _run(capsys, "train", "detector", "-c", conf, "--data-root", REPO / "datasets",
                             "--out", out)
    assert code == 0, err
    for text in ("epoch   1", "clean (test, n=40): AUC", "128/255", "laundering", "jpeg_q30", "detect_report.json"):
        assert text in stdout, text
    report = json.loads((out / REPORT).read_text())
    assert report["evaluation"]["clean"]["auc"] > 0.9 and (out / "model.safetensors").is_file()

    for args, fragment in ((["--set", "evaluation.epz=1"], "evaluation.eps"),
                           (["--set", "train.data.dataset=cifar10"], "train.data"),
                           (["--set", "data.fakes=[/nonexistent/g.safetensors]"], "g.safetensors")):
        code, _, err = _run(capsys, "train", "detector", "-c", conf, "--out", tmp_path / "bad", *args)
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 2 and len(lines) == 1 and fragment in lines[0], err
        assert "Traceback" not in err


def test_ensemble_detector_trains_its_members_and_averages_their_logits(gens, tmp_path, capsys):
    """``ensemble: 2`` through the CLI: two members with seeds 0 and 1 in OUT/member0 and OUT/member1, the
    detector in OUT/model.safetensors is their logit mean, and it is what the evaluation scored."""
    out = tmp_path / "run"
    args = ["--set", "ensemble=2", "--set", "evaluation.eps=[128/255]", "--set", "evaluation.pgd_steps=2"]
    code, stdout, err = _run(capsys, "train", "detector", *(a for s in _tiny_sets(gens, n=100)
                                                            for a in ("--set", s.replace("epochs=2", "epochs=1"))),
                             *args, "--out", out)
    assert code == 0, err
    assert "an ensemble of 2 (seeds 0-1)" in stdout and "member 0  epoch   1" in stdout
    assert "member 1  epoch   1" in stdout
    members = [load(out / f"member{k}") for k in range(2)]
    detector = load(out)
    assert detector.spec["arch"] == "ensemble" and len(detector.net.members) == 2
    assert read_metadata(out)["ensemble"] == 2 and read_metadata(out)["classes"] == ["real", "fake"]
    cfg = load_config(DetectorConfig, out / "detector.yaml")
    assert cfg.ensemble == 2
    test = build_realfake(cfg.data, root=cfg.data_root)["test"]
    x = test.images.float() / 255
    with torch.no_grad():
        a, b, both = members[0](x), members[1](x), detector(x)
    assert not torch.allclose(a, b, atol=1e-3)  # different seeds, different members
    torch.testing.assert_close(both, (a + b) / 2, rtol=1e-5, atol=1e-5)
    report = json.loads((out / REPORT).read_text())
    assert [m["seed"] for m in report["training"]["members"]] == [0, 1]
    scores = torch.softmax(both, 1)[:, 1].double()
    assert report["evaluation"]["clean"]["auc"] == pytest.approx(roc_auc(scores, test.labels), abs=1e-9)
    # a finished ensemble resumes without training again: same members, same detector
    _, again = train_detector(cfg, out, resume=True)
    assert [m["epoch"] for m in again["training"]["members"]] == [1, 1]
    with torch.no_grad():
        torch.testing.assert_close(load(out)(x), both, rtol=0, atol=0)


def test_torchrun_trains_an_ensemble_detector(gens, tmp_path):
    """Two processes on gloo: both members train (the process group is joined once for both), rank 0 alone
    prints, saves and evaluates, and the other rank exits 0 too."""
    import subprocess
    import sys

    sets = [s.replace("epochs=2", "epochs=1") for s in _tiny_sets(gens, n=100)]
    flags = [a for s in (*sets, "ensemble=2", "evaluation.eps=[128/255]", "evaluation.pgd_steps=2")
             for a in ("--set", s)]
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        "-m", "advkit", "train", "detector", *flags, "--out", str(tmp_path / "ddp")],
                       cwd=REPO, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, p.stderr[-6000:]
    assert p.stdout.count("training detector") == 1 and p.stdout.count("member 1  epoch   1") == 1
    assert p.stdout.count("clean (test") == 1
    detector = load(tmp_path / "ddp")
    assert detector.spec["arch"] == "ensemble" and len(detector.net.members) == 2
    assert json.loads((tmp_path / "ddp" / REPORT).read_text())["evaluation"]["clean"]["auc"] > 0.9


@pytest.mark.parametrize("path", sorted(p for p in (REPO / "configs" / "detect").glob("*.yaml")
                                         if p.name != "mnist_dcgan_disc.yaml"),  # test_detect_discriminator's
                         ids=lambda p: p.name)
def test_shipped_configs_load(path):
    cfg = load_config(DetectorConfig, path)
    assert cfg.evaluation.pgd_steps == 20 and cfg.train.model.name == "small_cnn"
    if path.name.startswith("mnist"):
        assert cfg.data.fakes == ("runs/gan/generator.safetensors",) and cfg.data.real == "mnist"
        assert cfg.evaluation.eps == pytest.approx((4 / 255, 8 / 255, 16 / 255))
    else:
        assert cfg.data.debias_jpeg == 75 and cfg.data.split == "source" and cfg.data.size == 128
        # the plain faces detector trains with Wang et al.'s blur+JPEG; the hardened one was measured without
        expected = 0.0 if "hardened" in path.name else 0.5
        assert cfg.augment.blur_prob == cfg.augment.jpeg_prob == expected and cfg.augment.flip_prob == 0.5
        assert cfg.evaluation.eps == pytest.approx((1 / 255, 2 / 255, 4 / 255))
    if "hardened" in path.name:
        # PGD for MNIST; for the faces an ensemble of 3 TRADES (beta 2) detectors, the measured config
        # that meets both faces targets
        assert cfg.train.objective.name == ("pgd" if path.name.startswith("mnist") else "trades")
        assert cfg.train.objective.eps == pytest.approx(16 / 255 if path.name.startswith("mnist") else 4 / 255)
        faces = not path.name.startswith("mnist")
        assert cfg.ensemble == (3 if faces else 1)
        if faces:
            assert cfg.train.objective.beta == 2.0
    else:
        assert cfg.ensemble == 1
    assert len(list((REPO / "configs" / "detect").glob("*.yaml"))) == 5


# ------------------------------------------------------------------ detection through the harness's reports

def test_harness_reports_show_clean_laundered_and_adversarial_side_by_side(trained):
    from advkit.report import load_report

    cfg, _, report, out = trained
    harness = load_report(out / "report.json")  # validates against the schema
    assert harness == json.loads(json.dumps(report["report"]))
    (m,) = harness["models"]
    ev = report["evaluation"]
    assert m["detection"]["clean"]["auc"] == pytest.approx(ev["clean"]["auc"])
    assert m["clean_acc"] == pytest.approx(ev["clean"]["acc"]) and m["threat_models"] == []
    assert harness["gates"] == [] and harness["passed"] is True
    html = (out / "report.html").read_text()
    md = (out / "report.md").read_text()
    for name in LAUNDERING_NAMES:
        assert f"laundered: {name}" in html and f"laundered: {name}" in md
    for r in ev["robust"]:
        row = f"evasion: PGD-{ev['pgd_steps']} at {r['label']}"
        assert row in html and row in md
    assert "ROC: clean and under the evasion attack" in html and "ROC: laundered" in html
    assert html.count("<polyline") == len(ev["roc"]) + 1  # clean is drawn in both ROC plots
    assert all(g in html and g in md for g in cfg.data.fakes)  # per-generator table
    assert (out / "junit.xml").read_text().count("<testcase") == 1  # no gates: one passing case


def test_detection_gates(trained):
    from advkit.eval.config import GatesConfig
    from advkit.eval.gates import evaluate_gates

    ev = trained[2]["evaluation"]
    clean, rob = ev["clean"]["auc"], ev["robust"][-1]["auc"]
    report = {"models": [{"name": "d", "clean_acc": ev["clean"]["acc"], "threat_models": [], "detection": ev}]}

    def gates(**kw):
        return {g["name"]: g for g in evaluate_gates(report, GatesConfig(**kw))}

    got = gates(min_auc=clean - 0.01, min_robust_auc={"128/255": rob + 0.01, "16/255": 0.0},
                min_laundered_auc={"all": 0.0})
    assert got["min_auc[d]"]["passed"] and got["min_auc[d]"]["value"] == clean
    assert not got["min_robust_auc[d,128/255]"]["passed"] and got["min_robust_auc[d,16/255]"]["passed"]
    assert sum(k.startswith("min_laundered_auc[") and g["passed"] for k, g in got.items()) == 8
    got = gates(min_auc=min(clean + 0.01, 1.0), min_robust_auc={"3/255": 0.1},
                min_laundered_auc={"jpeg_q30": ev["laundering"]["jpeg_q30"]["auc"]})
    assert got["min_auc[d]"]["passed"] is (clean == 1.0)
    assert not got["min_robust_auc[d,0.01176]"]["passed"]  # no attack at that eps: fails, says so
    assert "no evasion attack" in got["min_robust_auc[d,0.01176]"]["message"]
    assert got["min_laundered_auc[d,jpeg_q30]"]["passed"]  # >= its own value
    report["models"][0].pop("detection")  # a classifier entry: detector gates cannot be judged
    (g,) = gates(min_auc=0.5).values()
    assert not g["passed"] and "no detection results" in g["message"]
    with pytest.raises(ValueError, match="unknown transform 'jpeg_q10'"):
        GatesConfig(min_laundered_auc={"jpeg_q10": 0.5})
    with pytest.raises(ValueError, match="not in \\(0, 1\\]"):
        GatesConfig(min_robust_auc={"300/255": 0.5})


def test_eval_cli_evaluates_detectors_and_gates_them(trained, gens, tmp_path, capsys):
    from advkit.report import load_report

    cfg, _, report, out = trained
    data = ["--set=detection.data.real=mnist", f"--set=detection.data.fakes=[{','.join(gens)}]",
            "--set=detection.data.n_per_class=300", "--set=detection.evaluation.pgd_steps=5",
            "--set=detection.evaluation.eps=[128/255]", f"--set=models=[{{model: {out / 'model.safetensors'}}}]",
            "--set=device=cpu"]
    code, stdout, err = _run(capsys, "eval", *data, "--data-root", REPO / "datasets", "--out", tmp_path / "ev",
                             "--quiet", "--set=gates.min_auc=0.9", "--set=gates.checks=[eval_mode,logits]")
    assert code == 0, err
    rep = load_report(tmp_path / "ev" / "report.json")
    det = rep["models"][0]["detection"]
    # the same data config as training: the same test split, so the same clean AUC as training reported
    assert det["clean"]["auc"] == pytest.approx(report["evaluation"]["clean"]["auc"], abs=1e-9)
    assert [g["passed"] for g in rep["gates"]] == [True] * 3
    assert "(detector)" in stdout and "clean (test" in stdout and "all 3 gates passed" in stdout
    code, _, err = _run(capsys, "eval", *data, "--data-root", REPO / "datasets", "--out", tmp_path / "ev2",
                        "--quiet", "--set=gates.min_robust_auc={128/255: 0.99}", "--set=checks.enabled=false")
    assert code == 1 and "GATE FAILED min_robust_auc" in err
    assert (tmp_path / "ev2" / "report.html").is_file()  # a failing gate still leaves the reports
    code, _, err = _run(capsys, "eval", *data, "--out", tmp_path / "ev3", "--set=gates.min_auc=1.5")
    assert code == 2 and "gates.min_auc must be in [0,1]" in err and "Traceback" not in err


def test_report_diff_compares_detection_aucs(trained):
    import copy

    from advkit.report import diff_reports

    old = json.loads(json.dumps(trained[2]["report"]))
    new = copy.deepcopy(old)
    det = new["models"][0]["detection"]
    det["robust"][-1]["auc"] -= 0.05
    det["laundering"]["jpeg_q30"]["auc"] = min(det["laundering"]["jpeg_q30"]["auc"] + 0.03, 1.0) \
        if det["laundering"]["jpeg_q30"]["auc"] <= 0.97 else det["laundering"]["jpeg_q30"]["auc"] - 0.03
    del det["laundering"]["blur_s2"]
    changes = {(c["what"], c["kind"]) for c in diff_reports(old, new).changes}
    lab = det["robust"][-1]["label"]
    assert (f"AUC evasion@{lab}", "regression") in changes and ("AUC blur_s2", "removed") in changes
    assert any(w == "AUC jpeg_q30" for w, _ in changes)
    assert not diff_reports(old, old).changes and diff_reports(old, new).regressed

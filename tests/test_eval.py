"""The evaluation harness: per-sample worst case, cascade savings, sanity checks, gates, bad configs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from advkit.attacks import fgsm, pgd
from advkit.config import load_config
from advkit.errors import AdvkitError
from advkit.eval.checks import model_checks
from advkit.eval.config import ChecksConfig, EvalConfig
from advkit.eval.harness import run_eval
from advkit.eval.suite import run_suite, summarize
from conftest import REPO, run_cli

DATA = str(REPO / "datasets")
DEVICE = torch.device("cpu")


def cfg_for(ckpt, tmp_sets=(), **over):
    sets = [f"models=[{{name: model, model: {ckpt}}}]", f"data.root={DATA}", "data.n=200", "batch_size=100",
            "device=cpu", "checks.n=100", "checks.pgd_steps=10", *tmp_sets]
    return load_config(EvalConfig, None, sets)


DET_SUITE = "threat_models=[{norm: linf, eps: [0.05, 0.1, 0.15], attacks: [{name: fgsm}, " \
            "{name: pgd, steps: 10, random_start: false}]}]"


def test_cascade_worst_case_matches_running_every_attack_on_every_sample(trained_lenet, mnist_test):
    """With per-sample deterministic attacks, the cascade's robust set at each eps is exactly: robust to every
    attack run alone at this eps and at every smaller eps."""
    model, path = trained_lenet
    cfg = cfg_for(path, [DET_SUITE])
    tm = cfg.threat_models[0]
    x, y = mnist_test.subset(200).tensors()
    summ = summarize(run_suite(model, x, y, norm="linf", eps_list=tm.eps, suite=tm.suite(), mode="cascade",
                               seed=0, num_classes=10, batch_size=100, device=DEVICE),
                     n=200, eps_list=tm.eps, suite=tm.suite(), mode="cascade")
    with torch.no_grad():
        ok = model(x).argmax(1) == y
    robust_before = ok.clone()
    for ei, eps in enumerate(tm.eps):
        with torch.no_grad():
            r_f = model(fgsm(model, x, y, eps=eps)).argmax(1) == y
            r_p = model(pgd(model, x, y, eps=eps, steps=10, random_start=False)).argmax(1) == y
        robust_before &= r_f & r_p
        fb = torch.tensor(summ["per_sample"]["fooled_by"][ei])
        assert torch.equal(fb == -1, robust_before), eps
        assert summ["worst_case"][ei]["robust_acc"] == pytest.approx(robust_before.float().mean().item())
    # the cascade attacked fewer samples than the naive way: FGSM all correct ones, then PGD the rest
    fg, pg = summ["attacks"][0]["results"], summ["attacks"][1]["results"]
    assert fg[0]["attacked"] == int(ok.sum())
    assert pg[0]["attacked"] == fg[0]["attacked"] - fg[0]["fooled"]
    assert fg[1]["attacked"] < fg[0]["attacked"]  # samples fooled at eps 0.05 are not attacked again
    assert summ["worst_case"][0]["time_saved_s"] > 0


def test_full_mode_reports_each_attack_alone(trained_lenet, mnist_test):
    model, path = trained_lenet
    cfg = cfg_for(path, [DET_SUITE, "mode=full"])
    tm = cfg.threat_models[0]
    x, y = mnist_test.subset(200).tensors()
    summ = summarize(run_suite(model, x, y, norm="linf", eps_list=tm.eps, suite=tm.suite(), mode="full",
                               seed=0, num_classes=10, batch_size=64, device=DEVICE),
                     n=200, eps_list=tm.eps, suite=tm.suite(), mode="full")
    for ei, eps in enumerate(tm.eps):
        with torch.no_grad():
            acc = (model(fgsm(model, x, y, eps=eps)).argmax(1) == y).float().mean().item()
        assert summ["attacks"][0]["results"][ei]["robust_acc"] == pytest.approx(acc)
        assert summ["worst_case"][ei]["time_saved_s"] == 0


def test_report_has_checks_and_gates_and_a_high_gate_fails(trained_lenet):
    _, path = trained_lenet
    cfg = cfg_for(path, [DET_SUITE, "gates.min_clean_acc=0.999", "gates.min_robust_acc={0.05: 0.1}",
                         "gates.checks=[all]"])
    report = run_eval(cfg, device=DEVICE)
    gates = {g["name"]: g for g in report["gates"]}
    assert not gates["min_clean_acc[model]"]["passed"]
    assert 0.9 < gates["min_clean_acc[model]"]["value"] < 0.999
    assert gates["min_robust_acc[model,linf@0.05]"]["passed"]
    assert report["passed"] is False
    checks = {c["name"]: c for c in report["models"][0]["checks"]}
    assert set(checks) >= {"eval_mode", "deterministic", "logits", "gradients", "monotone_eps", "pgd_vs_fgsm",
                           "convergence", "large_eps", "single_step_gap", "gradient_free"}
    assert checks["gradient_free"]["status"] == "skip"  # no gradient-free attack in this suite
    for name in ("eval_mode", "deterministic", "logits", "gradients", "large_eps", "pgd_vs_fgsm"):
        assert checks[name]["status"] == "pass", checks[name]
    assert report["models"][0]["examples"] and report["models"][0]["examples"][0]["png_base64"]


class Softmaxed(nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, x):
        return self.m(x).softmax(1)


class Noisy(nn.Module):
    """Dropout left in training mode and a quantized input: random outputs and zero input gradients."""
    def __init__(self, m):
        super().__init__()
        self.m, self.drop = m, nn.Dropout(0.5)

    def forward(self, x):
        return self.drop(self.m(torch.round(x * 4) / 4))


def test_model_checks_catch_probabilities_randomness_training_mode_and_zero_gradients(trained_lenet,
                                                                                        mnist_test):
    model, _ = trained_lenet
    x, y = mnist_test.subset(64).tensors()
    good = {c["name"]: c["status"] for c in model_checks(model, x, y, ChecksConfig(), 32)}
    assert good == {"eval_mode": "pass", "deterministic": "pass", "logits": "pass", "gradients": "pass"}
    probs = {c["name"]: c["status"] for c in model_checks(Softmaxed(model), x, y, ChecksConfig(), 32)}
    assert probs["logits"] == "fail"
    noisy = Noisy(model)
    noisy.drop.train()
    bad = {c["name"]: c["status"] for c in model_checks(noisy, x, y, ChecksConfig(), 32)}
    assert bad["deterministic"] == "fail" and bad["eval_mode"] == "fail" and bad["gradients"] == "fail"


@pytest.fixture(scope="module")
def fgsm_only_model(tmp_path_factory):
    """Plain FGSM adversarial training (Goodfellow's objective) at eps 0.3: known to mask gradients. Two epochs
    on 30,000 images (a fifth of the config's 5 x 60,000) already mask them: FGSM finds 14% of PGD's adversarial
    examples at eps 0.3, the check fails below 25% (one epoch, the canary's model, reaches only 37%)."""
    from advkit.train import TrainConfig, train_classifier

    out = tmp_path_factory.mktemp("fgsm")
    cfg = load_config(TrainConfig, REPO / "configs/train/mnist_fgsm.yaml",
                      [f"data.root={DATA}", "epochs=2", "data.train_limit=30000", "data.test_limit=500", "eval.n=100",
                       "seed=0", "device=cpu"])
    train_classifier(cfg, out)
    return out / "model.safetensors"


@pytest.mark.slow  # two epochs of FGSM training on 30,000 images
def test_fgsm_only_model_trips_a_sanity_check(fgsm_only_model):
    cfg = cfg_for(fgsm_only_model, [
        "threat_models=[{norm: linf, eps: [0.1, 0.2, 0.3], attacks: [{name: fgsm}, {name: pgd, steps: 20}]}]",
        "gates.checks=[all]"])
    report = run_eval(cfg, device=DEVICE)
    checks = {c["name"]: c for c in report["models"][0]["checks"]}
    curves = checks["monotone_eps"]["evidence"]["curves"]
    # looks robust to FGSM, is not: the probes ran each attack alone
    assert curves["single_step"]["linf@0.3"] > 0.5 > curves["pgd10"]["linf@0.3"]
    assert report["models"][0]["threat_models"][0]["worst_case"][-1]["robust_acc"] < 0.5
    failed = [c for c in checks.values() if c["status"] == "fail"]
    assert any(c["name"] == "single_step_gap" for c in failed), checks["single_step_gap"]
    assert not report["passed"]


def _cli(*args, cwd=REPO, env=None):
    return subprocess.run([sys.executable, "-m", "advkit", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600, env=env)


def _in_process(capsys, *args) -> SimpleNamespace:
    """``advkit ARGS`` through ``advkit.cli.main`` in this process (no interpreter start: seconds saved per
    call on a loaded machine), as ``returncode``, ``stdout``, ``stderr``."""
    code, out, err = run_cli(capsys, *args)
    return SimpleNamespace(returncode=code, stdout=out, stderr=err)


@pytest.mark.parametrize("sets, needle", [
    (["thret_models=[]"], "did you mean 'threat_models'"),
    (["threat_models=[{norm: linf, eps: [0.2, 0.1]}]"], "sorted ascending"),
    (["threat_models=[{norm: linf, eps: [0.1], attacks: [{name: pgdd}]}]"], "unknown attack"),
    (["threat_models=[{norm: linf, eps: [0.1], attacks: [{name: pgd, stepz: 3}]}]"], "no parameter stepz"),
    (["threat_models=[{norm: l2, eps: [0.5], attacks: [{name: fgsm}]}]"], "works in linf"),
    (["threat_models=[{norm: linf, eps: [2.0]}]"], "eps 2.0 > 1"),
    (["gates.checks=[monotone]"], "did you mean 'monotone_eps'"),
    (["models=[{model: no/such/model.safetensors}]"], "checkpoint not found"),
    (["models=[{model: lenett}]"], "did you mean 'lenet'"),
])
def test_bad_configs_give_one_line_and_exit_2(tmp_path, capsys, sets, needle):
    flags = [a for s in [f"data.root={DATA}", *sets] for a in ("--set", s)]
    p = _in_process(capsys, "eval", *flags, "--out", str(tmp_path / "r"), "--quiet")
    assert p.returncode == 2, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0], p.stderr
    assert not (tmp_path / "r").exists()  # no partial reports


def test_targeted_attack_on_a_two_class_model_is_refused(tmp_path, capsys):
    rng = np.random.default_rng(0)
    npz = tmp_path / "two.npz"
    np.savez(npz, x_train=rng.integers(0, 255, (20, 8, 8, 1), dtype=np.uint8), y_train=rng.integers(0, 2, 20),
             x_test=rng.integers(0, 255, (20, 8, 8, 1), dtype=np.uint8), y_test=rng.integers(0, 2, 20))
    p = _in_process(capsys, "eval", "--set", "models=[{model: lenet}]", "--set", f"data.dataset=npz:{npz}", "--set",
                    "threat_models=[{norm: linf, eps: [0.1], attacks: [{name: pgd, targeted: true}]}]",
                    "--out", str(tmp_path / "r"), "--quiet")
    assert p.returncode == 2 and "targeted" in p.stderr and "2-class" in p.stderr, p.stderr


def test_cli_writes_four_reports_and_exits_1_naming_the_failing_gate(trained_lenet, tmp_path, capsys):
    _, path = trained_lenet
    sets = [f"models=[{{name: lenet, model: {path}}}]", f"data.root={DATA}", "data.n=100", "checks.n=50",
            "checks.pgd_steps=5", DET_SUITE, "gates.min_clean_acc=0.5", "gates.min_robust_acc={0.05: 0.99}"]
    out = tmp_path / "r"
    p = _in_process(capsys, "eval", *[a for s in sets for a in ("--set", s)], "--out", str(out), "--quiet")
    assert p.returncode == 1, p.stderr
    assert "min_robust_acc[lenet,linf@0.05]" in p.stderr
    assert sorted(f.name for f in out.iterdir()) == ["junit.xml", "report.html", "report.json", "report.md"]
    for f in out.iterdir():
        assert "min_robust_acc[lenet,linf@0.05]" in f.read_text(), f.name
    rep = json.loads((out / "report.json").read_text())
    assert rep["schema_version"] == 1 and rep["passed"] is False
    # the same run against itself as a baseline passes the drop gate, and report diff sees no change
    base = out / "report.json"
    p2 = _in_process(capsys, "eval", *[a for s in sets[:-1] for a in ("--set", s)], "--baseline", str(base),
                     "--out", str(tmp_path / "r2"), "--quiet")
    assert p2.returncode == 0, p2.stderr
    rep2 = json.loads((tmp_path / "r2" / "report.json").read_text())
    assert any(g["kind"] == "max_drop" and g["passed"] for g in rep2["gates"])
    d = _in_process(capsys, "report", "diff", str(base), str(tmp_path / "r2" / "report.json"))
    assert d.returncode == 0, d.stdout + d.stderr


def _strip(rep: dict) -> dict:
    rep = json.loads(json.dumps(rep))
    for k in ("created", "environment", "timing"):
        rep.pop(k)
    for m in rep["models"]:
        for tm in m["threat_models"]:
            for w in tm["worst_case"]:
                w.pop("time_s"), w.pop("time_saved_s")
            for a in tm["attacks"]:
                for r in a["results"]:
                    r.pop("time_s")
    return rep


@pytest.mark.slow  # distributed: three interpreter starts (74 s of the default run on a loaded two-core machine);
# tests/test_detect_train.py's two-rank ensemble run is the default run's distributed sample
def test_torchrun_two_ranks_give_the_single_process_report(trained_lenet, tmp_path):
    _, path = trained_lenet
    sets = [f"models=[{{model: {path}}}]", f"data.root={DATA}", "data.n=120", "batch_size=40", "checks.n=40",
            "checks.pgd_steps=5", "device=cpu",
            "threat_models=[{norm: linf, eps: [0.05, 0.1], attacks: [{name: fgsm}, {name: pgd, steps: 5}]}]"]
    flags = [a for s in sets for a in ("--set", s)]
    # torchrun gives each rank OMP_NUM_THREADS=1 (when unset); a process with two intra-op threads splits a
    # convolution's sums differently, and the checks' float evidence (rank 0 alone runs them) differed in the
    # last bits (1.37e-7 vs 1.09e-7). One thread everywhere: batch i is the same computation on rank i % 2 as
    # in the single process, summarize sorts by batch index, so the reports are equal exactly (norms included).
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = _cli("eval", *flags, "--out", str(tmp_path / "one"), "--quiet", env=env)
    assert one.returncode == 0, one.stderr
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "-m", "advkit", "eval", *flags, "--out", str(tmp_path / "two"), "--quiet"],
                         cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    assert two.returncode == 0, two.stderr[-2000:]
    a = json.loads((tmp_path / "one" / "report.json").read_text())
    b = json.loads((tmp_path / "two" / "report.json").read_text())
    assert b["environment"]["world_size"] == 2
    assert _strip(a) == _strip(b)


def test_eval_config_round_trips_unknown_gate_norm():
    with pytest.raises(AdvkitError, match="unknown norm"):
        load_config(EvalConfig, None, ["gates.min_robust_acc={l3@0.1: 0.5}"])


def test_baseline_of_another_schema_version_is_refused_before_any_work(tmp_path, capsys):
    base = tmp_path / "old.json"
    base.write_text(json.dumps({"schema": "advkit.report", "schema_version": 2, "models": []}))
    p = _in_process(capsys, "eval", "--set", f"data.root={DATA}", "--baseline", str(base), "--out",
                    str(tmp_path / "r"), "--quiet")
    assert p.returncode == 2 and "schema version 2" in p.stderr, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_the_detection_section_belongs_to_detect():
    """eval's config knows nothing of detectors; `advkit eval` reads detect's config (eval's plus a `detection`
    section), whose report config is eval's with the section last, as before."""
    from advkit.detect.config import EvalDetectionConfig
    from advkit.eval.config import config_dict

    with pytest.raises(AdvkitError, match="unknown config key 'detection'"):
        load_config(EvalConfig, None, ["detection.data.real=mnist"])
    cfg = load_config(EvalDetectionConfig, None, ["detection.data.real=mnist", "data.n=10"])
    assert isinstance(cfg, EvalConfig) and cfg.detection.enabled and cfg.data.n == 10
    assert not EvalDetectionConfig().detection.enabled
    plain, full = config_dict(EvalConfig()), config_dict(EvalDetectionConfig())
    assert list(full) == [*plain, "detection"] and {k: full[k] for k in plain} == plain
    assert full["detection"]["evaluation"]["pgd_steps"] == 20


# ------------------------------------------------------------------ intervals, per-sample outcomes, pairing

def test_report_carries_intervals_compact_outcomes_and_pairs_with_itself(trained_lenet, tmp_path):
    from advkit.report import diff_reports, to_json
    from advkit.report.paired import decode_fooled_by, robust_after
    from advkit.report.stats import wilson_interval

    _, path = trained_lenet
    cfg = cfg_for(path, [DET_SUITE, "data.n=150", "checks.enabled=false", "examples=0"])
    rep = run_eval(cfg, device=DEVICE)
    m = rep["models"][0]
    n = m["n"]
    assert m["clean_acc_ci"] == wilson_interval(round(m["clean_acc"] * n), n)
    assert m["clean_acc_ci"][0] < m["clean_acc"] < m["clean_acc_ci"][1]
    tm = m["threat_models"][0]
    codes = tm["per_sample"]["fooled_by"]
    assert all(isinstance(c, str) and len(c) == n for c in codes)  # one character per sample and eps
    rows = decode_fooled_by(codes)
    for ei, w in enumerate(tm["worst_case"]):
        assert w["robust"] == sum(robust_after(rows, ei)) and w["robust_acc_ci"] == wilson_interval(w["robust"], n)
        for ai, a in enumerate(tm["attacks"]):  # cascade: the cumulative columns, sample by sample
            assert a["results"][ei]["robust_acc"] == pytest.approx(sum(robust_after(rows, ei, ai)) / n)
            assert a["results"][ei]["robust_acc_ci"] == wilson_interval(round(a["results"][ei]["robust_acc"] * n), n)
    assert rep["data"]["fingerprint"].startswith("sha256:")
    assert len(to_json(rep).splitlines()) < 400  # compact: not a line per sample
    # the same run paired with itself: nothing changed, every paired test says so
    result = diff_reports(rep, json.loads(to_json(rep)))
    assert not result.changes and result.paired and all(t["p_value"] == 1.0 for t in result.paired)
    # another eps grid cannot be paired
    other = run_eval(cfg_for(path, ["threat_models=[{norm: linf, eps: [0.05, 0.1], attacks: [{name: fgsm}, "
                                    "{name: pgd, steps: 10, random_start: false}]}]", "data.n=150",
                                    "checks.enabled=false", "examples=0"]), device=DEVICE)
    with pytest.raises(AdvkitError, match=r"different eps grids for model 'model' \(linf\): \[0.05, 0.1, 0.15\] vs "
                                          r"\[0.05, 0.1\]"):
        diff_reports(rep, other)


# ------------------------------------------------------------------------ the attack-strength canary

# the short FGSM training .ci/run runs before configs/eval/mnist_canary.yaml (kept in sync by a test below)
CANARY_TRAIN = ["epochs=1", "data.train_limit=30000", "data.test_limit=200", "eval.n=100", "seed=0"]


def test_ci_trains_the_canary_model_as_the_tests_do():
    ci = (REPO / ".ci" / "run").read_text()
    assert "configs/train/mnist_fgsm.yaml" in ci and "configs/eval/mnist_canary.yaml" in ci
    for s in CANARY_TRAIN:
        assert f"--set {s}" in ci, s


@pytest.fixture(scope="module")
def canary_model(tmp_path_factory):
    """The canary's FGSM-trained MNIST model, trained exactly as .ci/run does (one epoch on 30,000 images)."""
    from advkit.train import TrainConfig, train_classifier

    out = tmp_path_factory.mktemp("canary")
    cfg = load_config(TrainConfig, REPO / "configs/train/mnist_fgsm.yaml",
                      [f"data.root={DATA}", "device=cpu", *CANARY_TRAIN])
    train_classifier(cfg, out)
    return out / "model.safetensors"


def _canary(model, *sets):
    return load_config(EvalConfig, REPO / "configs/eval/mnist_canary.yaml",
                       [f"models=[{{name: fgsm-trained, model: {model}}}]", f"data.root={DATA}", "device=cpu", *sets])


@pytest.mark.slow  # an epoch of FGSM training on 30,000 images (.ci/run's gate step trains and runs it too)
def test_canary_passes_with_working_attacks_and_fails_when_pgd_is_broken(canary_model):
    rep = run_eval(_canary(canary_model), device=DEVICE)
    gates = {g["kind"]: g for g in rep["gates"]}
    assert rep["passed"], [g["message"] for g in rep["gates"]]
    assert set(gates) == {"min_robust_acc", "max_robust_acc"}  # FGSM leaves it robust, PGD breaks it
    # a PGD that no longer steps (alpha 0: only its random start is left) is as weak as noise: the canary fails
    broken = run_eval(_canary(canary_model, "threat_models=[{norm: linf, eps: [0.3], attacks: [{name: fgsm}, "
                                            "{name: pgd, steps: 10, alpha: 0}]}]"), device=DEVICE)
    assert not broken["passed"]
    [g] = [g for g in broken["gates"] if not g["passed"]]
    assert g["name"] == "max_robust_acc[fgsm-trained,PGD-10,linf@0.3]" and "the attack got weaker" in g["message"]
    assert g["value"] > 0.5

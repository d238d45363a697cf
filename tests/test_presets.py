"""Attack presets (``autoattack``, ``autoattack-fast``): members and order, the cascade, eval-config expansion,
the CLI, the benchmark, and the cross-check of FAB-T, Square and the preset against the reference AutoAttack
on a small adversarially trained MNIST CNN."""

from __future__ import annotations

import json
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from advkit.attacks import PRESETS, attack_info, get_attack, preset_members, run_cascade
from advkit.errors import AdvkitError
from advkit.eval.config import ThreatModel
from conftest import REFERENCE, REPO, needs_reference, reduced_members, robust_fraction, run_cli

N_CHECK, STEPS, QUERIES = 200, 20, 1000   # cross-check: reduced budgets, the same on both sides (CI time)
# on conftest's robust_mnist, APGD-CE (100 steps) at 0.3 leaves ~42% of held-out test images standing (clean ~97%,
# measured on test images 24..423): of the 24 used here, some fall to it and some are left to APGD-T
EPS_SOME_STAND = 0.3


def test_members_and_order_are_autoattack_standard():
    assert preset_members("autoattack") == [
        {"name": "apgd-ce", "steps": 100, "restarts": 1, "norm": "linf"},
        {"name": "apgd-t", "steps": 100, "n_target_classes": 9, "norm": "linf"},
        {"name": "fab-t", "steps": 100, "n_target_classes": 9, "norm": "linf"},
        {"name": "square", "n_queries": 5000, "p_init": 0.8, "rescale_schedule": False, "norm": "linf"}]
    assert [m["name"] for m in preset_members("autoattack-fast", "l2")] == ["apgd-ce", "apgd-t"]
    assert all(m["norm"] == "l2" for m in preset_members("autoattack", "l2"))
    for name in PRESETS:  # every member takes the parameters the preset gives it
        for m in preset_members(name):
            get_attack(m["name"], **{k: v for k, v in m.items() if k != "name"})
    assert get_attack("autoattack").label == "AutoAttack" and not attack_info("autoattack").gradient_free
    with pytest.raises(AdvkitError, match="unknown preset"):
        preset_members("autoatack")


def test_preset_is_untargeted():
    from conftest import tiny_cnn

    x, y = torch.rand(2, 1, 8, 8), torch.tensor([0, 1])
    with pytest.raises(AdvkitError, match="untargeted"):
        get_attack("autoattack")(tiny_cnn(), x, y, eps=0.1, targeted=True)


@pytest.fixture(scope="module")
def lenet_batch(trained_lenet, mnist_test):
    model, path = trained_lenet
    x, y = mnist_test.subset(32).tensors()
    return model, x, y, path


def test_preset_equals_its_members_in_cascade_by_hand(robust_mnist, mnist_test, one_thread):
    model, (x, y) = robust_mnist, mnist_test.subset(24).tensors()
    eps = EPS_SOME_STAND
    ours = get_attack("autoattack-fast")(model, x, y, eps=eps, generator=torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(0)
    by_hand = x.clone()
    with torch.no_grad():
        standing = model(x).argmax(1) == y
    attacked = []
    for m in preset_members("autoattack-fast"):
        idx = standing.nonzero().squeeze(1)
        attacked.append(idx.numel())
        out = get_attack(m["name"], **{k: v for k, v in m.items() if k != "name"})(model, x[idx], y[idx], eps=eps,
                                                                                   generator=gen)
        with torch.no_grad():
            fooled = model(out).argmax(1) != y[idx]
        by_hand[idx[fooled]] = out[fooled]
        standing[idx[fooled]] = False
    assert torch.equal(ours, by_hand)
    assert attacked[0] > attacked[1] > 0, attacked  # the second member ran only on the samples left standing


def test_eval_config_expands_a_preset_into_its_members():
    suite = ThreatModel(eps=(0.3,), attacks=({"name": "autoattack"}, {"name": "pgd", "steps": 5})).suite()
    assert [s.label for s in suite] == ["APGD-CE", "APGD-T", "FAB-T", "Square-5000", "PGD-5"]
    assert [s.name for s in suite][:4] == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert suite[3].gradient_free and suite[3].params == {"n_queries": 5000, "p_init": 0.8,
                                                    "rescale_schedule": False, "norm": "linf"}
    l2 = ThreatModel(norm="l2", eps=(1.0,), attacks=("autoattack-fast",)).suite()
    assert [(s.name, s.params["norm"]) for s in l2] == [("apgd-ce", "l2"), ("apgd-t", "l2")]
    with pytest.raises(AdvkitError, match="preset 'autoattack' takes no steps"):
        ThreatModel(eps=(0.3,), attacks=({"name": "autoattack", "steps": 10},)).suite()
    with pytest.raises(AdvkitError, match="share the label"):  # a member listed again needs its own label
        ThreatModel(eps=(0.3,), attacks=("autoattack", {"name": "fab-t"})).suite()


def test_harness_cascade_runs_each_member_on_the_samples_still_standing(robust_mnist, mnist_test,
                                                                        one_thread):
    from advkit.eval.suite import run_batch

    model, (x, y) = robust_mnist, mnist_test.subset(24).tensors()
    suite = ThreatModel(eps=(EPS_SOME_STAND,), attacks=("autoattack-fast",)).suite()
    r = run_batch(model, x, y, 0, norm="linf", eps_list=(EPS_SOME_STAND,), suite=suite, mode="cascade", seed=0,
                  num_classes=10)
    attacked, fooled = r.stats[0, :, 0], r.stats[0, :, 1]
    assert attacked[0] == int(r.correct.sum())
    assert attacked[1] == attacked[0] - fooled[0] > 0


def test_cli_attack_with_the_preset(lenet_batch, capsys, tmp_path, monkeypatch, one_thread):
    _, _, _, path = lenet_batch
    monkeypatch.setenv("ADVKIT_DATA", str(REPO / "datasets"))
    code, out, err = run_cli(capsys, "attack", "--attack", "autoattack", "--eps", "0.25,0.3", "-n", "16",
                             "--model", path, "--out", tmp_path / "run")
    assert code == 0, err
    assert "autoattack (linf) on 16 images" in out
    rows = [ln.split() for ln in out.splitlines() if ln.strip().startswith(("0.25 ", "0.3 "))]
    assert [r[0] for r in rows] == ["0.25", "0.3"]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["attack"] == "autoattack" and summary["results"][1]["robust_acc"] == 0.0


@needs_reference
def test_bench_quick_smoke(lenet_batch, tmp_path, monkeypatch, one_thread):
    from bench._common import read_result
    from bench.autoattack import main

    _, _, _, path = lenet_batch
    monkeypatch.setenv("ADVKIT_DATA", str(REPO / "datasets"))
    res = main(["--quick", "--model", str(path), "--n", "8", "--out", str(tmp_path / "aa.json")])
    env = read_result(tmp_path / "aa.json")
    assert env["bench"] == "autoattack" and env["results"]["n"] == 8 and env["results"]["quick"]
    for side in ("advkit", "reference"):
        assert 0 <= res[side]["robust_acc"] <= res["clean_acc"]
    # the times are rounded to the millisecond in the record: the ratio is computed before rounding
    assert res["time_ratio"] == pytest.approx(res["advkit"]["time_s"] / res["reference"]["time_s"], rel=0.1)
    assert res["meets_target"] == (res["time_ratio"] <= 0.8)


# ---- the cross-check against the reference --------------------------------------------------------------



@pytest.fixture(scope="module")
def robust_mnist_cnn(one_thread):  # one thread: the same weights whatever the machine's core count
    """A small CNN PGD-trained on 6,000 MNIST images at eps 0.3 (eps ramped over the first half), ~1 minute
    on one core: robust enough that FAB-T leaves a fifth of the samples standing."""
    from advkit.data import load_dataset

    torch.manual_seed(0)
    x, y = load_dataset("mnist", "train", root=str(REPO / "datasets")).subset(6000).tensors()
    net = nn.Sequential(nn.Conv2d(1, 8, 5, 2, 2), nn.ReLU(), nn.Conv2d(8, 16, 5, 2, 2), nn.ReLU(), nn.Flatten(),
                        nn.Linear(16 * 49, 10))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    epochs, batch = 5, 50
    total, it = epochs * len(x) // batch, 0
    for _ in range(epochs):
        for i in torch.randperm(len(x)).split(batch):
            xb, yb = x[i], y[i]
            eps = 0.3 * min(1.0, (it + 1) / (total * 0.5))
            d = (torch.rand_like(xb) * 2 - 1) * eps
            for _ in range(3):
                d.requires_grad_(True)
                (g,) = torch.autograd.grad(F.cross_entropy(net((xb + d).clamp(0, 1)), yb), d)
                d = (d.detach() + 0.5 * eps * g.sign()).clamp(-eps, eps)
            loss = F.cross_entropy(net((xb + d).clamp(0, 1)), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            it += 1
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


@pytest.fixture(scope="module")
def reference_run(robust_mnist_cnn, mnist_test):
    sys.path.insert(0, str(REFERENCE))
    try:
        from autoattack import AutoAttack
    finally:
        sys.path.remove(str(REFERENCE))
    x, y = mnist_test.subset(N_CHECK).tensors()

    def run(attacks: list[str]) -> float:
        version = "custom" if attacks else "standard"
        aa = AutoAttack(robust_mnist_cnn, norm="Linf", eps=0.3, version=version, attacks_to_run=attacks,
                        device="cpu", seed=0, verbose=False)
        if attacks:  # the standard version's settings for single attacks
            aa.fab.n_target_classes, aa.fab.n_restarts = 9, 1
            aa.apgd_targeted.n_target_classes = 9
        for attack in (aa.apgd, aa.apgd_targeted, aa.fab):
            attack.n_iter = STEPS
        aa.square.n_queries = QUERIES
        return robust_fraction(robust_mnist_cnn, aa.run_standard_evaluation(x, y, bs=N_CHECK), y)

    return x, y, run


@pytest.mark.slow
@needs_reference
@pytest.mark.parametrize("name", ["fab-t", "square", "autoattack"])
def test_matches_the_reference_within_one_point(name, robust_mnist_cnn, reference_run, one_thread):
    x, y, run = reference_run
    model = robust_mnist_cnn
    gen = torch.Generator().manual_seed(0)
    members = reduced_members(preset_members("autoattack"), STEPS, QUERIES)
    if name == "autoattack":
        ours = robust_fraction(model, run_cascade(model, x, y, members, eps=0.3, generator=gen), y)
        theirs = run([])
    else:
        (member,) = [m for m in members if m["name"] == name]
        params = {k: v for k, v in member.items() if k != "name"}
        ours = robust_fraction(model, get_attack(name, **params)(model, x, y, eps=0.3, generator=gen), y)
        theirs = run([name])
    print(f"{name} on {N_CHECK} images at eps 0.3: advkit robust {ours:.3f}, reference {theirs:.3f}")
    assert abs(ours - theirs) <= 0.01 + 1e-9, (ours, theirs)

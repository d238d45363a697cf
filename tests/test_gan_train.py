"""GAN training: artifacts, bit-exact resume, WGAN-GP, hardened D, n_critic, the duality gap, divergence,
GAN checkpoints (and their refusal by the classifier loader), and the ``advkit generate`` /
``advkit train gan`` commands. Tiny nets (width 8) on a few hundred MNIST images, CPU only."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from advkit.config import load_config
from advkit.data import load_dataset
from advkit.errors import AdvkitError
from advkit.gan import (
    LOSSES,
    DCGANDiscriminator,
    DCGANGenerator,
    GanConfig,
    d_loss,
    duality_gap,
    load_discriminator,
    load_generator,
    train_gan,
)
from advkit.gan import losses as gan_losses
from advkit.gan.trainer import per_sample_d_loss
from conftest import one_error_line, run_cli

REPO = Path(__file__).resolve().parents[1]
TINY = ["model.z_dim=16", "model.g_width=8", "model.d_width=8", "data.train_limit=256", "batch_size=32",
        "grid_n=16", "device=cpu", "deterministic=true", f"data.root={REPO / 'datasets'}"]


def _cfg(*sets: str) -> GanConfig:
    return load_config(GanConfig, None, [*TINY, *sets])


class _Crash(Exception):
    pass


def _crash_after_epoch_1(m: dict) -> None:
    """An ``on_epoch`` callback that kills a run once epoch 1's checkpoint is written."""
    if m["epoch"] == 1:
        raise _Crash


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    """A 2-epoch run (8 steps per epoch): the reference for the artifact, resume and generate tests."""
    out = tmp_path_factory.mktemp("gan_base")
    g, metrics = train_gan(_cfg("epochs=2"), out)
    return out, g, metrics


# ---------------------------------------------------------------- the run and its artifacts

def test_run_writes_all_artifacts(base_run):
    out, g, metrics = base_run
    for name in ("generator.safetensors", "generator.json", "discriminator.safetensors", "discriminator.json",
                 "samples_epoch001.png", "samples_epoch002.png", "metrics.jsonl", "losses.png", "last.ckpt",
                 "config.yaml"):
        assert (out / name).is_file(), name
    for png in ("samples_epoch002.png", "losses.png"):
        img = cv2.imread(str(out / png))
        assert img is not None and img.shape[0] > 50 and img.shape[1] > 50
    lines = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in lines] == [1, 2]
    for m in lines:
        for k in ("d_loss", "g_loss", "d_real_acc", "time_s"):
            assert np.isfinite(m[k]), (k, m)
        assert m["d_steps"] == m["g_steps"] == 8 * m["epoch"]
    assert metrics == lines[-1]
    meta = json.loads((out / "generator.json").read_text())
    assert meta["kind"] == "generator" and meta["spec"]["arch"] == "dcgan_generator"
    assert meta["config"]["loss"] == "nonsaturating" and meta["metrics"]["epoch"] == 2
    assert json.loads((out / "discriminator.json").read_text())["kind"] == "discriminator"
    assert not g.training


def test_saved_generator_outputs_images_in_unit_range(base_run):
    out, g, _ = base_run
    loaded = load_generator(out / "generator.safetensors")
    assert isinstance(loaded, DCGANGenerator) and not loaded.training
    with torch.no_grad():
        x = loaded.sample(10, generator=torch.Generator().manual_seed(0))
        z = torch.randn(4, 16, generator=torch.Generator().manual_seed(1))
        assert torch.equal(loaded(z), g(z))
    assert x.shape == (10, 1, 28, 28) and x.min() >= 0 and x.max() <= 1
    d = load_discriminator(out / "discriminator.safetensors")
    assert isinstance(d, DCGANDiscriminator) and d(x).shape == (10,)


def test_depth_options_reach_the_saved_nets(tmp_path):
    g, _ = train_gan(_cfg("model.g_depth=1", "model.d_depth=1", "epochs=1", "data.train_limit=64"), tmp_path)
    loaded = load_generator(tmp_path / "generator.safetensors")
    d = load_discriminator(tmp_path / "discriminator.safetensors")
    assert loaded.spec["depth"] == 1 and d.spec["depth"] == 1
    z = torch.randn(3, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(loaded(z), g(z))
    for bad in ("model.g_depth=-1", "model.d_depth=-2"):
        with pytest.raises(ValueError, match="must be >= 0"):
            _cfg(bad)


def test_resume_matches_uninterrupted_run(base_run, tmp_path):
    ref, _, _ = base_run

    with pytest.raises(_Crash):
        train_gan(_cfg("epochs=2"), tmp_path, on_epoch=_crash_after_epoch_1)
    assert not (tmp_path / "generator.safetensors").exists() and (tmp_path / "last.ckpt").is_file()
    train_gan(_cfg("epochs=2"), tmp_path, resume=True)
    for name in ("generator.safetensors", "discriminator.safetensors"):
        a, b = load_file(str(ref / name)), load_file(str(tmp_path / name))
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), (name, k)
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 2
    with pytest.raises(AdvkitError, match="another config"):
        train_gan(_cfg("epochs=2", "lr_d=1e-3"), tmp_path, resume=True)


def test_linear_lr_decay_reaches_the_last_batch_and_resumes_exactly(base_run, tmp_path):
    straight, crashed = tmp_path / "straight", tmp_path / "crashed"
    train_gan(_cfg("epochs=2", "lr_decay=linear", "lr_g=4e-4"), straight)
    st = torch.load(straight / "last.ckpt", map_location="cpu", weights_only=True)
    # 2 epochs of 8 batches: the last batch runs at 1/16 of each base rate (the first at the full rate)
    assert [g["lr"] for g in st["opt_g"]["param_groups"]] == pytest.approx([4e-4 / 16], rel=1e-9)
    assert [g["lr"] for g in st["opt_d"]["param_groups"]] == pytest.approx([2e-4 / 16], rel=1e-9)

    with pytest.raises(_Crash):
        train_gan(_cfg("epochs=2", "lr_decay=linear", "lr_g=4e-4"), crashed, on_epoch=_crash_after_epoch_1)
    train_gan(_cfg("epochs=2", "lr_decay=linear", "lr_g=4e-4"), crashed, resume=True)
    a, b = load_file(str(straight / "generator.safetensors")), load_file(str(crashed / "generator.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    base = load_file(str(base_run[0] / "generator.safetensors"))  # same seed, constant rates: other weights
    assert not all(torch.equal(a[k], base[k]) for k in a)
    with pytest.raises(ValueError, match="unknown lr_decay 'cosine'; valid: none, linear"):
        _cfg("lr_decay=cosine")


# ---------------------------------------------------------------- losses and training options

def test_wgan_uses_critic_and_gradient_penalty(tmp_path):
    cfg = _cfg("loss=wgan", "epochs=1", "data.train_limit=128", "betas=[0.0, 0.9]", "lr_d=1e-4", "lr_g=1e-4")
    assert cfg.critic
    _, m = train_gan(cfg, tmp_path)
    assert np.isfinite(m["d_loss"]) and np.isfinite(m["g_loss"])
    assert m["gp"] is not None and np.isfinite(m["gp"]) and m["gp"] > 0
    d = load_discriminator(tmp_path / "discriminator.safetensors")
    assert d.spec["critic"] and not any(isinstance(mod, torch.nn.BatchNorm2d) for mod in d.modules())
    # the penalty is part of the critic's loss: without it the loss differs, same seed
    _, m0 = train_gan(_cfg("loss=wgan", "epochs=1", "data.train_limit=128", "betas=[0.0, 0.9]", "lr_d=1e-4",
                           "lr_g=1e-4", "gp_weight=0"))
    assert m0["gp"] is None and m0["d_loss"] != m["d_loss"]
    # exactly gp_weight * penalty is added: a constant penalty (no gradient, so the same run as without one)
    # raises the critic's loss by gp_weight times that constant and nothing else
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(gan_losses, "gradient_penalty", lambda d, real, fake, **kw: real.new_tensor(0.25))
        _, mc = train_gan(_cfg("loss=wgan", "epochs=1", "data.train_limit=128", "betas=[0.0, 0.9]", "lr_d=1e-4",
                               "lr_g=1e-4"))
    assert mc["gp"] == pytest.approx(0.25)
    assert mc["d_loss"] == pytest.approx(m0["d_loss"] + cfg.gp_weight * 0.25, rel=1e-5)


@pytest.mark.parametrize("objective", ["fgsm", "fgsm_rs", "pgd"])
def test_hardened_discriminator_trains(objective):
    cfg = _cfg(f"harden.objective={objective}", "harden.eps=0.1", "harden.steps=2", "epochs=1",
               "data.train_limit=96")
    g, m = train_gan(cfg)
    assert np.isfinite(m["d_loss"]) and np.isfinite(m["g_loss"]) and m["d_steps"] == 3
    _, plain = train_gan(_cfg("epochs=1", "data.train_limit=96"))
    # the attack changed what D trained on, for the worse: from the same start, attacked batches cost D more
    assert m["d_loss"] > plain["d_loss"], (m["d_loss"], plain["d_loss"])


@pytest.mark.parametrize("name", LOSSES)
def test_per_sample_d_loss_matches_d_loss(name):
    gen = torch.Generator().manual_seed(0)
    lr_, lf = torch.randn(7, generator=gen), torch.randn(5, generator=gen)
    real_label = 0.9 if name in ("minimax", "nonsaturating", "lsgan") else 1.0
    fn = per_sample_d_loss(name, real_label)

    def two(d):  # TwoLogit's output
        return torch.stack([d / 2, -d / 2], 1)

    got = fn(two(lr_), torch.zeros(7, dtype=torch.long)).mean() + fn(two(lf), torch.ones(5, dtype=torch.long)).mean()
    torch.testing.assert_close(got, d_loss(name, lr_, lf, real_label=real_label))


def test_n_critic_warmup_and_duality_gap_monitor(tmp_path):
    cfg = _cfg("n_critic=3", "epochs=1", "data.train_limit=192", "dg.every=1", "dg.k=2", "dg.n=64")
    _, m = train_gan(cfg, tmp_path)
    assert (m["d_steps"], m["g_steps"]) == (6, 2)
    st = torch.load(tmp_path / "last.ckpt", weights_only=True)

    def steps(opt):
        return {int(s["step"]) for s in opt["state"].values()}

    assert steps(st["opt_d"]) == {6} and steps(st["opt_g"]) == {2}  # real optimizer steps, 3:1
    assert m["dg"] >= -1e-6 and m["dg_g_step"] == 2
    # every estimate is plotted; the lowest one picks the best checkpoint, written with its gap
    assert cv2.imread(str(tmp_path / "dg.png")) is not None
    assert m["best_dg"] <= m["dg"] + 1e-12 and m["best_dg_g_step"] in (1, 2)
    g_best = load_generator(tmp_path / "generator_best_dg.safetensors")
    meta = json.loads((tmp_path / "generator_best_dg.json").read_text())
    assert meta["best_dg"] == pytest.approx(m["best_dg"]) and meta["selected_by"] == "lowest duality gap"
    assert g_best.z_dim == 16 and (tmp_path / "discriminator_best_dg.safetensors").is_file()
    _, m = train_gan(_cfg("d_warmup=2", "epochs=1", "data.train_limit=192"))
    assert (m["d_steps"], m["g_steps"]) == (6, 4)


def test_duality_gap_objective_trains_both_players_against_worst_case_copies(tmp_path):
    cfg = _cfg("loss=dg", "dg.train_k=2", "epochs=1", "data.train_limit=128")
    assert cfg.d_loss_name == "minimax" and not cfg.critic
    g, m = train_gan(cfg, tmp_path)
    assert np.isfinite(m["d_loss"]) and np.isfinite(m["g_loss"])
    st = torch.load(tmp_path / "last.ckpt", weights_only=True)

    def steps(opt):
        return {int(s["step"]) for s in opt["state"].values()}

    # the inner worst-case searches use their own optimizers: the players take one step per batch
    assert steps(st["opt_d"]) == {4} and steps(st["opt_g"]) == {4}
    # D trained against fakes of the worst-case generator, not of G: the losses differ from the minimax run
    _, mm = train_gan(_cfg("loss=minimax", "epochs=1", "data.train_limit=128"))
    assert m["d_loss"] > mm["d_loss"] + 0.005, (m["d_loss"], mm["d_loss"])  # worst-case fakes: harder than G's
    # more inner steps make a stronger worst-case generator, so D's loss against its fakes is higher
    _, m6 = train_gan(_cfg("loss=dg", "dg.train_k=6", "epochs=1", "data.train_limit=128"))
    assert m6["d_loss"] > m["d_loss"] + 0.005
    with pytest.raises(ValueError, match="does not apply to the dg loss"):
        _cfg("loss=dg", "real_label=0.9")


def test_duality_gap_is_nonnegative_and_leaves_players_untouched():
    torch.manual_seed(0)
    g = DCGANGenerator(z_dim=8, img_size=28, channels=1, width=4)
    d = DCGANDiscriminator(img_size=28, channels=1, width=4)
    d.eval()  # a mode of the caller's that must survive
    d.net[0].weight.requires_grad_(False)
    real = load_dataset("mnist", "test", root=str(REPO / "datasets")).subset(48).tensors()[0]
    before_g, before_d = copy.deepcopy(g.state_dict()), copy.deepcopy(d.state_dict())
    flags = [p.requires_grad for p in [*g.parameters(), *d.parameters()]]
    res = duality_gap(g, d, real, k=5, lr=1e-2, batch_size=16, generator=torch.Generator().manual_seed(0))
    assert set(res) >= {"dg", "v_worst_d", "v_worst_g"}
    assert res["dg"] >= -1e-6 and res["v_worst_d"] >= res["v_worst_g"]
    assert res["dg"] > 0  # 5 Adam steps at lr 1e-2 improve on an untrained pair
    for before, net in ((before_g, g), (before_d, d)):
        after = net.state_dict()
        assert all(torch.equal(before[k], after[k]) for k in before)
    assert flags == [p.requires_grad for p in [*g.parameters(), *d.parameters()]]
    assert g.training and not d.training
    assert all(p.grad is None for p in [*g.parameters(), *d.parameters()])
    again = duality_gap(g, d, real, k=5, lr=1e-2, batch_size=16, generator=torch.Generator().manual_seed(0))
    assert again == res  # seeded


def test_nan_loss_stops_with_step_and_last_good_checkpoint(tmp_path, monkeypatch):
    import advkit.gan.losses as losses

    real = losses.d_loss
    calls = {"n": 0}

    def flaky(*a, **k):
        calls["n"] += 1
        out = real(*a, **k)
        return out * float("nan") if calls["n"] == 12 else out

    monkeypatch.setattr(losses, "d_loss", flaky)
    with pytest.raises(AdvkitError) as e:
        train_gan(_cfg("epochs=2"), tmp_path)
    msg = str(e.value)
    assert "step 12" in msg and "epoch 2" in msg and str(tmp_path / "last.ckpt") in msg and "end of epoch 1" in msg
    assert torch.load(tmp_path / "last.ckpt", weights_only=True)["epoch"] == 1
    assert not (tmp_path / "generator.safetensors").exists()


# ---------------------------------------------------------------- checkpoints across kinds

def test_classifier_loader_refuses_gan_checkpoints_and_back(base_run, tmp_path):
    from advkit.models import create_model, load, save

    out, _, _ = base_run
    with pytest.raises(AdvkitError, match="generator checkpoint; a classifier is expected here"):
        load(out / "generator.safetensors")
    with pytest.raises(AdvkitError, match="discriminator checkpoint; a classifier is expected here"):
        load(out / "discriminator.safetensors")
    with pytest.raises(AdvkitError, match="is a discriminator checkpoint, not a generator"):
        load_generator(out / "discriminator.safetensors")
    clf = save(create_model("lenet", num_classes=10, in_chans=1, input_size=28, width=4), tmp_path / "c.safetensors")
    with pytest.raises(AdvkitError, match="is a classifier checkpoint, not a generator"):
        load_generator(clf)


# ---------------------------------------------------------------- the CLI

def test_generate_npz_folder_and_reproducible(base_run, tmp_path, capsys):
    ckpt = str(base_run[0] / "generator.safetensors")
    a, b, c = tmp_path / "a.npz", tmp_path / "b.npz", tmp_path / "c.npz"
    for path, seed in ((a, "0"), (b, "0"), (c, "1")):
        code, out, err = run_cli(capsys, "generate", "--ckpt", ckpt, "-n", "37", "--out", str(path), "--seed", seed,
                              "--batch-size", "10", "--device", "cpu")
        assert code == 0, err
    assert a.read_bytes() == b.read_bytes() and a.read_bytes() != c.read_bytes()
    ds = load_dataset(f"npz:{a}", "test")
    assert ds.images.shape == (37, 1, 28, 28) and ds.classes == ["real", "fake"] and bool((ds.labels == 1).all())
    with np.load(a, allow_pickle=False) as z:
        assert z["x"].dtype == np.uint8 and z["x"].shape == (37, 28, 28, 1)
    folder = tmp_path / "pngs"
    code, _, err = run_cli(capsys, "generate", "--ckpt", str(base_run[0]), "-n", "12", "--out", str(folder),
                        "--batch-size", "5", "--device", "cpu")
    assert code == 0, err
    files = sorted(p.name for p in folder.iterdir())
    assert files == [f"{i:06d}.png" for i in range(12)]
    img = cv2.imread(str(folder / "000000.png"), cv2.IMREAD_UNCHANGED)
    with np.load(a, allow_pickle=False) as z:
        assert img.shape == (28, 28) and np.array_equal(img, z["x"][0, :, :, 0])  # same seed 0, same images
    code, _, err = run_cli(capsys, "generate", "--ckpt", ckpt, "-n", "3", "--out", str(folder))
    assert code == 2 and "not an empty folder" in one_error_line(err)


def test_generate_bad_input_is_one_line_exit_2(base_run, tmp_path, capsys):
    from advkit.models import create_model, save

    ckpt = str(base_run[0] / "generator.safetensors")
    for n in ("0", "-5"):
        code, _, err = run_cli(capsys, "generate", "--ckpt", ckpt, "-n", n, "--out", str(tmp_path / "x.npz"))
        assert code == 2 and "-n must be >= 1" in one_error_line(err)
    clf = save(create_model("lenet", num_classes=10, in_chans=1, input_size=28, width=4), tmp_path / "c.safetensors")
    code, _, err = run_cli(capsys, "generate", "--ckpt", str(clf), "-n", "4", "--out", str(tmp_path / "x.npz"))
    assert code == 2 and "classifier checkpoint, not a generator" in one_error_line(err)
    assert not (tmp_path / "x.npz").exists()


def test_train_gan_cli(tmp_path, capsys):
    sets = [a for s in [*TINY, "epochs=1", "data.train_limit=64"] for a in ("--set", s)]
    code, out, err = run_cli(capsys, "train", "gan", "-c", str(REPO / "configs/gan/dcgan_mnist.yaml"), *sets,
                          "--out", str(tmp_path / "run"))
    assert code == 0, err
    assert "epoch   1" in out and (tmp_path / "run" / "generator.safetensors").is_file()
    code, _, err = run_cli(capsys, "train", "gan", "--set", "loss=wasserstein", "--out", str(tmp_path / "bad"))
    assert code == 2 and "unknown GAN loss 'wasserstein'" in one_error_line(err)
    bad = tmp_path / "bad.yaml"
    bad.write_text("los: hinge\n")
    code, _, err = run_cli(capsys, "train", "gan", "-c", str(bad), "--out", str(tmp_path / "bad"))
    assert code == 2 and "unknown config key 'los'" in one_error_line(err)
    assert not (tmp_path / "bad").exists()


@pytest.mark.slow  # three interpreter starts and two trainings (75 s on a loaded two-core machine); the
# classifier's and eval's two-rank equality tests stay in the default run
def test_torchrun_two_processes_on_gloo_match_one_process(tmp_path):
    """Global batch sliced per rank, z drawn globally and sliced, gradients averaged: with no BatchNorm
    (whose statistics are per process) two processes train the same nets as one, up to summation order."""
    import subprocess
    import sys

    sets = [*TINY, "epochs=2", "data.train_limit=128", "loss=hinge", "model.critic=true",
            "model.g_batch_norm=false", "dg.every=2", "dg.k=2", "dg.n=32"]
    flags = [a for s in sets for a in ("--set", s)]
    runs = {}
    for name, launcher in (("ddp", ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]),
                           ("one", [])):
        p = subprocess.run([sys.executable, *launcher, "-m", "advkit", "train", "gan", *flags,
                            "--out", str(tmp_path / name)], cwd=REPO, capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stderr[-6000:]
        runs[name] = p.stdout
    assert runs["ddp"].count("epoch   2") == 1  # rank 0 alone reports
    for f in ("generator.safetensors", "discriminator.safetensors"):
        a, b = load_file(tmp_path / "ddp" / f), load_file(tmp_path / "one" / f)
        assert a.keys() == b.keys()
        for k in a:
            torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=1e-4)
    m_ddp, m_one = ([json.loads(x) for x in (tmp_path / n / "metrics.jsonl").read_text().splitlines()]
                    for n in ("ddp", "one"))
    for a, b in zip(m_ddp, m_one):
        for k in ("d_loss", "g_loss", "d_real_acc", "d_fake_acc", "dg"):
            assert a[k] == pytest.approx(b[k], rel=1e-4, abs=1e-6), k
        assert (a["d_steps"], a["g_steps"]) == (b["d_steps"], b["g_steps"])


@pytest.mark.parametrize("path", sorted((REPO / "configs" / "gan").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_load(path):
    cfg = load_config(GanConfig, path)
    if "wgangp" in path.name:
        assert cfg.loss == "wgan" and cfg.critic and cfg.n_critic == 5 and tuple(cfg.betas) == (0.0, 0.9)
    if "hardened" in path.name:
        assert cfg.harden.objective != "none" and cfg.harden.eps > 0

"""Smoke run of the MNIST GAN benchmark: it runs end to end and writes sane figures (the figures themselves come
from full runs, recorded in bench/results/)."""

from __future__ import annotations

import importlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gan_mnist_quick(tmp_path):
    out = tmp_path / "gan.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # ADVKIT_CACHE: the isolated one from conftest
    # timeouts below are hang guards: the first run trains the judge, minutes on a loaded 2-core machine
    p = subprocess.run([sys.executable, "-m", "bench.gan_mnist", "--quick", "--out", str(out),
                        "--run-dir", str(tmp_path / "runs")],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-2000:]
    envelope = json.loads(out.read_text())
    r = envelope["results"]
    assert not out.with_suffix(".md").exists()  # quick runs write no table
    assert r["quick"] is True and r["n_samples"] == 200
    clf, ref = r["classifier"], r["reference"]
    assert clf["test_acc"] > 0.95 and Path(clf["path"]).is_file()
    assert Path(clf["path"]).is_relative_to(os.environ["ADVKIT_CACHE"])
    assert ref["is_test"] > 5  # a real classifier on real digits
    (row,) = r["rows"]
    assert row["config"] == "dcgan_mnist" and row["epochs"] == 1 and len(row["epoch_time_s"]) == 1
    assert row["resolved_config"]["model"]["g_width"] == 8 and row["resolved_config"]["data"]["train_limit"] == 512
    # IS always lies in [1, 10] for 10 classes, so that bound proves nothing; the property: the judge scores a
    # 1-epoch tiny GAN's samples well below real test digits (seen: 1.0 against 9.3)
    assert 1 <= row["is"] < ref["is_test"] - 1, (row["is"], ref["is_test"])
    cov = row["coverage"]
    assert len(cov) == 10 and math.isclose(sum(cov), 1.0, abs_tol=1e-6) and row["min_class_share"] == min(cov)
    assert row["fd_floor"] == ref["fd_floor"] >= 0
    assert row["fd"] > row["fd_floor"]  # an untrained 1-epoch tiny GAN is worse than real data
    assert math.isclose(row["fd_ratio"], row["fd"] / row["fd_floor"], rel_tol=1e-9)
    assert math.isfinite(row["kid"]) and row["s_per_epoch"] > 0
    assert row["dg_fd_spearman"] is None and "dg" in row["dg_fd_note"]
    assert set(row["targets"]) == {"is", "min_class_share", "fd_ratio", "epochs", "met"}
    assert envelope["machine"]["cpu_count"] >= 1 and envelope["machine"]["torch"]
    assert (tmp_path / "runs" / "dcgan_mnist" / "generator.safetensors").is_file()

    # --score: the same generator judged again by the same classifier, given as a checkpoint, without training
    # ("default" names the quick run's judge, advkit's default LeNet, without its path)
    gen = tmp_path / "runs" / "dcgan_mnist" / "generator.safetensors"
    for judge in (clf["path"], "default"):
        p = subprocess.run([sys.executable, "-m", "bench.gan_mnist", "--score", str(gen),
                            "--judge", judge, "--n-samples", "200"],
                           cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
        assert p.returncode == 0, p.stderr[-2000:]
        line = p.stdout.strip().splitlines()[-1]
        assert line.startswith(f"{gen}: IS {row['is']:.2f}, min class share {row['min_class_share']:.1%}, "
                               f"FD {row['fd']:.3f} "), (judge, line, row)
        assert "training runs in" not in p.stdout  # scoring trains nothing

    # the table a full run writes names the overrides it ran with (e.g. a --set batch size)
    md = _bench_module().markdown(envelope)
    assert "Config overrides (every config): " in md and "`epochs=1`" in md and "`model.g_width=8`" in md
    assert "| dcgan_mnist | nonsaturating | 1 |" in md


def _bench_module():
    return importlib.import_module("bench.gan_mnist")  # pytest runs from the repository root, where bench is


def test_per_epoch_generators_from_a_resume_checkpoint(tmp_path):
    """With ema_g the bench samples from the EMA copy and scores the raw G beside it; without, only G."""
    import torch

    from advkit.config import load_config
    from advkit.gan import GanConfig

    bench = _bench_module()
    cfg = load_config(GanConfig, REPO / "configs" / "gan" / "dcgan_mnist.yaml", ["model.g_width=8", "model.z_dim=4"])
    torch.manual_seed(0)
    G, G_ema = (bench.build_generator(cfg, img_size=28, channels=1) for _ in range(2))
    with torch.no_grad():  # DCGAN's N(0, 0.02) init leaves fresh deep nets near-constant: make the two differ
        for p in G_ema.parameters():
            p.add_(torch.randn_like(p))
    z = torch.randn(3, 4)
    ckpt = tmp_path / "last.ckpt"
    torch.save({"G": G.state_dict(), "G_ema": G_ema.state_dict()}, ckpt)
    sample, raw = bench.generators_from_ckpt(ckpt, cfg, torch.device("cpu"))
    with torch.no_grad():
        want_ema, want_raw = G_ema.eval()(z), G.eval()(z)
        assert not torch.allclose(want_ema, want_raw)  # two different nets, so the check below can fail
        torch.testing.assert_close(sample(z), want_ema)
        torch.testing.assert_close(raw(z), want_raw)
    torch.save({"G": G.state_dict(), "G_ema": None}, ckpt)
    sample, raw = bench.generators_from_ckpt(ckpt, cfg, torch.device("cpu"))
    assert raw is None
    with torch.no_grad():
        torch.testing.assert_close(sample(z), want_raw)

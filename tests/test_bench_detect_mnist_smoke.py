"""Smoke run of ``python -m bench.detect_mnist`` on a tiny untrained generator: both detectors train and are scored."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # a whole benchmark run, end to end: CI's slow step
def test_detect_mnist_quick(tmp_path):
    from advkit.gan import DCGANGenerator, save_gan_net

    torch.manual_seed(0)
    g = save_gan_net(DCGANGenerator(z_dim=8, img_size=28, channels=1, width=4), tmp_path / "g.safetensors",
                     "generator")
    out = tmp_path / "d.json"
    p = subprocess.run([sys.executable, "-m", "bench.detect_mnist", "--generator", str(g), "--quick", "--out",
                        str(out), "--run-dir", str(tmp_path / "runs")], cwd=REPO, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    env = json.loads(out.read_text())
    assert env["bench"] == "detect_mnist" and env["command"].startswith("python -m bench.detect_mnist --generator")
    r = env["results"]
    assert [row["config"] for row in r["rows"]] == ["mnist_dcgan", "mnist_dcgan_hardened"]
    for row in r["rows"]:
        # an untrained generator's fakes are noise next to digits: even a quick detector separates them (1.0 seen)
        assert row["clean_auc"] > 0.95 and set(row["robust_auc"]) == {"4/255", "8/255", "16/255"}
        assert row["robust_auc"]["4/255"] <= row["clean_auc"] + 1e-9  # an attack never helps the detector
        assert row["robust_auc"]["16/255"] <= row["robust_auc"]["4/255"] + 1e-9  # worst case grows with eps
    assert r["rows"][1]["train_objective"] == "pgd" and "machine" in env


@pytest.mark.slow  # a whole benchmark run, end to end: CI's slow step
def test_detect_mnist_quick_with_the_gans_discriminator(tmp_path):
    from advkit.gan import DCGANDiscriminator, DCGANGenerator, save_gan_net

    torch.manual_seed(0)
    g = save_gan_net(DCGANGenerator(z_dim=8, img_size=28, channels=1, width=4), tmp_path / "g.safetensors",
                     "generator")
    d = save_gan_net(DCGANDiscriminator(img_size=28, channels=1, width=4), tmp_path / "d.safetensors",
                     "discriminator")
    out = tmp_path / "d.json"
    base = [sys.executable, "-m", "bench.detect_mnist", "--generator", str(g), "--quick", "--out", str(out),
            "--configs", "mnist_dcgan_disc", "--run-dir", str(tmp_path / "runs")]
    p = subprocess.run(base, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert p.returncode != 0 and "needs --discriminator" in p.stderr
    p = subprocess.run([*base, "--discriminator", str(d)], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    (row,) = json.loads(out.read_text())["results"]["rows"]
    assert row["config"] == "mnist_dcgan_disc" and row["clean_auc"] > 0.95  # separates noise from digits
    assert set(row["robust_auc"]) == {"4/255", "8/255", "16/255"}
    # not hardened: a 16/255 attack breaks it (AUC 0.0 seen), and the worst case grows with eps
    assert row["robust_auc"]["16/255"] < 0.5 and row["robust_auc"]["16/255"] <= row["robust_auc"]["4/255"] + 1e-9

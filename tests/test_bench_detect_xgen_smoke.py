"""Smoke run of ``python -m bench.detect_cross_generator`` on tiny untrained generators: a detector trains on one, the
harness scores it against all of them, the table has one AP per generator."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # a whole benchmark run, end to end: CI's slow step
def test_cross_generator_quick(tmp_path):
    from advkit.gan import DCGANGenerator, save_gan_net

    gens = {}
    for name, seed, width in (("a", 0, 4), ("b", 1, 4), ("wide", 2, 8)):
        torch.manual_seed(seed)
        gens[name] = str(save_gan_net(DCGANGenerator(z_dim=8, img_size=28, channels=1, width=width),
                                      tmp_path / f"{name}.safetensors", "generator"))
    out = tmp_path / "x.json"
    cmd = [sys.executable, "-m", "bench.detect_cross_generator", "--train", f"a={gens['a']}", "--test",
           f"b={gens['b']}", "--test", f"wide={gens['wide']}", "--configs", "mnist_dcgan", "--quick", "--out",
           str(out), "--run-dir", str(tmp_path / "runs")]
    p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    r = json.loads(out.read_text())["results"]
    (row,) = r["rows"]
    assert row["detector"] == "mnist_dcgan" and set(row["per_generator"]) == {"a", "b", "wide"}
    for g, v in row["per_generator"].items():
        # untrained generators all make noise next to digits: the detector separates each one (1.0 seen)
        assert v["n_fake"] > 0 and v["auc"] > 0.9 and v["ap"] > 0.9, (g, v)
    assert row["per_generator"]["a"]["auc"] > 0.9  # its own generator, even after one quick epoch
    table = out.with_suffix(".md").read_text()
    assert "a (train) AUC / AP" in table and table.count("\n| mnist_dcgan |") == 1
    # an already-trained detector is scored as it is (no training): the same numbers
    cmd2 = [*cmd[:3], "--train", f"a={gens['a']}", "--test", f"b={gens['b']}", "--test", f"wide={gens['wide']}",
            "--detector", f"mnist_dcgan={tmp_path / 'runs' / 'mnist_dcgan' / 'model.safetensors'}", "--quick",
            "--out", str(tmp_path / "y.json")]
    p = subprocess.run(cmd2, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    (again,) = json.loads((tmp_path / "y.json").read_text())["results"]["rows"]
    assert again["train_s"] == 0 and again["per_generator"] == row["per_generator"]

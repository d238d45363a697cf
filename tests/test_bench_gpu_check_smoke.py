"""The prepared GPU check (bench/gpu_check.py) at its tiny CPU size: every step runs and records its figures,
so the script cannot rot before a GPU is at hand."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("ADVKIT_DATA", REPO.parent / "shared" / "datasets"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="the tiny CPU run; on CUDA the full check is the test")
@pytest.mark.skipif(not (DATA / "cifar10").is_dir(), reason="needs CIFAR-10 under $ADVKIT_DATA")
def test_gpu_check_tiny_runs_every_step(tmp_path):
    out = tmp_path / "gpu_check.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.run([sys.executable, "-m", "bench.gpu_check", "--data-root", str(DATA), "--out", str(out)],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, (p.stdout[-3000:], p.stderr[-3000:])
    env_ = json.loads(out.read_text())
    assert env_["bench"] == "gpu_check" and env_["machine"]["device"] == "cpu"
    r = env_["results"]
    assert r["tiny"] is True and r["all_ok"] is True
    steps = r["steps"]
    assert set(steps) == {"fast_at_epoch", "attack_sweep_bf16_channels_last", "gan_epoch", "advkit_eval_mnist_ci",
                          "nccl_two_process"}
    assert "compile=true" in steps["fast_at_epoch"]["sets"]
    sweep = steps["attack_sweep_bf16_channels_last"]
    assert len(sweep["rows"]) == 6 and {row["attack"] for row in sweep["rows"]} == {"fgsm", "pgd10"}
    for row in sweep["rows"]:  # the bound holds, and the attack moved the images (a real perturbation)
        assert row["bound_ok"] and row["in_box"] and 0.5 * row["eps"] < row["max_linf"] <= row["eps"] + 1e-6
        assert 0 <= row["robust_acc"] <= 1 and row["images_per_s"] > 0
    assert steps["gan_epoch"]["steps_per_s"] > 0 and steps["gan_epoch"]["epoch_metrics"]["d_steps"] == 4
    assert steps["advkit_eval_mnist_ci"]["returncode"] == 0
    assert "needs two" in steps["nccl_two_process"]["skipped"]

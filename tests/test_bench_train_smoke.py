"""Smoke runs of the training benchmarks: they run end to end and write sane figures (the figures themselves
come from full runs, recorded in bench/results/)."""

from __future__ import annotations

import json
import math
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _run(bench: str, out: Path, *args: str) -> dict:
    """``python -m bench.BENCH --quick``; the envelope's results, with its machine beside them."""
    p = subprocess.run([sys.executable, "-m", f"bench.{bench}", "--quick", "--out", str(out), *args],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    env = json.loads(out.read_text())
    assert env["bench"] == bench
    assert env["command"] == shlex.join(["python", "-m", f"bench.{bench}", "--quick", "--out", str(out), *args])
    return {**env["results"], "machine": env["machine"]}


@pytest.mark.slow  # a whole benchmark run, end to end: CI's slow step
def test_train_mnist_quick(tmp_path):
    # clean objective: an adversarial run needs more than a smoke run's 20 steps to learn anything
    r = _run("train_mnist", tmp_path / "t.json", "--run-dir", str(tmp_path / "run"), "--set", "objective.name=clean",
             "--set", "epochs=2")
    assert r["quick"] is True and r["n_test"] == 200
    assert 0.3 < r["clean_acc"] <= 1.0  # two epochs on 2,000 images learn the digits
    assert 0.0 <= r["pgd5_r1_acc"] < r["clean_acc"]
    assert r["machine"]["cpu_count"] >= 1 and r["train_wall_s"] > 0
    assert (tmp_path / "run" / "model.safetensors").is_file()


@pytest.mark.slow  # a whole benchmark run, end to end: CI's slow step
def test_train_speed_quick(tmp_path):
    r = _run("train_speed", tmp_path / "s.json")
    (row,) = r["rows"]
    med = row["median_epoch_s"]
    assert all(math.isfinite(v) and v > 0 for v in med.values())
    # an fgsm_rs epoch does twice a clean one's passes and PGD-10 six times more than fgsm_rs; the medians of
    # three interleaved rounds keep that order on a loaded machine, with bounds wide enough for its noise
    assert row["rounds"] == 3
    assert 1.0 < row["ratio_to_clean"]["fgsm_rs"] < 6
    assert row["ratio_to_clean"]["fgsm_rs"] < row["ratio_to_clean"]["pgd10"] < 30

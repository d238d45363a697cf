"""Smoke test of ``python -m bench.attack_speed``: the quick run finishes and writes sane figures (the peers it
cannot import, torchattacks and ART, are skipped, not failed)."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
OPTIONAL_PEERS = {"torchattacks": "torchattacks", "art": "art"}


@pytest.mark.slow
def test_attack_speed_quick(tmp_path):
    # one thread: a smoke test checks sanity, not speed, and two OpenMP threads on a busy two-core machine
    # can slow it many-fold
    out = tmp_path / "attack_speed.json"
    p = subprocess.run([sys.executable, "-m", "bench.attack_speed", "--quick", "--device", "cpu",
                        "--threads", "1", "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    envelope = json.loads(out.read_text())
    result = envelope["results"]
    assert out.with_suffix(".md").is_file()
    assert result["quick"] is True
    assert envelope["machine"]["torch"] and envelope["machine"]["cpu_count"] >= 1
    expected = {"floor", "advkit", "foolbox", "foolbox+frozen"}
    for peer, module in OPTIONAL_PEERS.items():
        if importlib.util.find_spec(module) is not None:
            expected |= {peer, f"{peer}+frozen"}
    assert [c["name"] for c in result["configs"]] == ["mnist_lenet", "cifar_preact_resnet18"]
    for cfg in result["configs"]:
        methods = cfg["methods"]
        assert set(methods) == expected, (cfg["name"], sorted(methods), cfg["skipped"])
        for name, m in methods.items():
            assert math.isfinite(m["median_s"]) and m["median_s"] > 0, (cfg["name"], name, m)
            assert m["images_per_s"] == pytest.approx(cfg["batch"] / m["median_s"])
            assert m["ratio_to_floor"] == pytest.approx(m["median_s"] / methods["floor"]["median_s"])
        # advkit does the floor's work plus a few elementwise ops per step: neither free nor a multiple of it
        assert 0.5 < methods["advkit"]["ratio_to_floor"] < 3, (cfg["name"], methods["advkit"])
        assert cfg["targets"]["fastest_peer"] in methods
        for name, c in cfg["sanity"]["outputs"].items():  # every method ran a real attack within the budget
            assert c["in_box"] and c["linf"] <= cfg["eps"] + 1e-5, (cfg["name"], name, c)
        mem = cfg["memory"]
        assert "ratio" in mem, mem
        assert mem["fwd_bwd_bytes"] > 0 and mem["pgd_bytes"] > 0
        # PGD keeps one step's graph alive at a time: its peak is near one forward+backward's, never 10x it
        assert 0.8 < mem["ratio"] < 3, mem


@pytest.mark.slow
def test_eval_speed_quick(tmp_path):
    """The cascade, the naive way and MultiAttack reach nearly the same worst case; memory runs finish."""
    out = tmp_path / "eval_speed.json"
    p = subprocess.run([sys.executable, "-m", "bench.eval_speed", "--quick", "--out", str(out)],
                       cwd=REPO, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    result = json.loads(out.read_text())["results"]
    (row,) = result["rows"]
    assert row["speedup_vs_naive"] > 0 and row["cascade"]["s"] > 0
    for c, nv in zip(row["cascade"]["worst_case"], row["naive"]["worst_case"]):
        assert abs(c - nv) <= 0.1, row  # different random starts, same question: close answers
    attacked = row["cascade"]["attacked"]
    assert attacked["PGD-3x2"][0] <= attacked["FGSM"][0]  # later attacks only see the survivors
    if importlib.util.find_spec("torchattacks") is not None:
        assert len(row["torchattacks_multiattack"]["worst_case"]) == len(row["eps"])
    assert [m["n"] for m in result["memory"]] == [200, 1000]
    assert all(m["peak_rss_mib"] > 50 for m in result["memory"])

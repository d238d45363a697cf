"""Smoke run of ``python -m bench.detect_speed``: it times advkit detect against the model's forward and writes JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_detect_speed_quick(tmp_path):
    out = tmp_path / "d.json"
    p = subprocess.run([sys.executable, "-m", "bench.detect_speed", "--quick", "--out", str(out)], cwd=REPO,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    env = json.loads(out.read_text())
    r = env["results"]
    assert r["n"] == 64 and len(r["detect_s"]) == r["rounds"] == 1
    assert r["ratio"] == r["detect_median_s"] / r["forward_median_s"] and r["ratio"] > 1  # detect includes decoding
    assert "machine" in env and env["machine"]["cpu_count"] >= 1

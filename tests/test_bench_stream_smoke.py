"""Smoke tests of ``python -m bench.stream_memory`` and ``python -m bench.stream_throughput`` at tiny sizes: they
run end to end and write sane figures (the real sizes are for a quiet machine)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _run(module: str, *args: str) -> None:
    p = subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]


@pytest.mark.slow
def test_stream_memory_tiny(tmp_path):
    out = tmp_path / "stream_memory.json"
    _run("bench.stream_memory", "--sizes", "8,16", "--model", "small_cnn", "--side", "48", "--batch-size", "4",
         "--workers", "1", "--threads", "1", "--out", str(out))
    res = json.loads(out.read_text())["results"]
    assert [r["n"] for r in res["runs"]] == [8, 16]
    assert [r["evaluated"] for r in res["runs"]] == [8, 16]
    for r in res["runs"]:
        assert r["shape"] == [3, 224, 224]
        assert 50 < r["peak_rss_mib"] < 8000 and r["wall_s"] > 0
    assert res["rss_growth_mib"] == pytest.approx(res["runs"][1]["peak_rss_mib"] - res["runs"][0]["peak_rss_mib"],
                                                  abs=0.11)


@pytest.mark.slow
def test_stream_throughput_tiny(tmp_path):
    out = tmp_path / "stream_throughput.json"
    _run("bench.stream_throughput", "--n", "8", "--model", "small_cnn", "--input-size", "32", "--side", "40",
         "--steps", "2", "--batch-size", "4", "--workers", "1", "--threads", "1", "--rounds", "2", "--warmup", "1",
         "--out", str(out))
    res = json.loads(out.read_text())["results"]
    ips = res["images_per_s"]
    assert ips["streamed"] > 0 and ips["in_memory"] > 0
    assert res["ratio"] == pytest.approx(ips["streamed"] / ips["in_memory"], rel=0.01)
    assert res["same_outcomes"] is True  # the two runs saw the same pixels
    # the warm-up runs are not timed: two rounds give two times of each kind
    assert len(res["wall_s"]["streamed"]) == 2 and len(res["wall_s"]["in_memory"]) == 2

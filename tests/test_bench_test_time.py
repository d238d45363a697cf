"""``python -m bench.test_time``: it reads pytest's counts right and records a real run of a small test file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.test_time import parse_summary

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("line, counts", [
    ("1513 passed, 2 skipped, 40 deselected in 1230.41s (0:20:30)", {"passed": 1513, "skipped": 2, "deselected": 40}),
    ("3 failed, 10 passed, 1 error in 2.00s", {"failed": 3, "passed": 10, "error": 1}),
    ("no tests ran in 0.01s", {}),
])
def test_parse_summary(line, counts):
    assert parse_summary("....\n[100%]\n" + line + "\n") == counts


@pytest.mark.slow
def test_records_a_real_run(tmp_path):
    out = tmp_path / "t.json"
    p = subprocess.run([sys.executable, "-m", "bench.test_time", "--out", str(out), "--", "tests/test_layers.py"],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    env = json.loads(out.read_text())
    res = env["results"]
    n_layers = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                               "-m", "not gpu and not slow", "tests/test_layers.py"], cwd=REPO, capture_output=True,
                              text=True, timeout=300).stdout.count("::")
    assert res["exit_code"] == 0 and res["counts"]["passed"] == n_layers > 0
    assert 0 < res["wall_s"] < 300 and res["meets_target"] is True
    assert env["bench"] == "test_time" and "load_avg_before" in env["machine"]

"""Smoke test of ``python -m bench.mnist_autoattack --quick``: it trains a config through the CLI, evaluates it with
PGD and the AutoAttack members, resumes from what is already there, and its figures agree with the reports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SHARED, needs_data

REPO = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "ADVKIT_DATA": str(SHARED), "OMP_NUM_THREADS": "1"}
    p = subprocess.run([sys.executable, "-m", "bench.mnist_autoattack", *args], cwd=REPO, capture_output=True,
                       text=True, timeout=900, env=env)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    return p


@pytest.mark.slow
@needs_data("mnist")
def test_quick_run_trains_evaluates_and_resumes(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "aa.json"
    _run("--quick", "--configs", "mnist_fgsm", "--n", "100", "--runs", str(runs), "--out", str(out))
    (row,) = json.loads(out.read_text())["results"]["rows"]
    assert row["config"] == "mnist_fgsm" and row["n"] == 100 and row["eps"] == pytest.approx(0.3)
    aa = json.loads((runs / "mnist_fgsm-autoattack" / "report.json").read_text())
    pgd = json.loads((runs / "mnist_fgsm-pgd" / "report.json").read_text())
    assert row["autoattack_acc"] == aa["models"][0]["threat_models"][0]["worst_case"][0]["robust_acc"]
    assert row["pgd_acc"] == pgd["models"][0]["threat_models"][0]["worst_case"][0]["robust_acc"]
    assert row["clean_acc"] == pgd["models"][0]["clean_acc"] == aa["models"][0]["clean_acc"]
    # the cascade: every member after the first attacks only what the earlier ones left standing
    members = list(row["autoattack_members"].values())
    for before, after in zip(members, members[1:]):
        assert after["attacked"] == before["attacked"] - before["fooled"]
    assert row["autoattack_acc"] == pytest.approx(
        (members[-1]["attacked"] - members[-1]["fooled"]) / row["n"], abs=1e-12)
    # a second call finds the model and both reports and redoes nothing: the same figures, no training line
    p = _run("--quick", "--configs", "mnist_fgsm", "--n", "100", "--runs", str(runs), "--out", str(out))
    assert "+ advkit" not in p.stdout
    (again,) = json.loads(out.read_text())["results"]["rows"]
    assert {k: again[k] for k in ("clean_acc", "pgd_acc", "autoattack_acc")} == \
        {k: row[k] for k in ("clean_acc", "pgd_acc", "autoattack_acc")}
    assert (out.with_suffix(".md")).read_text().startswith("| config |")

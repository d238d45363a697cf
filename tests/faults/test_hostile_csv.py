"""End to end: a ``csv:`` dataset whose class names are hostile (``../../evil``, ``/abs/x``, ``<script>``), in a
folder whose name is markup, run through ``advkit eval`` and ``advkit attack``: nothing lands outside ``--out``,
and the HTML report shows what it prints of the data (the dataset path) as escaped text, never as markup."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import run_cli

SCRIPT = "<script>alert(1)</script>"
# each label is a class name (not all digits), so the classes are exactly these three, sorted
HOSTILE = ("../../evil", "/abs/x", SCRIPT)
ABS = Path("/abs/x")
# a folder name cannot hold '/', so the markup in the dataset's path is an opening tag
MARKUP_DIR = "<script>alert(2)"


def _listing(root: Path) -> dict[str, float]:
    """Every path under ``root`` (relative) with its modification time; links are listed, never followed."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            out[str(p.relative_to(root))] = p.lstat().st_mtime_ns
    return out


@pytest.fixture
def hostile_csv(tmp_path) -> Path:
    """Six small flat-gray PNGs, two per hostile class, listed in ``root/<script>alert(2)/set.csv`` (paths
    relative to it)."""
    data = tmp_path / "root" / MARKUP_DIR
    (data / "img").mkdir(parents=True)
    rows = ["path,label"]
    for k in range(6):
        name = f"img/{k}.png"
        ok, buf = cv2.imencode(".png", np.full((20, 24, 3), 30 * k + 10, np.uint8))
        assert ok
        (data / name).write_bytes(buf.tobytes())
        label = HOSTILE[k % 3]
        rows.append(f"{name},\"{label}\"" if "," in label else f"{name},{label}")
    (data / "set.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return data / "set.csv"


def _only_inside(before: dict, after: dict, out_rel: str) -> list[str]:
    """Paths new or changed in ``after`` that are not ``out_rel``, its parents, or under it."""
    parents = {str(Path(out_rel).parents[i]) for i in range(len(Path(out_rel).parts) - 1)}
    return sorted(p for p, t in after.items()
                  if before.get(p) != t and p != out_rel and not p.startswith(out_rel + os.sep)
                  and p not in parents)


def test_eval_and_attack_keep_hostile_class_names_inside_out(hostile_csv, tmp_path, capsys, one_thread):
    root = tmp_path / "root"
    assert not ABS.exists(), f"{ABS} exists before the run; the test cannot tell whether advkit wrote it"
    before, parent_before = _listing(root), sorted(os.listdir(tmp_path.parent))

    # eval: deep enough that '../../evil' from --out, or from a folder inside it, would still land under root
    eval_rel = os.path.join("a", "b", "c", "eval")
    sets = [f"data.dataset=csv:{hostile_csv}", "data.n=null", "data.input_size=16", "data.num_workers=0",
            "models=[{name: net, model: small_cnn}]", "seed=0", "examples=3", "checks.enabled=false",
            "batch_size=6", "threat_models=[{norm: linf, eps: [0.05], attacks: [fgsm]}]"]
    code, _, err = run_cli(capsys, "eval", "--quiet", *[a for s in sets for a in ("--set", s)],
                           "--out", root / eval_rel)
    assert code == 0, err
    rep = json.loads((root / eval_rel / "report.json").read_text())
    assert rep["data"]["classes"] == sorted(HOSTILE)
    assert rep["data"]["n"] == 6

    attack_rel = os.path.join("a", "b", "c", "attack")
    code, _, err = run_cli(capsys, "attack", "--fgsm", "--eps", "0.05", "--model", "small_cnn", "--data",
                           f"csv:{hostile_csv}", "-n", "6", "--batch-size", "6", "--device", "cpu", "--quiet",
                           "--out", root / attack_rel)
    assert code == 0, err
    summary = json.loads((root / attack_rel / "summary.json").read_text())
    assert summary["n"] == 6

    after = _listing(root)
    stray = [p for p in _only_inside(before, after, eval_rel) if p in _only_inside(before, after, attack_rel)]
    assert not stray, stray
    assert sorted(os.listdir(tmp_path.parent)) == parent_before
    assert not ABS.exists()
    assert not (tmp_path.parent / "evil").exists() and not (root / "evil").exists()

    # the HTML names the dataset by its path: the markup in it shows only as text, and the page (which has no
    # script of its own) holds no script element
    page = (root / eval_rel / "report.html").read_text(encoding="utf-8")
    assert f"csv:{hostile_csv}".replace("<", "&lt;").replace(">", "&gt;") in page
    assert "<script" not in page.lower() and "alert(2)" in page
    md = (root / eval_rel / "report.md").read_text(encoding="utf-8")  # CI pastes it into a rendered summary
    assert "alert(2)" in md and "<script" not in md.lower()
    for f in (root / eval_rel).rglob("*"):  # no file or folder named after a class with a separator in it
        assert f.resolve().is_relative_to((root / eval_rel).resolve()), f
    for f in (root / attack_rel).rglob("*"):
        assert f.resolve().is_relative_to((root / attack_rel).resolve()), f

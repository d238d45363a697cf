"""Hostile names from data (class names, file names, attack and model names): output paths stay inside the
output folder, and the HTML report shows them as text, never as markup."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_report import make_report

from advkit.errors import AdvkitError
from advkit.report.html import to_html
from advkit.runtime.io import confined, safe_name
from conftest import run_cli

HOSTILE = ["../../escape", "/etc/passwd", "..", ".", "", "a/../../b", "..\\..\\win", "<script>alert(1)</script>",
           "=HYPERLINK(\"http://x\")", "nul\x00byte", "new\nline", ".hidden", "~/home", "x" * 500]
SCRIPT = "<script>alert(1)</script>"
IMG = '<img src=x onerror="alert(2)">'


@pytest.mark.parametrize("name", HOSTILE)
def test_safe_name_is_one_plain_name_inside_the_folder(name, tmp_path):
    s = safe_name(name)
    assert s and "/" not in s and "\\" not in s and "\x00" not in s and "\n" not in s
    assert s not in {".", ".."} and not s.startswith(".") and len(s) <= 120
    assert confined(tmp_path, s).parent == tmp_path.resolve()


@pytest.mark.parametrize("name", ["../../escape", "/etc/passwd", "a/../../b", "..", "sub/../../x"])
def test_confined_refuses_a_name_that_leaves_the_folder(name, tmp_path):
    with pytest.raises(AdvkitError, match="leads outside the output folder"):
        confined(tmp_path / "out", name)


def test_confined_keeps_inner_names_and_refuses_a_link_out(tmp_path):
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    assert confined(out, "sub/a.png") == (out / "sub" / "a.png").resolve()
    assert confined(out, "sub/../b.png") == (out / "b.png").resolve()
    (out / "link").symlink_to(tmp_path)
    with pytest.raises(AdvkitError):
        confined(out, "link/escaped.png")


def test_attack_on_data_with_hostile_class_names_writes_only_inside_out(tmp_path, capsys):
    rng = np.random.default_rng(0)
    names = np.array(["../../escape", "/tmp/abs", SCRIPT, IMG, "..", "a/b", "c", "d", "e", "f"])
    data = tmp_path / "data" / "hostile.npz"
    data.parent.mkdir()
    np.savez(data, x=rng.integers(0, 256, (6, 28, 28), dtype=np.uint8), y=np.arange(6), class_names=names)
    before = {p for p in tmp_path.rglob("*")}
    out = tmp_path / "a" / "b" / "out"
    code, _, err = run_cli(capsys, "attack", "--fgsm", "--model", "small_cnn", "--data", f"npz:{data}", "-n", "6",
                           "--device", "cpu", "--eps", "0.1", "--out", out)
    assert code == 0, err
    new = {p for p in tmp_path.rglob("*")} - before
    outside = [p for p in new if p != out and out not in p.parents and p not in out.parents]
    assert not outside, outside
    assert (out / "summary.json").is_file()
    assert not Path("/tmp/abs").exists() or Path("/tmp/abs").stat().st_mtime < data.stat().st_mtime


def _hostile_report() -> dict:
    r = make_report()
    m = r["models"][0]
    m["name"] = SCRIPT
    m["source"] = f"runs/{SCRIPT}/model.safetensors"
    for a in m["threat_models"][0]["attacks"]:
        a["label"] = f"{a['label']}{IMG}"
    m["checks"][0]["message"] = f"class {SCRIPT} is never predicted"
    m["examples"][0]["attack"] = IMG
    r["data"]["dataset"] = f"folder:/data/{SCRIPT}"
    r["data"]["classes"] = [SCRIPT, IMG]
    r["config"]["note"] = SCRIPT
    r["gates"][0]["message"] = IMG
    return r


def test_html_report_escapes_names_from_data_and_configs():
    clean = to_html(make_report())
    page = to_html(_hostile_report())
    # the page's own markup is the same; the hostile text shows up only escaped
    assert page.lower().count("<script") == clean.lower().count("<script")
    assert page.lower().count("<img") == clean.lower().count("<img")
    assert "onerror=\"alert" not in page and SCRIPT not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=&quot;alert(2)&quot;&gt;" in page
    assert page.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 3  # the model's name, its path, the dataset


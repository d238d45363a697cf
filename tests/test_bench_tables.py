"""``python -m bench.tables``: tables come from the result files, land between markers, and a second run
changes nothing; every result file is one envelope."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench import tables
from bench._common import ENVELOPE_KEYS, RESULTS, command_line, git_commit, read_result, write_result

REPO = Path(__file__).resolve().parents[1]
FILES = ("train_mnist_fgsm_rs.json", "gan_mnist_deep2_b16_ema.json", "detect_mnist.json")


@pytest.fixture
def workspace(tmp_path):
    """A copy of a few real result files, and a doc with two marked blocks in a subfolder (as docs/ is)."""
    results = tmp_path / "bench" / "results"
    results.mkdir(parents=True)
    for name in FILES:
        shutil.copy(RESULTS / name, results / name)
    doc = tmp_path / "docs" / "guide.md"
    doc.parent.mkdir()
    doc.write_text("# Guide\n\nBefore.\n\n<!-- bench:headline -->\nstale text\n<!-- /bench:headline -->\n\n"
                   "Between.\n\n<!-- bench:train-mnist --><!-- /bench:train-mnist -->\n\nAfter.\n")
    return results, doc


def _run(results: Path, *args: str) -> subprocess.CompletedProcess:
    """``python -m bench.tables --results RESULTS ARGS``, in a fresh process as a user runs it."""
    return subprocess.run([sys.executable, "-m", "bench.tables", "--results", str(results), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def _main(capsys, results: Path, *args: str) -> tuple[int, str]:
    """The same in this process (quicker): exit code and what it printed."""
    code = tables.main(["--results", str(results), *args])
    return code, capsys.readouterr().out


def test_generates_tables_and_a_second_run_changes_nothing(workspace):
    results, doc = workspace
    p = _run(results, str(doc))
    assert p.returncode == 0, p.stderr
    text = doc.read_text()
    fgsm = read_result(results / "train_mnist_fgsm_rs.json")["results"]
    gan = read_result(results / "gan_mnist_deep2_b16_ema.json")["results"]["rows"][0]
    # the figures, as the files hold them
    assert f"{fgsm['clean_acc']:.2%}" in text and f"{fgsm['pgd50_r10_acc']:.2%}" in text
    assert f"IS {gan['is']:.2f}" in text and f"{gan['fd_ratio']:.1f}x the floor" in text
    # each headline row links its file, relative to the doc
    assert "(../bench/results/train_mnist_fgsm_rs.json)" in text
    assert "(../bench/results/detect_mnist.json)" in text
    # what is outside the markers stays, what was inside is replaced
    assert text.startswith("# Guide\n\nBefore.\n\n<!-- bench:headline -->\n|") and text.endswith("\n\nAfter.\n")
    assert "stale text" not in text and "Between." in text
    block = text.split("<!-- bench:train-mnist -->")[1].split("<!-- /bench:train-mnist -->")[0]
    assert "| mnist_fgsm_rs | 10000 | 0.3 |" in block
    # bench/README.md: a section per bench with the file, command, commit and machine each figure came from
    readme = (results.parent / "README.md").read_text()
    assert "## MNIST GANs" in readme and "(results/gan_mnist_deep2_b16_ema.json)" in readme
    env = read_result(results / "train_mnist_fgsm_rs.json")
    assert f"`{env['command']}`" in readme and env["date"] in readme
    assert (results / "detect_mnist.md").read_text().startswith("| detector | clean AUC |")

    generated = {p: p.read_text() for p in [doc, results.parent / "README.md", *results.glob("*.md")]}
    p = _run(results, str(doc))
    assert p.returncode == 0 and p.stdout == "", p.stdout + p.stderr  # nothing written
    assert {p: p.read_text() for p in generated} == generated


def test_check_reports_a_stale_block_and_writes_nothing(workspace, capsys):
    results, doc = workspace
    before = doc.read_text()
    code, out = _main(capsys, results, "--check", str(doc))
    assert code == 1 and str(doc) in out
    assert doc.read_text() == before and not (results.parent / "README.md").exists()
    assert _main(capsys, results, str(doc))[0] == 0
    assert _main(capsys, results, "--check", str(doc)) == (0, "")


def test_unknown_block_is_left_alone_with_a_warning_naming_the_valid_ids(workspace, capsys):
    results, doc = workspace
    text = ("Quoted inline, `<!-- bench:ID -->` and `<!-- /bench:ID -->` is prose.\n\n"
            "<!-- bench:nope -->\nto be measured\n<!-- /bench:nope -->\n")
    doc.write_text(text)
    assert tables.main(["--results", str(results), str(doc)]) == 0
    assert doc.read_text() == text
    err = capsys.readouterr().err
    assert "unknown bench table 'nope'; valid: headline, attack-speed" in err and "'ID'" not in err


def test_file_block_is_the_files_full_table(workspace, capsys):
    results, doc = workspace
    text = tables.block("file:detect_mnist", tables.load_results(results), results)
    assert "| mnist_dcgan_hardened (pgd) | 0.9901 |" in text and "Command: `" in text
    assert _main(capsys, results, str(doc))[0] == 0
    assert (results / "detect_mnist.md").read_text() == text


def test_every_committed_result_is_an_envelope():
    for path in sorted(RESULTS.glob("*.json")):
        env = json.loads(path.read_text())
        assert list(env) == list(ENVELOPE_KEYS), path.name
        assert (RESULTS.parent / f"{env['bench']}.py").is_file() or env["bench"] == "detect_report", path.name


def test_write_result_envelope(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/somewhere/bench/train_speed.py", "--quick", "--out", "a b.json"])
    out = tmp_path / "r.json"
    env = write_result(out, "train_speed", {"rows": [], "quick": True}, device="cpu")
    assert json.loads(out.read_text()) == env and list(env) == list(ENVELOPE_KEYS)
    assert env["command"] == "python -m bench.train_speed --quick --out 'a b.json'"
    assert env["commit"] == git_commit() and env["results"] == {"rows": [], "quick": True}
    assert {"platform", "processor", "cpu_count", "torch", "torch_threads", "device"} <= set(env["machine"])
    assert env["date"].endswith("+00:00") and not out.with_suffix(".md").exists()


def test_commit_and_command_line(tmp_path):
    assert git_commit(tmp_path) == "unknown"  # not a repository
    assert git_commit() == "unknown" or re.fullmatch(r"[0-9a-f]{40}(\+dirty)?", git_commit())
    assert command_line("eval_speed", ["--n", "10"]) == "python -m bench.eval_speed --n 10"

"""Two runs into one ``--out``: the second refuses at once with one line naming the first (pid, host, start),
writes nothing there, and a crashed run (SIGKILL) leaves no lock behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from advkit.errors import AdvkitError
from advkit.runtime.lock import LOCK, out_lock
from conftest import one_error_line, run_cli

REPO = Path(__file__).resolve().parents[2]
# another process: for each line "PATH 0|1" on stdin it takes out_lock(PATH, file=...) and keeps it
HOLD = """
import contextlib, sys
from advkit.runtime.lock import out_lock
with contextlib.ExitStack() as stack:
    for line in sys.stdin:
        path, file = line.split()
        stack.enter_context(out_lock(path, file=file == "1"))
        print("held", flush=True)
"""


@pytest.fixture(scope="module")
def _holder_process():
    p = subprocess.Popen([sys.executable, "-c", HOLD], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         text=True)
    yield p
    if p.poll() is None:
        p.kill()
    p.wait()


@pytest.fixture
def holder(_holder_process):
    """``hold(path, file=False)``: another live process takes the lock on ``path``; returns that process."""

    def hold(path: Path, file: bool = False) -> subprocess.Popen:
        p = _holder_process
        assert p.stdin is not None and p.stdout is not None
        p.stdin.write(f"{path} {int(file)}\n")
        p.stdin.flush()
        assert p.stdout.readline().strip() == "held"
        return p

    return hold


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_second_holder_is_refused_with_the_first_ones_pid_and_a_killed_holder_frees_it(tmp_path):
    out = tmp_path / "run"
    p = subprocess.Popen([sys.executable, "-c", HOLD], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         text=True)
    assert p.stdin is not None and p.stdout is not None
    p.stdin.write(f"{out} 0\n")
    p.stdin.flush()
    assert p.stdout.readline().strip() == "held"
    with pytest.raises(AdvkitError, match=rf"^--out .*run is in use by pid {p.pid} on \S+ \(started \d{{4}}-"):
        with out_lock(out):
            pass
    p.send_signal(signal.SIGKILL)  # a crashed run: the kernel drops its flock
    p.wait()
    with out_lock(out) as held:  # no waiting, no stale lock to remove by hand
        assert held == out.resolve() and (out / LOCK).is_file()
        assert f'"pid": {os.getpid()}' in (out / LOCK).read_text()
    assert not (out / LOCK).exists()


def test_lock_is_reentrant_in_one_process_and_leaves_no_folder_when_nothing_was_written(tmp_path):
    out = tmp_path / "new"
    with out_lock(out):
        with out_lock(out):  # a command may call a library function that locks the same folder
            assert (out / LOCK).is_file()
    assert not out.exists()  # created for the lock only: removed with it


def test_file_output_is_locked_beside_the_file(tmp_path, holder):
    target = tmp_path / "scores.csv"
    holder(target, file=True)
    with pytest.raises(AdvkitError, match=r"scores\.csv is in use by pid"):
        with out_lock(target, file=True):
            pass
    assert not target.exists()


COMMANDS = {
    "train classifier": ["train", "classifier", "--set", "epochs=1", "--set", f"data.root={REPO / 'datasets'}"],
    "train gan": ["train", "gan", "--set", "epochs=1", "--set", f"data.root={REPO / 'datasets'}"],
    "attack": ["attack", "--fgsm", "--model", "small_cnn", "-n", "4", "--device", "cpu", "--data-root",
               str(REPO / "datasets")],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_second_run_into_the_same_out_refuses_and_changes_nothing(command, tmp_path, holder, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").write_text('{"epoch": 1}\n')  # what the first run has written so far
    p = holder(out)
    before = _files(out)
    code, _, err = run_cli(capsys, *COMMANDS[command], "--out", out)
    assert code == 2
    line = one_error_line(err)
    assert f"is in use by pid {p.pid}" in line and str(out) in line
    assert _files(out) == before

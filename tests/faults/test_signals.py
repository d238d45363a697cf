"""SIGTERM (what a scheduler sends before pre-emption) and SIGINT (Ctrl-C): a clean exit, 143 / 130, with one
line on stderr and never a half-written file. SIGTERM during training first writes a resumable ``last.ckpt``
(mid-epoch: the classifier trainer, also under ``train detector``); the resumed run equals an uninterrupted one
bit for bit. The signals come from ``ADVKIT_FAULT=term@POINT`` / ``int@POINT`` (advkit/runtime/faults.py)."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import torch
from test_kill_resume import _advkit, _argv, _metrics, _weights, assert_files_whole, reference_run

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def refs(tmp_path_factory) -> Path:
    root = tmp_path_factory.getbasetemp() / "fault_refs"
    root.mkdir(exist_ok=True)
    return root


def _last_lines(err: str) -> list[str]:
    return [ln for ln in err.splitlines() if ln.startswith("advkit:")]


def test_sigterm_mid_epoch_writes_a_resumable_checkpoint_and_exits_143(refs, tmp_path):
    ref = reference_run("classifier", refs)
    argv, out = _argv("classifier", refs), tmp_path / "run"
    p = _advkit(*argv, "--out", str(out), fault="term@step:10")  # step 3 of epoch 2
    assert p.returncode == 128 + signal.SIGTERM, p.stderr[-2000:]
    assert _last_lines(p.stderr) == ["advkit: terminated"]
    assert "Traceback" not in p.stderr
    ckpt = torch.load(out / "last.ckpt", weights_only=True)
    assert ckpt["epoch"] == 1 and ckpt["mid_epoch"]["step"] == 3  # written at the signal, inside epoch 2
    assert not (out / "model.safetensors").exists()
    assert_files_whole(out)
    assert not list(out.glob(".*.tmp"))

    p = _advkit(*argv, "--out", str(out), "--resume")
    assert p.returncode == 0, p.stderr[-2000:]
    wa, wb = _weights(ref, "classifier"), _weights(out, "classifier")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert _metrics(out) == _metrics(ref)


def test_sigint_inside_a_write_discards_it_and_exits_130(tmp_path):
    out = tmp_path / "attack"
    args = ["attack", "--fgsm", "--model", "small_cnn", "-n", "8", "--device", "cpu", "--data-root",
            str(REPO / "datasets"), "--out", str(out)]
    p = _advkit(*args, fault="int@mid_write:adversarial.npz")
    assert p.returncode == 128 + signal.SIGINT, p.stderr[-2000:]
    assert _last_lines(p.stderr) == ["advkit: interrupted"] and "Traceback" not in p.stderr
    # the npz was on disk as a temp file when the signal came: discarded, nothing after it was written, and
    # the folder the run made for its lock went with the lock
    assert not out.exists()


@pytest.mark.slow
def test_sigterm_outside_training_exits_143_with_whole_files(tmp_path):
    out = tmp_path / "attack"
    args = ["attack", "--fgsm", "--model", "small_cnn", "-n", "8", "--device", "cpu", "--data-root",
            str(REPO / "datasets"), "--out", str(out)]
    p = _advkit(*args, fault="term@mid_write:summary.json")
    assert p.returncode == 128 + signal.SIGTERM, p.stderr[-2000:]
    assert _last_lines(p.stderr) == ["advkit: terminated"]
    names = sorted(x.name for x in out.iterdir())
    assert "summary.json" not in names and not [n for n in names if n.endswith(".tmp")]
    assert "adversarial.npz" in names  # written before the signal: whole
    assert_files_whole(out)


@pytest.mark.slow
def test_sigterm_during_gan_training_keeps_the_last_epoch_checkpoint_and_resumes_exactly(refs, tmp_path):
    ref = reference_run("gan", refs)
    argv, out = _argv("gan", refs), tmp_path / "run"
    p = _advkit(*argv, "--out", str(out), fault="term@step:11")  # inside epoch 2 (8 steps per epoch)
    assert p.returncode == 128 + signal.SIGTERM, p.stderr[-2000:]
    assert torch.load(out / "last.ckpt", weights_only=True)["epoch"] == 1
    assert_files_whole(out)
    p = _advkit(*argv, "--out", str(out), "--resume")
    assert p.returncode == 0, p.stderr[-2000:]
    wa, wb = _weights(ref, "gan"), _weights(out, "gan")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert _metrics(out) == _metrics(ref)


def test_graceful_sets_a_flag_and_exit_on_signals_raises_with_the_exit_code():
    import os

    from advkit.runtime.signals import Stopped, exit_on_signals, graceful

    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with exit_on_signals():
        with graceful() as flag:
            os.kill(os.getpid(), signal.SIGTERM)  # inside a training loop: only noted
            assert flag.requested and flag.signum == signal.SIGTERM
            with pytest.raises(Stopped) as e:
                flag.stop()
            assert e.value.exit_code == 143
        with pytest.raises(Stopped) as e:  # outside it: raised where the program is
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):  # the handler runs at the next bytecode boundaries
                pass
        assert e.value.exit_code == 130
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before  # handlers restored

"""SIGTERM (what a scheduler sends before pre-emption) and SIGINT (Ctrl-C): a clean exit, 143 / 130, with one
line on stderr and never a half-written file. SIGTERM during training first writes a resumable ``last.ckpt``
(mid-epoch: the classifier trainer, also under ``train detector``, and the GAN trainer); the resumed run equals an
uninterrupted one bit for bit. The signals come from ``ADVKIT_FAULT=term@POINT`` / ``int@POINT``
(advkit/runtime/faults.py)."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
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
def test_sigterm_during_gan_training_writes_a_mid_epoch_checkpoint_and_resumes_exactly(refs, tmp_path):
    ref = reference_run("gan", refs)
    argv, out = _argv("gan", refs), tmp_path / "run"
    p = _advkit(*argv, "--out", str(out), fault="term@step:11")  # step 3 of epoch 2 (8 steps per epoch)
    assert p.returncode == 128 + signal.SIGTERM, p.stderr[-2000:]
    assert _last_lines(p.stderr) == ["advkit: terminated"] and "Traceback" not in p.stderr
    ckpt = torch.load(out / "last.ckpt", weights_only=True)
    assert ckpt["epoch"] == 1 and ckpt["it"] == 11 and ckpt["mid_epoch"]["step"] == 3  # written at the signal
    assert not (out / "generator.safetensors").exists()
    assert_files_whole(out)
    assert not list(out.glob(".*.tmp"))
    p = _advkit(*argv, "--out", str(out), "--resume")
    assert p.returncode == 0, p.stderr[-2000:]
    wa, wb = _weights(ref, "gan"), _weights(out, "gan")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert _metrics(out) == _metrics(ref)


# in-process GAN runs (4 steps per epoch, 2 epochs): an EMA generator, a D warm-up and n_critic, optionally
# WGAN-GP (its penalty draws from the noise stream) and the duality-gap monitor (a best pair pending at the stop)
GAN_TINY = ["model.z_dim=8", "model.g_width=4", "model.d_width=4", "data.train_limit=128", "batch_size=32",
            "grid_n=4", "device=cpu", "deterministic=true", f"data.root={REPO / 'datasets'}", "epochs=2",
            "ema_g=0.8", "d_warmup=1", "n_critic=2", "sample_every=0"]
GAN_CASES = {"nonsaturating": [], "wgan_gp": ["loss=wgan", "gp_weight=1.0"],
             "dg_monitor": ["dg.every=1", "dg.k=2", "dg.n=32"]}


def _gan_state(out: Path) -> dict[str, torch.Tensor]:
    st = torch.load(out / "last.ckpt", weights_only=True)
    return {f"{net}.{k}": v for net in ("G", "D", "G_ema") for k, v in st[net].items()}


@pytest.mark.parametrize("case,step", [
    pytest.param(c, s, marks=() if (c, s) == ("nonsaturating", 6) else pytest.mark.slow)
    for c in GAN_CASES for s in (3, 6)] + [pytest.param("nonsaturating", 4, marks=pytest.mark.slow)])
def test_a_signal_inside_gan_training_resumes_bit_exactly(case, step, tmp_path, monkeypatch, one_thread):
    from advkit.config import load_config
    from advkit.gan import GanConfig, train_gan
    from advkit.runtime.faults import ENV
    from advkit.runtime.signals import Stopped, exit_on_signals

    cfg = load_config(GanConfig, None, [*GAN_TINY, *GAN_CASES[case]])
    ref, out = tmp_path / "ref", tmp_path / "run"
    train_gan(cfg, ref)
    sig = signal.SIGINT if step == 3 else signal.SIGTERM  # inside epoch 1 by Ctrl-C, inside epoch 2 by SIGTERM
    monkeypatch.setenv(ENV, f"{'int' if sig == signal.SIGINT else 'term'}@step:{step}")
    with exit_on_signals():  # as under the CLI: without the trainer's own handler it would raise mid-step
        before = signal.getsignal(sig)
        with pytest.raises(Stopped) as e:
            train_gan(cfg, out)
        restored = signal.getsignal(sig) == before
    assert e.value.exit_code == 128 + sig and restored  # 130 / 143; the trainer's handlers are gone
    ckpt = torch.load(out / "last.ckpt", weights_only=True)
    assert ckpt["it"] == step and ckpt["epoch"] == (step - 1) // 4 and ckpt["mid_epoch"]["step"] == (step - 1) % 4 + 1
    lines = (out / "metrics.jsonl").read_text().splitlines() if (out / "metrics.jsonl").exists() else []
    assert len(lines) == ckpt["epoch"]  # only finished epochs have a line
    assert not (out / "generator.safetensors").exists()
    monkeypatch.delenv(ENV)
    train_gan(cfg, out, resume=True)
    wa, wb = _gan_state(ref), _gan_state(out)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert _metrics(out) == _metrics(ref)
    ga, gb = _weights(ref, "gan"), _weights(out, "gan")
    assert all(torch.equal(ga[k], gb[k]) for k in ga)
    if case == "dg_monitor":  # the pair picked by the lowest gap, written at the end of its epoch
        for name in ("generator_best_dg.safetensors", "discriminator_best_dg.safetensors"):
            wa, wb = load_file(str(ref / name)), load_file(str(out / name))
            assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


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

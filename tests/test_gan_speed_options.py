"""The GAN trainer's speed options (issue 21): ``threads``, ``ema_every``, ``channels_last``, ``compile`` (and
its fallback to eager), the per-part profile and the time-to-quality probe. Tiny nets on 128 MNIST images."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from advkit.config import load_config
from advkit.gan import GanConfig, train_gan
from advkit.gan import trainer as gan_trainer

REPO = Path(__file__).resolve().parents[1]
TINY = ["model.z_dim=16", "model.g_width=8", "model.d_width=8", "data.train_limit=128", "batch_size=32",
        "grid_n=16", "epochs=1", "device=cpu", f"data.root={REPO / 'datasets'}"]
STEP_PARTS = {"data", "d.g_forward", "d.forward", "d.backward", "d.optimizer", "g.forward", "g.backward",
              "g.optimizer", "checks", "logging"}


def _cfg(*sets: str) -> GanConfig:
    return load_config(GanConfig, None, [*TINY, *sets])


def _states(every: int, *sets: str) -> list[dict]:
    """The sampling generator's weights after each of ``every``-spaced generator steps (through the probe)."""
    seen: list[dict] = []

    def probe(info: dict) -> None:
        seen.append({k: v.clone() for k, v in info["generator"].state_dict().items()})

    train_gan(_cfg(*sets), None, probe=(every, probe))
    return seen


def _same(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("bad", ["threads=-1", "ema_every=0"])
def test_bad_speed_options_are_refused(bad):
    with pytest.raises(ValueError, match=bad.split("=")[0]):
        _cfg(bad)


def test_threads_hold_during_the_run_and_come_back(one_thread):
    seen: list[int] = []
    train_gan(_cfg("threads=2"), None, probe=(1, lambda info: seen.append(torch.get_num_threads())))
    assert seen and set(seen) == {2}
    assert torch.get_num_threads() == 1  # the fixture's setting, restored
    seen.clear()
    train_gan(_cfg("threads=0"), None, probe=(1, lambda info: seen.append(torch.get_num_threads())))
    assert set(seen) == {1}  # 0 leaves torch's setting alone


def test_ema_every_k_updates_the_average_only_every_k_generator_steps(one_thread):
    every1 = _states(1, "ema_g=0.9")
    every2 = _states(1, "ema_g=0.9", "ema_every=2")
    assert len(every1) == len(every2) == 4  # 4 steps of 32 images
    # every step moves the average with ema_every 1; with 2, steps 2 and 4 move it and step 3 does not
    assert not any(_same(a, b) for a, b in zip(every1, every1[1:]))
    assert not _same(every2[0], every2[1]) and _same(every2[1], every2[2]) and not _same(every2[2], every2[3])


def test_channels_last_trains_the_same_nets(one_thread):
    a = _states(4)[-1]
    b = _states(4, "channels_last=true")[-1]
    for k in a:  # the same arithmetic in another memory order: equal up to summation order
        assert torch.allclose(a[k], b[k], rtol=1e-3, atol=1e-4), k


def test_compile_falls_back_to_eager_when_compiling_fails(one_thread, monkeypatch, caplog):
    calls = []

    def broken_compile(net):
        def fn(x):
            calls.append(1)
            raise RuntimeError("no C++ compiler here\nmore detail")
        return fn

    eager = _states(4)[-1]
    monkeypatch.setattr(gan_trainer.torch, "compile", broken_compile)
    with caplog.at_level("WARNING", logger="advkit.gan.trainer"):
        fallback = _states(4, "compile=true")[-1]
    assert len(calls) == 2  # G and D each tried once, then eager
    assert sum("torch.compile of" in r.getMessage() and "no C++ compiler here" in r.getMessage()
               for r in caplog.records) == 2
    assert _same(eager, fallback)  # the eager fallback is the run without compile


def test_profile_times_every_part_and_covers_the_epoch(one_thread, tmp_path):
    _, m = train_gan(_cfg("epochs=2"), tmp_path / "run", profile=True)
    parts = m["profile_s"]
    assert STEP_PARTS <= set(parts) and parts["threads"] == 1
    # epoch 1's end (sample grid, curves, checkpoint) lands in epoch 2's profile; epoch 2's at the run's end
    assert {"end.sample_grid", "end.curves", "end.checkpoint"} <= set(parts)
    assert {"end.sample_grid", "end.checkpoint", "end.final_save"} <= set(m["profile_end_s"])
    assert "ema" not in parts  # no EMA configured
    step_total = sum(v for k, v in parts.items() if k in STEP_PARTS)
    # the timed parts are most of the epoch's steps (the rest: the loop itself), never more than it (the
    # end.* parts ran between the epochs, outside time_s)
    assert 0.5 * m["time_s"] <= step_total <= m["time_s"] + 0.01
    assert all(v >= 0 for k, v in parts.items())
    _, plain = train_gan(_cfg(), None)
    assert "profile_s" not in plain and "profile_end_s" not in plain


def test_probe_time_stays_off_the_training_clock(one_thread):
    pause = 0.3
    points: list[dict] = []

    def probe(info: dict) -> None:
        points.append({k: info[k] for k in ("g_steps", "epoch", "train_s")})
        assert not info["generator"].training  # handed over in eval mode
        time.sleep(pause)

    t0 = time.perf_counter()
    _, m = train_gan(_cfg("epochs=2", "batch_size=48"), None, probe=(3, probe))
    wall = time.perf_counter() - t0
    # 2 steps per epoch (128 // 48): probed at G steps 3 and, as the last one, 4
    assert [p["g_steps"] for p in points] == [3, 4] and [p["epoch"] for p in points] == [2, 2]
    assert 0 < points[0]["train_s"] < points[1]["train_s"]
    assert points[1]["train_s"] <= wall - 2 * pause + 0.05  # both pauses left out
    assert m["time_s"] <= wall - 2 * pause  # the epoch's own time leaves out its probe too


def _nets_after(steps: int, *sets: str, repeat_z: bool = False, monkeypatch=None) -> tuple[dict, dict]:
    """G's and D's parameters after ``steps`` generator steps; ``repeat_z``: G's step draws no new z but
    takes the one D's step just used (what ``reuse_fake`` does by construction)."""
    if repeat_z:
        run_cls = gan_trainer._GanRun
        draw, g_step = run_cls._z, run_cls._g_step

        def z(self, n):
            if getattr(self, "_in_g", False):
                return self._last_z
            self._last_z = draw(self, n)
            return self._last_z

        def g_step_wrapped(self, *a, **k):
            self._in_g = True
            try:
                return g_step(self, *a, **k)
            finally:
                self._in_g = False

        monkeypatch.setattr(run_cls, "_z", z)
        monkeypatch.setattr(run_cls, "_g_step", g_step_wrapped)
    nets: dict = {}

    def probe(info: dict) -> None:
        g = info["raw_generator"] or info["generator"]  # the trained G, not its EMA
        nets["g"] = {k: v.clone() for k, v in g.state_dict().items()}

    _, m = train_gan(_cfg(*sets), None, probe=(steps, probe))
    if repeat_z:
        monkeypatch.undo()
    return nets["g"], m


@pytest.mark.parametrize("extra", [[], ["n_critic=2", "loss=hinge"], ["model.g_batch_norm=false", "ema_g=0.9"]])
def test_reuse_fake_trains_as_if_g_redrew_the_same_z(one_thread, monkeypatch, extra):
    # one G forward per step: the G step differentiates through the batch G made for D's step. That is the
    # run whose G step draws no new z but takes D's, with a second (identical) forward
    reused, m_reused = _nets_after(4 if not extra else 2, "reuse_fake=true", *extra)
    twice, m_twice = _nets_after(4 if not extra else 2, *extra, repeat_z=True, monkeypatch=monkeypatch)
    plain, _ = _nets_after(4 if not extra else 2, *extra)
    for k in reused:
        if reused[k].is_floating_point() and "running" not in k:
            assert torch.allclose(reused[k], twice[k], rtol=1e-5, atol=1e-6), k
    assert not all(torch.equal(reused[k], plain[k]) for k in reused)  # a fresh z for G's step is another run
    assert m_reused["g_steps"] == m_twice["g_steps"]


def test_reuse_fake_runs_g_once_per_step(one_thread):
    calls = {"n": 0}

    def count(module, inputs, output):
        if module.training:
            calls["n"] += 1

    def forwards(*sets: str) -> int:
        calls["n"] = 0
        orig = gan_trainer.build_generator

        def build(*a, **k):
            g = orig(*a, **k)
            g.register_forward_hook(count)
            return g

        gan_trainer.build_generator = build
        try:
            train_gan(_cfg(*sets), None)
        finally:
            gan_trainer.build_generator = orig
        return calls["n"]

    assert forwards() == 8  # 4 steps: one G forward for D's step, one for G's
    assert forwards("reuse_fake=true") == 4
    assert forwards("reuse_fake=true", "n_critic=2") == 4  # 4 D steps, 2 G steps: still one each


def test_reuse_fake_is_refused_for_the_dg_objective():
    with pytest.raises(ValueError, match="reuse_fake"):
        _cfg("reuse_fake=true", "loss=dg")

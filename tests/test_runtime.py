"""The run folder and the shared training jobs of advkit.runtime.run: resume refuses a changed config and
names the key, deterministic mode comes back (also after an exception), the EMA step's maths, RNG state
round-trips, atomic ``last.ckpt`` writes, and rank-0-only writing."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import pytest
import torch
from torch import nn

from advkit.errors import AdvkitError
from advkit.runtime.run import (
    RunFolder,
    config_diff,
    cpu_state,
    deterministic,
    ema_update,
    load_checkpoint,
    restore_rng,
    rng_state,
)


def _state(cfg: dict, epoch: int = 1, lines: tuple[str, ...] = ('{"epoch": 1}',)) -> dict:
    return {"config": cfg, "epoch": epoch, "w": torch.arange(4.0), "metrics_lines": list(lines)}


CFG = {"seed": 0, "device": "cpu", "optim": {"lr": 0.001, "momentum": 0.9}, "model": {"kwargs": {"width": 8}}}


# ---------------------------------------------------------------- resume and the config check

def test_resume_refuses_a_changed_config_and_names_the_key(tmp_path):
    folder = RunFolder(tmp_path)
    folder.save_checkpoint(_state(CFG))
    changed = {**CFG, "optim": {"lr": 0.01, "momentum": 0.9}}
    with pytest.raises(AdvkitError, match=r"cannot resume .*last\.ckpt: it was written with another config "
                                          r"\(optim\.lr: 0\.001 -> 0\.01\)$"):
        RunFolder(tmp_path).resume(changed)


def test_resume_allows_the_allowed_keys_and_takes_back_the_metrics_lines(tmp_path):
    RunFolder(tmp_path).save_checkpoint(_state(CFG, epoch=2, lines=('{"epoch": 1}', '{"epoch": 2, "x": 0.5}')))
    folder = RunFolder(tmp_path)
    assert folder.resuming(True) and not folder.resuming(False)
    st = folder.resume({**CFG, "device": "cuda"}, allowed={"device"})
    assert st["epoch"] == 2 and torch.equal(st["w"], torch.arange(4.0))
    assert folder.last_metrics == {"epoch": 2, "x": 0.5}
    with pytest.raises(AdvkitError, match=r"device: 'cpu' -> 'cuda'"):
        RunFolder(tmp_path).resume({**CFG, "device": "cuda"})


def test_config_diff_lists_every_change_sorted_and_compares_whole_keys_as_one():
    new = {**CFG, "seed": 1, "optim": {"lr": 0.1, "momentum": 0.9}, "model": {"kwargs": {"width": 16}},
           "extra": True}
    assert config_diff(CFG, new) == ["extra: None -> True", "model.kwargs.width: 8 -> 16", "optim.lr: 0.001 -> 0.1",
                                     "seed: 0 -> 1"]
    assert "model.kwargs: {'width': 8} -> {'width': 16}" in config_diff(CFG, new, whole={"model.kwargs"})
    assert config_diff(CFG, dict(CFG)) == []


def test_nothing_to_resume_starts_from_scratch(tmp_path):
    assert not RunFolder(tmp_path).resuming(True)
    assert not RunFolder(None).resuming(True)


def test_unreadable_or_foreign_checkpoints_are_one_clear_error(tmp_path):
    bad = tmp_path / "last.ckpt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(AdvkitError, match=r"^cannot resume from .*last\.ckpt: not a readable advkit GAN checkpoint"):
        load_checkpoint(bad, kind="GAN")
    torch.save({"config": {}}, bad)
    with pytest.raises(AdvkitError, match=r"not an advkit GAN training checkpoint$"):
        load_checkpoint(bad, kind="GAN", needs=("G", "D"))


# ---------------------------------------------------------------- the folder's files

def test_folder_writes_config_and_metrics_lines(tmp_path):
    @dataclass(frozen=True)
    class Cfg:
        seed: int = 3
        tags: list = field(default_factory=lambda: ["a"])

    folder = RunFolder(tmp_path / "run")
    folder.write_config(Cfg())
    assert (tmp_path / "run" / "config.yaml").read_text().startswith("seed: 3")
    folder.append_metrics({"epoch": 1, "loss": 0.5})
    folder.append_metrics({"epoch": 2, "loss": None})
    text = (tmp_path / "run" / "metrics.jsonl").read_text()
    assert text.endswith("\n") and [json.loads(ln) for ln in text.splitlines()] == [
        {"epoch": 1, "loss": 0.5}, {"epoch": 2, "loss": None}]


def test_only_the_main_process_writes(tmp_path):
    folder = RunFolder(tmp_path / "run", main=False)
    folder.write_config({"seed": 0})
    folder.append_metrics({"epoch": 1})
    folder.save_checkpoint(_state(CFG))
    assert not (tmp_path / "run").exists()
    assert folder.last_metrics == {"epoch": 1}  # every rank keeps the history


def test_last_ckpt_is_atomic_a_failed_write_keeps_the_previous_one(tmp_path, monkeypatch):
    folder = RunFolder(tmp_path)
    folder.save_checkpoint(_state(CFG, epoch=1))

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space left"):
        folder.save_checkpoint(_state(CFG, epoch=2))
    monkeypatch.undo()
    assert torch.load(tmp_path / "last.ckpt", weights_only=True)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]  # no temp file left behind
    folder.save_checkpoint(_state(CFG, epoch=2))
    assert torch.load(tmp_path / "last.ckpt", weights_only=True)["epoch"] == 2


# ---------------------------------------------------------------- deterministic mode

@pytest.fixture
def restore_mode():
    was, warn = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    yield
    torch.use_deterministic_algorithms(was, warn_only=warn)


@pytest.mark.parametrize("before", [False, True])
def test_deterministic_mode_is_restored_after_the_run(before, restore_mode):
    torch.use_deterministic_algorithms(before)
    with deterministic(True):
        assert torch.are_deterministic_algorithms_enabled()
    assert torch.are_deterministic_algorithms_enabled() is before
    with deterministic(False):
        assert torch.are_deterministic_algorithms_enabled() is before  # off means "leave it", not "turn off"
    assert torch.are_deterministic_algorithms_enabled() is before


def test_deterministic_mode_is_restored_after_an_exception(restore_mode):
    torch.use_deterministic_algorithms(True, warn_only=True)
    with pytest.raises(RuntimeError, match="boom"):
        with deterministic(True):
            torch.use_deterministic_algorithms(True)  # the body may change the mode; it still comes back
            raise RuntimeError("boom")
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(False)
    with pytest.raises(ValueError):
        with deterministic(True):
            raise ValueError
    assert not torch.are_deterministic_algorithms_enabled()


# ---------------------------------------------------------------- EMA, CPU copies, RNG

def _net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))


def test_ema_update_is_a_lerp_of_parameters_and_a_copy_of_buffers():
    ema, model = _net(0), _net(1)
    model.train()(torch.randn(8, 3))  # moves the BatchNorm statistics
    before = {k: v.clone() for k, v in ema.state_dict().items()}
    decay = 0.9
    ema_update(ema, model, decay)
    for name, p in model.named_parameters():
        torch.testing.assert_close(dict(ema.named_parameters())[name].detach(),
                                   decay * before[name] + (1 - decay) * p.detach())
    for name, b in model.named_buffers():
        assert torch.equal(dict(ema.named_buffers())[name], b)
    assert all(p.grad is None for p in ema.parameters())
    ema_update(ema, model, 0.0)  # decay 0 copies the model
    for a, b in zip(ema.parameters(), model.parameters()):
        assert torch.equal(a, b)


def test_cpu_state_is_a_detached_copy():
    net = _net(0)
    st = cpu_state(net)
    with torch.no_grad():
        net[0].weight.add_(1)
    assert not torch.equal(st["0.weight"], net[0].weight)
    assert all(v.device.type == "cpu" and not v.requires_grad for v in st.values())


def test_rng_state_round_trip_gives_the_same_draws():
    gens = {"shuffle_rng": torch.Generator().manual_seed(1), "noise_rng": torch.Generator().manual_seed(2)}
    torch.manual_seed(3)
    torch.randn(5)
    st = rng_state(gens)
    first = [torch.randn(4, generator=gens["shuffle_rng"]), torch.rand(4, generator=gens["noise_rng"]),
             torch.randn(4)]
    other = {"shuffle_rng": torch.Generator().manual_seed(9), "noise_rng": torch.Generator().manual_seed(9)}
    torch.manual_seed(9)
    restore_rng(st, other)
    again = [torch.randn(4, generator=other["shuffle_rng"]), torch.rand(4, generator=other["noise_rng"]),
             torch.randn(4)]
    for a, b in zip(first, again):
        assert torch.equal(a, b)


def test_restore_rng_skips_only_optional_missing_streams(tmp_path):
    gens = {"a": torch.Generator().manual_seed(1)}
    st = rng_state(gens)
    torch.save(st, tmp_path / "rng.pt")  # the states survive a checkpoint
    st = torch.load(tmp_path / "rng.pt", weights_only=True)
    fresh = torch.Generator().manual_seed(5)
    restore_rng(st, {"a": gens["a"], "b": fresh}, optional=("b",))
    assert torch.equal(torch.rand(3, generator=fresh), torch.rand(3, generator=torch.Generator().manual_seed(5)))
    with pytest.raises(KeyError):
        restore_rng(st, {"b": fresh})

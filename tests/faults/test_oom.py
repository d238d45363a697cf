"""Out of memory on a batch: the attack sweep (``advkit attack``) retries it in halves down to one sample, says
so once, and gets the results of the unsplit batch for a per-sample deterministic attack."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from advkit.attacks import get_attack
from advkit.data import ArrayDataset
from advkit.eval import attack_sweep
from advkit.runtime.memory import HalvingBatches


class Picky(nn.Module):
    """A small classifier that raises MemoryError on a batch larger than ``limit`` (as a full device would)."""

    def __init__(self, limit: int | None):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.Tanh(), nn.Linear(16, 3))
        self.limit, self.sizes = limit, []

    def forward(self, x):
        self.sizes.append(len(x))
        if self.limit is not None and len(x) > self.limit:
            raise MemoryError(f"batch of {len(x)}")
        return self.net(x)


@pytest.fixture
def data():
    g = torch.Generator().manual_seed(1)
    return ArrayDataset(torch.randint(0, 256, (21, 1, 8, 8), generator=g, dtype=torch.uint8),
                        torch.randint(0, 3, (21,), generator=g), classes=["a", "b", "c"], name="toy")


@pytest.mark.parametrize("limit", [5, 1])
def test_sweep_retries_in_halves_and_matches_the_unsplit_run(data, limit, caplog, one_thread):
    atk = get_attack("pgd", steps=3, random_start=False)
    ref = attack_sweep(Picky(None), data, atk, [0.1, 0.3], batch_size=16)
    said: list[str] = []
    model = Picky(limit)
    with caplog.at_level(logging.WARNING, logger="advkit.runtime.memory"):
        got = attack_sweep(model, data, atk, [0.1, 0.3], batch_size=16, say=said.append)
    assert len(said) == 1 and "out of memory on a batch of 16" in said[0]
    assert sum("out of memory" in r.message for r in caplog.records) == 1
    assert limit // 2 < max(s for s in model.sizes if s <= limit) <= limit  # halved only until it fits
    torch.testing.assert_close(got.x_adv, ref.x_adv, rtol=0, atol=1e-6)
    assert torch.equal(got.pred_adv, ref.pred_adv) and torch.equal(got.pred_clean, ref.pred_clean)
    assert [r.robust_acc for r in got.results] == [r.robust_acc for r in ref.results]


def test_one_sample_that_does_not_fit_still_raises(data):
    with pytest.raises(MemoryError):
        attack_sweep(Picky(0), data, get_attack("fgsm"), [0.1], batch_size=8)


def test_halving_puts_the_random_stream_back_before_a_retry():
    calls = []

    def fn(x):
        r = torch.rand(len(x), generator=gen)
        calls.append(len(x))
        if len(x) > 2:
            raise MemoryError
        return x + r

    gen = torch.Generator().manual_seed(3)
    out = HalvingBatches("toy")(fn, torch.zeros(4), generators=(gen,))
    expect_gen = torch.Generator().manual_seed(3)
    expect = torch.cat([torch.rand(2, generator=expect_gen), torch.rand(2, generator=expect_gen)])
    assert calls == [4, 2, 2]
    assert torch.equal(out, expect)  # the failed call's draws were taken back


def test_a_later_batch_starts_at_the_size_that_worked():
    sizes = []

    def fn(x):
        sizes.append(len(x))
        if len(x) > 3:
            raise MemoryError
        return x * 2

    fit = HalvingBatches("toy")
    assert torch.equal(fit(fn, torch.arange(8.0)), torch.arange(8.0) * 2)
    sizes.clear()
    assert torch.equal(fit(fn, torch.arange(8.0)), torch.arange(8.0) * 2)
    assert sizes == [2, 2, 2, 2]  # no new failure: straight to the size that fit


def test_eval_suite_retries_in_halves_and_matches_the_unsplit_run(data, caplog, one_thread):
    from advkit.eval.config import resolve_attack
    from advkit.eval.suite import run_suite

    suite = [resolve_attack({"name": "fgsm"}, "linf", "test"),
             resolve_attack({"name": "pgd", "steps": 3, "random_start": False}, "linf", "test")]
    x, y = data.tensors()
    kw = dict(norm="linf", eps_list=(0.1, 0.3), suite=suite, mode="cascade", seed=0, num_classes=3,
              batch_size=16, device=torch.device("cpu"), n_examples=2)
    ref = run_suite(Picky(None), x, y, **kw)
    with caplog.at_level(logging.WARNING, logger="advkit.runtime.memory"):
        got = run_suite(Picky(3), x, y, **kw)
    assert sum("out of memory on a batch of 16 in the eval suite" in r.message for r in caplog.records) == 1
    assert [b.index for b in got] == [b.index for b in ref]
    for a, b in zip(ref, got):
        assert torch.equal(a.correct, b.correct) and torch.equal(a.fooled_by, b.fooled_by)
        torch.testing.assert_close(a.stats[..., :4], b.stats[..., :4], rtol=0, atol=1e-5)  # seconds aside
        assert torch.equal(a.gradient_free_only, b.gradient_free_only)
        for ea, eb in zip(a.examples, b.examples):
            for ta, tb in zip(ea, eb):
                torch.testing.assert_close(ta, tb, rtol=0, atol=1e-6)

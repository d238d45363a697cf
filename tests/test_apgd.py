"""APGD (Croce & Hein 2020): the checkpoint schedule, the DLR loss, the 2-class fallback, invariants beyond the
registry-wide ones, strength against PGD-100, and the cross-check against the reference AutoAttack code."""

from __future__ import annotations

import math
import sys
import warnings
from fractions import Fraction

import pytest
import torch
from torch import nn

from advkit.attacks import apgd, attack_info, get_attack, per_sample_norm, pgd
from advkit.attacks.apgd import checkpoints, dlr_loss
from advkit.errors import AdvkitError
from conftest import REFERENCE

REGISTERED = ("apgd-ce", "apgd-dlr", "apgd-t")
# one intra-op thread: small batches on a shared two-core machine, where a second thread mostly waits
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def mnist(mnist_test):
    return mnist_test.subset(1000).tensors()


def _acc(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


# ---- the schedule and the loss -------------------------------------------------------------------------------

def _paper_checkpoints(steps: int) -> list[int]:
    """w_j = ceil(p_j * steps) in exact arithmetic, straight from the paper's recursion."""
    p = [Fraction(0), Fraction(22, 100)]
    while p[-1] <= 1:
        p.append(p[-1] + max(p[-1] - p[-2] - Fraction(3, 100), Fraction(6, 100)))
    return sorted({math.ceil(q * steps) for q in p[1:] if q <= 1})


def test_checkpoint_schedule():
    assert checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    assert checkpoints(1000) == [220, 410, 570, 700, 800, 870, 930, 990]
    assert checkpoints(10) == [3, 5, 6, 7, 8, 9, 10]
    for steps in range(1, 301):
        assert checkpoints(steps) == _paper_checkpoints(steps), steps


def test_dlr_loss_on_hand_made_logits():
    z = torch.tensor([[3.0, 1.0, 2.0, 0.0], [3.0, 1.0, 2.0, 0.0], [0.5, 4.0, -1.0, 2.0]])
    y = torch.tensor([0, 3, 1])
    # -(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3)
    torch.testing.assert_close(dlr_loss(z, y), torch.tensor([-(3 - 2) / (3 - 1), -(0 - 3) / (3 - 1),
                                                             -(4 - 2) / (4 - 0.5)]))
    # targeted: -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)
    t = torch.tensor([1, 2, 3])
    torch.testing.assert_close(dlr_loss(z, y, t), torch.tensor([-(3 - 1) / (3 - 0.5), -(0 - 2) / (3 - 0.5),
                                                                -(4 - 2) / (4 - (0.5 - 1) / 2)]))
    # unknown true class (targets given by the caller): the largest other logit stands in for z_y
    torch.testing.assert_close(dlr_loss(z, None, t), torch.tensor([-(3 - 1) / 2.5, -(3 - 2) / 2.5,
                                                                   -(4 - 2) / 4.25]))
    # invariant to shifting and (positive) rescaling of the logits
    torch.testing.assert_close(dlr_loss(3 * z - 7, y), dlr_loss(z, y))
    torch.testing.assert_close(dlr_loss(3 * z - 7, y, t), dlr_loss(z, y, t))
    # three classes: the targeted scale is z_pi1 - z_pi3
    torch.testing.assert_close(dlr_loss(torch.tensor([[3.0, 2.0, 0.0]]), torch.tensor([0]), torch.tensor([2])),
                               torch.tensor([-(3 - 0) / (3 - 0.0)]))


def test_two_class_dlr_is_the_plain_margin():
    z = torch.tensor([[1.0, 3.0], [2.5, -1.0]])
    y = torch.tensor([0, 0])
    margin = torch.tensor([3 - 1.0, -1 - 2.5])  # z_other - z_y
    torch.testing.assert_close(dlr_loss(z, y), margin)
    torch.testing.assert_close(dlr_loss(z, y, 1 - y), margin)
    torch.testing.assert_close(dlr_loss(10 * z, y), 10 * margin)  # not a constant: it has a gradient


class _Pair(nn.Module):
    """A 2-class model: the logits of two digits of an MNIST classifier."""

    def __init__(self, net: nn.Module, a: int, b: int):
        super().__init__()
        self.net, self.a, self.b = net, a, b

    def forward(self, x):
        return self.net(x)[:, [self.a, self.b]]


def test_apgd_t_on_two_classes_is_the_untargeted_margin_attack(robust_mnist, mnist):
    x, y = mnist
    keep = (y == 4) | (y == 9)
    x, y = x[keep][:100], (y[keep][:100] == 9).long()
    model = _Pair(robust_mnist, 4, 9).eval()
    kw = dict(eps=0.3, steps=30)
    t = get_attack("apgd-t", steps=30)(model, x, y, eps=0.3)
    torch.testing.assert_close(t, apgd(model, x, y, loss="dlr", targeted=True, **kw), atol=0, rtol=0)
    torch.testing.assert_close(t, get_attack("apgd-dlr", steps=30)(model, x, y, eps=0.3), atol=0, rtol=0)
    clean, robust = _acc(model, x, y), _acc(model, t, y)
    assert clean > 0.9 and robust < clean - 0.2, (clean, robust)
    assert (per_sample_norm(t - x, "linf") <= 0.3 + 1e-6).all()


# ---- invariants beyond the registry-wide ones ------------------------------------------------------------------

@pytest.mark.parametrize("norm, eps", [("linf", 0.3), ("l2", 2.0)])
def test_bound_box_inputs_and_fooled_samples(robust_mnist, mnist, norm, eps):
    x, y = mnist[0][:200], mnist[1][:200]
    x_copy = x.clone()
    with torch.no_grad():
        wrong = robust_mnist(x).argmax(1) != y
    assert wrong.any()
    for name in REGISTERED:
        x_adv = get_attack(name, norm=norm, steps=10)(robust_mnist, x, y, eps=eps)
        assert torch.equal(x, x_copy)
        assert x_adv.dtype == x.dtype and x_adv.shape == x.shape
        assert x_adv.min() >= 0 and x_adv.max() <= 1
        assert (per_sample_norm(x_adv - x, norm) <= eps + 1e-5).all()
        assert torch.equal(x_adv[wrong], x[wrong]), "a sample misclassified from the start was moved"
        assert _acc(robust_mnist, x_adv, y) < _acc(robust_mnist, x, y) - 0.1


@pytest.mark.parametrize("norm, eps", [("linf", 0.3), ("l2", 2.0)])
def test_batch_result_equals_per_sample_result(robust_mnist, mnist, norm, eps):
    # With two intra-op threads a batched convolution sums in another order than a single sample's, and a
    # signed L-inf step turns a last-bit difference in a near-zero gradient into a full step: one thread fixes
    # the order, so any difference left would be one sample leaking into another's attack.
    x, y = mnist[0][:8], mnist[1][:8]
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for name in REGISTERED:
            attack = get_attack(name, norm=norm, steps=10)
            batch = attack(robust_mnist, x, y, eps=eps)
            single = torch.cat([attack(robust_mnist, x[i:i + 1], y[i:i + 1], eps=eps) for i in range(len(y))])
            torch.testing.assert_close(batch, single, atol=1e-5, rtol=0)
    finally:
        torch.set_num_threads(n)


def test_restarts_are_seeded_and_keep_every_earlier_success(robust_mnist, mnist):
    x, y = mnist[0][:200], mnist[1][:200]

    def run(restarts, seed):
        return apgd(robust_mnist, x, y, eps=0.3, steps=10, restarts=restarts,
                    generator=torch.Generator().manual_seed(seed))

    one, many = run(1, 0), run(3, 0)
    assert torch.equal(many, run(3, 0)), "same seed, different result"
    assert not torch.equal(many, run(3, 1)), "the seed does not reach the random starts"
    assert torch.equal(one, run(1, 5)), "the first restart starts at x: no randomness"
    with torch.no_grad():
        fooled_one, fooled_many = robust_mnist(one).argmax(1) != y, robust_mnist(many).argmax(1) != y
    assert (fooled_many | ~fooled_one).all(), "a sample fooled by the first restart was lost"
    assert fooled_many.sum() > fooled_one.sum()


def test_registry_targeted_convention(robust_mnist, mnist):
    """The harness passes target labels with targeted=True: apgd-ce / apgd-dlr / apgd-t then attack towards
    them (at least as often reached as by targeted PGD), while plain apgd-t takes true labels."""
    x, y = mnist[0][:200], mnist[1][:200]
    target = (y + 3) % 10

    def hit(z):
        with torch.no_grad():
            return (robust_mnist(z).argmax(1) == target).float().mean().item()

    untargeted = hit(get_attack("apgd-t", steps=20)(robust_mnist, x, y, eps=0.3))
    by_pgd = hit(pgd(robust_mnist, x, target, eps=0.3, steps=20, targeted=True,
                     generator=torch.Generator().manual_seed(0)))
    for name in REGISTERED:
        got = hit(get_attack(name, steps=20)(robust_mnist, x, target, eps=0.3, targeted=True))
        assert got >= by_pgd and got > 2 * untargeted + 0.02, (name, got, by_pgd, untargeted)


def test_apgd_t_targets_the_most_likely_wrong_class_first(robust_mnist, mnist):
    x, y = mnist[0][:200], mnist[1][:200]
    with torch.no_grad():
        logits = robust_mnist(x)
    second = logits.scatter(1, y[:, None], -math.inf).argmax(1)
    x_adv = apgd(robust_mnist, x, y, eps=0.3, steps=20, loss="dlr", targeted=True, n_target_classes=1)
    with torch.no_grad():
        pred = robust_mnist(x_adv).argmax(1)
    broken = (pred != y) & (logits.argmax(1) == y)
    assert broken.sum() > 20
    assert (pred[broken] == second[broken]).float().mean() > 0.9


def test_labels_and_norms():
    assert [get_attack(n).label for n in REGISTERED] == ["APGD-CE", "APGD-DLR", "APGD-T"]
    assert get_attack("apgd-ce", steps=50, restarts=5).label == "APGD-CE-50x5"
    for name in REGISTERED:
        info = attack_info(name)
        assert info.norms == ("linf", "l2") and not info.gradient_free
    assert get_attack("apgd-t", norm="l2").norm == "l2"


@pytest.mark.parametrize("kwargs, message", [
    ({"loss": "hinge"}, "unknown loss 'hinge'"),
    ({"steps": 0}, "steps must be an integer >= 1"),
    ({"restarts": 0}, "restarts must be an integer >= 1"),
    ({"rho": 1.5}, r"rho must be in \[0, 1\]"),
    ({"targeted": True, "n_target_classes": 0}, "n_target_classes must be an integer >= 1"),
    ({"eps": 1.5}, "eps 1.5 > 1"),
    ({"norm": "l1"}, "unknown norm 'l1'"),
])
def test_bad_parameters(tiny_model, tiny_batch, kwargs, message):
    x, y = tiny_batch
    with pytest.raises(AdvkitError, match=message):
        apgd(tiny_model, x, y, **{"eps": 0.1, **kwargs})


# ---- strength ---------------------------------------------------------------------------------------------------

def test_apgd_ce_is_at_least_as_strong_as_pgd_100(robust_mnist, mnist):
    x, y = mnist[0][:200], mnist[1][:200]
    ours = _acc(robust_mnist, apgd(robust_mnist, x, y, eps=0.3, steps=100), y)
    theirs = _acc(robust_mnist, pgd(robust_mnist, x, y, eps=0.3, steps=100,
                                    generator=torch.Generator().manual_seed(0)), y)
    print(f"robust accuracy at eps 0.3: APGD-CE {ours:.4f}, PGD-100 {theirs:.4f}")
    assert ours <= theirs + 0.005
    assert ours < _acc(robust_mnist, x, y) - 0.2


# ---- the reference ----------------------------------------------------------------------------------------------

@pytest.fixture
def reference(monkeypatch):
    if not (REFERENCE / "autoattack" / "autoattack.py").is_file():
        pytest.skip(f"the reference AutoAttack code is not at {REFERENCE}")
    monkeypatch.syspath_prepend(str(REFERENCE))
    import autoattack  # noqa: F401  (the reference package, from the path above)

    yield sys.modules["autoattack"]
    for name in [m for m in sys.modules if m == "autoattack" or m.startswith("autoattack.")]:
        del sys.modules[name]  # nothing of the reference outlives the test


# (norm, eps, attack, images, steps): fewer steps than AutoAttack's 100 (both sides alike) keep this under
# ~90 s on two cores; APGD-T runs its 9 targets on fewer images.
CROSS = [("linf", 0.3, "apgd-ce", 1000, 25), ("linf", 0.3, "apgd-t", 300, 50),
         ("l2", 2.0, "apgd-ce", 1000, 25), ("l2", 2.0, "apgd-t", 200, 25)]


@pytest.mark.slow
@pytest.mark.parametrize("norm, eps, name, n, steps", CROSS)
def test_matches_the_reference_autoattack(reference, robust_mnist, mnist, norm, eps, name, n, steps):
    from autoattack.autopgd_base import APGDAttack, APGDAttack_targeted

    x, y = mnist[0][:n], mnist[1][:n]
    ref_norm = {"linf": "Linf", "l2": "L2"}[norm]
    adversary = reference.AutoAttack(robust_mnist, norm=ref_norm, eps=eps, version="custom",
                                     attacks_to_run=[name], device="cpu", seed=0, verbose=False)
    # the same attacks with the step count of this test, one restart as in AutoAttack's standard version
    common = dict(n_restarts=1, n_iter=steps, eps=eps, norm=ref_norm, seed=0, device="cpu")
    adversary.apgd = APGDAttack(robust_mnist, loss="ce", **common)
    adversary.apgd_targeted = APGDAttack_targeted(robust_mnist, n_target_classes=9, **common)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = _acc(robust_mnist, adversary.run_standard_evaluation(x, y, bs=n), y)
    ours = _acc(robust_mnist, get_attack(name, norm=norm, steps=steps)(robust_mnist, x, y, eps=eps), y)
    print(f"{name} {norm} eps {eps}, {n} images, {steps} steps: advkit {ours:.4f}, reference {theirs:.4f}")
    assert abs(ours - theirs) <= 0.01 + 1e-9, (ours, theirs)
    assert ours < _acc(robust_mnist, x, y) - 0.2  # the comparison is not two unattacked models

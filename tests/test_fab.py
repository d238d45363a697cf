"""FAB-T: the hyperplane-and-box projection is exact, the eps bound and the box hold, the search finds
points well inside eps, 2-class models have one target, targeted use, and the reference's numbers.

The registry-wide invariants (caller's input, modes, grads, seed, shapes) run over ``list_attacks()`` in
tests/test_attacks.py; the reference cross-check is in tests/test_presets.py with the presets."""

from __future__ import annotations

import pytest
import torch

from advkit.attacks import fab_t, get_attack, per_sample_norm
from advkit.attacks.fab import project_hyperplane_box
from advkit.errors import AdvkitError
from conftest import tiny_cnn


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_projection_is_the_smallest_point_on_the_hyperplane_in_the_box(norm):
    scipy_opt = pytest.importorskip("scipy.optimize")
    import numpy as np

    g = torch.Generator().manual_seed(0)
    n, d = 6, 10
    w = torch.randn(n, d, generator=g, dtype=torch.float64)
    w[:, 0] = 0  # a coordinate the hyperplane ignores
    x = torch.rand(n, d, generator=g, dtype=torch.float64)
    c = torch.randn(n, generator=g, dtype=torch.float64) * 0.5
    delta = project_hyperplane_box(w, c, -x, 1 - x, norm)
    torch.testing.assert_close((w * delta).sum(1), c, atol=1e-10, rtol=0)
    assert ((x + delta) >= 0).all() and ((x + delta) <= 1).all()
    for i in range(n):
        wi, xi, ci = w[i].numpy(), x[i].numpy(), c[i].item()
        box = [(-xi[j], 1 - xi[j]) for j in range(d)]
        if norm == "linf":  # minimise t over (delta, t): -t <= delta_j <= t
            a_ub = np.vstack([np.c_[np.eye(d), -np.ones(d)], np.c_[-np.eye(d), -np.ones(d)]])
            r = scipy_opt.linprog(np.r_[np.zeros(d), 1], A_ub=a_ub, b_ub=np.zeros(2 * d), A_eq=np.r_[wi, 0][None],
                                  b_eq=[ci], bounds=box + [(0, None)])
            best = r.fun
        else:
            r = scipy_opt.minimize(lambda v: (v ** 2).sum(), np.zeros(d), method="SLSQP", bounds=box,
                                   constraints=[{"type": "eq", "fun": lambda v, wi=wi, ci=ci: wi @ v - ci}])
            best = float(np.sqrt(r.fun))
        assert r.success
        ours = per_sample_norm(delta[i:i + 1], norm).item()
        assert ours == pytest.approx(best, abs=1e-6)


def test_projection_when_the_hyperplane_misses_the_box_goes_to_the_nearest_corner():
    x = torch.tensor([[0.5, 0.5]])
    w = torch.tensor([[1.0, 1.0]])
    for norm in ("linf", "l2"):
        delta = project_hyperplane_box(w, torch.tensor([5.0]), -x, 1 - x, norm)  # needs x1 + x2 = 6
        torch.testing.assert_close(delta, torch.tensor([[0.5, 0.5]]))


@pytest.fixture(scope="module")
def lenet_batch(trained_lenet, mnist_test):
    model, _ = trained_lenet
    x, y = mnist_test.subset(48).tensors()
    return model, x, y


@pytest.mark.parametrize("norm, eps", [("linf", 0.1), ("l2", 1.0)])
def test_bound_and_box_hold_and_it_fools(lenet_batch, norm, eps, one_thread):
    model, x, y = lenet_batch
    x_adv = fab_t(model, x, y, eps=eps, norm=norm, steps=20, n_target_classes=3)
    n = per_sample_norm(x_adv - x, norm)
    assert (n <= eps).all(), n.max()
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    with torch.no_grad():
        clean, robust = (model(x).argmax(1) == y), (model(x_adv).argmax(1) == y)
    assert robust.sum() < clean.sum()
    assert torch.equal(x_adv[robust], x[robust]), "a sample it did not fool must come back as x"


def test_points_are_much_smaller_than_a_generous_eps(lenet_batch, one_thread):
    """A minimum-norm search: on a plain (weak) model at eps 0.3 it fools nearly all, well inside the ball."""
    model, x, y = lenet_batch
    x_adv = fab_t(model, x, y, eps=0.3, steps=30, n_target_classes=3)
    with torch.no_grad():
        fooled = (model(x).argmax(1) == y) & (model(x_adv).argmax(1) != y)
    assert fooled.float().mean() > 0.9
    n = per_sample_norm(x_adv - x, "linf")[fooled]
    assert n.max() <= 0.3 and n.mean() < 0.6 * 0.3, n


def test_two_classes_have_one_target(one_thread):
    model = tiny_cnn(num_classes=2, in_chans=1)
    x = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        y = model(x).argmax(1)  # all correctly classified: every sample is attacked
    nine = fab_t(model, x, y, eps=0.5, steps=10)              # asks for 9 targets, gets the 1 there is
    one = fab_t(model, x, y, eps=0.5, steps=10, n_target_classes=1)
    assert torch.equal(nine, one)
    with torch.no_grad():
        assert (model(nine).argmax(1) != y).any()


def test_targeted_reaches_the_chosen_class(lenet_batch, one_thread):
    model, x, y = lenet_batch
    t = (y + 1) % 10
    x_adv = get_attack("fab-t", steps=30)(model, x, t, eps=0.3, targeted=True)
    with torch.no_grad():
        hit = model(x_adv).argmax(1) == t
    assert hit.float().mean() > 0.8
    assert (per_sample_norm(x_adv - x, "linf") <= 0.3).all()


def test_label_and_bad_parameters():
    assert get_attack("fab-t").label == "FAB-T" and get_attack("fab-t", norm="l2").norm == "l2"
    x, y = torch.rand(2, 1, 8, 8), torch.tensor([0, 1])
    with pytest.raises(AdvkitError, match="n_target_classes"):
        fab_t(tiny_cnn(), x, y, eps=0.1, n_target_classes=0)
    with pytest.raises(AdvkitError, match="eta"):
        fab_t(tiny_cnn(), x, y, eps=0.1, eta=0.5)

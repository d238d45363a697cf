"""Square Attack: bounds, linear models with known distances to the boundary, strength against a trained
model compared with random noise, targeted, determinism, query accounting, no gradients, bad input."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from advkit.attacks import get_attack, list_attacks, per_sample_norm, square
from advkit.errors import AdvkitError

EPS = {"linf": 0.1, "l2": 1.0}


pytestmark = pytest.mark.usefixtures("one_thread")


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class _Projection(nn.Module):
    """Logits ``offsets + scales * u`` with ``u = v . (x - 0.5)``: linear along one direction ``v``."""

    def __init__(self, v: torch.Tensor, scales: list[float], offsets: list[float]):
        super().__init__()
        self.register_buffer("v", v.flatten())
        self.register_buffer("scales", torch.tensor(scales))
        self.register_buffer("offsets", torch.tensor(offsets))

    def forward(self, x):
        u = (x.flatten(1) - 0.5) @ self.v
        return self.offsets + self.scales * u[:, None]


def _direction(shape=(1, 8, 8), seed=0) -> torch.Tensor:
    return torch.randn(shape, generator=_gen(seed)).sign()


def _linear(in_shape, classes=3, seed=0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(int(torch.tensor(in_shape).prod()), classes)).eval()


def test_registered_with_its_norm():
    assert "square" in list_attacks(include_foolbox=False)
    attack = get_attack("square", n_queries=100)
    assert attack.norm == "linf" and attack.kwargs == {"n_queries": 100}
    assert get_attack("square", norm="l2").norm == "l2"
    x = torch.full((2, 1, 8, 8), 0.5)
    model = _Projection(_direction(), [1.0, -1.0], [0.0, 0.0])
    attack = get_attack("square", norm="l2", n_queries=20)
    x_adv = attack(model, x, torch.tensor([0, 1]), eps=1.0, generator=_gen())
    assert (per_sample_norm(x_adv - x, "l2") <= 1.0 + 1e-5).all()


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (3, 7, 12), (2, 5, 5), (1, 1, 9)])
def test_result_stays_in_the_ball_and_the_box(norm, shape):
    x = torch.rand(6, *shape, generator=_gen(1))
    x[:, :, 0] = 0.0  # pixels at the box's edges
    x[:, :, -1] = 1.0
    model = _linear(shape)
    model[1].bias.data += torch.tensor([3.0, 0.0, 0.0])  # class 0 is hard to leave: many iterations run
    with torch.no_grad():
        y = model(x).argmax(1)
    for dtype in (torch.float32, torch.float64):
        xd = x.to(dtype)
        x_adv = square(model, xd, y, eps=EPS[norm], norm=norm, n_queries=40, generator=_gen())
        assert x_adv.shape == x.shape and x_adv.dtype == dtype
        assert x_adv.min() >= 0 and x_adv.max() <= 1
        assert (per_sample_norm(x_adv - xd, norm) <= EPS[norm] + 1e-5).all()
        assert not torch.equal(x_adv, xd)


@pytest.mark.parametrize("loss", ["margin", "ce"])
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_linear_model_fooled_inside_eps_never_beyond(norm, loss):
    """Two classes split by ``v . (x - 0.5) = 0``. A sample at ``0.5 + d * dir`` lies at distance exactly
    ``d`` from the boundary in ``norm`` (dir = sign(v) for linf, v / ||v||_2 for l2); the box never binds."""
    v = _direction()
    direction = v if norm == "linf" else v / v.norm()
    eps = EPS[norm]
    dists = torch.tensor([0.3, 0.3, 1.05, 1.5, 3.0]) * eps
    x = 0.5 + dists.view(-1, 1, 1, 1) * direction
    assert x.min() >= 0 and x.max() <= 1
    model = _Projection(v, [1.0, -1.0], [0.0, 0.0])  # class 0 where u > 0
    y = torch.zeros(5, dtype=torch.long)
    x_adv = square(model, x, y, eps=eps, norm=norm, loss=loss, n_queries=300, generator=_gen())
    fooled = model(x_adv).argmax(1) != 0
    assert fooled.tolist() == [True, True, False, False, False]


def _trained_mlp():
    """A small MLP trained in a fraction of a second on four noisy prototype images (~100% accurate)."""
    g = _gen(0)
    protos = 0.3 + 0.4 * torch.rand(4, 1, 8, 8, generator=g)

    def data(n, gen):
        y = torch.randint(0, 4, (n,), generator=gen)
        return (protos[y] + 0.15 * torch.randn(n, 1, 8, 8, generator=gen)).clamp(0, 1), y

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 4))
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(150):
        xb, yb = data(64, g)
        opt.zero_grad()
        F.cross_entropy(model(xb), yb).backward()
        opt.step()
    model.zero_grad(set_to_none=True)
    return model.eval(), data(64, _gen(1))


@pytest.fixture(scope="module")
def trained_mlp():
    return _trained_mlp()


def _acc(model, x, y):
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


@pytest.mark.parametrize("norm, eps", [("linf", 0.1), ("l2", 1.0)])
def test_beats_random_noise_of_the_same_size_on_a_trained_model(trained_mlp, norm, eps):
    model, (x, y) = trained_mlp
    clean = _acc(model, x, y)
    assert clean > 0.9
    if norm == "linf":
        noise = eps * (torch.randint(0, 2, x.shape, generator=_gen(2)) * 2 - 1)
    else:
        noise = torch.randn(x.shape, generator=_gen(2))
        noise *= eps / per_sample_norm(noise, "l2").view(-1, 1, 1, 1)
    noisy = _acc(model, (x + noise).clamp(0, 1), y)
    x_adv = square(model, x, y, eps=eps, norm=norm, n_queries=200, generator=_gen())
    robust = _acc(model, x_adv, y)
    assert noisy > 0.8
    assert robust < clean - 0.4 and robust < noisy - 0.4, (clean, noisy, robust)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_same_seed_same_result_other_seed_other_result(trained_mlp, norm):
    model, (x, y) = trained_mlp
    x, y = x[:16], y[:16]

    def run(seed):
        return square(model, x, y, eps=EPS[norm] / 4, norm=norm, n_queries=30, generator=_gen(seed))

    a = run(0)
    assert torch.equal(a, run(0))
    assert not torch.equal(a, run(1))


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_targeted_reaches_the_target_class(norm):
    """Class 0 at u = 0, class 1 for u > 0.5, class 2 for u < -0.5: the targets lie in opposite directions."""
    v = _direction()
    model = _Projection(v, [0.0, 1.0, -1.0], [0.5, 0.0, 0.0])
    x = (0.5 + 0.02 * torch.randn(6, 1, 8, 8, generator=_gen(3))).clamp(0, 1)
    assert (model(x).argmax(1) == 0).all()
    t = torch.tensor([1, 2, 1, 2, 0, 0])
    x_adv = square(model, x, t, eps=EPS[norm], norm=norm, targeted=True, n_queries=200, generator=_gen())
    assert model(x_adv).argmax(1).tolist() == [1, 2, 1, 2, 0, 0]
    assert torch.equal(x_adv[4:], x[4:])  # already "fooled" into their target: unchanged
    assert (per_sample_norm(x_adv - x, norm) <= EPS[norm] + 1e-5).all()


class _NoBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        raise AssertionError("square attack used a gradient")


class _Recording(nn.Module):
    """Wraps a model: gradients through it raise; records each call's batch size and grad mode."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner
        self.calls: list[tuple[int, bool]] = []

    def forward(self, x):
        self.calls.append((x.shape[0], torch.is_grad_enabled() or x.requires_grad))
        return self.inner(_NoBackward.apply(x))


def test_no_gradient_is_ever_computed(trained_mlp):
    model, (x, y) = trained_mlp
    rec = _Recording(model).train()
    for norm in ("linf", "l2"):
        x_adv = square(rec, x[:8], y[:8], eps=EPS[norm], norm=norm, n_queries=20, generator=_gen())
        assert not x_adv.requires_grad
    assert rec.calls and not any(grad for _, grad in rec.calls)
    assert rec.training and all(p.requires_grad and p.grad is None for p in rec.parameters())
    with pytest.raises(AssertionError, match="used a gradient"):  # the trap works
        rec(x[:2].requires_grad_(True)).sum().backward()


def test_only_unfooled_samples_are_queried_and_it_stops_early():
    v = _direction()
    model = _Recording(_Projection(v, [1.0, -1.0], [0.0, 0.0]))
    eps = EPS["linf"]
    # distances 0.2 eps and 0.3 eps (foolable), 3 eps (not), and one sample already on the other side
    x = 0.5 + torch.tensor([0.2, 0.3, 3.0, -0.5]).view(-1, 1, 1, 1) * eps * v
    y = torch.zeros(4, dtype=torch.long)
    x_adv = square(model, x, y, eps=eps, n_queries=100, generator=_gen())
    sizes = [n for n, _ in model.calls]
    assert sizes[0] == 4 and sizes[1] == 3  # the clean pass, then the init of the three not yet fooled
    assert sizes == sorted(sizes, reverse=True) and sizes[-1] == 1
    assert len(sizes) == 1 + 100  # the unfoolable one uses the whole budget
    assert torch.equal(x_adv[3], x[3])
    assert model(x_adv).argmax(1).tolist() == [1, 1, 0, 1]

    model.calls.clear()
    square(model, x[:2], y[:2], eps=eps, n_queries=1000, generator=_gen())
    assert len(model.calls) < 300  # everything fooled: no more queries

    model.calls.clear()
    assert torch.equal(square(model, x, y, eps=0.0, generator=_gen()), x)
    assert len(model.calls) == 1


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")
def test_runs_on_the_gpu_with_a_gpu_generator(trained_mlp):
    _, (x, y) = trained_mlp
    model = _linear((1, 8, 8), classes=4).cuda()
    x, y = x.cuda(), y.cuda()

    def run():
        return square(model, x, y, eps=0.05, n_queries=30, generator=torch.Generator(device="cuda").manual_seed(0))

    a = run()
    assert a.device == x.device and torch.equal(a, run())
    assert (per_sample_norm(a - x, "linf") <= 0.05 + 1e-6).all()


@pytest.mark.parametrize("kwargs, message", [
    ({"eps": -0.1}, "eps must be finite and >= 0"),
    ({"eps": 1.5}, "eps 1.5 > 1"),
    ({"eps": 0.1, "norm": "l1"}, r"unknown norm 'l1'; valid: linf, l2"),
    ({"eps": 0.1, "n_queries": 0}, "n_queries must be an integer >= 1"),
    ({"eps": 0.1, "n_queries": 2.5}, "n_queries must be an integer >= 1"),
    ({"eps": 0.1, "p_init": 0.0}, r"p_init must be in \(0, 1\]"),
    ({"eps": 0.1, "p_init": 1.5}, r"p_init must be in \(0, 1\]"),
    ({"eps": 0.1, "loss": "hinge"}, "unknown loss 'hinge'; valid: margin, ce"),
])
def test_bad_parameters(kwargs, message):
    x, y = torch.rand(2, 1, 8, 8), torch.tensor([0, 1])
    with pytest.raises(AdvkitError, match=message):
        square(_linear((1, 8, 8)), x, y, **kwargs)


def test_bad_inputs():
    x, y = torch.rand(2, 1, 8, 8), torch.tensor([0, 1])
    with pytest.raises(AdvkitError, match=r"labels must be in \[0, 2\]"):
        square(_linear((1, 8, 8)), x, torch.tensor([0, 3]), eps=0.1)
    with pytest.raises(AdvkitError, match="K >= 2 classes"):
        square(_linear((1, 8, 8), classes=1), x, torch.tensor([0, 0]), eps=0.1)
    with pytest.raises(AdvkitError, match=r"image batch \[B, C, H, W\]"):
        square(_linear((8, 8)), x[:, 0], y, eps=0.1)
    with pytest.raises(AdvkitError, match=r"x must be in \[0,1\]"):
        square(_linear((1, 8, 8)), x * 2, y, eps=0.1)


@pytest.mark.parametrize("rescale", [True, False])
def test_p_schedule_is_the_references(rescale):
    """p at every iteration of a 5,000-query run equals the reference AutoAttack's ``p_selection`` with the
    same ``resc_schedule`` (the ``autoattack`` preset runs it unrescaled, as the reference's standard run)."""
    import sys

    from advkit.attacks.square import _p_at
    from conftest import REPO

    ref_root = REPO.parent / "shared" / "reference" / "auto-attack"
    if not (ref_root / "autoattack" / "square.py").is_file():
        pytest.skip(f"the reference AutoAttack is not at {ref_root}")
    sys.path.insert(0, str(ref_root))
    try:
        from autoattack.square import SquareAttack
    finally:
        sys.path.remove(str(ref_root))
    ref = SquareAttack(lambda x: x, p_init=0.8, n_queries=5000, resc_schedule=rescale, device="cpu")
    ours = [_p_at(0.8, it, 5000, rescale) for it in range(5000)]
    theirs = [ref.p_selection(it) for it in range(5000)]
    assert ours == theirs
    assert min(ours) == pytest.approx(0.8 / (512 if rescale else 128), rel=1e-12)


def test_the_autoattack_preset_runs_square_unrescaled():
    from advkit.attacks.presets import PRESETS

    params = dict(PRESETS["autoattack"])["square"]
    assert params["n_queries"] == 5000 and params["rescale_schedule"] is False

"""GAN core: DCGAN nets on the [0,1] contract, the five GAN losses against hand-written formulas, the
gradient penalty, and the sample-quality metrics (Frechet distance, KID, Inception score, coverage,
feature extraction from an advkit classifier)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from advkit import AdvkitError
from advkit.gan import (
    FAKE,
    LOSSES,
    REAL,
    DCGANDiscriminator,
    DCGANGenerator,
    TwoLogit,
    build_gan_net,
    class_coverage,
    d_loss,
    extract,
    feature_stats,
    frechet_distance,
    g_loss,
    gradient_penalty,
    inception_score,
    kid,
    value,
)
from advkit.models import create_model


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------- nets

@pytest.mark.parametrize("size,channels", [(28, 1), (32, 3), (64, 3)])
def test_generator_and_discriminator_shapes(size, channels):
    g = DCGANGenerator(z_dim=8, img_size=size, channels=channels, width=4)
    x = g.sample(3, generator=_gen())
    assert x.shape == (3, channels, size, size)
    assert x.min() >= 0 and x.max() <= 1
    assert g(torch.randn(2, 8, 1, 1)).shape == (2, channels, size, size)  # [B, z, 1, 1] works too
    d = DCGANDiscriminator(img_size=size, channels=channels, width=4)
    assert d(x).shape == (3,)
    assert TwoLogit(d)(x).shape == (3, 2)


def test_sample_is_reproducible_and_differentiable():
    g = DCGANGenerator(z_dim=8, width=4)
    d = DCGANDiscriminator(width=4)
    assert torch.equal(g.sample(4, generator=_gen(1)), g.sample(4, generator=_gen(1)))
    g_loss("nonsaturating", d(g.sample(4))).backward()
    assert all(p.grad is not None for p in g.parameters())


def test_bad_sizes_and_inputs():
    with pytest.raises(AdvkitError, match="28, 32, 64"):
        DCGANGenerator(img_size=48)
    with pytest.raises(AdvkitError, match="28, 32, 64"):
        DCGANDiscriminator(img_size=16)
    with pytest.raises(AdvkitError):
        DCGANGenerator(width=0)
    with pytest.raises(AdvkitError):
        DCGANGenerator(z_dim=8, width=4)(torch.randn(2, 9))
    with pytest.raises(AdvkitError):
        DCGANDiscriminator(width=4)(torch.rand(2, 3, 28, 28))


def test_dcgan_architecture_rules():
    g = DCGANGenerator(z_dim=8, img_size=64, channels=3, width=4)
    for critic in (False, True):
        d = DCGANDiscriminator(img_size=64, channels=3, width=4, critic=critic)
        for net in (g, d):  # strided convs only: no pooling, no fully connected layer
            assert not any(isinstance(m, (nn.Linear, nn.MaxPool2d, nn.AvgPool2d)) for m in net.modules())
        layers = list(d.net)
        assert isinstance(layers[0], nn.Conv2d) and isinstance(layers[1], nn.LeakyReLU)  # input layer: no BN
        assert layers[1].negative_slope == 0.2
        assert isinstance(layers[-1], nn.Conv2d)  # output: a raw logit, no sigmoid
        n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in d.modules())
        assert n_bn == (0 if critic else sum(isinstance(m, nn.Conv2d) for m in d.modules()) - 2)
    layers = list(g.net)
    assert isinstance(layers[-1], nn.Tanh) and isinstance(layers[-2], nn.ConvTranspose2d)  # output: no BN
    convs = [m for m in layers if isinstance(m, nn.ConvTranspose2d)]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in layers) == len(convs) - 1
    assert [c.out_channels for c in convs] == [32, 16, 8, 4, 3]  # width doubles towards z
    assert [c.stride[0] for c in convs] == [1, 2, 2, 2, 2]
    # DCGAN init: conv weights ~ N(0, 0.02)
    assert abs(convs[1].weight.std().item() - 0.02) < 0.003


def test_spectral_norm_and_spec_rebuild():
    d = DCGANDiscriminator(img_size=32, channels=3, width=4, spectral_norm=True, critic=True)
    convs = [m for m in d.modules() if isinstance(m, nn.Conv2d)]
    assert all(torch.nn.utils.parametrize.is_parametrized(c, "weight") for c in convs)
    assert not any(torch.nn.utils.parametrize.is_parametrized(c) for c in
                   DCGANDiscriminator(width=4).modules() if isinstance(c, nn.Conv2d))
    g = DCGANGenerator(z_dim=8, img_size=28, channels=1, width=4)
    assert g.spec == {"arch": "dcgan_generator", "z_dim": 8, "img_size": 28, "channels": 1, "width": 4}
    assert d.spec == {"arch": "dcgan_discriminator", "img_size": 32, "channels": 3, "width": 4,
                      "spectral_norm": True, "critic": True}
    for net in (g, d, TwoLogit(d)):
        rebuilt = build_gan_net(net.spec)
        assert type(rebuilt) is type(net) and rebuilt.spec == net.spec
        assert {k: v.shape for k, v in rebuilt.state_dict().items()} == \
               {k: v.shape for k, v in net.state_dict().items()}
        rebuilt.load_state_dict(net.state_dict())
    with pytest.raises(AdvkitError, match="unknown GAN architecture"):
        build_gan_net({"arch": "stylegan"})
    with pytest.raises(AdvkitError):
        build_gan_net({"arch": "dcgan_generator", "layers": 3})


@pytest.mark.parametrize("critic", [False, True])
def test_depth_adds_stride1_convs_and_round_trips(critic):
    g = DCGANGenerator(z_dim=8, img_size=32, channels=3, width=4, depth=2)
    d = DCGANDiscriminator(img_size=32, channels=3, width=4, critic=critic, depth=1, spectral_norm=True)
    x = g.sample(3, generator=_gen())
    assert x.shape == (3, 3, 32, 32) and d(x).shape == (3,)
    # G: 3 hidden blocks (4, 8, 16 px) with 2 extra stride-1 3x3 convs each, keeping the channel count
    extra = [m for m in g.net if isinstance(m, nn.Conv2d)]
    assert len(extra) == 6 and all(c.kernel_size == (3, 3) and c.stride == (1, 1) for c in extra)
    assert [c.out_channels for c in extra] == [16, 16, 8, 8, 4, 4]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in g.net) == 3 + 6  # still none at the output
    convs = [m for m in d.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 3 + 3 + 1 and all(torch.nn.utils.parametrize.is_parametrized(c, "weight") for c in convs)
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in d.modules())
    assert n_bn == (0 if critic else 2 + 3)  # the input layer never gets one; the extra layers do (not a critic)
    assert g.spec["depth"] == 2 and d.spec["depth"] == 1
    for net, inp in ((g, torch.ones(2, 8)), (d, x)):
        rebuilt = build_gan_net(net.spec)
        rebuilt.load_state_dict(net.state_dict())
        assert torch.equal(rebuilt.eval()(inp), net.eval()(inp))
    assert "depth" not in DCGANGenerator(width=4).spec and "depth" not in DCGANDiscriminator(width=4).spec
    for bad in (-1, 1.5, True):
        with pytest.raises(AdvkitError, match="depth must be a non-negative integer"):
            DCGANGenerator(width=4, depth=bad)
        with pytest.raises(AdvkitError, match="depth must be a non-negative integer"):
            DCGANDiscriminator(width=4, depth=bad)


def test_two_logit_matches_bce():
    """Index 0 = real, 1 = fake: CE(two_logit(x), 0) == BCE(d(x), 1) and CE(two_logit(x), 1) == BCE(d(x), 0)."""
    assert (REAL, FAKE) == (0, 1)
    d = DCGANDiscriminator(width=4).eval()
    x = torch.rand(5, 1, 28, 28, generator=_gen())
    with torch.no_grad():
        nn.init.constant_(d.net[-1].bias, 1.5)  # spread the logits a little
        logit, two = d(x), TwoLogit(d)(x)
    for label, target in ((REAL, 1.0), (FAKE, 0.0)):
        ce = F.cross_entropy(two, torch.full((5,), label), reduction="none")
        bce = F.binary_cross_entropy_with_logits(logit, torch.full((5,), target), reduction="none")
        torch.testing.assert_close(ce, bce)
    torch.testing.assert_close(two.softmax(1)[:, REAL], torch.sigmoid(logit))


# ---------------------------------------------------------------- losses

R, FK = [2.0, -1.0], [0.5, -3.0]


def _sig(v: float) -> float:
    return 1 / (1 + math.exp(-v))


def _mean(xs) -> float:
    xs = list(xs)
    return sum(xs) / len(xs)


EXPECTED_D = {
    "minimax": -_mean(math.log(_sig(r)) for r in R) - _mean(math.log(1 - _sig(f)) for f in FK),
    "wgan": _mean(FK) - _mean(R),
    "hinge": _mean(max(0.0, 1 - r) for r in R) + _mean(max(0.0, 1 + f) for f in FK),
    "lsgan": 0.5 * _mean((r - 1) ** 2 for r in R) + 0.5 * _mean(f ** 2 for f in FK),
}
EXPECTED_D["nonsaturating"] = EXPECTED_D["minimax"]
EXPECTED_G = {
    "minimax": _mean(math.log(1 - _sig(f)) for f in FK),
    "nonsaturating": -_mean(math.log(_sig(f)) for f in FK),
    "wgan": -_mean(FK),
    "hinge": -_mean(FK),
    "lsgan": 0.5 * _mean((f - 1) ** 2 for f in FK),
}


@pytest.mark.parametrize("name", LOSSES)
def test_losses_match_formulas(name):
    r, f = torch.tensor(R), torch.tensor(FK)
    assert d_loss(name, r, f).item() == pytest.approx(EXPECTED_D[name], rel=1e-6)
    assert g_loss(name, f).item() == pytest.approx(EXPECTED_G[name], rel=1e-6)
    assert d_loss(name, r, f).ndim == 0 and g_loss(name, f).ndim == 0


def test_value_is_minus_minimax_d_loss():
    r, f = torch.tensor(R), torch.tensor(FK)
    assert value(r, f).item() == pytest.approx(-EXPECTED_D["minimax"], rel=1e-6)
    assert value(torch.zeros(3), torch.zeros(3)).item() == pytest.approx(-math.log(4))  # D = 1/2 everywhere


def test_label_smoothing_changes_only_the_real_term():
    r, f = torch.tensor(R), torch.tensor(FK)
    s = 0.9
    real_bce = -_mean(s * math.log(_sig(v)) + (1 - s) * math.log(1 - _sig(v)) for v in R)
    fake_bce = -_mean(math.log(1 - _sig(v)) for v in FK)
    for name in ("minimax", "nonsaturating"):
        assert d_loss(name, r, f, real_label=s).item() == pytest.approx(real_bce + fake_bce, rel=1e-6)
    lsgan = 0.5 * _mean((v - s) ** 2 for v in R) + 0.5 * _mean(v ** 2 for v in FK)
    assert d_loss("lsgan", r, f, real_label=s).item() == pytest.approx(lsgan, rel=1e-6)
    # the fake term is untouched: moving d_fake shifts both versions equally
    f2 = f + 0.7
    for name in ("minimax", "lsgan"):
        delta_smooth = d_loss(name, r, f2, real_label=s) - d_loss(name, r, f, real_label=s)
        delta_plain = d_loss(name, r, f2) - d_loss(name, r, f)
        assert delta_smooth.item() == pytest.approx(delta_plain.item(), rel=1e-5)
    for name in ("wgan", "hinge"):
        with pytest.raises(AdvkitError, match="no target labels"):
            d_loss(name, r, f, real_label=s)
    with pytest.raises(AdvkitError):
        d_loss("minimax", r, f, real_label=1.5)


def test_unknown_loss():
    with pytest.raises(AdvkitError, match="nonsaturating"):
        d_loss("vanilla", torch.zeros(2), torch.zeros(2))
    with pytest.raises(AdvkitError, match="hinge"):
        g_loss("vanilla", torch.zeros(2))


def test_minimax_generator_gradient_saturates_nonsaturating_does_not():
    for name, expect_vanish in (("minimax", True), ("nonsaturating", False)):
        f = torch.tensor([-20.0, -30.0], requires_grad=True)  # D confidently rejects the fakes
        (grad,) = torch.autograd.grad(g_loss(name, f), f)
        if expect_vanish:
            assert grad.abs().max() < 1e-8
        else:
            torch.testing.assert_close(grad, torch.full((2,), -0.5))  # -(1 - sigmoid(f)) / B
    f = torch.full((4,), -1e4, requires_grad=True)  # extreme logits stay finite
    for name in LOSSES:
        assert torch.isfinite(g_loss(name, f)) and torch.isfinite(d_loss(name, -f, f))


def test_gradient_penalty():
    real, fake = torch.rand(6, 1, 4, 4, generator=_gen(0)), torch.rand(6, 1, 4, 4, generator=_gen(1))
    u = torch.randn(1, 1, 4, 4, generator=_gen(2))
    u = u / u.norm()
    gp = gradient_penalty(lambda x: (x * u).flatten(1).sum(1), real, fake, generator=_gen(3))
    assert gp.item() < 1e-10
    w = nn.Parameter(3.0 * u.clone())  # a linear critic with ||w|| = 3
    gp = gradient_penalty(lambda x: (x * w).flatten(1).sum(1), real, fake, generator=_gen(3))
    assert gp.item() == pytest.approx(4.0, rel=1e-5)
    gp.backward()  # create_graph: the penalty trains the critic; d/dw (||w|| - 1)^2 = 2 (||w|| - 1) w / ||w||
    torch.testing.assert_close(w.grad, 4.0 * u)
    d = DCGANDiscriminator(width=4, critic=True)
    gradient_penalty(d, real.repeat(1, 1, 7, 7), fake.repeat(1, 1, 7, 7)).backward()  # through a real critic
    assert all(m.weight.grad.abs().sum() > 0 for m in d.modules() if isinstance(m, nn.Conv2d))
    with pytest.raises(AdvkitError):
        gradient_penalty(d, real, fake[:3])


# ---------------------------------------------------------------- Frechet distance

def _spd(d: int, rng: np.random.Generator) -> np.ndarray:
    a = rng.standard_normal((d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def test_frechet_identical_and_diagonal():
    rng = np.random.default_rng(0)
    mu, s = rng.standard_normal(16), _spd(16, rng)
    assert abs(frechet_distance(mu, s, mu, s)) < 1e-6
    a, b = rng.uniform(0.1, 3, 16), rng.uniform(0.1, 3, 16)
    mu2 = rng.standard_normal(16)
    expected = ((mu - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    fd = frechet_distance(torch.from_numpy(mu), torch.from_numpy(np.diag(a)), mu2, np.diag(b))  # torch ok
    assert fd == pytest.approx(expected, rel=1e-6)


def test_frechet_rotation_invariant_and_brute_force():
    rng = np.random.default_rng(1)
    d = 12
    mu1, mu2, s1, s2 = rng.standard_normal(d), rng.standard_normal(d), _spd(d, rng), _spd(d, rng)
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    fd = frechet_distance(mu1, s1, mu2, s2)
    assert frechet_distance(q @ mu1, q @ s1 @ q.T, q @ mu2, q @ s2 @ q.T) == pytest.approx(fd, rel=1e-6)
    # second route: s1 s2 is similar to an SPD matrix, so its eigenvalues are real and positive
    ev = np.linalg.eigvals(s1 @ s2)
    brute = ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(ev.real).sum()
    assert fd == pytest.approx(brute, rel=1e-6)


def test_frechet_singular_covariance_is_finite():
    rng = np.random.default_rng(2)
    f1, f2 = rng.standard_normal((5, 10)), rng.standard_normal((5, 10)) + 0.5
    (m1, s1), (m2, s2) = feature_stats(f1), feature_stats(f2)
    assert np.linalg.matrix_rank(s1) < 10
    fd = frechet_distance(m1, s1, m2, s2)
    assert math.isfinite(fd) and fd > 0
    assert abs(frechet_distance(m1, s1, m1, s1)) < 1e-6


def test_frechet_from_samples():
    rng = np.random.default_rng(3)
    a = rng.standard_normal((4, 4))
    x = rng.standard_normal((20000, 4)) @ a.T + 1.0
    y = rng.standard_normal((20000, 4)) @ a.T + 1.0
    mx, sx = feature_stats(x)
    assert mx.dtype == np.float64 and sx.shape == (4, 4)
    np.testing.assert_allclose(sx, np.cov(x, rowvar=False), rtol=1e-12)  # unbiased
    assert frechet_distance(mx, sx, *feature_stats(y)) < 0.01
    shift = np.array([1.0, -0.5, 0.8, 0.3])
    fd = frechet_distance(mx, sx, *feature_stats(y + shift))
    assert fd == pytest.approx((shift ** 2).sum(), rel=0.05)


def test_metric_input_errors():
    with pytest.raises(AdvkitError):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(AdvkitError):
        feature_stats(np.zeros((1, 3)))
    with pytest.raises(AdvkitError, match="softmax"):
        inception_score(np.full((10, 3), 2.0), splits=2)


# ---------------------------------------------------------------- KID, IS, coverage

def test_kid():
    g = _gen(0)
    x, y = torch.randn(1000, 8, generator=g), torch.randn(1000, 8, generator=g)
    mean, std = kid(x, y, subsets=10, subset_size=200, generator=_gen(1))
    assert abs(mean) < 3 * std + 1e-3
    mean_s, std_s = kid(x, y + 1.0, subsets=10, subset_size=200, generator=_gen(1))
    assert mean_s > 0.1 and mean_s > 10 * std_s
    assert kid(x[:50].numpy(), y.numpy(), subsets=2, generator=_gen(2))[0] == pytest.approx(
        kid(x[:50], y, subsets=2, generator=_gen(2))[0])  # subset size clipped to 50; numpy works too


def test_inception_score():
    k = 5
    labels = torch.arange(100) % k  # every split of 10 holds each class twice
    probs = F.one_hot(labels, k).double()
    mean, std = inception_score(probs, splits=10)
    assert mean == pytest.approx(k, abs=1e-6) and std < 1e-9
    assert inception_score(F.one_hot(torch.zeros(100, dtype=torch.long), k), splits=10)[0] == pytest.approx(1.0)
    assert inception_score(torch.full((20, k), 1.0 / k), splits=4)[0] == pytest.approx(1.0)  # no confidence


def test_class_coverage():
    labels = [0, 0, 1, 2, 2, 2]
    cov = class_coverage(np.array(labels), 4)
    assert cov == pytest.approx([2 / 6, 1 / 6, 3 / 6, 0.0]) and sum(cov) == pytest.approx(1.0)
    assert class_coverage(F.one_hot(torch.tensor(labels), 4).float() * 3, 4) == pytest.approx(cov)
    with pytest.raises(AdvkitError):
        class_coverage([0, 4], 4)


# ---------------------------------------------------------------- extract

def test_extract_lenet():
    torch.manual_seed(0)
    model = create_model("lenet", num_classes=10, in_chans=1, input_size=28, width=4).train()
    u8 = torch.randint(0, 256, (12, 1, 28, 28), dtype=torch.uint8, generator=_gen())
    feats, probs = extract(model, u8, batch_size=5)
    assert feats.shape == (12, 128) and feats.dtype == torch.float64 and probs.shape == (12, 10)
    torch.testing.assert_close(probs.sum(1), torch.ones(12, dtype=torch.float64))
    assert model.training  # state restored
    feats_f, probs_f = extract(model, u8.float() / 255, batch_size=500)
    torch.testing.assert_close(feats, feats_f)
    torch.testing.assert_close(probs, probs_f)
    with torch.no_grad():  # the features are what the last Linear layer sees
        torch.testing.assert_close(model.net.fc2(feats.float()).softmax(1).double(), probs, atol=1e-5, rtol=1e-4)
    feats1, _ = extract(model, u8, layer="net.fc1")
    assert feats1.shape == (12, 4 * 2 * 7 * 7)
    with pytest.raises(AdvkitError, match="nn.Linear"):
        extract(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten()), u8)
    with pytest.raises(AdvkitError):
        extract(model, u8.long())


# ---------------------------------------------------------------- the duality gap on a toy game

class _PointG(nn.Module):
    """A generator that puts all its mass on one value theta (z is ignored)."""
    z_dim = 1

    def __init__(self, theta: float):
        super().__init__()
        self.theta = nn.Parameter(torch.tensor(theta))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.theta.expand(len(z), 1, 1, 1)


class _BumpD(nn.Module):
    """logit(x) = b - s (x - m)^2 with s, m fixed (buffers): only the offset b is the discriminator's move."""

    def __init__(self, b: float, s: float = 4.0, m: float = 0.5):
        super().__init__()
        self.b = nn.Parameter(torch.tensor(b))
        self.register_buffer("s", torch.tensor(s))
        self.register_buffer("m", torch.tensor(m))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b - self.s * (x.flatten(1).mean(1) - self.m) ** 2


@pytest.mark.parametrize("theta,b", [(0.2, 1.0), (0.8, -0.5), (0.1, 0.32)])
def test_duality_gap_matches_the_closed_form_of_a_toy_game(theta, b):
    """Real data is the point r = 0.9. With A = s(r-m)^2 and B = s(theta-m)^2, V(theta, b) =
    log sig(b - A) + log sig(B - b); the best b' for theta is (A + B) / 2 (V is concave in b), so
    max_D' V = 2 log sig((B - A) / 2); the best theta' for b is m, so min_G' V = log sig(b - A) + log sig(-b).
    The estimator's Adam steps must find both optima."""
    from advkit.gan import duality_gap

    s, m, r = 4.0, 0.5, 0.9
    big_a, big_b = s * (r - m) ** 2, s * (theta - m) ** 2
    ls = lambda t: math.log(1 / (1 + math.exp(-t)))  # noqa: E731
    v = ls(b - big_a) + ls(big_b - b)
    v_max = 2 * ls((big_b - big_a) / 2)
    v_min = ls(b - big_a) + ls(-b)
    exact = v_max - v_min
    real = torch.full((32, 1, 1, 1), r)
    g, d = _PointG(theta), _BumpD(b, s, m)
    res = duality_gap(g, d, real, k=400, lr=0.02, batch_size=32, generator=_gen(0))
    assert res["v"] == pytest.approx(v, abs=1e-5)
    assert res["v_worst_d"] == pytest.approx(v_max, abs=2e-3)
    assert res["v_worst_g"] == pytest.approx(v_min, abs=2e-3)
    assert res["dg"] == pytest.approx(exact, abs=4e-3)
    assert exact > 0.05  # none of the cases is an equilibrium
    assert g.theta.item() == pytest.approx(theta) and d.b.item() == pytest.approx(b)  # copies were optimized


def test_inception_features_from_a_local_weights_file(tmp_path):
    """No standard weights here: a randomly initialised torchvision Inception-v3 state dict stands in for the
    user's file; what is tested is the loading (no download, no pickle), the input handling and the shapes."""
    from safetensors.torch import save_file
    from torchvision.models import inception_v3

    from advkit.gan import inception_model

    torch.manual_seed(0)
    state = inception_v3(weights=None, aux_logits=True, init_weights=True).state_dict()
    torch.save(state, tmp_path / "inception.pth")
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "inception.safetensors")
    x = torch.rand(3, 1, 28, 28, generator=_gen(1))
    results = []
    for name in ("inception.pth", "inception.safetensors"):
        net = inception_model(str(tmp_path / name))
        feats, probs = extract(net, x, batch_size=2)
        assert feats.shape == (3, 2048) and probs.shape == (3, 1000)
        torch.testing.assert_close(probs.sum(1), torch.ones(3, dtype=torch.float64))
        results.append(feats)
    torch.testing.assert_close(results[0], results[1])  # same weights either way
    # gray input is the RGB image with three equal channels
    f_rgb, _ = extract(net, x.expand(-1, 3, -1, -1), batch_size=3)
    torch.testing.assert_close(f_rgb, results[1])
    partial = dict(list(state.items())[:-2])
    torch.save(partial, tmp_path / "partial.pth")
    with pytest.raises(AdvkitError, match="not torchvision Inception-v3 weights"):
        inception_model(str(tmp_path / "partial.pth"))
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(AdvkitError, match="not a readable weights file"):
        inception_model(str(tmp_path / "junk.pth"))
    with pytest.raises(AdvkitError, match="not found"):
        inception_model(str(tmp_path / "missing.pth"))

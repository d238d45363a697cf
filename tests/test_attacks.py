"""Attack hygiene for every registered attack, FGSM/PGD properties, the foolbox match, and bad input."""

from __future__ import annotations

import inspect
import math

import pytest
import torch
from torch import nn

from advkit.attacks import fgsm, get_attack, list_attacks, per_sample_norm, pgd
from advkit.errors import AdvkitError
from conftest import slow_except, tiny_cnn

# Fewer iterations for foolbox attacks whose defaults run for thousands of steps: hygiene, not strength.
_FAST = {"steps": 3, "binary_search_steps": 2, "repeats": 3, "directions": 5, "max_gradient_eval_steps": 5,
         "initial_gradient_eval_steps": 5, "population": 4, "num_translations": 2, "num_rotations": 2,
         "max_iterations": 3}


def _kwargs(name: str) -> dict:
    if not name.startswith("foolbox:"):
        return {"steps": 3} if name == "pgd" else {}
    import foolbox

    params = inspect.signature(getattr(foolbox.attacks, name[8:]).__init__).parameters
    return {k: v for k, v in _FAST.items() if k in params}


def _eps(norm: str) -> float:
    return 0.1 if norm == "linf" else 1.0


TARGETED_ONLY = {"foolbox:GenAttack"}


def _full_preset_slow(names: list[str]) -> list:
    """``names`` with the full ``autoattack`` preset ``slow``: its four members (apgd-ce, apgd-t, fab-t, square)
    are cases of their own and ``autoattack-fast`` keeps the preset path in the default run; the full preset
    took 7-32 s a case on a loaded two-core machine."""
    return [pytest.param(n, marks=pytest.mark.slow) if n == "autoattack" else n for n in names]


ATTACKS = _full_preset_slow(list_attacks())


def _run(name, model, x, y, seed=0):
    attack = get_attack(name, **_kwargs(name))
    if name in TARGETED_ONLY:
        with pytest.raises(AdvkitError, match="targeted attacks only"):
            attack(model, x, y, eps=_eps(attack.norm))
        y = (y + 1) % model(x[:1].float()).shape[1]
    return attack, attack(model, x, y, eps=_eps(attack.norm), generator=torch.Generator().manual_seed(seed),
                          targeted=name in TARGETED_ONLY)


@pytest.mark.parametrize("name", ATTACKS)
def test_hygiene_for_every_registered_attack(name):
    model = tiny_cnn()
    model.net.conv1.eval()  # a mixed-mode model: each module's own flag must come back
    model.train()
    model.net.conv2.eval()
    modes = {n: m.training for n, m in model.named_modules()}
    g = torch.Generator().manual_seed(3)
    x = torch.rand(4, 1, 8, 8, generator=g)
    y = torch.randint(0, 10, (4,), generator=g)
    x_copy = x.clone()
    attack, x_adv = _run(name, model, x, y)

    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
    assert torch.equal(x, x_copy), "the caller's x was changed"
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    norms = per_sample_norm(x_adv - x, attack.norm)
    assert (norms <= _eps(attack.norm) + 1e-5).all(), norms
    assert {n: m.training for n, m in model.named_modules()} == modes
    assert all(p.grad is None and p.requires_grad for p in model.parameters())
    _, again = _run(name, model, x, y)
    assert torch.equal(x_adv, again), "same seed, different result"


@pytest.mark.parametrize("name", ATTACKS)
def test_every_attack_runs_on_a_two_class_detector(name):
    model = tiny_cnn(num_classes=2, in_chans=3)
    x = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    y = torch.tensor([0, 1, 0, 1])
    attack, x_adv = _run(name, model, x, y)
    assert x_adv.shape == x.shape
    assert (per_sample_norm(x_adv - x, attack.norm) <= _eps(attack.norm) + 1e-5).all()


@pytest.fixture(scope="module")
def mnist_batch(mnist_test):
    return mnist_test.subset(500).tensors()


def test_fgsm_equals_one_step_pgd_without_random_start(trained_lenet, mnist_batch):
    model, _ = trained_lenet
    x, y = mnist_batch[0][:200], mnist_batch[1][:200]
    for targeted, yy in ((False, y), (True, (y + 1) % 10)):
        a = fgsm(model, x, yy, eps=0.1, targeted=targeted)
        b = pgd(model, x, yy, eps=0.1, alpha=0.1, steps=1, random_start=False, targeted=targeted)
        assert torch.equal(a, b)
        assert not torch.equal(a, x)


def test_deterministic_pgd_matches_foolbox_linf_pgd(trained_lenet, mnist_batch):
    import foolbox as fb

    model, _ = trained_lenet
    x, y = mnist_batch[0][:100], mnist_batch[1][:100]
    ours = pgd(model, x, y, eps=0.2, alpha=0.02, steps=15, random_start=False)
    fmodel = fb.PyTorchModel(model.eval(), bounds=(0, 1))
    _, theirs, _ = fb.attacks.LinfPGD(abs_stepsize=0.02, steps=15, random_start=False)(
        fmodel, x, fb.criteria.Misclassification(y), epsilons=0.2)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)
    assert (ours - x).abs().max() > 0.19  # the attack moved: the match is not two copies of x


@pytest.mark.parametrize("attack, norm, eps", [("fgsm", "linf", 0.1), ("pgd", "linf", 0.1), ("pgd", "l2", 1.5)])
def test_bound_holds_under_bf16_autocast(trained_lenet, mnist_batch, attack, norm, eps):
    model, _ = trained_lenet
    x, y = mnist_batch[0][:64], mnist_batch[1][:64]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        x_adv = fgsm(model, x, y, eps=eps) if attack == "fgsm" else pgd(model, x, y, eps=eps, norm=norm, steps=5)
    assert x_adv.dtype == torch.float32
    assert (per_sample_norm(x_adv - x, norm) <= eps + 1e-6).all()
    assert x_adv.min() >= 0 and x_adv.max() <= 1


def test_l2_pgd_uses_its_budget_and_starts_inside_the_ball(trained_lenet, mnist_batch):
    model, _ = trained_lenet
    x, y = mnist_batch[0][:128], mnist_batch[1][:128]
    x_adv = pgd(model, x, y, eps=2.0, norm="l2", steps=20, generator=torch.Generator().manual_seed(0))
    n = per_sample_norm(x_adv - x, "l2")
    assert (n <= 2.0 + 1e-5).all()
    assert 1.7 < n.mean().item() <= 2.0 + 1e-5  # most samples end on the sphere (the box can cut a little)
    start = pgd(model, x, y, eps=2.0, norm="l2", steps=1, alpha=0.0, generator=torch.Generator().manual_seed(0))
    s = per_sample_norm(start - x, "l2")
    assert (s <= 2.0 + 1e-5).all() and s.mean() > 0.5


def test_restarts_keep_every_success_of_the_first_restart(trained_lenet, mnist_batch):
    model, _ = trained_lenet
    x, y = mnist_batch
    one = pgd(model, x, y, eps=0.1, steps=5, restarts=1, generator=torch.Generator().manual_seed(7))
    many = pgd(model, x, y, eps=0.1, steps=5, restarts=3, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        fooled_one = model(one).argmax(1) != y
        fooled_many = model(many).argmax(1) != y
    assert (fooled_many | ~fooled_one).all(), "a sample fooled by the first restart was lost"
    assert fooled_many.sum() >= fooled_one.sum()
    assert (per_sample_norm(many - x, "linf") <= 0.1 + 1e-6).all()


def test_batch_result_equals_per_sample_result(trained_lenet, mnist_batch):
    model, _ = trained_lenet
    x, y = mnist_batch[0][:8], mnist_batch[1][:8]
    for attack in (lambda a, b: fgsm(model, a, b, eps=0.1),
                   lambda a, b: pgd(model, a, b, eps=0.1, steps=5, random_start=False),
                   lambda a, b: pgd(model, a, b, eps=1.0, steps=5, norm="l2", random_start=False)):
        batch = attack(x, y)
        single = torch.cat([attack(x[i:i + 1], y[i:i + 1]) for i in range(len(y))])
        # batched convolutions may sum in another order: a few ulp, never a different step
        torch.testing.assert_close(batch, single, atol=1e-5, rtol=0)


@pytest.mark.slow  # PGD-20 at four radii on 500 images (about a minute on one core)
def test_robust_accuracy_falls_with_eps_on_a_trained_model(trained_lenet, mnist_batch):
    model, _ = trained_lenet
    x, y = mnist_batch
    g = torch.Generator().manual_seed(0)

    def acc(z):
        with torch.no_grad():
            return (model(z).argmax(1) == y).float().mean().item()

    clean = acc(x)
    rob = [acc(pgd(model, x, y, eps=e, steps=20, generator=g)) for e in (0.05, 0.1, 0.2, 0.3)]
    assert clean > 0.9
    assert rob[0] > rob[1] > rob[2] >= rob[3]
    assert rob[3] < 0.05
    fgsm_acc = acc(fgsm(model, x, y, eps=0.1))
    assert rob[1] <= fgsm_acc + 0.01 and rob[1] < clean - 0.2


def test_targeted_pgd_reaches_the_target(trained_lenet, mnist_batch):
    model, _ = trained_lenet
    x, y = mnist_batch[0][:200], mnist_batch[1][:200]
    target = (y + 3) % 10
    x_adv = pgd(model, x, target, eps=0.3, steps=40, targeted=True, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        hit = (model(x_adv).argmax(1) == target).float().mean().item()
    assert hit > 0.8


def test_channels_last_input_gives_the_same_result(trained_lenet, mnist_batch):
    model, _ = trained_lenet
    x, y = mnist_batch[0][:32], mnist_batch[1][:32]
    a = pgd(model, x, y, eps=0.1, steps=5, random_start=False)
    b = pgd(model, x.to(memory_format=torch.channels_last), y, eps=0.1, steps=5, random_start=False)
    torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_box_start_false_still_returns_points_in_the_box(trained_lenet, mnist_batch):
    model, _ = trained_lenet
    x, y = mnist_batch[0][:64], mnist_batch[1][:64]
    for norm, eps in (("linf", 0.3), ("l2", 2.0)):
        x_adv = pgd(model, x, y, eps=eps, norm=norm, steps=1, alpha=1.25 * eps, box_start=False,
                    generator=torch.Generator().manual_seed(0))
        assert x_adv.min() >= 0 and x_adv.max() <= 1
        assert (per_sample_norm(x_adv - x, norm) <= eps + 1e-5).all()


@pytest.mark.parametrize("kwargs, message", [
    ({"eps": -0.1}, "eps must be finite and >= 0"),
    ({"eps": math.nan}, "eps must be finite"),
    ({"eps": math.inf}, "eps must be finite"),
    ({"eps": 1.5}, "eps 1.5 > 1"),
    ({"eps": 0.1, "norm": "l3"}, "unknown norm 'l3'"),
    ({"eps": 0.1, "steps": 0}, "steps and restarts must be >= 1"),
])
def test_bad_attack_parameters(tiny_model, tiny_batch, kwargs, message):
    x, y = tiny_batch
    with pytest.raises(AdvkitError, match=message.replace("(", r"\(")):
        pgd(tiny_model, x, y, **kwargs)


def test_l2_allows_eps_above_one(tiny_model, tiny_batch):
    x, y = tiny_batch
    x_adv = pgd(tiny_model, x, y, eps=2.0, norm="l2", steps=2)
    assert (per_sample_norm(x_adv - x, "l2") <= 2.0 + 1e-5).all()


@pytest.mark.parametrize("bad_y, x_fn, message", [
    (torch.full((6,), 10), None, r"labels must be in \[0, 9\]"),
    (torch.tensor([-1, 0, 0, 0, 0, 0]), None, r"labels must be in \[0, 9\]"),
    (None, lambda x: x * 2, r"x must be in \[0,1\]"),
    (None, lambda x: x.masked_fill(x > 0.5, math.nan), "NaN"),
    (None, lambda x: x[:, 0, 0, 0], r"batch tensor \[B, \.\.\.\]"),
])
def test_bad_inputs(tiny_model, tiny_batch, bad_y, x_fn, message):
    x, y = tiny_batch
    y = bad_y if bad_y is not None else y
    x = x_fn(x) if x_fn is not None else x
    for attack in (lambda: fgsm(tiny_model, x, y, eps=0.1), lambda: pgd(tiny_model, x, y, eps=0.1, steps=1)):
        with pytest.raises(AdvkitError, match=message):
            attack()


def test_unknown_names_and_parameters():
    with pytest.raises(AdvkitError, match=r"unknown attack 'pgdd' \(did you mean 'pgd'\?\); valid: .*fgsm, pgd"):
        get_attack("pgdd")
    with pytest.raises(AdvkitError, match=r"did you mean 'foolbox:LinfPGD'"):
        get_attack("foolbox:LinfPDG")
    with pytest.raises(AdvkitError, match=r"attack 'fgsm' takes no parameter steps"):
        get_attack("fgsm", steps=3)
    with pytest.raises(AdvkitError, match="unknown norm"):
        get_attack("pgd", norm="l1")


def test_registry_lists_native_and_foolbox_attacks():
    names = list_attacks()
    assert names[:len(list_attacks(False))] == list_attacks(False) and {"fgsm", "pgd"} <= set(names)
    assert {"foolbox:L2CarliniWagnerAttack", "foolbox:LinfDeepFoolAttack", "foolbox:BoundaryAttack"} <= set(names)
    assert "foolbox:DatasetAttack" not in names  # needs to be fed a dataset first: not a standalone attack
    assert get_attack("foolbox:L2CarliniWagnerAttack").norm == "l2"
    assert get_attack("foolbox:LinfDeepFoolAttack").norm == "linf"


def test_attack_does_not_touch_a_models_parameter_grads_that_exist(trained_lenet, mnist_batch):
    model, _ = trained_lenet
    x, y = mnist_batch[0][:16], mnist_batch[1][:16]
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    try:
        pgd(model, x, y, eps=0.1, steps=3)
        get_attack("foolbox:LinfPGD", steps=3)(model, x, y, eps=0.1)
        assert all(torch.equal(p.grad, torch.ones_like(p)) for p in model.parameters())
    finally:
        for p in model.parameters():
            p.grad = None


class _Probabilities(nn.Module):
    def forward(self, x):
        return torch.softmax(x.flatten(1)[:, :10], 1)


def test_attack_works_on_any_module_with_the_contract():
    x = torch.rand(3, 1, 8, 8)
    y = torch.tensor([0, 1, 2])
    x_adv = pgd(_Probabilities(), x, y, eps=0.05, steps=2)
    assert (per_sample_norm(x_adv - x, "linf") <= 0.05 + 1e-6).all()


# ---------------------------------------------------------------- strength against the peers' rules

def _ce_grad(model, x_adv, y):
    x_adv = x_adv.clone().requires_grad_(True)
    loss = nn.functional.cross_entropy(model(x_adv), y)  # the peers' batch-mean loss
    (g,) = torch.autograd.grad(loss, x_adv)
    return g


def _peer_attack(model, x, y, *, attack, norm, eps, alpha, steps, seed):
    """torchattacks' FGSM, PGD and PGDL2 as their documentation describes them, written here (torchattacks pins
    an old requests, so it is not a test dependency). Random starts draw from a generator seeded like advkit's,
    so both sides see the same random numbers where their rules agree: the comparison is of the rules.

    FGSM: ``x + eps * sign(grad)``. PGD (L-inf): start ``x + U(-eps, eps)``, clipped to [0,1]; step
    ``alpha * sign(grad)``; clip the perturbation to [-eps, eps], then the image to [0,1]. PGDL2: start along a
    gaussian direction at a radius ``eps * U(0,1)``, clipped; step ``alpha * grad / (||grad|| + 1e-10)``; scale
    the perturbation by ``min(1, eps / ||delta||)``, then clip the image."""
    if attack == "fgsm":
        return (x + eps * _ce_grad(model, x, y).sign()).clamp(0, 1)
    gen = torch.Generator().manual_seed(seed)
    b = x.shape[0]
    if norm == "linf":
        x_adv = (x + (torch.rand(x.shape, generator=gen) * 2 - 1) * eps).clamp(0, 1)
    else:
        d = torch.randn(x.shape, generator=gen)
        r = torch.rand(b, generator=gen)
        x_adv = (x + d * (r * eps / d.flatten(1).norm(dim=1)).view(-1, 1, 1, 1)).clamp(0, 1)
    for _ in range(steps):
        g = _ce_grad(model, x_adv, y)
        if norm == "linf":
            x_adv = (x + (x_adv + alpha * g.sign() - x).clamp(-eps, eps)).clamp(0, 1)
        else:
            g = g / (g.flatten(1).norm(dim=1) + 1e-10).view(-1, 1, 1, 1)
            delta = x_adv + alpha * g - x
            factor = (eps / delta.flatten(1).norm(dim=1)).clamp(max=1)
            x_adv = (x + delta * factor.view(-1, 1, 1, 1)).clamp(0, 1)
    return x_adv.detach()


def _torchattacks(model, x, y, *, attack, norm, eps, alpha, steps, seed):
    torchattacks = pytest.importorskip("torchattacks")
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        if attack == "fgsm":
            return torchattacks.FGSM(model, eps=eps)(x, y)
        cls = torchattacks.PGD if norm == "linf" else torchattacks.PGDL2
        return cls(model, eps=eps, alpha=alpha, steps=steps, random_start=True)(x, y)


@pytest.mark.parametrize("peer", [_peer_attack, _torchattacks], ids=["peer-rules", "torchattacks"])
@pytest.mark.parametrize("attack, norm, eps, alpha, steps", slow_except([
    ("fgsm", "linf", 0.1, None, 1),
    ("pgd", "linf", 0.1, 0.025, 10),
    ("pgd", "l2", 1.5, 0.1875, 20),  # the setting: uniform-in-ball starts left ~1.2 points more here
], {("fgsm", "linf"), ("pgd", "linf")}, key=lambda case: case[:2]))  # L2 (26 s): -m slow
def test_at_least_as_strong_as_the_peers(trained_lenet, mnist_batch, peer, attack, norm, eps, alpha, steps):
    model, _ = trained_lenet
    x, y = mnist_batch
    seed = 0

    def acc(z):
        with torch.no_grad():
            return (model(z).argmax(1) == y).float().mean().item()

    theirs = acc(peer(model, x, y, attack=attack, norm=norm, eps=eps, alpha=alpha, steps=steps, seed=seed))
    if attack == "fgsm":
        ours = acc(fgsm(model, x, y, eps=eps))
    else:
        ours = acc(pgd(model, x, y, eps=eps, alpha=alpha, steps=steps, norm=norm,
                       generator=torch.Generator().manual_seed(seed)))
    print(f"{attack} {norm} eps={eps}: robust accuracy advkit {ours:.3f}, peer {theirs:.3f} on {len(y)} images")
    assert ours < acc(x) - 0.15, "the attack did nothing: the comparison would prove nothing"
    assert ours <= theirs + 0.005, f"advkit {ours:.3f} vs peer {theirs:.3f}"


def test_l2_start_radius_is_uniform_in_zero_to_eps(trained_lenet, mnist_batch):
    model, _ = trained_lenet
    x, y = mnist_batch[0][:256], mnist_batch[1][:256]
    x = x * 0.5 + 0.25  # away from the box, so clipping does not shorten the start
    start = pgd(model, x, y, eps=1.0, norm="l2", steps=1, alpha=0.0, generator=torch.Generator().manual_seed(0))
    r = per_sample_norm(start - x, "l2")
    assert (r <= 1.0 + 1e-5).all()
    # U(0, 1): mean 1/2, a quarter below 1/4 (uniform in the 784-d ball would put all of them near 1)
    assert 0.42 < r.mean().item() < 0.58 and 0.17 < (r < 0.25).float().mean().item() < 0.33


# ---------------------------------------------------------------- half precision, inference mode, eps checks

@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("name", ATTACKS)
def test_bound_holds_in_the_callers_half_precision(name, dtype):
    model = tiny_cnn()
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(3)).to(dtype)
    with torch.no_grad():
        y = model(x.float()).argmax(1)  # all classified right: attacks that skip fooled samples work too
    attack, x_adv = _run(name, model, x, y)
    assert x_adv.dtype == dtype and x_adv.shape == x.shape
    # measured exactly: the difference of two half values is exact in fp32
    norms = per_sample_norm(x_adv.float() - x.float(), attack.norm)
    assert (norms <= _eps(attack.norm) + 1e-6).all(), (norms - _eps(attack.norm)).max().item()
    assert x_adv.min() >= 0 and x_adv.max() <= 1


@pytest.mark.parametrize("name", _full_preset_slow([*list_attacks(include_foolbox=False), "foolbox:LinfPGD"]))
def test_attacks_work_under_inference_mode(name):
    model = tiny_cnn()
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        y = model(x).argmax(1)
    _, want = _run(name, model, x, y)
    with torch.inference_mode():
        xi, yi = x.clone(), y.clone()  # inference tensors, as a caller's data loader would make them
        _, got = _run(name, model, xi, yi)
    assert torch.equal(got, want)
    assert torch.equal(xi, x)


def test_a_model_built_under_inference_mode_gives_a_clear_error(tiny_batch):
    with torch.inference_mode():
        model = tiny_cnn()
    x, y = tiny_batch
    with pytest.raises(AdvkitError, match="inference_mode"):
        pgd(model, x, y, eps=0.1, steps=1)


def test_foolbox_refuses_linf_eps_above_one_like_the_native_attacks(tiny_model, tiny_batch):
    x, y = tiny_batch
    for name in ("pgd", "foolbox:LinfPGD"):
        with pytest.raises(AdvkitError, match="eps 1.5 > 1"):
            get_attack(name, **_kwargs(name))(tiny_model, x, y, eps=1.5)
        with pytest.raises(AdvkitError, match="eps must be finite"):
            get_attack(name, **_kwargs(name))(tiny_model, x, y, eps=math.nan)
    x_adv = get_attack("foolbox:L2PGD", steps=2)(tiny_model, x, y, eps=1.5)  # L2: any finite radius
    assert (per_sample_norm(x_adv - x, "l2") <= 1.5 + 1e-5).all()


# ---------------------------------------------------------------- restarts with a model that breaks

def _blank_corner(x):
    mask = torch.ones_like(x)
    mask[:, :, 0, 0] = 0
    return x * mask


class _NanWhereCornerMoved(nn.Module):
    """NaN logits for every input whose top-left pixel moved up from the clean image's (zero on MNIST). The
    classifier never sees that pixel, so its gradient is zero and only the random start decides."""

    def __init__(self, base, x_clean):
        super().__init__()
        self.base, self.x_clean = base, x_clean

    def forward(self, x):
        z = self.base(_blank_corner(x))
        moved = x[:, 0, 0, 0] > self.x_clean[:, 0, 0, 0]
        return torch.where(moved[:, None], torch.full_like(z, math.nan), z)


def test_a_nan_restart_never_wins(trained_lenet, mnist_batch):
    base, _ = trained_lenet
    x, y = mnist_batch[0][:64], mnist_batch[1][:64]
    model = _NanWhereCornerMoved(base, x)
    kw = dict(eps=0.1, steps=3, generator=None)
    g = torch.Generator().manual_seed(0)
    runs = [pgd(model, x, y, **{**kw, "generator": g}) for _ in range(3)]  # the three restarts, one by one
    both = pgd(model, x, y, **{**kw, "generator": torch.Generator().manual_seed(0)}, restarts=3)
    with torch.no_grad():
        nan = torch.stack([torch.isnan(model(r)).any(1) for r in runs])  # [restart, sample]
    assert nan.any(1).all() and (~nan).any(1).all(), "each restart must break on some samples, not all"
    some_finite = (~nan).any(0)
    assert some_finite.sum() > 50
    with torch.no_grad():
        got_nan = torch.isnan(model(both)).any(1)
    # a sample with at least one finite restart never comes back at a point where the model gave NaN
    assert not (got_nan & some_finite).any(), int((got_nan & some_finite).sum())
    for i in some_finite.nonzero().flatten().tolist():
        assert any(torch.equal(both[i], r[i]) for r, bad in zip(runs, nan[:, i]) if not bad), i
    assert (per_sample_norm(both - x, "linf") <= 0.1 + 1e-6).all()


# ---------------------------------------------------------------- targets

@pytest.mark.parametrize("mode", ["random", "least-likely", "next"])
def test_targets_are_never_the_true_class(mode):
    from advkit.attacks import pick_targets

    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 10, (2000,), generator=g)
    logits = torch.randn(2000, 10, generator=g)
    logits[:100].scatter_(1, y[:100, None], -50.0)  # the true class scored lowest: least-likely must skip it
    t = pick_targets(mode, y, logits=logits, generator=torch.Generator().manual_seed(1))
    assert t.shape == y.shape and t.dtype == y.dtype and (t != y).all()
    assert set(t.tolist()) == set(range(10))
    if mode == "next":
        assert torch.equal(t, (y + 1) % 10)
    elif mode == "least-likely":
        masked = logits.scatter(1, y[:, None], math.inf)
        assert torch.equal(t, masked.argmin(1))
    else:
        again = pick_targets(mode, y, num_classes=10, generator=torch.Generator().manual_seed(1))
        assert torch.equal(t, again)  # seeded
        share = torch.bincount((t - y) % 10, minlength=10)[1:].float() / len(y)
        assert (share - 1 / 9).abs().max() < 0.03  # uniform over the nine wrong classes
    with pytest.raises(AdvkitError, match="unknown target mode"):
        pick_targets("farthest", y, num_classes=10)
    with pytest.raises(AdvkitError, match="at least 2 classes"):
        pick_targets(mode, y[:0], num_classes=1)

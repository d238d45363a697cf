"""Attack hygiene for every registered attack, FGSM/PGD properties, the foolbox match, and bad input."""

from __future__ import annotations

import inspect
import math

import pytest
import torch
from torch import nn

from advkit.attacks import fgsm, get_attack, list_attacks, per_sample_norm, pgd
from advkit.errors import AdvkitError
from conftest import tiny_cnn

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


def _run(name, model, x, y, seed=0):
    attack = get_attack(name, **_kwargs(name))
    if name in TARGETED_ONLY:
        with pytest.raises(AdvkitError, match="targeted attacks only"):
            attack(model, x, y, eps=_eps(attack.norm))
        y = (y + 1) % model(x[:1]).shape[1]
    return attack, attack(model, x, y, eps=_eps(attack.norm), generator=torch.Generator().manual_seed(seed),
                          targeted=name in TARGETED_ONLY)


@pytest.mark.parametrize("name", list_attacks())
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


@pytest.mark.parametrize("name", list_attacks())
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
    with pytest.raises(AdvkitError, match=r"unknown attack 'pgdd' \(did you mean 'pgd'\?\); valid: fgsm, pgd"):
        get_attack("pgdd")
    with pytest.raises(AdvkitError, match=r"did you mean 'foolbox:LinfPGD'"):
        get_attack("foolbox:LinfPDG")
    with pytest.raises(AdvkitError, match=r"attack 'fgsm' takes no parameter steps"):
        get_attack("fgsm", steps=3)
    with pytest.raises(AdvkitError, match="unknown norm"):
        get_attack("pgd", norm="l1")


def test_registry_lists_native_and_foolbox_attacks():
    names = list_attacks()
    assert names[:2] == ["fgsm", "pgd"]
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

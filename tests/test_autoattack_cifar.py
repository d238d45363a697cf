"""The CIFAR-10 cross-check against the reference AutoAttack: on a small CNN FGSM-RS-trained at eps 8/255 from
the shipped config (``configs/train/cifar10_small_fgsm_rs.yaml``, fewer images and epochs), each of advkit's
APGD-CE, APGD-T, FAB-T and Square, and the ``autoattack`` preset, leaves a robust accuracy within one point of
the reference's on the same images (reduced budgets, the same on both sides). The full-size figures:
``bench/results/autoattack_cifar10.json``."""

from __future__ import annotations

import sys

import pytest
import torch
from torch import nn

from advkit.attacks import get_attack, preset_members, run_cascade
from conftest import REFERENCE, REPO, SHARED, needs_data, needs_reference, reduced_members, robust_fraction

CONFIG = REPO / "configs" / "train" / "cifar10_small_fgsm_rs.yaml"
EPS = 8 / 255
N_CHECK, STEPS, QUERIES = 200, 20, 1000  # as the MNIST cross-check (tests/test_presets.py)
MEMBERS = ["apgd-ce", "apgd-t", "fab-t", "square"]
pytestmark = [pytest.mark.slow, needs_reference, needs_data("cifar10")]


@pytest.fixture(scope="module")
def robust_cifar_cnn(one_thread):  # one thread: the same weights whatever the machine's core count
    """The shipped config on 6,000 training images for 3 epochs, no per-epoch evaluation to speak of: under a
    minute on one core, robust enough that every member leaves samples standing."""
    from advkit.config import load_config
    from advkit.train import TrainConfig, train_classifier

    cfg = load_config(TrainConfig, CONFIG, [
        f"data.root={SHARED}", "data.train_limit=6512", "data.test_limit=200", "epochs=3", "eval.n=100",
        "eval.steps=1", "guard.n=512", "guard.steps=2", "device=cpu", "tensorboard=false"])
    model, _ = train_classifier(cfg)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


@pytest.fixture(scope="module")
def cifar_slice():
    from advkit.data import load_dataset

    return load_dataset("cifar10", "test", root=str(SHARED)).subset(N_CHECK).tensors()


def _reference(model: nn.Module, x: torch.Tensor, y: torch.Tensor, only: str | None) -> float:
    """The reference's standard run, or ``only`` that member with the standard run's settings."""
    sys.path.insert(0, str(REFERENCE))
    try:
        from autoattack import AutoAttack
    finally:
        sys.path.remove(str(REFERENCE))
    aa = AutoAttack(model, norm="Linf", eps=EPS, version="standard", device="cpu", seed=0, verbose=False)
    if only is not None:  # set_version("standard") has set each member's parameters; keep them, run one
        aa.attacks_to_run = [only]
    for attack in (aa.apgd, aa.apgd_targeted, aa.fab):
        attack.n_iter = STEPS
    aa.square.n_queries = QUERIES
    return robust_fraction(model, aa.run_standard_evaluation(x, y, bs=N_CHECK), y)


@pytest.mark.parametrize("name", [*MEMBERS, "autoattack"])
def test_matches_the_reference_within_one_point(name, robust_cifar_cnn, cifar_slice, one_thread):
    model, (x, y) = robust_cifar_cnn, cifar_slice
    clean = robust_fraction(model, x, y)
    gen = torch.Generator().manual_seed(0)
    members = reduced_members(preset_members("autoattack"), STEPS, QUERIES)
    if name == "autoattack":
        ours = robust_fraction(model, run_cascade(model, x, y, members, eps=EPS, generator=gen), y)
        theirs = _reference(model, x, y, None)
    else:
        (member,) = [m for m in members if m["name"] == name]
        params = {k: v for k, v in member.items() if k != "name"}
        ours = robust_fraction(model, get_attack(name, **params)(model, x, y, eps=EPS, generator=gen), y)
        theirs = _reference(model, x, y, name)
    print(f"{name} on {N_CHECK} CIFAR-10 images at eps 8/255: clean {clean:.3f}, advkit robust {ours:.3f}, "
          f"reference {theirs:.3f}")
    assert 0.1 < theirs < clean - 0.05, (clean, theirs)  # the check means something: some fooled, some standing
    assert abs(ours - theirs) <= 0.01 + 1e-9, (ours, theirs)

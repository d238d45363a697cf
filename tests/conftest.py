"""Shared fixtures: tiny models and data so the suite runs on two CPU cores in minutes. Nothing downloads."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
# The shared datasets: $ADVKIT_DATA when set (as advkit itself reads it), else ../shared/datasets. Read once at
# import, before any test's fixture clears ADVKIT_DATA to isolate the code under test.
SHARED = Path(os.environ["ADVKIT_DATA"]) if os.environ.get("ADVKIT_DATA") else REPO.parent / "shared" / "datasets"


def shared_data(*parts: str) -> Path:
    """A path under the shared datasets (see :data:`SHARED`)."""
    return SHARED.joinpath(*parts)


def skip_without_data(*parts: str) -> None:
    """Skip the calling test unless ``SHARED/parts...`` exists, naming where it looked."""
    path = shared_data(*parts)
    if not path.exists():
        pytest.skip(f"shared dataset {path} not present (set ADVKIT_DATA to where the datasets are)")


def needs_data(*parts: str) -> pytest.MarkDecorator:
    """``@needs_data("cifar10")``: skip unless ``SHARED/parts...`` exists."""
    path = shared_data(*parts)
    return pytest.mark.skipif(not path.exists(),
                              reason=f"shared dataset {path} not present (set ADVKIT_DATA to where the datasets are)")


# The reference AutoAttack code (Croce & Hein), for the cross-checks only: put on sys.path inside a test,
# never imported by advkit.
REFERENCE = REPO.parent / "shared" / "reference" / "auto-attack"
needs_reference = pytest.mark.skipif(not (REFERENCE / "autoattack").is_dir(),
                                     reason=f"the reference AutoAttack is not at {REFERENCE}")


def robust_fraction(model: torch.nn.Module, x_adv: torch.Tensor, y: torch.Tensor) -> float:
    """The fraction of ``x_adv`` that ``model`` still classifies as ``y``."""
    with torch.no_grad():
        return (model(x_adv).argmax(1) == y).float().mean().item()


def reduced_members(members: list[dict], steps: int, queries: int) -> list[dict]:
    """Preset members with the cross-checks' reduced budgets: ``steps`` for the gradient attacks, ``queries``
    for Square (the reference is given the same)."""
    return [{**m, **({"steps": steps} if "steps" in m else {}), **({"n_queries": queries} if "n_queries" in m else {})}
            for m in members]


def slow_except(values, fast, key=str) -> list:
    """A parametrize list whose cases are ``slow`` except those whose ``key(value)`` is in ``fast``: the default
    run keeps a sample of a matrix, the slow step (``-m slow``) runs the rest. A tuple value is one case of
    several argument names."""
    return [v if key(v) in fast else pytest.param(*(v if isinstance(v, tuple) else (v,)), marks=pytest.mark.slow)
            for v in values]


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Keep every test's advkit cache away from the user's real one."""
    monkeypatch.setenv("ADVKIT_CACHE", str(tmp_path_factory.getbasetemp() / "advkit-cache"))


def run_cli(capsys, *args) -> tuple[int, str, str]:
    """``advkit ARGS`` in this process: (exit code, stdout, stderr)."""
    from advkit.cli import main

    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    """The single ``advkit: error: ...`` line a bad input must produce (asserts there is exactly one)."""
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("advkit: error: "), err
    return lines[0]


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors on a shared CPU: a second intra-op thread only spins (up to 100x slower under load)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def mnist_test():
    from advkit.data import load_dataset

    return load_dataset("mnist", "test", root=str(REPO / "datasets"))


@pytest.fixture(scope="session")
def trained_lenet(tmp_path_factory):
    """A LeNet trained for a few seconds on 12,000 MNIST images (~97% test accuracy), saved as a checkpoint.

    Returns (model in eval mode, checkpoint path)."""
    from advkit.models import load
    from advkit.train import DataConfig, TrainConfig, train_classifier

    out = tmp_path_factory.mktemp("lenet")
    cfg = TrainConfig(data=DataConfig(root=str(REPO / "datasets"), train_limit=12000, test_limit=2000),
                      epochs=1, batch_size=64, seed=0, device="cpu")
    train_classifier(cfg, out)
    path = out / "model.safetensors"
    return load(path), path


@pytest.fixture(scope="session")
def robust_mnist(tmp_path_factory):
    """A small CNN adversarially trained on MNIST at eps 0.3 (FGSM from a random start, eps ramped over two
    epochs, 20,000 images, 3 epochs: ~98% clean, ~55% PGD-10 accuracy on the test images); eval mode.

    Trained once per session (on one thread: the same weights whatever the core count) and shared by the APGD
    and preset tests (its checkpoint stays in the session's temp folder)."""
    from advkit.train import DataConfig, ModelConfig, TrainConfig, train_classifier
    from advkit.train.config import EvalConfig, GuardConfig, ObjectiveConfig, OptimConfig, ScheduleConfig

    cfg = TrainConfig(data=DataConfig(root=str(REPO / "datasets"), train_limit=20000, test_limit=200),
                      model=ModelConfig(name="small_cnn", normalize=False),
                      objective=ObjectiveConfig(name="fgsm_rs", eps=0.3, alpha=0.375, eps_ramp=2),
                      schedule=ScheduleConfig(name="cyclic", peak=0.4), eval=EvalConfig(n=200, steps=10),
                      guard=GuardConfig(enabled=False), epochs=3, batch_size=100, seed=0, device="cpu",
                      optim=OptimConfig(name="adam", lr=5e-3), tensorboard=False)
    out = tmp_path_factory.mktemp("robust_mnist")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model, _ = train_classifier(cfg, out)
    finally:
        torch.set_num_threads(n)
    return model.eval()


def tiny_cnn(num_classes: int = 10, in_chans: int = 1, size: int = 8, seed: int = 0) -> torch.nn.Module:
    """A randomly initialised small net over [B, in_chans, size, size], wrapped to the advkit contract."""
    from advkit.models import create_model

    torch.manual_seed(seed)
    return create_model("lenet", num_classes=num_classes, in_chans=in_chans, input_size=size, width=4).eval()


@pytest.fixture
def tiny_model():
    return tiny_cnn()


@pytest.fixture
def tiny_batch():
    g = torch.Generator().manual_seed(1)
    return torch.rand(6, 1, 8, 8, generator=g), torch.randint(0, 10, (6,), generator=g)

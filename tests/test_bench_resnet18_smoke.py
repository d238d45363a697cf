"""bench/resnet18_cifar.py at a tiny size: a torchvision ResNet-18 trained for two steps on 64 CIFAR-10 images,
saved as a state dict, exported as TorchScript, a factory file and an advkit checkpoint, then evaluated through
every form (``advkit eval`` with all four in one config, ``advkit attack`` with each, and assert_robust in memory):
the bench itself raises unless every form is fooled on exactly the same samples."""

from __future__ import annotations

import time
from pathlib import Path

from bench.resnet18_cifar import run
from conftest import SHARED, needs_data, run_cli


@needs_data("cifar10", "cifar10_train_1.npz")
def test_every_model_form_gives_the_same_robust_accuracy(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ADVKIT_DATA", str(SHARED))

    def in_process(args: list[str], env: dict[str, str], cwd: Path) -> float:
        t0 = time.perf_counter()
        code, _out, err = run_cli(capsys, *args)
        assert code == 0, err
        return time.perf_counter() - t0

    result = run(tmp_path, minutes=1.0, train_n=64, n=12, eps=1 / 255, steps=2, batch_size=12, max_steps=2,
                 runner=in_process)
    forms = result["forms"]
    assert set(forms) == {"torchvision", "py-factory", "torchscript", "advkit-checkpoint", "in-memory (assert_robust)"}
    assert all(result["same_per_sample_outcomes"].values()) and result["same_data_fingerprint"]
    ref = forms["torchvision"]
    for name, f in forms.items():
        assert (f["clean_acc"], f["robust_acc"]) == (ref["clean_acc"], ref["robust_acc"]), name
        assert 0 <= f["robust_acc"] <= f["clean_acc"] <= 1
    assert forms["torchvision"]["loaded"]["form"] == "torchvision"
    assert forms["torchvision"]["loaded"]["sha256"]
    assert forms["torchscript"]["loaded"]["form"] == "torchscript"
    assert forms["py-factory"]["loaded"]["form"] == "py"
    assert forms["advkit-checkpoint"]["loaded"]["form"] == "checkpoint"
    attack = result["attack_cli"]
    assert set(attack) == {"torchvision", "py-factory", "torchscript", "advkit-checkpoint"}
    assert attack["torchvision"] == attack["py-factory"] == attack["torchscript"] == attack["advkit-checkpoint"]
    assert attack["torchvision"][0]["clean_acc"] == ref["clean_acc"]  # the same 12 images, the same net

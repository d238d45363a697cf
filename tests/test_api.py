"""advkit.evaluate: the eval harness on an in-memory model and any form of in-memory data.

The model is linear in the image mean, so the exact robust accuracy under an L-inf attack is known: a sample
survives eps exactly when its mean is more than eps from the decision boundary (FGSM is optimal for it)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import advkit
from advkit.api import as_dataset
from advkit.data import ArrayDataset
from advkit.errors import AdvkitError
from advkit.report import Report, load_report


class MeanNet(nn.Module):
    """Two logits, ``+-scale * (mean(x) - 0.5)``: class 1 when the image is brighter than mid-gray."""

    def __init__(self, scale: float = 20.0):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(()))
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.mean((1, 2, 3)) - 0.5 + self.bias
        return torch.stack([-m, m], 1) * self.scale


def mean_data(n: int = 60, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat gray images on the 1/255 grid, (128 + k)/255 for k in +-1..25 (margins (k + 0.5)/255 from 0.5),
    labelled by side (the first three mislabelled)."""
    g = torch.Generator().manual_seed(seed)
    k = torch.randint(1, 26, (n,), generator=g) * (torch.randint(0, 2, (n,), generator=g) * 2 - 1)
    x = ((128 + k).float() / 255).view(-1, 1, 1, 1).expand(-1, 3, 4, 4).contiguous()
    y = (k > 0).long()
    y[:3] = 1 - y[:3]
    return x, y


def expected_robust(x: torch.Tensor, y: torch.Tensor, eps: float) -> int:
    margin = (x.mean((1, 2, 3)) - 0.5) * (y * 2 - 1)
    return int((margin > eps).sum())


def worst(report: Report) -> list:
    return report.models[0].threat_models[0].worst_case


@pytest.mark.parametrize("shift", [0.0, 0.1 / 255])  # on the 1/255 grid (stored as uint8), and off it (float)
def test_exact_robust_accuracy_on_a_linear_model(one_thread, shift):
    x, y = mean_data()
    x = x + shift
    eps = (4.25 / 255, 10.25 / 255)  # margins are (k + 0.5)/255: no sample sits exactly on an eps
    report = advkit.evaluate(MeanNet(), (x, y), attacks=["fgsm", "pgd"], eps=eps, checks=False)
    assert isinstance(report, Report)
    assert report.models[0].n == len(y)
    assert report.models[0].clean_acc == pytest.approx(expected_robust(x, y, 0.0) / len(y), abs=1e-12)
    for w, e in zip(worst(report), eps):
        assert w.robust == expected_robust(x, y, e)
        lo, hi = w.robust_acc_ci
        assert lo <= w.robust_acc <= hi
    assert worst(report)[1].robust < worst(report)[0].robust < expected_robust(x, y, 0.0)


def test_every_data_form_gives_the_same_report(one_thread):
    x, y = mean_data(50)
    forms = {"pair": (x, y), "tensor_dataset": TensorDataset(x, y), "loader": DataLoader(TensorDataset(x, y), 7),
             "batches": [(x[:20], y[:20]), (x[20:], y[20:])],
             "array_dataset": ArrayDataset(x.mul(255).round().to(torch.uint8), y, ["dark", "bright"])}
    reports = {k: advkit.evaluate(MeanNet(), v, attacks="fgsm", eps=8.25 / 255, n=45, checks=False)
               for k, v in forms.items()}
    ref = reports["pair"]
    assert ref.models[0].n == 45
    for k, r in reports.items():
        assert r.data.fingerprint == ref.data.fingerprint, k
        assert r.models[0].threat_models[0].per_sample == ref.models[0].threat_models[0].per_sample, k
        assert worst(r)[0].robust == expected_robust(x[:45], y[:45], 8.25 / 255), k


def test_a_dataset_spec_gives_the_same_report_as_its_tensors(one_thread, tmp_path):
    import numpy as np
    x, y = mean_data(30)
    u8 = x.mul(255).round().to(torch.uint8)
    np.savez(tmp_path / "gray.npz", x=u8.permute(0, 2, 3, 1).numpy(), y=y.numpy())
    from_spec = advkit.evaluate(MeanNet(), f"npz:{tmp_path / 'gray.npz'}", attacks="fgsm", eps=8.25 / 255,
                                checks=False)
    from_tensors = advkit.evaluate(MeanNet(), (x, y), attacks="fgsm", eps=8.25 / 255, checks=False)
    assert from_spec.data.fingerprint == from_tensors.data.fingerprint
    assert from_spec.models[0].threat_models[0].per_sample == from_tensors.models[0].threat_models[0].per_sample
    assert worst(from_spec)[0].robust == expected_robust(x, y, 8.25 / 255)


def test_float_images_off_the_grid_are_kept_exactly():
    x = torch.rand(6, 1, 3, 3, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 1, 0, 1, 0, 1])
    ds = as_dataset((x, y))
    assert ds.tensors()[0].dtype == torch.float32
    torch.testing.assert_close(ds.tensors()[0], x, rtol=0, atol=0)
    on_grid = as_dataset((x.mul(255).round().div(255), y))
    assert on_grid.images.dtype == torch.uint8  # stored like advkit's own datasets: same fingerprint
    torch.testing.assert_close(on_grid.tensors()[0], x.mul(255).round().div(255), rtol=0, atol=0)


def test_out_writes_the_eval_files_and_the_model_is_left_as_it_was(tmp_path):
    x, y = mean_data(30)
    model = MeanNet().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = advkit.evaluate(model, (x, y), attacks="fgsm", eps=[8 / 255], out=tmp_path / "r", checks=False,
                             name="mean-net")
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["junit.xml", "report.html", "report.json",
                                                                   "report.md"]
    on_disk = load_report(tmp_path / "r" / "report.json")
    assert on_disk == json.loads(json.dumps(report.to_dict()))
    assert on_disk["models"][0]["name"] == "mean-net"
    assert on_disk["models"][0]["source"] == "python:MeanNet"
    assert model.training
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)
        assert model.bias.grad is None


@pytest.mark.parametrize("kwargs, data, match", [
    ({}, (torch.full((4, 1, 2, 2), 2.0), torch.zeros(4, dtype=torch.long)), r"in \[0,1\]"),
    ({"attacks": "no-such-attack"}, None, "no-such-attack"),
    ({"eps": [0.2, 0.1]}, None, "ascending"),
    ({"norm": "l7"}, None, "l7"),
    ({}, (torch.rand(4, 1, 2, 2), torch.tensor([0, 1, 2, 1])), "labels"),
    ({}, (torch.rand(4, 2, 2), torch.zeros(4, dtype=torch.long)), r"\[N,C,H,W\]"),
    ({}, [("not", "tensors")], "tensors"),
])
def test_bad_arguments_raise_one_line(kwargs, data, match):
    data = mean_data(8) if data is None else data
    with pytest.raises(AdvkitError, match=match) as e:
        advkit.evaluate(MeanNet(), data, checks=False, **kwargs)
    assert "\n" not in str(e.value)


def test_a_model_that_is_not_a_module_is_refused():
    with pytest.raises(AdvkitError, match="nn.Module"):
        advkit.evaluate(lambda x: x, mean_data(8))  # type: ignore[arg-type]


def test_import_advkit_stays_cheap():
    code = "import sys, advkit; print(sorted(m for m in ('torch', 'advkit.api', 'advkit.testing') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    assert advkit.evaluate.__module__ == "advkit.api" and advkit.testing.assert_robust.__module__ == "advkit.testing"

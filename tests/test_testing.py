"""advkit.testing.assert_robust: passes a robust-enough model, fails a weak one with a short message that
names the measured accuracy, its interval, n, the attack, eps and the folder of worst examples.

The model is linear in the image mean (tests/test_api.py), so which samples survive an L-inf eps is known
exactly: those whose mean is more than eps from mid-gray on the right side."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from test_api import MeanNet, expected_robust, mean_data

from advkit.errors import AdvkitError
from advkit.report import load_report
from advkit.testing import assert_robust

EPS = 8 / 255


@pytest.fixture(autouse=True)
def _temp_in_tmp_path(tmp_path, monkeypatch):
    """A failure without ``out`` writes into a new temporary folder: make that one under tmp_path."""
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "temp"))
    (tmp_path / "temp").mkdir()


def gray(margins: list[int], n_each: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat gray images with means 0.5 +- m/255 for each m of ``margins``, half each class, labelled right."""
    k = torch.tensor(margins).repeat_interleave(n_each)
    k = torch.cat([k, -k])
    x = ((128 + k).float() / 255).view(-1, 1, 1, 1).expand(-1, 3, 4, 4).contiguous()
    return x, (k > 0).long()


def test_a_robust_model_passes(one_thread, tmp_path):
    x, y = gray([20, 30], 10)  # every mean 20/255 or more from the boundary: nothing within 8/255 flips it
    report = assert_robust(MeanNet(), (x, y), eps=EPS, min_robust_acc=0.9, n=40)
    w = report.models[0].threat_models[0].worst_case[0]
    assert w.robust == expected_robust(x, y, EPS) == 40
    assert not list((tmp_path / "temp").iterdir())  # a pass without out writes nothing


def test_a_weak_model_fails_with_the_numbers_and_the_pictures(one_thread, tmp_path):
    x, y = gray([3, 30], 10)  # half the samples within 8/255 of the boundary
    with pytest.raises(AssertionError) as e:
        assert_robust(MeanNet(), (x, y), eps=EPS, min_robust_acc=0.6, n=40, out=tmp_path / "gate")
    msg = str(e.value)
    acc = expected_robust(x, y, EPS) / 40
    assert acc == 0.5
    assert msg.startswith(f"robust accuracy {acc:.1%} < 60.0% required (95% CI ")
    lo, hi = (float(v) / 100 for v in re.search(r"CI ([\d.]+)%-([\d.]+)%", msg).groups())
    assert lo < acc < hi
    assert "clean 100.0%" in msg and "n=40" in msg and "autoattack-fast" in msg and "eps=0.03137 (8/255)" in msg
    assert len(msg.splitlines()) <= 3
    folder = Path(msg.rsplit("worst examples: ", 1)[1].strip())
    assert folder == tmp_path / "gate" / "examples"
    pngs = list(folder.glob("*.png"))
    assert len(pngs) == 1 and pngs[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert load_report(tmp_path / "gate" / "report.json")["models"][0]["threat_models"][0]["worst_case"][0][
        "robust_acc"] == acc


def test_the_gate_is_the_point_estimate(one_thread):
    x, y = gray([3, 30], 10)
    acc = expected_robust(x, y, EPS) / 40
    report = assert_robust(MeanNet(), (x, y), eps=EPS, attack="fgsm", min_robust_acc=acc, n=40, checks=False)
    lo, hi = report.models[0].threat_models[0].worst_case[0].robust_acc_ci
    assert lo < acc < hi  # the interval reaches below the floor, yet the estimate meets it: a pass
    with pytest.raises(AssertionError, match="robust accuracy 50.0% < 52.5% required"):
        assert_robust(MeanNet(), (x, y), eps=EPS, attack="fgsm", min_robust_acc=acc + 1 / 40, n=40, checks=False)


def test_without_out_a_failure_writes_to_a_new_folder_it_names(one_thread, tmp_path):
    x, y = gray([3], 10)
    with pytest.raises(AssertionError) as e:
        assert_robust(MeanNet(), (x, y), eps=EPS, attack=["fgsm", "pgd"], min_robust_acc=0.5, n=20, checks=False)
    msg = str(e.value)
    assert msg.startswith("robust accuracy 0.0% < 50.0% required") and "fgsm, pgd" in msg
    folder = Path(msg.rsplit("worst examples: ", 1)[1].strip())
    assert folder.name == "examples" and folder.parent.parent == tmp_path / "temp"
    assert folder.parent.name.startswith("advkit-assert-robust-")
    assert len(list(folder.glob("*.png"))) == 1 and (folder.parent / "report.json").is_file()


class Masked(MeanNet):
    """The same classifier behind a quantizer: zero input gradient, so gradient attacks see a wall."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(torch.round(x * 4) / 4)


def test_a_failed_sanity_check_fails_the_assertion_even_above_the_floor(one_thread, tmp_path):
    x, y = mean_data(40)
    with pytest.raises(AssertionError) as e:
        assert_robust(Masked(), (x, y), eps=EPS, min_robust_acc=0.0, n=40, out=tmp_path)
    msg = str(e.value)
    assert "(floor 0.0% met) but a sanity check failed" in msg
    assert "check gradients failed: " in msg and "all-zero input gradient" in msg
    assert (tmp_path / "report.json").is_file()


@pytest.mark.parametrize("kwargs, match", [({"min_robust_acc": 1.5}, "min_robust_acc"),
                                           ({"eps": [0.1, 0.2]}, "one number")])
def test_bad_arguments_raise_advkit_errors(kwargs, match):
    with pytest.raises(AdvkitError, match=match):
        assert_robust(MeanNet(), mean_data(8), **kwargs)

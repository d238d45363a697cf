"""``train.init``: a fresh run starts from an existing classifier checkpoint's weights (names and shapes checked,
one error line otherwise); a resumed run takes its weights from ``last.ckpt`` instead."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from advkit.config import load_config
from advkit.errors import AdvkitError
from advkit.gan import DCGANGenerator, save_gan_net
from advkit.train import TrainConfig, train_classifier
from conftest import one_error_line, run_cli

REPO = Path(__file__).resolve().parents[1]
TINY = ["data.train_limit=1024", "data.test_limit=256", "eval.n=256", "batch_size=64", "model.name=small_cnn",
        "tensorboard=false", "device=cpu", f"data.root={REPO / 'datasets'}"]
# an optimizer step this small leaves the weights where they started (to float32 precision)
STILL = ["optim.name=sgd", "optim.lr=1e-12", "optim.momentum=0", "epochs=1"]


def _cfg(*sets: str) -> TrainConfig:
    return load_config(TrainConfig, None, [*TINY, *sets])


@pytest.fixture(scope="module")
def base(tmp_path_factory, one_thread) -> tuple[Path, dict]:
    """A small CNN trained for one epoch: (run folder, its final metrics)."""
    out = tmp_path_factory.mktemp("base")
    _, metrics = train_classifier(_cfg("epochs=1", "seed=3"), out)
    return out, metrics


def test_a_fresh_run_starts_from_the_init_checkpoint(base, tmp_path, one_thread):
    run, metrics = base
    assert metrics["clean_acc"] > 0.5  # a model worth starting from
    for init in (run, run / "model.safetensors"):  # a run folder or the file
        model, m = train_classifier(_cfg(*STILL, f"init={init}"))
        want = load_file(str(run / "model.safetensors"))
        for k, v in model.state_dict().items():
            torch.testing.assert_close(v, want[k], rtol=0, atol=1e-9)
        assert m["clean_acc"] == metrics["clean_acc"]  # the same eval subset, the same predictions
    _, scratch = train_classifier(_cfg(*STILL))
    assert scratch["clean_acc"] < 0.3  # without init the same run stays at chance


def test_mismatch_and_missing_files_are_one_clear_error(base, tmp_path, one_thread):
    run, _ = base
    with pytest.raises(AdvkitError, match=r"does not fit model 'small_cnn': net\.\S+ is \[\d+(, \d+)*\] there"):
        train_classifier(_cfg(*STILL, f"init={run}", "model.kwargs={width: 2}"))
    with pytest.raises(AdvkitError, match=r"does not fit model 'lenet': net.conv1.weight is \[16, 1, 4, 4\] there"):
        train_classifier(_cfg(*STILL, f"init={run}", "model.name=lenet"))
    with pytest.raises(AdvkitError, match=r"\(a 'small_cnn'\) does not fit model 'spectral': it has no net\.norm\."):
        train_classifier(_cfg(*STILL, f"init={run}", "model.name=spectral"))
    with pytest.raises(AdvkitError, match="train.init: checkpoint not found: .*nope.safetensors"):
        train_classifier(_cfg(*STILL, f"init={tmp_path / 'nope.safetensors'}"))
    with pytest.raises(AdvkitError, match="train.init: checkpoint not found: .*model.safetensors"):
        train_classifier(_cfg(*STILL, f"init={tmp_path}"))
    gen = save_gan_net(DCGANGenerator(z_dim=4, width=4), tmp_path / "g.safetensors", "generator")
    with pytest.raises(AdvkitError, match="GAN generator checkpoint; a classifier is expected"):
        train_classifier(_cfg(*STILL, f"init={gen}"))


def test_resume_takes_precedence_over_init(base, tmp_path, one_thread):
    run, _ = base
    init = tmp_path / "init"
    shutil.copytree(run, init)
    sets = ["epochs=2", "optim.lr=1e-3", f"init={init}"]
    full, cut = tmp_path / "full", tmp_path / "cut"
    train_classifier(_cfg(*sets), full)

    class Killed(Exception):
        pass

    def stop(m: dict) -> None:
        raise Killed

    with pytest.raises(Killed):
        train_classifier(_cfg(*sets), cut, on_epoch=stop)
    shutil.rmtree(init)  # a resumed run must not need (or read) the init checkpoint
    train_classifier(_cfg(*sets), cut, resume=True)
    a, b = load_file(str(full / "model.safetensors")), load_file(str(cut / "model.safetensors"))
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert [json.loads(x)["epoch"] for x in (cut / "metrics.jsonl").read_text().splitlines()] == [1, 2]


def test_cli_missing_init_is_one_line(tmp_path, capsys):
    code, _, err = run_cli(capsys, "train", "classifier", *[a for s in [*TINY, *STILL] for a in ("--set", s)],
                           "--set", f"init={tmp_path / 'nope'}", "--out", tmp_path / "run")
    assert code == 2 and "train.init: checkpoint not found" in one_error_line(err)

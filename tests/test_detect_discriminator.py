"""The GAN's discriminator as a fake-image detector (model ``gan_discriminator``): it starts as D's verdict,
frozen features stay put through training, checkpoints load without D's file, and bad inputs give one error."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import yaml

from advkit.config import load_config
from advkit.detect.config import DetectorConfig
from advkit.detect.train import train_detector
from advkit.errors import AdvkitError
from advkit.gan import DCGANDiscriminator, DCGANGenerator, TwoLogit, load_discriminator, save_gan_net
from advkit.models import create_model, load, read_metadata, save
from advkit.models.discriminator import discriminator_detector
from conftest import one_error_line, run_cli

REPO = Path(__file__).resolve().parents[1]


def _images(n: int = 6, c: int = 1, s: int = 28, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, c, s, s, generator=torch.Generator().manual_seed(seed))


def _save_d(folder: Path, seed: int = 0, **kw) -> Path:
    """A small D with non-trivial BatchNorm statistics, saved as ``advkit train gan`` saves it."""
    torch.manual_seed(seed)
    d = DCGANDiscriminator(**{"img_size": 28, "channels": 1, "width": 4, **kw})
    with torch.no_grad():
        d.train()(_images(16, d.channels, d.img_size, seed=seed + 1))
    folder.mkdir(parents=True, exist_ok=True)
    return save_gan_net(d.eval(), folder / "discriminator.safetensors", "discriminator", dataset="unit-test")


@pytest.fixture(scope="module")
def gan_run(tmp_path_factory) -> Path:
    """A GAN run folder: discriminator.safetensors and generator.safetensors (tiny, untrained)."""
    run = tmp_path_factory.mktemp("gan")
    _save_d(run)
    torch.manual_seed(1)
    save_gan_net(DCGANGenerator(z_dim=8, img_size=28, channels=1, width=4), run / "generator.safetensors", "generator")
    return run


@pytest.mark.parametrize("kw", [{}, {"spectral_norm": True}, {"critic": True}], ids=["bn", "sn", "critic"])
def test_starts_as_the_discriminators_verdict(kw, tmp_path, one_thread):
    path = _save_d(tmp_path, **kw)
    d = load_discriminator(path)
    model = discriminator_detector(path).eval()
    x = _images()
    with torch.no_grad():
        logits, dx = model(x), d(x)
    assert logits.shape == (6, 2) and logits.dtype == torch.float32
    torch.testing.assert_close(logits[:, 1] - logits[:, 0], -dx)
    torch.testing.assert_close(logits.softmax(1)[:, 0], torch.sigmoid(dx))
    torch.testing.assert_close(logits, TwoLogit(d)(x))  # the same 2-class model as TwoLogit, before training


def test_run_folder_and_create_model_agree(gan_run, one_thread):
    by_folder = create_model("gan_discriminator", num_classes=2, in_chans=1, input_size=28,
                             discriminator=str(gan_run)).eval()
    by_file = discriminator_detector(gan_run / "discriminator.safetensors").eval()
    x = _images()
    with torch.no_grad():
        torch.testing.assert_close(by_folder(x), by_file(x), rtol=0, atol=0)
    # the spec records D's architecture, not the path
    assert by_file.spec["kwargs"] == {"discriminator": load_discriminator(gan_run / "discriminator.safetensors").spec,
                                      "freeze": True}


def test_checkpoint_loads_after_the_discriminator_is_deleted(tmp_path, one_thread):
    path = _save_d(tmp_path / "gan", spectral_norm=True)
    model = discriminator_detector(path, freeze=False)
    with torch.no_grad():  # move the head away from its D-derived start: the weights must come from the checkpoint
        model.net.head.weight.add_(torch.randn_like(model.net.head.weight))
    model.eval()
    ckpt = save(model, tmp_path / "det.safetensors", dataset="unit-test")
    shutil.rmtree(tmp_path / "gan")
    loaded = load(ckpt)
    x = _images()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    assert loaded.spec == model.spec and loaded.net.freeze is False


def _tiny(gan_run: Path, freeze: bool, tmp_path: Path) -> DetectorConfig:
    conf = tmp_path / "disc.yaml"
    conf.write_text(yaml.safe_dump({
        "data": {"real": "mnist", "fakes": [str(gan_run / "generator.safetensors")], "n_per_class": 100},
        "train": {"model": {"name": "gan_discriminator", "normalize": False,
                            "kwargs": {"discriminator": str(gan_run), "freeze": freeze}},
                  "optim": {"lr": 0.01}, "epochs": 1, "batch_size": 32, "tensorboard": False, "device": "cpu"},
        "evaluation": {"eps": ["8/255"], "pgd_steps": 2, "n": 20, "laundering": False}}))
    return load_config(DetectorConfig, conf, [f"data_root={REPO / 'datasets'}"])


@pytest.mark.parametrize("freeze", [True, False], ids=["frozen", "finetuned"])
def test_training_keeps_frozen_features_and_the_checkpoint_stands_alone(freeze, gan_run, tmp_path, one_thread):
    run = tmp_path / "gan"
    shutil.copytree(gan_run, run)
    before = discriminator_detector(run, freeze=freeze)
    feats = {k: v.clone() for k, v in before.net.features.state_dict().items()}
    if freeze:
        assert not any(p.requires_grad for p in before.net.features.parameters())
        assert all(p.requires_grad for p in before.net.head.parameters())
        before.train()
        assert before.net.head.training and not any(m.training for m in before.net.features.modules())
    model, report = train_detector(_tiny(run, freeze, tmp_path), tmp_path / "det")
    after = model.net.features.state_dict()  # parameters and BatchNorm running statistics
    same = [torch.equal(feats[k], after[k]) for k in feats]
    if freeze:
        assert all(same)
    else:
        assert not all(same)
    assert not torch.equal(model.net.head.weight, before.net.head.weight.to(model.net.head.weight))
    assert report["evaluation"]["clean"]["auc"] > 0.9  # untrained fakes: easy even for a random D
    ckpt = tmp_path / "det" / "model.safetensors"
    assert read_metadata(ckpt)["model"]["kwargs"]["discriminator"]["arch"] == "dcgan_discriminator"
    shutil.rmtree(run)
    loaded, x = load(ckpt), _images()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model.eval()(x), rtol=0, atol=0)


def test_bad_inputs_give_one_clear_error(gan_run, tmp_path, trained_classifier):
    def build(src, **kw):
        kw = {"num_classes": 2, "in_chans": 1, "input_size": 28, **kw}
        return create_model("gan_discriminator", discriminator=str(src), **kw)

    with pytest.raises(AdvkitError, match="discriminator checkpoint not found: .*nope.safetensors"):
        build(tmp_path / "nope.safetensors")
    with pytest.raises(AdvkitError, match="no discriminator.safetensors in"):
        build(tmp_path)
    with pytest.raises(AdvkitError, match="is a generator checkpoint, not a discriminator"):
        build(gan_run / "generator.safetensors")
    with pytest.raises(AdvkitError, match="is a classifier checkpoint, not a discriminator"):
        build(trained_classifier)
    with pytest.raises(AdvkitError, match=r"takes 1x28x28 images, the data are 3x32x32"):
        build(gan_run, in_chans=3, input_size=32)
    with pytest.raises(AdvkitError, match="freeze must be true or false"):
        build(gan_run, freeze="yes")
    with pytest.raises(AdvkitError, match="width applies only without a discriminator"):
        build(gan_run, width=8)


@pytest.fixture(scope="module")
def trained_classifier(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("clf") / "model.safetensors"
    return save(create_model("lenet", num_classes=10, in_chans=1, input_size=28, width=4), path)


def test_cli_errors_are_one_line(gan_run, tmp_path, capsys, one_thread):
    conf = tmp_path / "disc.yaml"
    base = {"data": {"real": "mnist", "fakes": [str(gan_run / "generator.safetensors")], "n_per_class": 100},
            "train": {"model": {"name": "gan_discriminator", "normalize": False,
                                "kwargs": {"discriminator": str(tmp_path / "missing")}},
                      "epochs": 1, "batch_size": 32, "tensorboard": False, "device": "cpu"}}
    conf.write_text(yaml.safe_dump(base))
    args = ("train", "detector", "-c", conf, "--data-root", REPO / "datasets", "--out", tmp_path / "run")
    code, _, err = run_cli(capsys, *args)
    assert code == 2 and "discriminator checkpoint not found" in one_error_line(err)
    # the trainer would normalize by default: D must see its own [0,1] -> [-1,1] scaling
    code, _, err = run_cli(capsys, *args, "--set", "train.model.normalize=true", "--set",
                           f"train.model.kwargs.discriminator={gan_run}")
    assert code == 2 and "set normalize: false" in one_error_line(err)


def test_shipped_config_loads():
    cfg = load_config(DetectorConfig, REPO / "configs" / "detect" / "mnist_dcgan_disc.yaml")
    assert cfg.train.model.name == "gan_discriminator" and cfg.train.model.normalize is False
    assert cfg.train.model.kwargs == {"discriminator": "runs/gan/discriminator.safetensors", "freeze": True}
    assert cfg.data.fakes == ("runs/gan/generator.safetensors",) and cfg.data.real == "mnist"


def test_create_model_records_the_architecture_not_the_path(tmp_path):
    """Any route to the model (create_model too, not only the trainer) saves a checkpoint that loads after the
    discriminator file is gone."""
    import shutil

    from advkit.gan import DCGANDiscriminator, save_gan_net
    from advkit.models import create_model, load, save

    torch.manual_seed(0)
    d_dir = tmp_path / "gan"
    d_dir.mkdir()
    save_gan_net(DCGANDiscriminator(img_size=28, channels=1, width=4), d_dir / "discriminator.safetensors",
                 "discriminator")
    model = create_model("gan_discriminator", num_classes=2, in_chans=1, input_size=28,
                         discriminator=str(d_dir), freeze=False).eval()
    assert isinstance(model.spec["kwargs"]["discriminator"], dict)
    save(model, tmp_path / "det.safetensors")
    shutil.rmtree(d_dir)
    x = torch.rand(3, 1, 28, 28)
    torch.testing.assert_close(load(tmp_path / "det.safetensors")(x), model(x))

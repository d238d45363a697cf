"""Models: the factory, the normalization wrapper, timm models, local pretrained weights, safetensors
checkpoints (round trips, bad files, never unpickling), and the atomic writes they rely on."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest
import torch

from advkit import AdvkitError
from advkit.models import Normalized, checkpoint_file, create_model, ensemble, list_models, load, read_metadata, save
from advkit.runtime.device import resolve_device
from advkit.runtime.io import atomic_write_bytes, atomic_write_text
from conftest import tiny_cnn

# (in_chans, input_size) a registered model is meant for; anything new gets a CIFAR-like input
SHAPES = {"lenet": (1, 28), "small_cnn": (1, 28), "preact_resnet18": (3, 32)}
# every registered model that builds from its name alone; an ensemble is built from members (tested below)
STANDALONE = [n for n in list_models() if n != "ensemble"]


def _shape(name: str) -> tuple[int, int]:
    return SHAPES.get(name, (3, 32))


def _input(c: int, s: int, n: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, c, s, s, generator=torch.Generator().manual_seed(seed))


class _Touch:
    """Unpickling this creates ``path``: proof that a file was unpickled."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


# ------------------------------------------------------------------------------------------ the factory

def test_list_models_has_the_builtin_nets():
    names = list_models()
    assert {"lenet", "preact_resnet18"} <= set(names)
    assert names == sorted(names)
    assert all(not n.startswith("timm:") for n in names)


@pytest.mark.parametrize("name", STANDALONE)
def test_every_registered_model_gives_finite_logits(name):
    c, s = _shape(name)
    torch.manual_seed(0)
    model = create_model(name, num_classes=7, in_chans=c, input_size=s).eval()
    assert isinstance(model, Normalized)
    assert model.spec["arch"] == name and model.spec["num_classes"] == 7
    with torch.no_grad():
        out = model(_input(c, s))
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()
    assert out.std() > 0  # not a constant (dead) output


@pytest.mark.parametrize("name", STANDALONE)
def test_every_registered_model_round_trips_through_a_checkpoint(name, tmp_path):
    c, s = _shape(name)
    torch.manual_seed(1)
    mean, std = [0.5] * c, [0.25] * c
    model = create_model(name, num_classes=5, in_chans=c, input_size=s, mean=mean, std=std).eval()
    if any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()):  # non-trivial running stats
        model.train()
        with torch.no_grad():
            model(_input(c, s, n=8, seed=3))
        model.eval()
    path = save(model, tmp_path / "m.safetensors", dataset="unit-test", metrics={"acc": 0.25})
    loaded = load(path)
    x = _input(c, s)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert loaded.spec == model.spec
    assert loaded.normalization == model.normalization == {"mean": mean, "std": std}
    assert loaded.meta["model"]["arch"] == name
    assert loaded.meta["dataset"] == "unit-test" and loaded.meta["metrics"] == {"acc": 0.25}


def test_ensemble_is_the_mean_of_its_members_logits_and_round_trips(tmp_path):
    torch.manual_seed(2)
    a = create_model("small_cnn", num_classes=3, in_chans=3, input_size=32).eval()
    b = create_model("lenet", num_classes=3, in_chans=3, input_size=32, mean=[0.5] * 3, std=[0.25] * 3).eval()
    ens = ensemble([a, b])
    x = _input(3, 32, n=4).requires_grad_(True)
    out = ens(x)
    expected = (a(x) + b(x)) / 2
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-6)
    assert not torch.allclose(out, a(x), atol=1e-3) and not torch.allclose(out, b(x), atol=1e-3)
    # differentiable end to end: the input gradient is the mean of the members' (attacks see all members)
    (g,) = torch.autograd.grad(out[:, 0].sum(), x)
    (ga,) = torch.autograd.grad(a(x)[:, 0].sum(), x)
    (gb,) = torch.autograd.grad(b(x)[:, 0].sum(), x)
    torch.testing.assert_close(g, (ga + gb) / 2, rtol=1e-5, atol=1e-7)
    assert not ens.training and ens.spec["arch"] == "ensemble" and ens.normalization is None
    # the weights were copied: changing a member afterwards leaves the ensemble alone
    with torch.no_grad():
        a.net.fc2.bias.add_(5.0)
    torch.testing.assert_close(ens(x), expected, rtol=1e-6, atol=1e-6)
    loaded = load(save(ens, tmp_path / "ens.safetensors", dataset="unit-test"))
    with torch.no_grad():
        assert torch.equal(loaded(x), ens(x))
    assert loaded.spec == ens.spec
    assert [m.normalization for m in loaded.net.members] == [None, {"mean": [0.5] * 3, "std": [0.25] * 3}]


def test_ensemble_errors():
    a = create_model("small_cnn", num_classes=2, in_chans=1, input_size=28)
    with pytest.raises(AdvkitError, match="at least one"):
        ensemble([])
    with pytest.raises(AdvkitError, match="advkit models"):
        ensemble([a, a.net])
    with pytest.raises(AdvkitError, match="member 1 .* differs"):
        ensemble([a, create_model("small_cnn", num_classes=3, in_chans=1, input_size=28)])
    with pytest.raises(AdvkitError, match="at least one member"):
        create_model("ensemble", num_classes=2, in_chans=1, input_size=28)
    spec = {**a.spec, "normalization": None}
    with pytest.raises(AdvkitError, match="member 0 .*takes"):
        create_model("ensemble", num_classes=2, in_chans=3, input_size=28, members=[spec])
    with pytest.raises(AdvkitError, match="member 0: not a model spec"):
        create_model("ensemble", num_classes=2, in_chans=1, input_size=28, members=["small_cnn"])


def test_timm_resnet18_round_trip(tmp_path):
    torch.manual_seed(0)
    model = create_model("timm:resnet18", num_classes=2, in_chans=3, input_size=32,
                         mean=[0.4914, 0.4822, 0.4465], std=[0.2470, 0.2435, 0.2616]).eval()
    x = _input(3, 32, n=3)
    with torch.no_grad():
        out = model(x)
    assert out.shape == (3, 2) and torch.isfinite(out).all()
    path = save(model, tmp_path / "r18", dataset="cifar10", classes=["a", "b"], metrics={"clean_acc": 0.5})
    assert path == tmp_path / "r18.safetensors"  # the suffix is added
    loaded = load(path)
    with torch.no_grad():
        assert torch.equal(loaded(x), out)
    meta = read_metadata(path)
    assert meta["model"] == {"arch": "timm:resnet18", "num_classes": 2, "in_chans": 3, "input_size": 32,
                             "kwargs": {}}
    assert meta["normalization"] == model.normalization
    assert meta["dataset"] == "cifar10" and meta["classes"] == ["a", "b"]
    assert meta["metrics"] == {"clean_acc": 0.5}
    # the JSON beside the weights says the same
    assert json.loads(path.with_suffix(".json").read_text()) == meta


def test_load_returns_eval_mode_on_cpu(tmp_path):
    model = tiny_cnn().train()
    path = save(model, tmp_path / "t.safetensors")
    loaded = load(path)
    assert not any(m.training for m in loaded.modules())
    assert all(p.device.type == "cpu" for p in loaded.parameters())
    assert all(b.device.type == "cpu" for b in loaded.buffers())


def test_a_run_folder_loads_as_its_model_safetensors(tmp_path):
    model = tiny_cnn()
    run = tmp_path / "run"
    save(model, run / "model.safetensors", dataset="toy")
    assert checkpoint_file(run) == run / "model.safetensors"
    assert checkpoint_file(run / "other.safetensors") == run / "other.safetensors"  # files pass through
    loaded = load(run)
    x = torch.rand(3, 1, 8, 8)
    assert torch.equal(loaded(x), model(x))
    assert read_metadata(run)["dataset"] == "toy"
    (tmp_path / "empty").mkdir()
    with pytest.raises(AdvkitError, match=r"checkpoint not found: .*empty.model\.safetensors"):
        load(tmp_path / "empty")


def test_load_trained_lenet_keeps_its_metadata(trained_lenet):
    model, path = trained_lenet
    meta = read_metadata(path)
    assert meta["model"]["arch"] == "lenet"
    assert meta["dataset"] == "mnist" and meta["input_shape"] == [1, 28, 28]
    assert meta["normalization"]["mean"] == pytest.approx([0.1307]) and \
        meta["normalization"]["std"] == pytest.approx([0.3081])
    assert meta["classes"] == [str(i) for i in range(10)]
    acc = meta["metrics"].get("clean_acc", meta["metrics"].get("test_acc"))
    assert 0.9 <= acc <= 1.0


# ------------------------------------------------------------------------------------- normalization

def test_normalized_wrapper_equals_manual_normalization():
    torch.manual_seed(0)
    model = create_model("lenet", num_classes=10, in_chans=3, input_size=8, width=4,
                         mean=[0.1, 0.5, 0.9], std=[0.2, 0.3, 0.4]).eval()
    x = _input(3, 8, n=4)
    mean = torch.tensor([0.1, 0.5, 0.9]).view(1, 3, 1, 1)
    std = torch.tensor([0.2, 0.3, 0.4]).view(1, 3, 1, 1)
    with torch.no_grad():
        got, want, raw = model(x), model.net((x - mean) / std), model.net(x)
    assert torch.allclose(got, want, rtol=0, atol=1e-6)
    assert not torch.allclose(got, raw, atol=1e-3)  # the normalization is not a no-op
    assert model.normalization == {"mean": pytest.approx([0.1, 0.5, 0.9]), "std": pytest.approx([0.2, 0.3, 0.4])}


def test_normalized_without_stats_is_identity():
    model = tiny_cnn()
    x = _input(1, 8)
    with torch.no_grad():
        assert torch.equal(model(x), model.net(x))
    assert model.normalization is None


def test_normalization_channel_count_must_match():
    with pytest.raises(AdvkitError, match="channel"):
        create_model("lenet", in_chans=3, input_size=8, mean=[0.5], std=[0.5])


def test_bad_factory_arguments():
    with pytest.raises(AdvkitError, match="positive"):
        create_model("lenet", num_classes=0)
    with pytest.raises(AdvkitError, match="divisible by 4"):
        create_model("lenet", input_size=30)
    with pytest.raises(AdvkitError, match="lenet"):
        create_model("lenet", not_an_argument=3)


# ----------------------------------------------------------------------------------------- bad names

def test_unknown_model_name_lists_valid_names():
    with pytest.raises(AdvkitError) as e:
        create_model("lenett")
    msg = str(e.value)
    assert "did you mean 'lenet'" in msg
    for name in list_models():
        assert name in msg


def test_unknown_timm_name_suggests_close_matches():
    with pytest.raises(AdvkitError) as e:
        create_model("timm:resnet19", in_chans=3, input_size=32)
    msg = str(e.value)
    assert "resnet19" in msg and "resnet18" in msg


# ------------------------------------------------------------------------------- local pretrained file

@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory):
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(123)
    src = timm.create_model("resnet18", pretrained=False, num_classes=10, in_chans=3)
    state = {k: v.contiguous() for k, v in src.state_dict().items()}
    path = tmp_path_factory.mktemp("pretrained") / "resnet18.safetensors"
    save_file(state, str(path))
    return path, state


def test_pretrained_file_loads_every_weight(resnet18_file):
    path, state = resnet18_file
    torch.manual_seed(0)
    model = create_model("timm:resnet18", num_classes=10, in_chans=3, input_size=32, pretrained_file=str(path))
    own = model.net.state_dict()
    assert set(own) == set(state)
    for k, v in state.items():
        assert torch.equal(own[k], v), k
    assert "pretrained_file" not in model.spec["kwargs"]  # weights travel in checkpoints, not paths


def test_pretrained_file_leaves_other_class_count_head_at_init(resnet18_file, tmp_path):
    path, state = resnet18_file
    torch.manual_seed(7)
    ref = create_model("timm:resnet18", num_classes=2, in_chans=3, input_size=32)
    torch.manual_seed(7)
    model = create_model("timm:resnet18", num_classes=2, in_chans=3, input_size=32, pretrained_file=str(path))
    own = model.net.state_dict()
    assert torch.equal(own["fc.weight"], ref.net.state_dict()["fc.weight"])
    assert torch.equal(own["fc.bias"], ref.net.state_dict()["fc.bias"])
    assert torch.equal(own["conv1.weight"], state["conv1.weight"])
    assert not torch.equal(own["conv1.weight"], ref.net.state_dict()["conv1.weight"])
    # the checkpoint does not need the pretrained file any more
    ckpt = save(model.eval(), tmp_path / "ft.safetensors")
    x = _input(3, 32)
    with torch.no_grad():
        assert torch.equal(load(ckpt)(x), model(x))


def test_missing_pretrained_file_is_an_error(tmp_path):
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(AdvkitError, match="not found") as e:
        create_model("timm:resnet18", in_chans=3, input_size=32, pretrained_file=str(missing))
    assert str(missing) in str(e.value)


def test_pretrained_file_that_fits_nothing_is_an_error(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "other.safetensors"
    save_file({"something.else": torch.zeros(3)}, str(path))
    with pytest.raises(AdvkitError, match="fits"):
        create_model("timm:resnet18", in_chans=3, input_size=32, pretrained_file=str(path))


def test_pretrained_non_weights_pickle_is_a_clean_error(tmp_path):
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"conv1.weight": _Touch(marker)}, protocol=2))
    try:
        with pytest.raises(AdvkitError):
            create_model("timm:resnet18", in_chans=3, input_size=32, pretrained_file=str(path))
    finally:
        assert not marker.exists()  # weights_only: never runs pickled code, bug or not


# ------------------------------------------------------------------------------------- bad checkpoints

def _write_safetensors(path: Path, state: dict[str, torch.Tensor], meta: dict | None) -> Path:
    from safetensors.torch import save as st_save

    md = {"advkit": json.dumps(meta)} if meta is not None else None
    path.write_bytes(st_save({k: v.contiguous() for k, v in state.items()}, metadata=md))
    return path


def test_weights_that_do_not_match_the_metadata_architecture(tmp_path):
    lenet = tiny_cnn()
    good = save(lenet, tmp_path / "lenet.safetensors")
    meta = read_metadata(good)
    preact = create_model("preact_resnet18", num_classes=10, in_chans=1, input_size=8, width=4)
    bad = _write_safetensors(tmp_path / "swapped.safetensors", preact.state_dict(), meta)
    with pytest.raises(AdvkitError, match="do not match") as e:
        load(bad)
    assert "lenet" in str(e.value) and "missing" in str(e.value)


def test_metadata_num_classes_edited(tmp_path):
    lenet = tiny_cnn(num_classes=10)
    good = save(lenet, tmp_path / "lenet.safetensors")
    meta = read_metadata(good)
    meta["model"]["num_classes"] = 5
    bad = _write_safetensors(tmp_path / "edited.safetensors", lenet.state_dict(), meta)
    with pytest.raises(AdvkitError, match="do not match") as e:
        load(bad)
    assert "wrong shape" in str(e.value) and "fc2" in str(e.value)


def test_file_that_is_not_safetensors(tmp_path):
    path = tmp_path / "notes.safetensors"
    path.write_text("just some text\n")
    with pytest.raises(AdvkitError, match="not an advkit checkpoint"):
        load(path)


def test_safetensors_without_advkit_metadata(tmp_path):
    path = _write_safetensors(tmp_path / "plain.safetensors", tiny_cnn().state_dict(), None)
    with pytest.raises(AdvkitError, match="not an advkit checkpoint"):
        load(path)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(AdvkitError, match="not found"):
        load(tmp_path / "nope.safetensors")


def test_metadata_without_architecture(tmp_path):
    path = _write_safetensors(tmp_path / "noarch.safetensors", tiny_cnn().state_dict(), {"format": 1})
    with pytest.raises(AdvkitError, match="architecture"):
        load(path)


@pytest.mark.parametrize("model_meta", [{"arch": "lenet"}, "lenet-arch"])
def test_incomplete_metadata_is_a_clean_error(tmp_path, model_meta):
    path = _write_safetensors(tmp_path / "inc.safetensors", tiny_cnn().state_dict(), {"model": model_meta})
    with pytest.raises(AdvkitError):
        load(path)


def test_pickle_checkpoint_is_refused_without_unpickling(tmp_path):
    marker = tmp_path / "PWNED"
    for name in ("evil.safetensors", "evil.pt"):
        path = tmp_path / name
        torch.save({"state_dict": tiny_cnn().state_dict(), "payload": _Touch(marker)}, path)
        with pytest.raises(AdvkitError, match="not an advkit checkpoint"):
            load(path)
        with pytest.raises(AdvkitError):
            read_metadata(path)
    assert not marker.exists()


def test_save_rejects_non_advkit_models_and_bad_metadata(tmp_path):
    with pytest.raises(AdvkitError, match="create_model"):
        save(torch.nn.Linear(2, 2), tmp_path / "x.safetensors")
    with pytest.raises(AdvkitError, match="JSON"):
        save(tiny_cnn(), tmp_path / "y.safetensors", metrics={"t": torch.zeros(1)})
    assert not (tmp_path / "x.safetensors").exists() and not (tmp_path / "y.safetensors").exists()


# --------------------------------------------------------------------------------------- atomic writes

@pytest.mark.parametrize("fail_in", ["replace", "fsync"])
def test_failed_atomic_write_keeps_old_file_and_no_temp(tmp_path, monkeypatch, fail_in):
    target = tmp_path / "out" / "data.bin"
    atomic_write_bytes(target, b"old contents")
    assert target.read_bytes() == b"old contents"

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, fail_in, boom)
    with pytest.raises(OSError, match="No space"):
        atomic_write_bytes(target, b"new contents that never land")
    monkeypatch.undo()
    assert target.read_bytes() == b"old contents"
    assert sorted(p.name for p in target.parent.iterdir()) == ["data.bin"]


def test_atomic_write_replaces_and_creates_parents(tmp_path):
    target = tmp_path / "a" / "b" / "f.txt"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two ✓")
    assert target.read_text(encoding="utf-8") == "two ✓"
    assert sorted(p.name for p in target.parent.iterdir()) == ["f.txt"]


def test_failed_checkpoint_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    first = tiny_cnn(seed=0)
    path = save(first, tmp_path / "m.safetensors")
    monkeypatch.setattr(os, "replace", lambda *a, **k: (_ for _ in ()).throw(OSError(5, "I/O error")))
    with pytest.raises(OSError):
        save(tiny_cnn(seed=1), path)
    monkeypatch.undo()
    x = _input(1, 8)
    with torch.no_grad():
        assert torch.equal(load(path)(x), first(x))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.safetensors"]


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(AdvkitError, match="unknown device"):
        resolve_device("tpu-please")
    if not torch.cuda.is_available():
        with pytest.raises(AdvkitError, match="CUDA is not available"):
            resolve_device("cuda")


# ---------------------------------------------------------------- one format: the kind in the metadata

def test_save_records_the_kind_and_keeps_the_weights_as_they_are(tmp_path):
    from safetensors.torch import load_file

    model = tiny_cnn()
    path = save(model, tmp_path / "c.safetensors")
    assert read_metadata(path)["kind"] == "classifier"
    assert json.loads(path.with_suffix(".json").read_text())["kind"] == "classifier"
    stored, own = load_file(str(path)), model.state_dict()
    assert sorted(stored) == sorted(own)
    for k, v in own.items():  # bit for bit
        assert stored[k].dtype == v.dtype and stored[k].numpy().tobytes() == v.contiguous().numpy().tobytes()


def test_a_checkpoint_written_before_kind_existed_loads_as_a_classifier(tmp_path):
    model = tiny_cnn()
    meta = read_metadata(save(model, tmp_path / "new.safetensors"))
    del meta["kind"]
    old = _write_safetensors(tmp_path / "old.safetensors", model.state_dict(), meta)
    x = _input(1, 8)
    torch.testing.assert_close(load(old)(x), model(x), rtol=0, atol=0)
    from advkit.models import load_generator
    with pytest.raises(AdvkitError, match="is a classifier checkpoint, not a generator"):
        load_generator(old)


def test_a_detector_checkpoint_loads_as_a_model_and_not_as_a_gan_net(tmp_path):
    from advkit.models import load_discriminator

    model = tiny_cnn(num_classes=2)
    path = save(model, tmp_path / "det.safetensors", kind="detector", classes=["real", "fake"])
    loaded = load(path)
    assert loaded.meta["kind"] == "detector"
    x = _input(1, 8)
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    with pytest.raises(AdvkitError, match="is a detector checkpoint, not a discriminator"):
        load_discriminator(path)


def test_save_takes_only_model_kinds(tmp_path):
    with pytest.raises(AdvkitError, match="kind must be one of classifier, detector"):
        save(tiny_cnn(), tmp_path / "g.safetensors", kind="generator")
    assert not (tmp_path / "g.safetensors").exists()

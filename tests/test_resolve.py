"""The one resolver from a model spec to a model (``advkit.models.resolve`` and, above it for the cached default
model, ``advkit.train.default.resolve``), ``check_model_fits``, and the harness's ensemble on top of them."""

from __future__ import annotations

import pytest
import torch

from advkit import AdvkitError
from advkit.data import ArrayDataset
from advkit.models import save
from advkit.models.ensemble import Ensemble
from advkit.models.resolve import Notes, check_model_fits, names_a_checkpoint, resolve_model
from conftest import tiny_cnn

SHAPE = dict(num_classes=10, in_chans=1, input_size=8)
SILENT = Notes(random_init=None, default_training=None)


def _data(n: int = 4, c: int = 1, s: int = 8, classes: int = 10) -> ArrayDataset:
    g = torch.Generator().manual_seed(0)
    return ArrayDataset(torch.randint(0, 256, (n, c, s, s), dtype=torch.uint8, generator=g),
                        torch.arange(n) % classes, [str(i) for i in range(classes)], name="toy",
                        mean=(0.5,) * c, std=(0.25,) * c)


@pytest.fixture
def ckpt(tmp_path):
    model = tiny_cnn()
    return model, save(model, tmp_path / "run" / "model.safetensors", dataset="toy")


# ------------------------------------------------------------------------------------ checkpoints

def test_a_checkpoint_file_and_its_run_folder_load_the_same_model(ckpt):
    model, path = ckpt
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    said = []
    for spec in (str(path), str(path.parent)):
        got = resolve_model(spec, **SHAPE, say=said.append, notes=Notes(loaded="model: {path}"))
        assert not got.training
        torch.testing.assert_close(got(x), model(x), rtol=0, atol=0)
    assert said == [f"model: {path}"] * 2


def test_loading_a_checkpoint_is_silent_by_default(ckpt):
    said = []
    resolve_model(str(ckpt[1]), **SHAPE, say=said.append)
    assert said == []


@pytest.mark.parametrize("spec", ["gone.safetensors", "gone.pt", "gone.ckpt", "no/such/run"])
def test_a_missing_checkpoint_is_not_found_not_an_unknown_name(tmp_path, spec):
    assert names_a_checkpoint(spec) and not names_a_checkpoint("lenet")
    with pytest.raises(AdvkitError, match=f"checkpoint not found: .*{spec}"):
        resolve_model(str(tmp_path / spec), **SHAPE)


def test_an_empty_run_folder_is_not_found(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(AdvkitError, match=r"checkpoint not found: .*empty.model\.safetensors"):
        resolve_model(str(tmp_path / "empty"), **SHAPE)


# ------------------------------------------------------------------------------------ names

def test_a_registry_name_is_random_init_for_the_data_and_says_so():
    said = []
    model = resolve_model("lenet", num_classes=3, in_chans=2, input_size=12, mean=[0.5, 0.5], std=[0.25, 0.25],
                          say=said.append)
    assert not model.training
    assert model.spec["num_classes"] == 3 and model.spec["in_chans"] == 2 and model.spec["input_size"] == 12
    assert model.normalization == {"mean": [0.5, 0.5], "std": [0.25, 0.25]}
    assert model(torch.rand(2, 2, 12, 12)).shape == (2, 3)
    assert said == ["model lenet: random initialisation (no checkpoint), numbers are only a smoke test"]


def test_the_random_init_note_can_be_reworded_or_silenced():
    said = []
    resolve_model("lenet", **SHAPE, say=said.append, notes=Notes(random_init="random: {spec}"))
    resolve_model("lenet", **SHAPE, say=said.append, notes=SILENT)
    assert said == ["random: lenet"]


def test_an_unknown_name_suggests_the_closest_and_lists_the_valid_ones():
    with pytest.raises(AdvkitError) as e:
        resolve_model("lenett", **SHAPE)
    msg = str(e.value)
    assert "unknown model 'lenett'" in msg and "did you mean 'lenet'" in msg
    assert "neither a checkpoint file nor a registered model" in msg and "timm:NAME" in msg
    with pytest.raises(AdvkitError, match="did you mean 'default'"):
        resolve_model("defualt", **SHAPE, also=("default",))


# ------------------------------------------------------------------------------- the model fits the data

def test_check_model_fits():
    model = tiny_cnn()
    check_model_fits(model, torch.rand(2, 1, 8, 8), 10, "m", "toy")
    with pytest.raises(AdvkitError, match=r"model 'm' gives outputs of shape \(2, 10\) but toy has 3 classes"):
        check_model_fits(model, torch.rand(2, 1, 8, 8), 3, "m", "toy")
    with pytest.raises(AdvkitError, match=r"model 'm' cannot take toy images of shape \(3, 8, 8\): "):
        check_model_fits(model, torch.rand(2, 3, 8, 8), 10, "m", "toy")


# ------------------------------------------------------------------ the default model, above models/

def test_default_resolve_passes_everything_else_to_the_models_resolver(ckpt):
    from advkit.train.default import resolve

    data = _data()
    said = []
    model = resolve("lenet", data, "cpu", said.append)
    assert model.spec["input_size"] == 8 and model.normalization == {"mean": [0.5], "std": [0.25]}
    assert said == ["model lenet: random initialisation (no checkpoint), numbers are only a smoke test"]
    torch.testing.assert_close(resolve(str(ckpt[1]), data)(data.tensors()[0]), ckpt[0](data.tensors()[0]))
    with pytest.raises(AdvkitError, match="did you mean 'default'"):
        resolve("defualt", data)


@pytest.mark.parametrize("spec", [None, "default"])
def test_default_resolve_uses_the_cached_default_model(tmp_path, monkeypatch, spec):
    from advkit.train import default

    monkeypatch.setenv("ADVKIT_CACHE", str(tmp_path / "cache"))
    path = default.default_model_path()
    cached = tiny_cnn()
    save(cached, path)
    said = []
    model = default.resolve(spec, _data(), "cpu", said.append,
                            notes=Notes(default_training="training", default_loaded="default at {path}"))
    x = torch.rand(2, 1, 8, 8)
    torch.testing.assert_close(model(x), cached(x), rtol=0, atol=0)
    assert not model.training and said == [f"default at {path}"]


def test_default_resolve_says_when_it_trains_the_default_model(tmp_path, monkeypatch):
    from advkit.train import default

    monkeypatch.setenv("ADVKIT_CACHE", str(tmp_path / "cache"))
    calls = []

    def fake_training(data_root=None, *, progress=False):  # stands in for a minute of training
        calls.append((data_root, progress))
        return tiny_cnn(), default.default_model_path(), True

    monkeypatch.setattr(default, "get_default_model", fake_training)
    said = []
    default.resolve(None, _data(), "cpu", said.append, data_root="/data", progress=True)
    assert calls == [("/data", True)]
    assert said == ["training advkit's default MNIST model once (about a minute on a laptop CPU)"]


# ------------------------------------------------------------------------ the harness's ensemble

def test_harness_ensemble_is_the_models_ensemble_over_resolved_members(tmp_path):
    from advkit.eval.config import ModelSpec
    from advkit.eval.harness import load_model

    a, b = tiny_cnn(seed=1), tiny_cnn(seed=2)
    pa, pb = save(a, tmp_path / "a.safetensors"), save(b, tmp_path / "b.safetensors")
    data = _data()
    model = load_model(ModelSpec(ensemble=(str(pa), str(pb))), data, torch.device("cpu"))
    assert isinstance(model, Ensemble) and not model.training
    x = data.tensors()[0]
    torch.testing.assert_close(model(x), (a(x) + b(x)) / 2)
    single = load_model(ModelSpec(model=str(pa)), data, torch.device("cpu"))
    torch.testing.assert_close(single(x), a(x), rtol=0, atol=0)


# ------------------------------------------------------------------------------------ forms and options
@pytest.mark.parametrize("spec, form", [("lenet", "name"), ("timm:resnet18", "timm"), ("torchvision:resnet18",
                                        "torchvision"), ("py:pkg.mod:make", "py"), ("nets/my.py:make", "py"),
                                        ("my.py:make", "py"), ("py:nets/my.py:make", "py"),
                                        ("runs/a", "checkpoint"), ("m.safetensors", "checkpoint")])
def test_model_form_reads_each_spec_once(spec, form):
    from advkit.models.resolve import model_form

    assert model_form(spec) == form


def test_a_pt_file_is_torchscript_only_when_it_holds_code(tmp_path):
    from advkit.models.resolve import model_form

    net = torch.nn.Linear(2, 3)
    torch.save(net.state_dict(), tmp_path / "state.pt")
    torch.jit.save(torch.jit.script(net), str(tmp_path / "script.pt"))
    assert (model_form(str(tmp_path / "state.pt")), model_form(str(tmp_path / "script.pt"))) == (
        "checkpoint", "torchscript")
    with pytest.raises(AdvkitError, match="holds weights, not a model.*--weights"):
        resolve_model(str(tmp_path / "state.pt"), **SHAPE)


@pytest.mark.parametrize("kw, msg", [({"num_classes": 0}, "num-classes must be a positive"),
                                     ({"input_size": -3}, "input-size must be a positive"),
                                     ({"mean": (0.5,)}, "give --mean and --std together"),
                                     ({"mean": (0.5,), "std": (0.0,)}, "--std must be > 0"),
                                     ({"mean": (float("nan"),), "std": (1.0,)}, "finite numbers")])
def test_model_options_refuse_bad_values(kw, msg):
    from advkit.models import ModelOptions

    with pytest.raises(AdvkitError, match=msg):
        ModelOptions(**kw)


def test_options_with_a_checkpoint_or_the_default_model_are_errors(ckpt):
    from advkit.models import ModelOptions
    from advkit.train.default import resolve

    _, path = ckpt
    with pytest.raises(AdvkitError, match="records its own architecture.*--weights"):
        resolve_model(str(path), **SHAPE, options=ModelOptions(weights="w.pt"))
    with pytest.raises(AdvkitError, match="--mean, --std need a --model"):
        resolve(None, _data(), options=ModelOptions(mean=(0.5,), std=(0.2,)))


def test_a_registered_name_takes_the_options_over_the_data(tmp_path):
    from advkit.models import ModelOptions

    m = resolve_model("lenet", **SHAPE, mean=[0.5], std=[0.25], say=lambda s: None,
                      options=ModelOptions(num_classes=4, mean=(0.1,), std=(0.2,), input_size=12))
    assert m(torch.rand(2, 1, 8, 8)).shape == (2, 4)  # 8 px inputs resized to the asked 12
    assert m.origin["mean"] == pytest.approx([0.1]) and m.input_size == 12

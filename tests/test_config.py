"""Configs: YAML overlays and --set overrides on frozen dataclasses, type checks, helpful errors."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from advkit import AdvkitError
from advkit.config import load_config, overlay, parse_number, parse_sets, to_dict, to_yaml
from advkit.train import TrainConfig
from conftest import REPO


@dataclass(frozen=True)
class Inner:
    name: str = "sgd"
    lr: float = 0.1
    limit: int | None = None

    def __post_init__(self) -> None:
        if self.name not in ("sgd", "adam"):
            raise ValueError(f"unknown optimizer {self.name!r}; valid: sgd, adam")


@dataclass(frozen=True)
class Outer:
    inner: Inner = field(default_factory=Inner)
    epochs: int = 2
    eps: float = 0.0
    flag: bool = False
    label: str = "run"
    sizes: tuple[int, ...] = (1, 2)
    extra: dict[str, Any] = field(default_factory=dict)


def _yaml(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "cfg.yaml"
    p.write_text(text)
    return p


# ------------------------------------------------------------------------------------ overlay order

def test_defaults_then_yaml_then_sets(tmp_path):
    path = _yaml(tmp_path, "epochs: 3\ninner: {lr: 0.01, limit: 7}\nlabel: from-yaml\n")
    cfg = load_config(Outer, path, ["epochs=5", "inner.name=adam"])
    assert cfg.epochs == 5                       # --set beats YAML
    assert cfg.inner == Inner(name="adam", lr=0.01, limit=7)  # YAML and --set merge inside a section
    assert cfg.label == "from-yaml"
    assert cfg.eps == 0.0 and cfg.sizes == (1, 2)  # untouched defaults
    assert load_config(Outer) == Outer()


def test_train_config_overlay(tmp_path):
    path = _yaml(tmp_path, "epochs: 3\noptim: {lr: 0.01}\ndata: {train_limit: 1000}\n")
    cfg = load_config(TrainConfig, path, ["epochs=5", "data.test_limit=100", "optim.name=sgd"])
    assert cfg.epochs == 5
    assert cfg.optim.lr == 0.01 and cfg.optim.name == "sgd"
    assert cfg.optim.momentum == TrainConfig().optim.momentum
    assert cfg.data.train_limit == 1000 and cfg.data.test_limit == 100
    assert cfg.data.dataset == "mnist" and cfg.model.name == TrainConfig().model.name


def test_empty_yaml_gives_defaults(tmp_path):
    assert load_config(Outer, _yaml(tmp_path, "# nothing here\n")) == Outer()


def test_to_yaml_round_trips(tmp_path):
    cfg = load_config(Outer, None, ["epochs=4", "eps=8/255", "sizes=[3, 4]", "inner.limit=9", "flag=true",
                                    "extra={a: 1}"])
    p = tmp_path / "dump.yaml"
    p.write_text(to_yaml(cfg))
    assert load_config(Outer, p) == cfg
    assert to_dict(cfg)["sizes"] == [3, 4]


def test_train_config_to_yaml_round_trips(tmp_path):
    cfg = load_config(TrainConfig, None, ["epochs=3", "optim.lr=0.05", "data.train_limit=10"])
    p = tmp_path / "dump.yaml"
    p.write_text(to_yaml(cfg))
    assert load_config(TrainConfig, p) == cfg
    assert yaml.safe_load(to_yaml(cfg)) == to_dict(cfg)


# --------------------------------------------------------------------------------------- --set parsing

def test_parse_sets_types_and_nesting():
    got = parse_sets(["a.b=1", "a.c=x", "a.d.e=0.5", "f=true", "g=no", "h=[1, 2]", "i=", "j=null", "k=a=b"])
    assert got == {"a": {"b": 1, "c": "x", "d": {"e": 0.5}}, "f": True, "g": False, "h": [1, 2], "i": "",
                   "j": None, "k": "a=b"}
    assert type(got["a"]["b"]) is int and type(got["f"]) is bool


def test_sets_are_coerced_to_field_types():
    cfg = load_config(Outer, None, ["eps=1", "inner.lr=1e-3", "inner.limit=null", "flag=yes", "sizes=[5]"])
    assert cfg.eps == 1.0 and type(cfg.eps) is float
    assert cfg.inner.lr == pytest.approx(1e-3)  # YAML 1.1 reads "1e-3" as a string; parsed anyway
    assert cfg.inner.limit is None
    assert cfg.flag is True
    assert cfg.sizes == (5,)


def test_fraction_eps_via_set_and_parse_number():
    cfg = load_config(Outer, None, ["eps=8/255"])
    assert cfg.eps == pytest.approx(8 / 255, abs=1e-12)
    assert parse_number("8/255") == pytest.approx(0.0313725490, abs=1e-9)
    assert parse_number("0.1") == 0.1 and parse_number("3") == 3.0 and parse_number("1e-3") == 0.001
    for bad in ("abc", "1/0", "", "8/x", "/2"):
        with pytest.raises(AdvkitError, match="not a number"):
            parse_number(bad, "--eps")
    with pytest.raises(AdvkitError, match="--eps"):
        parse_number("abc", "--eps")


@pytest.mark.parametrize("item", ["novalue", "=3"])
def test_malformed_set(item):
    with pytest.raises(AdvkitError, match="key=value"):
        parse_sets([item])


def test_set_conflict_is_an_error():
    with pytest.raises(AdvkitError, match="set twice"):
        parse_sets(["inner=1", "inner.lr=2"])


# -------------------------------------------------------------------------------------- unknown keys

def test_unknown_top_level_key_suggests():
    with pytest.raises(AdvkitError) as e:
        load_config(TrainConfig, None, ["epoch=1"])
    msg = str(e.value)
    assert "'epoch'" in msg and "did you mean 'epochs'" in msg


def test_unknown_nested_key_suggests():
    with pytest.raises(AdvkitError) as e:
        load_config(TrainConfig, None, ["optim.lrr=0.1"])
    msg = str(e.value)
    assert "lrr" in msg and "optim" in msg and "did you mean" in msg
    assert msg.rstrip("?").endswith("lr'")


def test_unknown_nested_key_is_quoted_whole():
    with pytest.raises(AdvkitError) as e:
        load_config(TrainConfig, None, ["optim.lrr=0.1"])
    assert "'optim.lrr'" in str(e.value) and "'optim.lr'" in str(e.value)


def test_unknown_key_without_close_match_lists_valid_keys(tmp_path):
    with pytest.raises(AdvkitError) as e:
        load_config(Outer, _yaml(tmp_path, "zzzzzz: 1\n"))
    msg = str(e.value)
    assert "zzzzzz" in msg
    for f in dataclasses.fields(Outer):
        assert f.name in msg


# ------------------------------------------------------------------------------------------ bad values

@pytest.mark.parametrize("item, fragment", [
    ("epochs=abc", "epochs: expected int"),
    ("epochs=true", "epochs: expected int"),      # a bool is not an int here
    ("epochs=1.5", "epochs: expected int"),
    ("label=[1, 2]", "label: expected str"),
    ("inner=5", "inner: expected a mapping"),
    ("sizes=3", "sizes: expected a list"),
    ("sizes=[1, x]", "sizes: expected int"),
    ("eps=fast", "eps: not a number"),
    ("flag=maybe", "flag: expected bool"),
    ("inner.limit=lots", "inner.limit"),
])
def test_wrong_types_are_errors(item, fragment):
    with pytest.raises(AdvkitError, match=fragment):
        load_config(Outer, None, [item])


def test_post_init_validation_becomes_advkit_error():
    with pytest.raises(AdvkitError, match="unknown optimizer 'adamm'"):
        load_config(Outer, None, ["inner.name=adamm"])
    with pytest.raises(AdvkitError, match="optimizer") as e:
        load_config(TrainConfig, None, ["optim.name=rmsprop"])
    assert "sgd" in str(e.value) and "adam" in str(e.value)
    with pytest.raises(AdvkitError, match="lr"):
        load_config(TrainConfig, None, ["optim.lr=0"])
    with pytest.raises(AdvkitError, match="epochs"):
        load_config(TrainConfig, None, ["epochs=0"])
    assert isinstance(AdvkitError("x"), ValueError)


def test_overlay_returns_a_new_frozen_copy():
    base = Outer()
    new = overlay(base, {"epochs": 9})
    assert base.epochs == 2 and new.epochs == 9
    with pytest.raises(dataclasses.FrozenInstanceError):
        new.epochs = 3  # type: ignore[misc]


# ---------------------------------------------------------------------------------------- bad files

def test_missing_config_file(tmp_path):
    with pytest.raises(AdvkitError, match="config file not found") as e:
        load_config(TrainConfig, tmp_path / "nope.yaml")
    assert "nope.yaml" in str(e.value)


def test_invalid_yaml_and_non_mapping(tmp_path):
    with pytest.raises(AdvkitError, match="not valid YAML"):
        load_config(Outer, _yaml(tmp_path, "epochs: [1, 2\n"))
    with pytest.raises(AdvkitError, match="mapping"):
        load_config(Outer, _yaml(tmp_path, "- 1\n- 2\n"))


# ------------------------------------------------------------------------------ shipped config files

CONFIGS = sorted((REPO / "configs").rglob("*.yaml")) if (REPO / "configs").is_dir() else []


def _config_type(path):
    """The config dataclass a shipped file is written for, by its folder."""
    from advkit.detect.config import DetectorConfig
    from advkit.detect.config import EvalDetectionConfig as EvalConfig  # what `advkit eval` reads
    from advkit.gan import GanConfig

    kinds = {"train": TrainConfig, "eval": EvalConfig, "gan": GanConfig, "detect": DetectorConfig}
    return kinds[path.parent.name]


@pytest.mark.parametrize("path", CONFIGS, ids=[f"{p.parent.name}/{p.name}" for p in CONFIGS])
def test_shipped_configs_load_and_round_trip(path, tmp_path):
    from advkit.detect.config import EvalDetectionConfig as EvalConfig
    from advkit.eval.config import config_dict
    from advkit.models import list_models

    kind = _config_type(path)
    cfg = load_config(kind, path)
    model = getattr(cfg, "model", None) or getattr(getattr(cfg, "train", None), "model", None)
    if hasattr(model, "name"):  # training configs name a registered or timm model
        assert model.name.startswith("timm:") or model.name in list_models()
    if kind is EvalConfig:  # gate keys are parsed to (norm, eps): the report's view writes them back
        again = tmp_path / "again.yaml"
        again.write_text(yaml.safe_dump(config_dict(cfg)))
        assert load_config(EvalConfig, again) == cfg
    else:
        assert yaml.safe_load(to_yaml(cfg)) == to_dict(cfg)

"""Frozen, typed configs with YAML overlays and ``--set a.b=c`` overrides. Unknown keys raise with the
closest valid key; values are type-checked against the dataclass fields."""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, TypeVar

import yaml

from advkit.errors import AdvkitError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

C = TypeVar("C", bound="DataclassInstance")  # a config: a dataclass instance

# A YAML document may expand to at most this many nodes once its aliases are followed: a config is a few
# hundred, while "billion laughs" anchors (each list holding nine aliases of the last) expand exponentially.
MAX_YAML_NODES = 100_000
MAX_INT = 2**63 - 1  # config integers must fit torch's int64 (seeds, sizes, counts)


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key)
            except AdvkitError as e:
                errors.append(str(e))
        raise AdvkitError(errors[0] if errors else f"{key}: bad value {value!r}")
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise AdvkitError(f"{key}: expected a mapping, got {value!r}")
        return overlay(tp(), value, prefix=f"{key}.")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise AdvkitError(f"{key}: expected a list, got {value!r}")
        (inner, *_) = typing.get_args(tp) or (Any,)
        return tuple(_coerce(v, inner, key) for v in value)
    if origin is dict:
        if not isinstance(value, dict):
            raise AdvkitError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return _finite(float(value), key)
    if tp is float and isinstance(value, str):
        return _finite(parse_number(value, key), key)
    if tp is int and isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
        raise AdvkitError(f"{key}: {value} is too large (at most {MAX_INT})")
    if isinstance(value, tp) and not (tp is int and isinstance(value, bool)):
        return value
    raise AdvkitError(f"{key}: expected {getattr(tp, '__name__', tp)}, got {value!r}")


def _finite(value: float, key: str) -> float:
    if value != value or value in (float("inf"), float("-inf")):
        raise AdvkitError(f"{key}: expected a finite number, got {value}")
    return value


def parse_number(text: str, key: str = "value") -> float:
    """A float or a fraction, as configs and CLIs write eps: ``0.1``, ``8/255``.

    Args:
        text: the number as written.
        key: names the value in the error.

    Returns:
        The value.

    Raises:
        AdvkitError: not a number (a division by zero included).
    """
    try:
        if "/" in text:
            a, b = text.split("/", 1)
            return float(a) / float(b)
        return float(text)
    except (ValueError, ZeroDivisionError, OverflowError):
        raise AdvkitError(f"{key}: not a number: {text!r}") from None


def overlay(base: C, changes: dict[str, Any], prefix: str = "") -> C:
    """A copy of a config with ``changes`` applied, each value checked against its field's type.

    Args:
        base: a frozen config dataclass.
        changes: field -> value; a nested dict changes a nested config field by field.
        prefix: the dotted path of ``base`` inside the full config, for the error messages.

    Returns:
        The new config (``base`` is unchanged).

    Raises:
        AdvkitError: an unknown key (with the closest valid one), a value of the wrong type, or one the
            config's own validation refuses.
    """
    types_ = _field_types(type(base))
    updates = {}
    for k, v in changes.items():
        if not isinstance(k, str):
            raise AdvkitError(f"config key {prefix}{k!r} is not a name (YAML read it as {type(k).__name__}); keys "
                              f"are words such as {next(iter(types_), 'epochs')!r}")
        if k not in types_:
            close = difflib.get_close_matches(k, types_, n=1)
            hint = f"; did you mean {prefix + close[0]!r}?" if close else f"; valid: {', '.join(types_)}"
            raise AdvkitError(f"unknown config key {prefix + k!r}{hint}")
        cur = getattr(base, k)
        if dataclasses.is_dataclass(cur) and not isinstance(cur, type) and isinstance(v, dict):
            updates[k] = overlay(cur, v, prefix=f"{prefix}{k}.")
        else:
            updates[k] = _coerce(v, types_[k], f"{prefix}{k}")
    try:
        return dataclasses.replace(base, **updates)
    except ValueError as e:  # __post_init__ validation
        raise AdvkitError(str(e)) from None


def parse_sets(sets: Iterable[str]) -> dict[str, Any]:
    """``--set`` overrides as a nested dict: ``["optim.lr=0.1", "epochs=3"]`` -> ``{"optim": {"lr": 0.1},
    "epochs": 3}``.

    Args:
        sets: ``KEY=VALUE`` strings, dotted keys for nested configs; values are parsed as YAML scalars.

    Returns:
        The nested dict, for :func:`overlay`.

    Raises:
        AdvkitError: an item without ``=`` or key, or a key set both as a value and as a section.
    """
    out: dict[str, Any] = {}
    for item in sets:
        key, eq, raw = item.partition("=")
        if not eq or not key:
            raise AdvkitError(f"--set expects key=value, got {item!r}")
        try:
            value = load_yaml(raw, f"--set {key}") if raw else ""
        except yaml.YAMLError:
            value = raw
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise AdvkitError(f"--set {key}: {p} is set twice")
        node[parts[-1]] = value
    return out


def load_config(cls: type[C], path: str | Path | None = None, sets: Iterable[str] = ()) -> C:
    """A config: the defaults of ``cls``, then the YAML file at ``path``, then ``--set`` overrides.

    Args:
        cls: the config dataclass.
        path: a YAML file holding a diff over the defaults; ``None``: none.
        sets: ``KEY=VALUE`` overrides (see :func:`parse_sets`).

    Returns:
        The config.

    Raises:
        AdvkitError: a missing or invalid file, or a change :func:`overlay` refuses.
    """
    cfg = cls()
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise AdvkitError(f"config file not found: {path}")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise AdvkitError(f"{path}: not a UTF-8 text file (byte {e.start}); a config is YAML text") from None
        try:
            data = load_yaml(text, str(path)) or {}
        except yaml.YAMLError as e:
            raise AdvkitError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
        if not isinstance(data, dict):
            raise AdvkitError(f"{path}: a config must be a mapping of keys to values")
        cfg = overlay(cfg, data)
    return overlay(cfg, parse_sets(sets))


def load_yaml(text: str, where: str = "YAML") -> Any:
    """Plain data from YAML text, safely: no tags that build Python objects, no exponential alias expansion.

    Args:
        text: the YAML document.
        where: names the source in the error.

    Returns:
        The data (None for an empty document).

    Raises:
        yaml.YAMLError: not valid YAML, or a tag the safe loader refuses (``!!python/...``).
        AdvkitError: anchors and aliases that expand past :data:`MAX_YAML_NODES` nodes or refer to
            themselves, or nesting too deep to parse.
    """
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if node is None:
            return None
        _expanded_size(node, where)
        return yaml.safe_load(text)
    except RecursionError:
        raise AdvkitError(f"{where}: YAML nested too deeply; a config is a few levels deep") from None


def _expanded_size(root: yaml.Node, where: str) -> int:
    """How many nodes ``root`` becomes with every alias expanded; refuses cycles and anything too large."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise AdvkitError(f"{where}: a YAML anchor refers to itself; a config must be finite data")
        active.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            total += sum(size(c) for c in node.value)
        elif isinstance(node, yaml.MappingNode):
            total += sum(size(k) + size(v) for k, v in node.value)
        active.discard(key)
        if total > MAX_YAML_NODES:
            raise AdvkitError(f"{where}: YAML aliases expand to more than {MAX_YAML_NODES:,} values "
                              f"(\"billion laughs\"?); refusing it")
        sizes[key] = total
        return total

    return size(root)


def to_dict(cfg: Any) -> dict[str, Any]:
    """A config as plain data (tuples as lists), as YAML, JSON and checkpoints hold it.

    Args:
        cfg: a config dataclass.

    Returns:
        The nested dict.
    """

    def conv(v: Any) -> Any:
        if isinstance(v, tuple):
            return [conv(i) for i in v]
        if isinstance(v, dict):
            return {k: conv(i) for k, i in v.items()}
        return v
    return {k: conv(v) for k, v in dataclasses.asdict(cfg).items()}


def to_yaml(cfg: Any) -> str:
    """A config as YAML, fields in their declared order (what ``config.yaml`` in a run folder holds).

    Args:
        cfg: a config dataclass.

    Returns:
        The YAML text.
    """
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)

"""Models from outside advkit: weights files as people save them, a user's own factory (``py:``), TorchScript
archives, and the preprocessing timm and torchvision publish for their architectures.

Weights files are read without running pickled code: safetensors, or a PyTorch file through
``torch.load(weights_only=True)``. The common wrappings are undone (``{"state_dict": ...}``,
``{"model": ...}``, ``module.`` and other prefixes that DataParallel, Lightning or ``torch.compile`` add).

``py:`` runs the user's own Python code, on request: it is the one place advkit imports code a spec names,
as ``python -c "import pkg.mod"`` would. TorchScript archives are loaded with ``torch.jit.load``.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import logging
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from advkit.errors import AdvkitError
from advkit.registry import register_family, split_name

log = logging.getLogger(__name__)

PY = register_family("py", "model", "MODULE:FACTORY")  # py:pkg.mod:factory, a user's callable -> nn.Module
TORCHSCRIPT_SUFFIXES = (".ts", ".torchscript")  # always TorchScript; .pt/.pth are looked into (see is_torchscript)
_PY_FILE = re.compile(r"(?P<file>.+\.py):(?P<attr>[A-Za-z_][A-Za-z0-9_.]*)")
# after "py:": a dotted module path and the factory's name
_PY_MODULE = re.compile(r"(?P<module>[A-Za-z_][\w.]*):(?P<attr>[A-Za-z_][A-Za-z0-9_.]*)")
_WRAPPERS = ("state_dict", "model_state_dict", "model", "module", "net", "network")


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file, hex, read in chunks.

    Args:
        path: the file.

    Returns:
        64 hex digits.
    """
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def is_torchscript(path: str | Path) -> bool:
    """Whether ``path`` is a TorchScript archive rather than a state dict.

    ``.ts`` and ``.torchscript`` always are; any other file is when it is a zip holding ``code/`` (what
    ``torch.jit.save`` writes and ``torch.save`` never does), so a ``.pt`` may be either.

    Args:
        path: an existing file.

    Returns:
        True for a TorchScript archive.
    """
    p = Path(path)
    if p.suffix in TORCHSCRIPT_SUFFIXES:
        return True
    if not zipfile.is_zipfile(p):
        return False
    with zipfile.ZipFile(p) as z:
        return any("/code/" in f"/{n}" for n in z.namelist())


def is_advkit_checkpoint(path: str | Path) -> bool:
    """Whether ``path`` is a safetensors file with advkit metadata (else: plain weights, for :func:`load_weights`).

    Args:
        path: an existing file.

    Returns:
        True for an advkit checkpoint.
    """
    from safetensors import safe_open

    from advkit.models.checkpoint import META_KEY

    if Path(path).suffix != ".safetensors":
        return False
    try:
        with safe_open(str(path), framework="pt") as f:
            return META_KEY in (f.metadata() or {})
    except Exception:  # not safetensors at all: read_weights names the problem
        return False


def py_spec(spec: str) -> tuple[str, str] | None:
    """Split a factory spec: ``py:pkg.mod:fn`` -> ``("pkg.mod", "fn")``, ``path/to/file.py:fn`` ->
    ``("path/to/file.py", "fn")``; ``None`` when ``spec`` is neither form.

    Args:
        spec: a model spec.

    Returns:
        ``(module or file, attribute)``, or None.

    Raises:
        AdvkitError: ``py:`` without ``module:factory``, or an unknown ``xyz:`` family.
    """
    family, tail = split_name(spec, kind="model")
    rest = tail if family is PY else None
    m = _PY_FILE.fullmatch(rest if rest is not None else spec)
    if m:
        return m["file"], m["attr"]
    if rest is None:
        return None
    m = _PY_MODULE.fullmatch(rest)
    if not m:
        raise AdvkitError(f"model {spec!r}: write py:package.module:factory (or path/to/file.py:factory)")
    return m["module"], m["attr"]


def call_factory(spec: str) -> nn.Module:
    """Import the user's module and call its factory with no arguments: their own code, run on their request.

    Args:
        spec: ``py:pkg.mod:factory`` or ``path/to/file.py:factory`` (see :func:`py_spec`).

    Returns:
        The module the factory returns.

    Raises:
        AdvkitError: the module or attribute cannot be found, the factory raises, or it returns no
            ``nn.Module``.
    """
    parts = py_spec(spec)
    if parts is None:
        raise AdvkitError(f"model {spec!r} is not a factory spec (py:package.module:factory or file.py:factory)")
    where, attr = parts
    try:
        if where.endswith(".py"):
            if not Path(where).is_file():
                raise AdvkitError(f"model {spec!r}: file not found: {where}")
            mod_spec = importlib.util.spec_from_file_location(f"advkit_user_{Path(where).stem}", where)
            if mod_spec is None or mod_spec.loader is None:
                raise AdvkitError(f"model {spec!r}: cannot import {where}")
            module: Any = importlib.util.module_from_spec(mod_spec)
            mod_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(where)
    except AdvkitError:
        raise
    except Exception as e:  # the user's module may raise anything while importing
        raise AdvkitError(f"model {spec!r}: importing {where} failed: {type(e).__name__}: {_line(e)}") from None
    factory: Any = module
    for name in attr.split("."):
        if not hasattr(factory, name):
            raise AdvkitError(f"model {spec!r}: {where} has no attribute {attr!r}")
        factory = getattr(factory, name)
    if not callable(factory):
        raise AdvkitError(f"model {spec!r}: {attr} is not callable")
    try:
        net = factory()
    except Exception as e:  # the user's factory may raise anything
        raise AdvkitError(f"model {spec!r}: the factory raised {type(e).__name__}: {_line(e)}") from None
    if not isinstance(net, nn.Module):
        raise AdvkitError(f"model {spec!r}: the factory returned a {type(net).__name__}, not a torch nn.Module")
    return net


def load_torchscript(path: str | Path) -> nn.Module:
    """A TorchScript archive, on the CPU.

    Args:
        path: the archive (``torch.jit.save``).

    Returns:
        The scripted module.

    Raises:
        AdvkitError: the file is missing or not a TorchScript archive.
    """
    p = Path(path)
    if not p.is_file():
        raise AdvkitError(f"TorchScript file not found: {p}")
    try:
        with warnings.catch_warnings():  # torch deprecates TorchScript; the user's archive is what it is
            warnings.simplefilter("ignore", FutureWarning)
            return torch.jit.load(str(p), map_location="cpu")
    except Exception as e:  # torch raises RuntimeError and others for foreign files
        raise AdvkitError(f"{p}: not a TorchScript archive ({type(e).__name__})") from None


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file, unwrapped, every one finite.

    Args:
        path: a ``.safetensors`` file, or a file ``torch.save`` wrote (read with ``weights_only=True``): a
            state dict, or a dict holding one under ``state_dict``, ``model_state_dict``, ``model``,
            ``module``, ``net`` or ``network`` (RobustBench, Lightning and most training scripts).

    Returns:
        Name -> tensor (prefixes are left for :func:`load_weights`, which knows the model's names).

    Raises:
        AdvkitError: the file is missing, unreadable without unpickling code, holds no tensor dict, or holds
            a NaN or infinite value.
    """
    p = Path(path)
    if not p.is_file():
        raise AdvkitError(f"weights file not found: {p}")
    obj: Any
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file
        try:
            obj = load_file(str(p))
        except Exception:  # safetensors raises its own types for other formats
            raise AdvkitError(f"{p}: not a readable safetensors file") from None
    else:
        if is_torchscript(p):
            raise AdvkitError(f"{p} is a TorchScript archive, not a state dict: pass it as the model itself "
                              f"(--model {p}, no --weights)")
        try:
            obj = torch.load(p, map_location="cpu", weights_only=True)  # never runs pickled code
        except Exception as e:  # foreign, corrupt or code-carrying files; never suggest unpickling
            raise AdvkitError(f"{p}: not a weights file torch.load can read safely ({type(e).__name__}); save "
                              f"model.state_dict() with torch.save, or use safetensors") from None
    state = _unwrap(obj)
    if state is None:
        raise AdvkitError(f"{p}: holds no state dict (a mapping of names to tensors), found a {type(obj).__name__}")
    for name, t in state.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise AdvkitError(f"{p}: tensor {name!r} holds NaN or infinite values; refusing these weights")
    return state


def _unwrap(obj: Any, depth: int = 0) -> dict[str, torch.Tensor] | None:
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return {str(k): v for k, v in obj.items()}
    if isinstance(obj, dict) and depth < 2:
        for key in _WRAPPERS:
            found = _unwrap(obj.get(key), depth + 1) if key in obj else None
            if found is not None:
                return found
    return None


def _match_prefixes(state: dict[str, torch.Tensor], own: set[str]) -> dict[str, torch.Tensor]:
    """``state`` with the leading name components removed that make the most of its names the model's."""
    best, score = state, len(own & set(state))
    while score < len(own):
        heads = {k.split(".", 1)[0] for k in best if "." in k}
        cands = [{k[len(h) + 1:]: v for k, v in best.items() if k.startswith(h + ".")} for h in sorted(heads)]
        scored = [(len(own & set(c)), c) for c in cands]
        top = max(scored, key=lambda t: t[0], default=(0, best))
        if top[0] <= score:
            break
        score, best = top
    return best


def head_keys(net: nn.Module) -> set[str]:
    """The state-dict names of ``net``'s classifier head: timm's ``get_classifier()``, else its last Linear.

    Args:
        net: a classifier.

    Returns:
        The head's parameter and buffer names (empty when no head is found).
    """
    heads: Sequence[nn.Module] = []
    get = getattr(net, "get_classifier", None)
    if callable(get):
        m = get()
        if isinstance(m, nn.Module):
            heads = [m]
    if not heads:
        heads = [m for m in net.modules() if isinstance(m, nn.Linear)][-1:]
    keys = set()
    for name, mod in net.named_modules():
        if any(mod is h for h in heads):
            keys |= {f"{name}.{k}" if name else k for k in mod.state_dict()}
    return keys


def load_weights(net: nn.Module, path: str | Path, *, new_head: bool = False,
                 say: Callable[[str], None] = log.warning, hint: str | None = None) -> None:
    """Load a weights file into ``net``: every name and shape must fit, prefixes aside.

    Args:
        net: the network (the raw one, without advkit's wrapper).
        path: the weights file (see :func:`read_weights`).
        new_head: the caller asked for another class count (``--num-classes``): a classifier head of another
            size in the file is left at its fresh initialisation (``say`` is told) instead of an error.
        say: told when the head starts fresh.
        hint: how to ask for a new head, in the head error (default: the CLI's ``--num-classes``).

    Raises:
        AdvkitError: as :func:`read_weights`, or names missing, unexpected or of another shape (the head's
            with a hint at ``--num-classes``).
    """
    p = Path(path)
    own = net.state_dict()
    state = _match_prefixes(read_weights(p), set(own))
    head = head_keys(net)
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    missing = sorted(k for k in set(own) - set(state) if not k.endswith("num_batches_tracked"))
    unexpected = sorted(set(state) - set(own))
    head_issue = [k for k in wrong + missing if k in head]
    if head_issue and set(wrong + missing) <= head:
        if not new_head:
            k = head_issue[0]
            there = f"{list(state[k].shape)} there" if k in state else "absent there"
            hint = hint or ("pass --num-classes (config num_classes) with the file's class count, or with "
                            "yours to start a new head")
            raise AdvkitError(f"{p}: the classifier head does not fit ({k} is {there}, {list(own[k].shape)} "
                              f"here): {hint}")
        say(f"{p}: classifier head ({', '.join(sorted(head))}) starts fresh: the file's is for another "
            f"class count")
        state = {k: v for k, v in state.items() if k not in head}
        wrong, missing = [], []
    if missing or unexpected or wrong:
        parts = [f"{label} {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
                 for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
                 if keys]
        raise AdvkitError(f"{p}: weights do not fit the model ({'; '.join(parts)})")
    net.load_state_dict(state, strict=False)


def preprocessing(family: str, name: str) -> dict[str, Any]:
    """The preprocessing that timm or torchvision publishes for architecture ``name``; nothing is downloaded.

    Args:
        family: ``timm`` or ``torchvision``.
        name: the architecture (timm may carry a ``.tag``).

    Returns:
        Any of ``mean``, ``std`` (lists, [0,1] pixel units), ``input_size`` (int), ``in_chans``,
        ``interpolation`` (``bilinear`` or ``bicubic``) and ``crop_pct``; empty when none is published.
    """
    if family == "timm":
        import timm.models

        try:
            cfg = timm.models.get_pretrained_cfg(name)
        except Exception:  # an unknown name: the builder reports it
            cfg = None
        if cfg is None:
            return {}
        c, h, _ = cfg.input_size
        return {"mean": list(cfg.mean), "std": list(cfg.std), "input_size": int(h), "in_chans": int(c),
                "interpolation": _interp(cfg.interpolation), "crop_pct": cfg.crop_pct}
    import torchvision.models

    try:
        weights = torchvision.models.get_model_weights(name)
        tf = list(weights)[0].transforms()  # a partial over the published transform; builds nothing remote
    except Exception:  # no published weights for this name
        return {}
    crop, resize = tf.crop_size[0], tf.resize_size[0]
    return {"mean": list(tf.mean), "std": list(tf.std), "input_size": int(crop), "in_chans": 3,
            "interpolation": _interp(str(tf.interpolation.value)), "crop_pct": round(crop / resize, 4)}


def _interp(mode: str) -> str:
    return "bicubic" if "cubic" in mode else "bilinear"


def _line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [""])[0][:200]

"""The evaluation config: models, data, threat models with their attack suites, checks and gates.

Everything is validated when the config is loaded (unknown keys, unsorted eps, attacks that do not exist or
take no such parameter, an attack whose norm is not the threat model's), so a run never dies half-way on a
typo.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, cast

from advkit.attacks import FOOLBOX, NORMS, attack_info, check_eps, get_attack, is_preset, preset_members
from advkit.config import parse_number
from advkit.data.stream import check_stream_keys
from advkit.errors import AdvkitError

MODES = ("cascade", "full")
CHECKS = ("eval_mode", "deterministic", "logits", "gradients", "monotone_eps", "pgd_vs_fgsm", "single_step_gap",
          "convergence", "large_eps", "gradient_free")


def default_suite(norm: str) -> tuple[dict[str, Any], ...]:
    """FGSM, PGD-50 with restarts, a foolbox minimum-norm attack and a gradient-free attack (the masking
    check needs it, and it runs last, on the few samples the white-box attacks left standing)."""
    if norm == "linf":
        return ({"name": "fgsm"}, {"name": "pgd", "steps": 50, "restarts": 5},
                {"name": FOOLBOX.join("LInfFMNAttack")}, {"name": "square", "n_queries": 1000})
    return ({"name": "pgd", "norm": "l2", "steps": 50, "restarts": 5}, {"name": FOOLBOX.join("L2FMNAttack")},
            {"name": "square", "norm": "l2", "n_queries": 1000})


@dataclass(frozen=True)
class AttackSpec:
    """One attack of a suite, resolved: registry name, its parameters, a label for reports."""
    name: str
    params: dict[str, Any]
    label: str
    targeted: bool = False

    @property
    def gradient_free(self) -> bool:
        """The attack never reads a gradient (it says so itself): the masking check compares such attacks
        with the white-box ones."""
        return attack_info(self.name).gradient_free

    def build(self):
        return get_attack(self.name, **self.params)


def resolve_attack(entry: Any, norm: str, where: str) -> AttackSpec:
    """``{name: pgd, steps: 50, label: ..., targeted: false}`` -> an :class:`AttackSpec` for ``norm``."""
    if isinstance(entry, str):
        entry = {"name": entry}
    if not isinstance(entry, dict) or "name" not in entry:
        raise AdvkitError(f"{where}: an attack is a mapping with at least a 'name', got {entry!r}")
    params = {k: v for k, v in entry.items() if k not in ("name", "label", "targeted")}
    name, targeted = str(entry["name"]), bool(entry.get("targeted", False))
    probe = get_attack(name, **params)  # unknown names or parameters raise here, with the valid ones
    if probe.norm != norm and "norm" not in params and probe.info is not None and probe.info.takes_norm:
        try:
            probe = get_attack(name, **params, norm=norm)
            params = {**params, "norm": norm}
        except AdvkitError:
            pass
    if probe.norm != norm:
        raise AdvkitError(f"{where}: attack {name!r} works in {probe.norm}, not in this threat model's {norm}")
    for k, v in params.items():
        if isinstance(v, str) and k in ("alpha", "eps_step", "stepsize"):
            params[k] = parse_number(v, f"{where}.{k}")
    return AttackSpec(name, params, str(entry.get("label") or attack_info(name).label(params)), targeted)


def expand_presets(entries: Any, norm: str, where: str) -> list[tuple[str, Any]]:
    """Attack entries with every preset (``{name: autoattack}``) replaced by its members, each a suite entry
    of its own (so the report shows each member, and the cascade runs each only on the samples still
    standing), in the threat model's ``norm`` unless the entry names one. Returns ``(where, entry)`` pairs.

    Raises:
        AdvkitError: a preset entry with keys other than ``name`` and ``norm`` (its members' parameters are
            fixed: list the attacks themselves to change them).
    """
    out: list[tuple[str, Any]] = []
    for i, entry in enumerate(entries):
        name = entry if isinstance(entry, str) else entry.get("name") if isinstance(entry, dict) else None
        if not (isinstance(name, str) and is_preset(name)):
            out.append((f"{where}[{i}]", entry))
            continue
        extra = sorted(set(entry) - {"name", "norm"}) if isinstance(entry, dict) else []
        if extra:
            raise AdvkitError(f"{where}[{i}]: preset {name!r} takes no {', '.join(extra)}; list its attacks "
                              f"({', '.join(m['name'] for m in preset_members(name))}) to set their parameters")
        members = preset_members(name, entry.get("norm", norm) if isinstance(entry, dict) else norm)
        out.extend((f"{where}[{i}] ({name}: {m['name']})", m) for m in members)
    return out


@dataclass(frozen=True)
class ModelSpec:
    """A model to evaluate: ``model`` (a checkpoint path, ``default`` for advkit's cached MNIST model, a
    registry name, which is randomly initialised, ``timm:NAME``/``torchvision:NAME`` with ``weights``, a
    ``py:module:factory`` or a TorchScript file: docs/models.md) or ``ensemble`` (several checkpoints or
    names, logits averaged). ``weights``, ``num_classes``, ``mean``, ``std`` and ``input_size`` are the CLI's
    ``--weights`` etc. for ``model``."""
    name: str | None = None
    model: str | None = None
    ensemble: tuple[str, ...] = ()
    weights: str | None = None
    num_classes: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    input_size: int | None = None

    def validate(self) -> None:
        if bool(self.model) == bool(self.ensemble):
            raise ValueError("models: give each model exactly one of 'model' (a checkpoint or registry name) or "
                             "'ensemble' (a list of them)")
        if self.ensemble and self.options().given:
            raise ValueError("models: weights, num_classes, mean, std and input_size go with 'model', not "
                             "'ensemble'")

    def options(self):
        """The entry's :class:`advkit.models.ModelOptions` (``weights``, ``num_classes``, ...).

        Returns:
            The options (raises AdvkitError on a bad value).
        """
        from advkit.models import ModelOptions

        return ModelOptions(weights=self.weights, num_classes=self.num_classes, mean=self.mean, std=self.std,
                            input_size=self.input_size)

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        if self.model:
            from pathlib import Path

            from advkit.models import RUN_CHECKPOINT
            p = Path(self.model)
            return p.parent.name if p.name == RUN_CHECKPOINT else p.stem if p.suffix else self.model
        return "ensemble"


@dataclass(frozen=True)
class DataSpec:
    dataset: str = "mnist"
    split: str = "test"
    n: int | None = 1000            # the first n samples; null = all
    root: str | None = None
    # streamed sets (imagefolder:PATH, csv:FILE) only; at their defaults these keys stay out of reports
    skip_bad: bool = False          # leave unreadable image files out (listed in the report) instead of failing
    num_workers: int = 2            # DataLoader processes decoding ahead of the attacks (0: in the main process)
    input_size: int | None = None   # crop side; null: the model's input size, else 224
    crop_pct: float | None = None   # resize the shorter side to input_size / crop_pct; null: the model's, else 0.875
    interpolation: str | None = None  # bilinear or bicubic; null: the model's, else bilinear

    def __post_init__(self) -> None:
        if self.n is not None and self.n < 1:
            raise ValueError(f"data.n must be >= 1 (or null for all), got {self.n}")
        check_stream_keys(self.num_workers, self.input_size, self.crop_pct, self.interpolation,
                          null_size="the model's")


@dataclass(frozen=True)
class ThreatModel:
    norm: str = "linf"
    eps: tuple[float, ...] = (0.1, 0.2, 0.3)
    attacks: tuple[Any, ...] = ()   # empty: the default suite for the norm

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise ValueError(f"threat_models: unknown norm {self.norm!r}; valid: {', '.join(NORMS)}")
        if not self.eps:
            raise ValueError("threat_models: give at least one eps")
        eps = tuple(check_eps(e, self.norm) for e in self.eps)
        if any(b <= a for a, b in zip(eps, eps[1:])):
            raise ValueError(f"threat_models ({self.norm}): eps must be sorted ascending without repeats, got "
                             f"{', '.join(f'{e:g}' for e in eps)}")
        object.__setattr__(self, "eps", eps)

    def suite(self) -> list[AttackSpec]:
        entries = expand_presets(self.attacks or default_suite(self.norm), self.norm,
                                 f"threat_models[{self.norm}].attacks")
        specs = [resolve_attack(a, self.norm, where) for where, a in entries]
        labels = [s.label for s in specs]
        dup = sorted({x for x in labels if labels.count(x) > 1})
        if dup:
            raise AdvkitError(f"threat_models[{self.norm}]: two attacks share the label {dup[0]!r}; give one a "
                              f"'label'")
        return specs


@dataclass(frozen=True)
class ChecksConfig:
    """Sanity checks run on the first ``n`` samples, where each probe attack runs on its own."""
    enabled: bool = True
    n: int = 200
    tol: float = 0.02               # accuracy wiggle treated as noise (at least 2 samples' worth)
    large_eps: float | None = None  # default: 0.5 (L-inf), enough to map every image to mid-gray
    pgd_steps: int = 50             # the probe PGD; the convergence check doubles steps and restarts
    single_step_warn: float = 0.5   # FGSM finds less than this share of PGD's successes: warn
    single_step_fail: float = 0.25  # ... less than this share: fail (the gradient-masking signature)
    min_pgd_success: float = 0.2    # the single-step comparison needs PGD to fool this many samples
    zero_grad_fail: float = 0.05    # share of samples with an all-zero input gradient that fails

    def __post_init__(self) -> None:
        if self.n < 10:
            raise ValueError(f"checks.n must be >= 10, got {self.n}")


# the laundering transforms of a detector evaluation (advkit.detect.evaluate.LAUNDERING), by report name
LAUNDERING_NAMES = ("jpeg_q95", "jpeg_q75", "jpeg_q50", "jpeg_q30", "blur_s1", "blur_s2", "rescale_0.75",
                    "rescale_0.5")


def _fraction(v: Any, where: str, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
        raise ValueError(f"{where}: expected {what} in [0,1], got {v!r}")
    return float(v)


def _eps_key(k: Any, where: str) -> tuple[str | None, float]:
    """``0.1``, ``8/255`` or ``linf@0.1`` -> (norm or None, eps)."""
    norm, _, e = str(k).rpartition("@")
    if norm and norm not in NORMS:
        raise ValueError(f"{where}: unknown norm in {k!r}; valid: {', '.join(NORMS)}")
    return norm or None, parse_number(e, f"{where}[{k}]")


def _accuracy_gates(raw: dict, name: str) -> dict[tuple[str | None, str | None, float], float]:
    """``{0.1: 0.8, linf@0.2: 0.5, pgd: {linf@0.3: 0.2}}`` -> ``{(attack or None, norm or None, eps): t}``.
    A plain key judges the worst case over the suite; a mapping under an attack (its label, e.g. ``PGD-10``,
    or its registry name, e.g. ``pgd``) judges that attack's own row."""
    parsed: dict[tuple[str | None, str | None, float], float] = {}
    for k, v in raw.items():
        if isinstance(k, tuple):  # already parsed (dataclasses.replace runs __post_init__ again)
            parsed[k] = v
            continue
        inner = v if isinstance(v, dict) else {k: v}
        attack = str(k) if isinstance(v, dict) else None
        for ek, t in inner.items():
            where = f"gates.{name}" + (f"[{attack}]" if attack else "")
            key = _eps_key(ek, where)
            if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 <= t <= 1:
                raise ValueError(f"{where}[{ek}]: expected an accuracy in [0,1], got {t!r}")
            parsed[(attack, *key)] = float(t)
    return parsed


def accuracy_gate_keys(parsed: dict[tuple[str | None, str | None, float], float]) -> dict[str, Any]:
    """Parsed accuracy gates back to their config form (``linf@0.1``, attacks as nested mappings)."""
    out: dict[str, Any] = {}
    for (attack, norm, eps), t in parsed.items():
        key = f"{norm}@{eps:g}" if norm else f"{eps:g}"
        if attack is None:
            out[key] = t
        else:
            out.setdefault(attack, {})[key] = t
    return out


@dataclass(frozen=True)
class GatesConfig:
    """What a run must achieve to exit 0. ``min_robust_acc`` keys: ``0.1`` (every threat model with that
    eps) or ``linf@0.1``, judging the worst case, or an attack's label or name holding such keys
    (``{FGSM: {linf@0.3: 0.6}}``), judging that attack's row. ``max_robust_acc`` is the same with an upper
    bound: the attack-strength canary, failing when an attack that should break a model stops doing so.
    ``max_drop`` applies against ``--baseline``: a fraction, or ``{value: 0.02, significant: true}`` to fail
    only on a drop that McNemar's exact test on the paired samples calls significant (p < 0.05; the same as
    ``max_drop_significant: true``). ``checks``: names that must not fail (``all`` for every check)."""
    min_clean_acc: float | None = None
    min_robust_acc: dict[str, Any] = field(default_factory=dict)
    max_robust_acc: dict[str, Any] = field(default_factory=dict)
    max_drop: float | dict[str, Any] | None = None
    max_drop_significant: bool = False
    checks: tuple[str, ...] = ()
    # detectors (a report with detection results): clean AUC on the test split; AUC under the evasion attack
    # per eps (keys like 16/255); AUC after laundering, keys a transform (jpeg_q30, blur_s2, ...) or "all"
    min_auc: float | None = None
    min_robust_auc: dict[str, float] = field(default_factory=dict)
    min_laundered_auc: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "min_robust_acc", _accuracy_gates(self.min_robust_acc, "min_robust_acc"))
        object.__setattr__(self, "max_robust_acc", _accuracy_gates(self.max_robust_acc, "max_robust_acc"))
        if isinstance(self.max_drop, dict):  # {value: 0.02, significant: true}
            unknown = sorted(set(map(str, self.max_drop)) - {"value", "significant"})
            if unknown or "value" not in self.max_drop:
                raise ValueError(f"gates.max_drop: expected a fraction or {{value: FRACTION, significant: BOOL}}, "
                                 f"got {self.max_drop!r}")
            sig = self.max_drop.get("significant", self.max_drop_significant)
            value = self.max_drop["value"]
            if not isinstance(sig, bool) or isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"gates.max_drop: value must be a number and significant true or false, got "
                                 f"{self.max_drop!r}")
            object.__setattr__(self, "max_drop", float(value))
            object.__setattr__(self, "max_drop_significant", sig)
        robust_auc = {}
        for k, v in self.min_robust_auc.items():
            eps = k if isinstance(k, float) else parse_number(str(k), f"gates.min_robust_auc[{k}]")
            if not 0 < eps <= 1:
                raise ValueError(f"gates.min_robust_auc: eps {k!r} is not in (0, 1] (pixel units, e.g. 8/255)")
            robust_auc[float(eps)] = _fraction(v, f"gates.min_robust_auc[{k}]", "an AUC")
        object.__setattr__(self, "min_robust_auc", robust_auc)
        for k, v in self.min_laundered_auc.items():
            if k != "all" and k not in LAUNDERING_NAMES:
                raise ValueError(f"gates.min_laundered_auc: unknown transform {k!r}; valid: all, "
                                 f"{', '.join(LAUNDERING_NAMES)}")
            _fraction(v, f"gates.min_laundered_auc[{k}]", "an AUC")
        fractions: tuple[tuple[str, Any], ...] = (("min_clean_acc", self.min_clean_acc), ("max_drop", self.max_drop),
                                                   ("min_auc", self.min_auc))
        for name, v in fractions:
            if v is not None and not 0 <= v <= 1:
                raise ValueError(f"gates.{name} must be in [0,1], got {v}")
        for c in self.checks:
            if c != "all" and c not in CHECKS:
                import difflib
                close = difflib.get_close_matches(c, CHECKS, n=1)
                raise ValueError(f"gates.checks: unknown check {c!r}" +
                                 (f"; did you mean {close[0]!r}?" if close else f"; valid: {', '.join(CHECKS)}"))


@dataclass(frozen=True)
class EvalConfig:
    models: tuple[ModelSpec, ...] = (ModelSpec(model="default"),)
    data: DataSpec = DataSpec()
    threat_models: tuple[ThreatModel, ...] = (ThreatModel(),)
    mode: str = "cascade"           # cascade: each attack only on samples still standing; full: every attack on all
    seed: int = 0
    device: str = "auto"
    batch_size: int = 500
    examples: int = 8               # adversarial examples per eps in the HTML report
    checks: ChecksConfig = ChecksConfig()
    gates: GatesConfig = GatesConfig()

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not self.models:
            raise ValueError("models: give at least one model")
        for m in self.models:
            m.validate()
        labels = [m.label for m in self.models]
        if len(set(labels)) != len(labels):
            raise ValueError(f"models: two models are named {max(labels, key=labels.count)!r}; give them names")
        norms = [t.norm for t in self.threat_models]
        if len(set(norms)) != len(norms):
            raise ValueError("threat_models: one entry per norm (put all its eps in one list)")
        suites = {t.norm: t.suite() for t in self.threat_models}  # validate every attack now
        self._check_gate_eps(suites)

    def _check_gate_eps(self, suites: dict[str, list[AttackSpec]]) -> None:
        """Every accuracy gate names an eps (and attack) some threat model evaluates: found now, not after the
        whole run."""
        for kind, wanted in (("min_robust_acc", self.gates.min_robust_acc),
                             ("max_robust_acc", self.gates.max_robust_acc)):
            # after GatesConfig.__post_init__ the keys are (attack, norm, eps), whatever the declared type says
            for attack, norm, eps in cast("dict[tuple[str | None, str | None, float], float]", wanted):
                hit = any(norm in (None, t.norm) and any(math.isclose(e, eps, rel_tol=1e-9, abs_tol=1e-12)
                                                         for e in t.eps)
                          and (attack is None or any(attack in (a.label, a.name) for a in suites[t.norm]))
                          for t in self.threat_models)
                if not hit:
                    grid = "; ".join(f"{t.norm}: {', '.join(f'{e:g}' for e in t.eps)}" for t in self.threat_models)
                    what = f"attack {attack!r} at " if attack else ""
                    raise ValueError(f"gates.{kind}: no threat model evaluates {what}{norm or 'any norm'} eps "
                                     f"{eps:g} (threat models: {grid})")


_STREAM_KEYS = ("skip_bad", "num_workers", "input_size", "crop_pct", "interpolation")


def config_dict(cfg: EvalConfig) -> dict[str, Any]:
    """JSON-safe view of the config for the report (gate keys back to ``norm@eps`` strings)."""
    d = dataclasses.asdict(cfg)
    # after __post_init__ the accuracy gates are keyed (attack, norm, eps) whatever their declared type says
    d["gates"]["min_robust_acc"] = accuracy_gate_keys(cast(Any, cfg.gates.min_robust_acc))
    d["gates"]["max_robust_acc"] = accuracy_gate_keys(cast(Any, cfg.gates.max_robust_acc))
    d["gates"]["min_robust_auc"] = {f"{e:g}": v for e, v in cfg.gates.min_robust_auc.items()}
    for k in _STREAM_KEYS:  # the streaming keys at their defaults: reports of in-memory data stay as they were
        if k in d["data"] and d["data"][k] == getattr(DataSpec, k):
            del d["data"][k]

    def conv(v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            return [conv(i) for i in v]
        if isinstance(v, dict):
            return {str(k): conv(i) for k, i in v.items()}
        return v
    return conv(d)

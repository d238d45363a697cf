"""The configs of detectors: ``advkit train detector`` (real/fake data, augmentation, the classifier trainer's
config, the evaluation, the gates) and ``advkit eval`` of detectors (the harness's config with a
``detection`` section). Frozen dataclasses; YAML files are short diffs."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field

from advkit.data.transforms import Augment
from advkit.detect.data import RealFakeConfig
from advkit.errors import AdvkitError
from advkit.eval.config import EvalConfig, GatesConfig
from advkit.train.config import DataConfig, TrainConfig

# Augmentation is opt-in: a detector config turns on what it wants (Wang et al. 2020: blur_prob and jpeg_prob 0.5).
NO_AUGMENT = Augment(blur_prob=0.0, jpeg_prob=0.0, crop_prob=0.0, flip_prob=0.0)


@dataclass(frozen=True)
class DetectEvalConfig:
    """What :func:`advkit.detect.evaluate.evaluate_detector` measures on the test split."""

    eps: tuple[float, ...] = (4 / 255, 8 / 255, 16 / 255)  # L-inf radii of the evasion attack, pixel units
    pgd_steps: int = 20             # targeted PGD steps (step 2.5 * eps / steps, random start)
    attack_reals: bool = True       # also push reals towards "fake" (the false-alarm attack), a second AUC
    n: int | None = None            # test samples (the first n) attacked and laundered; None: all
    laundering: bool = True         # JPEG q95/75/50/30, blur sigma 1/2, rescale 0.75/0.5, each alone
    threshold: float = 0.5          # P(fake) at which a sample is called fake

    def __post_init__(self) -> None:
        object.__setattr__(self, "eps", tuple(self.eps))
        for e in self.eps:
            if isinstance(e, bool) or not isinstance(e, numbers.Real) or not (math.isfinite(e) and 0 < e <= 1):
                raise AdvkitError(f"evaluation.eps values must be in (0, 1] (pixel units, e.g. 8/255), got {e!r}")
        if len(set(self.eps)) != len(self.eps):
            raise AdvkitError(f"evaluation.eps lists a radius twice: {list(self.eps)}")
        if self.pgd_steps < 1:
            raise AdvkitError(f"evaluation.pgd_steps must be >= 1, got {self.pgd_steps}")
        if self.n is not None and self.n < 2:
            raise AdvkitError(f"evaluation.n must be >= 2 (both classes are needed), got {self.n}")
        if not 0 <= self.threshold <= 1:
            raise AdvkitError(f"evaluation.threshold must be a probability in [0, 1], got {self.threshold}")


@dataclass(frozen=True)
class DetectionSpec:
    """``advkit eval`` of fake-image detectors: the models are 2-class detectors (0 real, 1 fake) scored on
    the test split of ``data`` (threshold calibrated on its val split) as :func:`evaluate_detector` does.
    Off unless ``data`` names real images (``real`` or ``labelled``); then ``threat_models`` are not run."""
    data: RealFakeConfig = field(default_factory=RealFakeConfig)
    evaluation: DetectEvalConfig = field(default_factory=DetectEvalConfig)

    @property
    def enabled(self) -> bool:
        return bool(self.data.real or self.data.labelled)


@dataclass(frozen=True)
class EvalDetectionConfig(EvalConfig):
    """The config ``advkit eval`` reads: :class:`advkit.eval.config.EvalConfig` and a ``detection`` section.
    With ``detection.data`` set the models are fake-image detectors, evaluated by
    :func:`advkit.detect.report.run_detection_eval`; otherwise :func:`advkit.eval.harness.run_eval` runs
    (the section is then only recorded in the report's config)."""
    detection: DetectionSpec = DetectionSpec()  # set detection.data to evaluate fake-image detectors


@dataclass(frozen=True)
class DetectorConfig:
    """``advkit train detector``: :func:`advkit.detect.data.build_realfake` makes the train/val/test sets,
    the classifier trainer trains a 2-class model on train (per-epoch accuracy on val) with ``augment`` on
    each batch, then the test split is evaluated. ``train.data`` is not used (the data come from ``data``).
    With ``ensemble`` > 1 the trainer runs once per member (seeds ``train.seed`` + 0, 1, ...) and the
    detector is the members' logit average."""

    data: RealFakeConfig = field(default_factory=RealFakeConfig)
    augment: Augment = NO_AUGMENT
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluation: DetectEvalConfig = field(default_factory=DetectEvalConfig)
    gates: GatesConfig = field(default_factory=GatesConfig)  # checked on the test split; a failing one: exit 1
    data_root: str | None = None    # where named datasets (e.g. mnist) are; else $ADVKIT_DATA, else ./datasets
    # > 1: train this many members with seeds train.seed, train.seed + 1, ... (each in OUT/memberK) and
    # make the detector the mean of their logits (advkit.models.ensemble); evaluated and attacked as one model
    ensemble: int = 1

    def __post_init__(self) -> None:
        if self.train.data != DataConfig():
            raise AdvkitError("train.data is not used by a detector: set the images under data (real, fakes, "
                              "labelled), the data root as data_root and augmentation under augment")
        if isinstance(self.ensemble, bool) or not isinstance(self.ensemble, int) or self.ensemble < 1:
            raise AdvkitError(f"ensemble must be a whole number of members >= 1, got {self.ensemble!r}")

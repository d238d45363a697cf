"""The detector-training config: real/fake data, augmentation, the classifier trainer's config, the
evaluation (clean, targeted PGD evasion, laundering; its config lives with the harness's, in
:mod:`advkit.eval.config`) and the gates. Frozen dataclasses; YAML files are short diffs."""

from __future__ import annotations

from dataclasses import dataclass, field

from advkit.detect.data import RealFakeConfig
from advkit.data.transforms import Augment
from advkit.errors import AdvkitError
from advkit.eval.config import DetectEvalConfig, GatesConfig
from advkit.train.config import DataConfig, TrainConfig

# Augmentation is opt-in: a detector config turns on what it wants (Wang et al. 2020: blur_prob and jpeg_prob 0.5).
NO_AUGMENT = Augment(blur_prob=0.0, jpeg_prob=0.0, crop_prob=0.0, flip_prob=0.0)


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

"""The training config: frozen dataclasses; YAML files are short diffs over these defaults."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from advkit.data.stream import check_stream_keys


@dataclass(frozen=True)
class DataConfig:
    """The training data: a dataset spec and where it is; the test split is evaluated."""

    dataset: str = "mnist"          # a registered name, npz:PATH, folder:PATH; imagefolder:PATH or csv:FILE stream
    root: str | None = None         # --data-root; else ADVKIT_DATA; else ./datasets
    download: bool = False          # let torchvision download a named dataset
    train_limit: int | None = None  # use only the first N training images (smoke runs)
    test_limit: int | None = None
    augment: bool = False           # random crop (pad 4) + horizontal flip, on the batch (CIFAR recipes)
    # streamed sets (imagefolder:PATH, csv:FILE) only, as advkit eval's data section
    skip_bad: bool = False          # leave unreadable image files out (a warning per epoch) instead of failing
    num_workers: int = 2            # DataLoader processes decoding the next batches while a step runs (0: none)
    input_size: int | None = None   # crop side the model is built for; null: 224 (timm's default)
    crop_pct: float | None = None   # resize the shorter side to input_size / crop_pct; null: 0.875
    interpolation: str | None = None  # bilinear or bicubic; null: bilinear

    def __post_init__(self) -> None:
        check_stream_keys(self.num_workers, self.input_size, self.crop_pct, self.interpolation, null_size="224")


@dataclass(frozen=True)
class ModelConfig:
    """The classifier: an architecture name and its builder's arguments."""

    name: str = "lenet"             # registered name, timm:NAME or torchvision:NAME
    normalize: bool = True          # wrap with the dataset's mean/std (or with mean/std below)
    kwargs: dict[str, Any] = field(default_factory=dict)
    mean: tuple[float, ...] | None = None  # the normalization the weights in train.init expect (e.g. ImageNet's)
    std: tuple[float, ...] | None = None   # instead of the data's; [0,1] pixel units
    num_classes: int | None = None  # must be the data's: says a train.init head of another size starts fresh

    def __post_init__(self) -> None:
        if (self.mean is None) != (self.std is None):
            raise ValueError("model.mean and model.std go together")
        if self.std is not None and not all(math.isfinite(v) and v > 0 for v in self.std):
            raise ValueError(f"model.std must be > 0, got {list(self.std)}")
        if self.mean is not None and not all(math.isfinite(v) for v in self.mean):
            raise ValueError(f"model.mean must be finite, got {list(self.mean)}")
        if self.num_classes is not None and self.num_classes < 1:
            raise ValueError(f"model.num_classes must be >= 1, got {self.num_classes}")


@dataclass(frozen=True)
class OptimConfig:
    """The optimizer and its hyperparameters."""

    name: str = "adam"              # sgd, adam, adamw
    lr: float = 1e-3                # peak learning rate for cyclic/cosine schedules
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    grad_clip: float | None = None  # max global grad norm

    def __post_init__(self) -> None:
        if self.name not in ("sgd", "adam", "adamw"):
            raise ValueError(f"unknown optimizer {self.name!r}; valid: sgd, adam, adamw")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"optim.lr must be > 0, got {self.lr}")
        if not 0 <= self.momentum < 1:  # NaN fails too: it would train every weight to NaN
            raise ValueError(f"optim.momentum must be in [0, 1), got {self.momentum}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"optim.weight_decay must be >= 0, got {self.weight_decay}")
        if self.grad_clip is not None and not (math.isfinite(self.grad_clip) and self.grad_clip > 0):
            raise ValueError(f"optim.grad_clip must be > 0 (or null for none), got {self.grad_clip}")


@dataclass(frozen=True)
class ScheduleConfig:
    """The learning-rate schedule over all training steps."""

    name: str = "constant"          # constant, cosine, cyclic (0 -> lr -> 0, the fast-AT one-cycle), step
    warmup_epochs: float = 0.0      # linear warm-up, in (fractional) epochs
    peak: float = 0.4               # cyclic: where the peak sits, as a fraction of training (fast-AT: 2/5)
    milestones: tuple[float, ...] = (0.5, 0.75)  # step: fractions of training where lr *= gamma
    gamma: float = 0.1

    def __post_init__(self) -> None:
        if self.name not in ("constant", "cosine", "cyclic", "step"):
            raise ValueError(f"unknown schedule {self.name!r}; valid: constant, cosine, cyclic, step")
        if not 0 < self.peak < 1:
            raise ValueError(f"schedule.peak must be in (0, 1), got {self.peak}")


@dataclass(frozen=True)
class ObjectiveConfig:
    """The training objective (:func:`advkit.train.get_objective`); eps in [0,1] pixel units."""

    name: str = "clean"             # clean, fgsm, fgsm_rs, pgd, trades (advkit.train.list_objectives())
    eps: float = 0.0                # pixel units of norm (0.3 on MNIST, 8/255 on CIFAR)
    alpha: float | None = None      # attack step; default per objective (fgsm_rs 1.25*eps, pgd 2.5*eps/steps)
    steps: int = 10                 # pgd / trades attack steps
    norm: str = "linf"
    mix: float = 0.5                # fgsm: weight of the clean term
    beta: float = 6.0               # trades: weight of the KL term
    eps_ramp: int = 0               # epochs over which eps (and alpha) grow linearly to their values; 0 = off
    classes: tuple[int, ...] | None = None  # harden only these labels (detectors: [1], the fakes); default all

    def __post_init__(self) -> None:
        if self.eps_ramp < 0:
            raise ValueError(f"objective.eps_ramp must be >= 0 epochs, got {self.eps_ramp}")
        if not (math.isfinite(self.eps) and 0 <= self.eps):
            raise ValueError(f"objective.eps must be finite and >= 0 (pixel units), got {self.eps}")
        if self.alpha is not None and not (math.isfinite(self.alpha) and self.alpha > 0):
            raise ValueError(f"objective.alpha must be > 0 (or null for the default), got {self.alpha}")
        if self.steps < 1:
            raise ValueError(f"objective.steps must be >= 1, got {self.steps}")


@dataclass(frozen=True)
class EvalConfig:
    """The per-epoch evaluation: clean and PGD accuracy on a fixed held-out test subset."""

    n: int = 1000                   # fixed held-out subset (the first n test images) evaluated every epoch
    eps: float | None = None        # PGD eps for the robust accuracy; default the objective's eps
    steps: int = 10
    restarts: int = 1

    def __post_init__(self) -> None:
        if self.n < 1:  # n = 0 would report "clean 0.00%" of nothing
            raise ValueError(f"eval.n must be >= 1, got {self.n}")
        if self.steps < 1 or self.restarts < 1:
            raise ValueError(f"eval.steps and eval.restarts must be >= 1, got {self.steps}, {self.restarts}")
        if self.eps is not None and not (math.isfinite(self.eps) and self.eps >= 0):
            raise ValueError(f"eval.eps must be >= 0 (or null for the objective's), got {self.eps}")


@dataclass(frozen=True)
class GuardConfig:
    """Catastrophic-overfitting guard for one-step objectives (Wong et al. 2020): every epoch, PGD on a
    held-out slice of the training set; when its robust accuracy collapses, roll back to the best epoch."""

    enabled: bool = True            # applies to fgsm and fgsm_rs
    n: int = 512                    # training images held out (the last n), never trained on
    steps: int = 10
    drop: float = 0.2               # collapse = guard robust accuracy below best - drop
    action: str = "rollback"        # rollback (restore the best epoch's weights and stop) or stop
    keep: str = "last"              # the final model: the last epoch, or the best by held-out PGD accuracy

    def __post_init__(self) -> None:
        if self.n < 1 or self.steps < 1:
            raise ValueError(f"guard.n and guard.steps must be >= 1, got {self.n}, {self.steps}")
        if self.action not in ("rollback", "stop"):
            raise ValueError(f"guard.action must be rollback or stop, got {self.action!r}")
        if self.keep not in ("last", "best"):
            raise ValueError(f"guard.keep must be last or best, got {self.keep!r}")


@dataclass(frozen=True)
class TrainConfig:
    """A whole training run: ``advkit train classifier -c FILE`` overlays FILE on these defaults."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    guard: GuardConfig = field(default_factory=GuardConfig)
    epochs: int = 2
    batch_size: int = 128           # global: split across processes under torchrun
    eval_batch_size: int = 1000
    label_smoothing: float = 0.0
    ema: float | None = None        # decay of an exponential moving average of the weights (e.g. 0.999)
    seed: int = 0
    device: str = "auto"            # auto, cpu, cuda, cuda:N
    amp: str = "none"               # none, bf16, fp16 (fp16 needs CUDA; uses a grad scaler)
    channels_last: bool = False
    compile: bool = False           # torch.compile the training forward
    deterministic: bool = False     # torch.use_deterministic_algorithms
    tensorboard: bool = True        # when the tensorboard package is installed
    init: str | None = None         # start from this classifier checkpoint's weights (a .safetensors, or a run
                                    # folder with model.safetensors), e.g. to harden a clean detector; the
                                    # names and shapes must fit model; a fresh run only (resume wins). Also
                                    # plain weights (safetensors, a torch state dict) for model's network,
                                    # e.g. timm:NAME's (docs/models.md)

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.eval_batch_size < 1:
            raise ValueError("epochs, batch_size and eval_batch_size must be >= 1")
        if self.amp not in ("none", "bf16", "fp16"):
            raise ValueError(f"amp must be none, bf16 or fp16, got {self.amp!r}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.ema is not None and not 0 < self.ema < 1:
            raise ValueError(f"ema must be in (0, 1), got {self.ema}")
        if self.init is not None and (not isinstance(self.init, str) or not self.init):
            raise ValueError(f"init must be a checkpoint path, got {self.init!r}")

"""The training config: frozen dataclasses; YAML files are short diffs over these defaults."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "mnist"          # a registered name, npz:PATH or folder:PATH
    root: str | None = None         # --data-root; else ADVKIT_DATA; else ./datasets
    download: bool = False          # let torchvision download a named dataset
    train_limit: int | None = None  # use only the first N training images (smoke runs)
    test_limit: int | None = None


@dataclass(frozen=True)
class ModelConfig:
    name: str = "lenet"             # registered name or timm:NAME
    normalize: bool = True          # wrap with the dataset's mean/std
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OptimConfig:
    name: str = "adam"              # sgd, adam, adamw
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        if self.name not in ("sgd", "adam", "adamw"):
            raise ValueError(f"unknown optimizer {self.name!r}; valid: sgd, adam, adamw")
        if not self.lr > 0:
            raise ValueError(f"optim.lr must be > 0, got {self.lr}")


@dataclass(frozen=True)
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    objective: str = "clean"        # see advkit.train.list_objectives()
    epochs: int = 2
    batch_size: int = 128
    eval_batch_size: int = 1000
    seed: int = 0
    device: str = "auto"            # auto, cpu, cuda, cuda:N
    deterministic: bool = False     # torch.use_deterministic_algorithms

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.eval_batch_size < 1:
            raise ValueError("epochs, batch_size and eval_batch_size must be >= 1")

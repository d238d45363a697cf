"""Training: configs, objectives (pluggable; ``clean`` for now) and the one training loop."""

from advkit.train.config import DataConfig, ModelConfig, OptimConfig, TrainConfig
from advkit.train.objectives import get_objective, list_objectives, register_objective
from advkit.train.trainer import evaluate_accuracy, train_classifier

__all__ = ["DataConfig", "ModelConfig", "OptimConfig", "TrainConfig", "get_objective", "list_objectives",
           "register_objective", "train_classifier", "evaluate_accuracy"]

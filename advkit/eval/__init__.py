"""Evaluation: running attacks over data and eps grids (the full suite/report harness builds on this)."""

from advkit.eval.sweep import EpsResult, SweepResult, attack_sweep

__all__ = ["EpsResult", "SweepResult", "attack_sweep"]

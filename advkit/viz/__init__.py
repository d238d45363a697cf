"""Pictures for people: image grids of clean / adversarial / perturbation."""

from advkit.viz.grid import adversarial_grid_png

__all__ = ["adversarial_grid_png"]

"""Pictures for people, drawn with OpenCV: image grids (GAN samples; clean / adversarial / perturbation) and
line plots of training curves."""

from advkit.viz.curves import loss_curves_png
from advkit.viz.grid import adversarial_grid_png, encode_png, image_grid, sample_grid_png

__all__ = ["adversarial_grid_png", "sample_grid_png", "image_grid", "loss_curves_png", "encode_png"]

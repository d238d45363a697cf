"""Models: a registry of small nets, any timm classifier as ``timm:NAME``, the [0,1]->logits wrapper,
safetensors checkpoints (classifiers, detectors, GAN nets) that rebuild the network from their metadata alone,
and one resolver from a model spec (a checkpoint, a name, timm/torchvision with a weights file, a factory,
TorchScript) to a model.

>>> from advkit.models import create_model, save, load
>>> m = create_model("lenet", num_classes=10, in_chans=1, input_size=28, mean=[0.1307], std=[0.3081])
"""

from advkit.models import discriminator as _discriminator  # noqa: F401  registers "gan_discriminator"
from advkit.models import spectral as _spectral  # noqa: F401  registers the "spectral" detector
from advkit.models.checkpoint import (
    RUN_CHECKPOINT,
    checkpoint_file,
    load,
    load_discriminator,
    load_generator,
    read_gan_metadata,
    read_metadata,
    save,
    save_gan_net,
)
from advkit.models.ensemble import ensemble  # registers "ensemble"
from advkit.models.factory import create_model, list_models, register_model
from advkit.models.resolve import ModelOptions, check_model_fits, resolve_model
from advkit.models.wrappers import Normalized

__all__ = ["create_model", "list_models", "register_model", "save", "load", "read_metadata", "checkpoint_file",
           "RUN_CHECKPOINT", "Normalized", "ensemble", "save_gan_net", "load_generator", "load_discriminator",
           "read_gan_metadata", "resolve_model", "check_model_fits", "ModelOptions"]

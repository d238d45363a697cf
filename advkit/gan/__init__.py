"""GANs on advkit's contract: the generator outputs images in [0,1], the discriminator takes images in
[0,1] and returns one raw logit per image (positive = real); :class:`TwoLogit` makes it a two-class advkit
model (index 0 = real, index 1 = fake).

>>> from advkit.gan import DCGANGenerator, DCGANDiscriminator, d_loss, g_loss
>>> g, d = DCGANGenerator(img_size=28, channels=1), DCGANDiscriminator(img_size=28, channels=1)
>>> fake = g.sample(16)
>>> loss_g = g_loss("nonsaturating", d(fake))
"""

from advkit.gan.config import GanConfig
from advkit.gan.duality_gap import duality_gap
from advkit.gan.losses import LOSSES, d_loss, g_loss, gradient_penalty, value
from advkit.gan.metrics import (
    class_coverage,
    extract,
    feature_stats,
    frechet_distance,
    inception_model,
    inception_score,
    kid,
)
from advkit.gan.trainer import train_gan
from advkit.models.checkpoint import load_discriminator, load_generator, save_gan_net
from advkit.models.dcgan import (
    FAKE,
    REAL,
    SUPPORTED_SIZES,
    DCGANDiscriminator,
    DCGANGenerator,
    TwoLogit,
    build_gan_net,
    dcgan_init_,
)

__all__ = ["DCGANGenerator", "DCGANDiscriminator", "TwoLogit", "build_gan_net", "dcgan_init_", "REAL", "FAKE",
           "SUPPORTED_SIZES", "LOSSES", "d_loss", "g_loss", "gradient_penalty", "value", "frechet_distance",
           "feature_stats", "kid", "inception_score", "inception_model", "class_coverage", "extract", "GanConfig",
           "train_gan", "duality_gap", "save_gan_net", "load_generator", "load_discriminator"]

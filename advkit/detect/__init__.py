"""Fake-image detectors: 2-class models ``f(x in [0,1]) -> logits (real, fake)`` and their inference on
images, folders and video frames. Class index 0 is real, 1 is fake, as in :class:`advkit.gan.TwoLogit`."""

"""advkit: adversarial robustness and fake-image detection on PyTorch.

Every model is ``f(x in [0,1]) -> logits``; attacks, objectives and reports build on that one contract.
"""

__version__ = "0.1.0"

from advkit.errors import AdvkitError

__all__ = ["AdvkitError", "__version__"]

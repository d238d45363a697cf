"""advkit: adversarial robustness and fake-image detection on PyTorch.

Every model is ``f(x in [0,1]) -> logits``; attacks, objectives and reports build on that one contract.
``advkit.evaluate`` (the eval harness on an in-memory model and data) and ``advkit.testing`` are imported on
first use, so ``import advkit`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

from advkit.errors import AdvkitError

if TYPE_CHECKING:
    from advkit import testing
    from advkit.api import evaluate

__all__ = ["AdvkitError", "__version__", "evaluate", "testing"]


def __getattr__(name: str) -> Any:
    # lazy: the harness pulls in torch and every attack; `import advkit` (e.g. for __version__) should not
    if name == "evaluate":
        from advkit.api import evaluate
        return evaluate
    if name == "testing":
        import importlib
        return importlib.import_module("advkit.testing")
    raise AttributeError(f"module 'advkit' has no attribute {name!r}")

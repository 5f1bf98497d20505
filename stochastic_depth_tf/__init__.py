"""Stochastic depth for Keras 3 / TensorFlow residual networks."""

import importlib
import sys
from typing import Any, List

from stochastic_depth_tf.version import __version__

__all__ = [
    "ShakeDrop",
    "StochasticDepth",
    "StochasticDepthBlock",
    "apply_stochastic_depth",
    "prune_blocks",
    "strip_stochastic_depth",
    "callbacks",
    "datasets",
    "hub",
    "layers",
    "models",
    "ops",
    "pruning",
    "recipes",
    "saving",
    "schedules",
    "__version__",
]


def _running_the_demo(argv: List[str], original_argv: List[str]) -> bool:
    """Whether Python is importing this package to run it, `python -m stochastic_depth_tf ...`.

    While `python -m` imports the package, before it runs `__main__`,
    `sys.argv[0]` is "-m"; `sys.orig_argv` (Python 3.10+) names the module.
    """
    return argv[:1] == ["-m"] and any(
        flag == "-m" and module == __name__ for flag, module in zip(original_argv, original_argv[1:])
    )


if _running_the_demo(sys.argv, getattr(sys, "orig_argv", [])):
    # The demo parses its arguments before it imports Keras, and with it
    # TensorFlow (seconds, and log lines): `--help` answers at once. Until
    # then the names load on first use.
    _HOMES = {
        **{name: f"{__name__}.layers" for name in ("ShakeDrop", "StochasticDepth", "StochasticDepthBlock")},
        "prune_blocks": f"{__name__}.pruning",
        **{name: f"{__name__}.surgery" for name in ("apply_stochastic_depth", "strip_stochastic_depth")},
    }

    def __getattr__(name: str) -> Any:
        if name in _HOMES:
            return getattr(importlib.import_module(_HOMES[name]), name)
        if name in __all__:
            return importlib.import_module(f"{__name__}.{name}")
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

else:
    # Eager: importing the package registers every layer with Keras, so that
    # `.keras` files load without custom_objects.
    from stochastic_depth_tf import callbacks, datasets, hub, layers, models, ops, pruning, recipes, saving, schedules
    from stochastic_depth_tf.layers import ShakeDrop, StochasticDepth, StochasticDepthBlock
    from stochastic_depth_tf.pruning import prune_blocks
    from stochastic_depth_tf.surgery import apply_stochastic_depth, strip_stochastic_depth

"""The argument types of the backend interface (`stochastic_depth_tf.backend`), named once for every backend."""

from __future__ import annotations

from typing import Any, Callable, ContextManager, Dict, Optional, Sequence

import keras

# A branch of `conditional`, called with no argument.
Thunk = Callable[[], Any]
# A skipped branch as a function of its input rows (`branch_gradient_scope`).
Branch = Callable[[Any], Any]
# The layers a branch calls, whose state (moving statistics) a conditional carries.
Layers = Sequence[keras.layers.Layer]
# What `branch_gradient_scope` caches per input shape and dtype for its caller.
Cache = Dict[str, bool]
# How a skipped branch is differentiated, or None to compute and multiply it instead.
GradientScope = Optional[ContextManager[None]]

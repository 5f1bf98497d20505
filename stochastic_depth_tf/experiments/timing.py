"""`Timer`: the wall-clock seconds of each epoch or step of `fit`, for the trainer and the benchmarks."""

from __future__ import annotations

import time
from typing import Any, Dict, List, Optional

import keras

from stochastic_depth_tf._validation import validate_choice


class Timer(keras.callbacks.Callback):
    """Wall-clock seconds of each training epoch, or of each training step, of `fit`.

    The one timer of the experiments and the benchmarks: `Trainer` times
    epochs with it, `benchmarks/` times steps.

    Args:
        per: `"epoch"` (default) or `"step"`.

    Example:

    ```python
    from stochastic_depth_tf.experiments.timing import Timer

    timer = Timer(per="step")
    # model.fit(x, y, callbacks=[timer]); timer.seconds holds one entry per step
    ```
    """

    def __init__(self, per: str = "epoch") -> None:
        validate_choice(per, ("epoch", "step"), name="per", expected="'epoch' or 'step'")
        super().__init__()
        self.per = per
        self.seconds: List[float] = []

    def _begin(self, unit: str) -> None:
        if unit == self.per:
            self._started = time.perf_counter()

    def _end(self, unit: str) -> None:
        if unit == self.per:
            self.seconds.append(time.perf_counter() - self._started)

    def on_epoch_begin(self, epoch: int, logs: Optional[Dict[str, Any]] = None) -> None:
        self._begin("epoch")

    def on_epoch_end(self, epoch: int, logs: Optional[Dict[str, Any]] = None) -> None:
        self._end("epoch")

    def on_train_batch_begin(self, batch: int, logs: Optional[Dict[str, Any]] = None) -> None:
        self._begin("step")

    def on_train_batch_end(self, batch: int, logs: Optional[Dict[str, Any]] = None) -> None:
        self._end("step")

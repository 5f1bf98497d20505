"""`ZeroPadShortcut`: the parameter-free shortcut of He et al.'s option A."""

from __future__ import annotations

from typing import Any, Dict

import keras

from stochastic_depth_tf._validation import Shape, validate_positive_int


@keras.saving.register_keras_serializable(package="stochastic_depth_tf")
class ZeroPadShortcut(keras.layers.Layer):
    """Subsamples spatially and zero-pads channels: a shortcut with no weights.

    For residual blocks that halve the resolution and widen the channels,
    `x[:, ::strides, ::strides, :]` padded with zero channels up to
    `filters` ("option A" of He et al., 2016, used by the stochastic depth
    paper's CIFAR ResNets). Channels-last inputs with any number of spatial
    axes, each subsampled: rank 4 for images, rank 3 (`x[:, ::strides, :]`)
    for sequences such as MNIST-1D.

    Args:
        filters: the number of output channels, at least the input's.
        strides: the spatial subsampling factor, a positive int.
        **kwargs: base layer keyword arguments.

    Example:

    ```python
    import keras
    import stochastic_depth_tf as sdt

    outputs = sdt.layers.ZeroPadShortcut(32)(keras.Input((32, 32, 16)))  # (None, 16, 16, 32)
    ```
    """

    def __init__(self, filters: int, strides: int = 2, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.filters = validate_positive_int(filters, name="filters")
        self.strides = validate_positive_int(strides, name="strides")

    def build(self, input_shape: Any) -> None:
        if len(input_shape) < 3 or input_shape[-1] is None or input_shape[-1] > self.filters:
            raise ValueError(
                "Invalid input shape received by ZeroPadShortcut. Expected a "
                "channels-last shape of rank 3 or more (batch, spatial axes, "
                f"channels) with at most filters={self.filters} "
                f"channels. Received: input_shape={tuple(input_shape)}"
            )

    def call(self, inputs: Any) -> Any:
        spatial_axes = len(inputs.shape) - 2
        subsampled = inputs[(slice(None),) + (slice(None, None, self.strides),) * spatial_axes + (slice(None),)]
        extra = self.filters - inputs.shape[-1]
        return keras.ops.pad(subsampled, [[0, 0]] * (spatial_axes + 1) + [[0, extra]])

    def compute_output_shape(self, input_shape: Any) -> Shape:
        def subsample(size: Any) -> Any:
            return None if size is None else -(-size // self.strides)

        spatial = tuple(subsample(size) for size in input_shape[1:-1])
        return (input_shape[0],) + spatial + (self.filters,)

    def get_config(self) -> Dict[str, Any]:
        base_config = super().get_config()
        config = {"filters": self.filters, "strides": self.strides}
        return {**base_config, **config}

"""Making a conditional residual branch fast under XLA on CPU.

Why this exists (measured, see benchmarks/README.md): XLA's CPU backend runs
a convolution on its fast Eigen kernel only when the convolution is in
canonical NHWC / HWIO order. TensorFlow lowers the two gradients of a
`Conv2D` (`Conv2DBackpropInput`, `Conv2DBackpropFilter`) to convolutions in
other orders, and the XLA pass that canonicalizes them (transposes around
the convolution) only visits the entry computation, not the branches of a
conditional. Inside `tf.cond` the backprop convolutions therefore compile to
naive loops: about 150x slower (2.6 s against 17 ms for one filter gradient).

The fix: inside the conditional, give `Conv2D` a gradient written with
canonical *forward* convolutions only, which XLA handles well anywhere:

- input gradient: `conv2d(dy, reverse(w) with in/out channels swapped)`,
  padded by `kernel - 1 - padding`;
- filter gradient: a convolution of `x` with channels and batch swapped
  (channels act as the batch) by `dy` used as the kernel.

Only stride 1, dilation 1, NHWC convolutions are rewritten; a branch with any
other convolution is not put in a conditional under XLA at all (the block
falls back to the multiply gate). Graph mode keeps TensorFlow's own gradient,
which is faster there. And only on the CPU, where it was measured
(`rewrite_applies`): under XLA on a GPU or TPU the block keeps TensorFlow's
own gradients.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterable, Iterator, Optional, Tuple

import tensorflow as tf

CANONICAL_CONV2D_GRADIENT = "StochasticDepthTFCanonicalConv2D"
CANONICAL_DEPTHWISE_CONV2D_GRADIENT = "StochasticDepthTFCanonicalDepthwiseConv2D"
# The convolutions rewritten inside the conditional, and the gradient each gets there.
_REWRITTEN = {"Conv2D": CANONICAL_CONV2D_GRADIENT, "DepthwiseConv2dNative": CANONICAL_DEPTHWISE_CONV2D_GRADIENT}

# Convolution ops whose gradient (or which themselves) XLA on CPU runs slowly
# inside a conditional. Conv2D and DepthwiseConv2dNative are rewritten when
# they can be (`_REWRITTEN`); these cannot.
_UNSUPPORTED_IN_CONDITIONAL = frozenset(
    {
        "Conv",
        "Conv2DBackpropFilter",
        "Conv2DBackpropFilterV2",
        "Conv2DBackpropInput",
        "Conv2DBackpropInputV2",
        "Conv3D",
        "Conv3DBackpropFilterV2",
        "Conv3DBackpropInputV2",
        "DepthwiseConv2dNativeBackpropFilter",
        "DepthwiseConv2dNativeBackpropInput",
        "PartitionedCall",
        "StatefulPartitionedCall",
    }
)


# Ops whose integer input 1 holds indices (data), not a shape; see `_computed_integer_argument`.
_GATHERS = frozenset({"GatherV2", "ResourceGather", "GatherNd", "ResourceGatherNd"})


def under_xla() -> bool:
    """Whether the function being traced is compiled by XLA.

    True inside `tf.function(jit_compile=True)`, hence inside `fit` after
    `compile(jit_compile=True)` (and Keras' default `"auto"` on a GPU).
    XLA auto-clustering (`tf.config.optimizer.set_jit`) is not detected.
    """
    return not tf.executing_eagerly() and tf.__internal__.get_enclosing_xla_context() is not None


def device_type(requested_device: str, visible_device_types: Optional[Iterable[str]] = None) -> str:
    """The type of device a traced op will run on: `"CPU"`, `"GPU"`, `"TPU"`, ...

    `requested_device` is the device of a tensor or op in the graph being
    traced (a strategy's replica device, or a `tf.device` scope). An empty
    one is left to TensorFlow's placer, which prefers an accelerator: a TPU
    or GPU among `visible_device_types` (default: the logical devices).
    """
    if requested_device:
        requested = tf.DeviceSpec.from_string(requested_device).device_type
        if requested:
            return str(requested).upper()
    if visible_device_types is None:
        visible_device_types = {device.device_type for device in tf.config.list_logical_devices()}
    for accelerator in ("TPU", "GPU"):
        if accelerator in visible_device_types:
            return accelerator
    return "CPU"


def rewrite_applies(device_type_name: str) -> bool:
    """Whether the forward-only Conv2D gradients are used on this device under XLA.

    Only on the CPU, where they were measured (2457 ms -> 17 ms for one
    filter gradient inside a conditional). GPUs and TPUs keep TensorFlow's
    own gradients: nothing was measured there, and XLA runs convolutions on
    them through other passes.
    """
    return device_type_name == "CPU"


def _same_padding(kernel: int) -> Tuple[int, int]:
    before = (kernel - 1) // 2
    return before, kernel - 1 - before


def _paddings(op: Any, kernel_height: int, kernel_width: int) -> Tuple[Tuple[int, int], Tuple[int, int]]:
    padding = op.get_attr("padding")
    if padding == b"SAME":
        return _same_padding(kernel_height), _same_padding(kernel_width)
    if padding == b"VALID":
        return (0, 0), (0, 0)
    explicit = list(op.get_attr("explicit_paddings"))
    return (explicit[2], explicit[3]), (explicit[4], explicit[5])


def is_rewritable_conv2d(op: Any) -> bool:
    """Whether the forward-only gradients apply to this `Conv2D` or `DepthwiseConv2dNative` op."""
    kernel_shape = op.inputs[1].shape
    if (
        op.get_attr("data_format") != b"NHWC"
        or list(op.get_attr("strides")) != [1, 1, 1, 1]
        or list(op.get_attr("dilations")) != [1, 1, 1, 1]
        or not kernel_shape.is_fully_defined()
    ):
        return False
    (top, bottom), (left, right) = _paddings(op, kernel_shape[0], kernel_shape[1])
    # The input gradient pads by kernel - 1 - padding, which must not be negative.
    return bool(max(top, bottom) < kernel_shape[0] and max(left, right) < kernel_shape[1])


def _input_gradient(upstream: Any, flipped: Any, padding: Tuple[Tuple[int, int], Tuple[int, int]]) -> Any:
    """The input gradient of a stride-1 convolution: `upstream` by the flipped, channel-swapped kernel."""
    (top, bottom), (left, right) = padding
    kernel_height, kernel_width = int(flipped.shape[0]), int(flipped.shape[1])
    return tf.nn.conv2d(
        upstream,
        flipped,
        strides=1,
        padding=[
            [0, 0],
            [kernel_height - 1 - top, kernel_height - 1 - bottom],
            [kernel_width - 1 - left, kernel_width - 1 - right],
            [0, 0],
        ],
    )


def canonical_conv2d_gradients(
    x: Any, kernel: Any, upstream: Any, padding: Tuple[Tuple[int, int], Tuple[int, int]]
) -> Tuple[Any, Any]:
    """Gradients of a stride-1 NHWC `conv2d(x, kernel)` from forward convolutions only.

    Args:
        x: the convolution's input, `[batch, height, width, in_channels]`.
        kernel: its filter, `[kernel_height, kernel_width, in_channels, out_channels]`.
        upstream: the gradient of the output, `[batch, out_height, out_width, out_channels]`.
        padding: `((top, bottom), (left, right))` zero padding of the forward pass.

    Returns:
        `(gradient of x, gradient of kernel)`.
    """
    (top, bottom), (left, right) = padding
    flipped = tf.transpose(tf.reverse(kernel, axis=[0, 1]), [0, 1, 3, 2])
    x_gradient = _input_gradient(upstream, flipped, padding)
    # dw[i, j, c, o] = sum over n, h, w of x_padded[n, h + i, w + j, c] * dy[n, h, w, o]:
    # a convolution of x with channels as the batch and dy as an HWIO kernel.
    channels_as_batch = tf.transpose(x, [3, 1, 2, 0])
    upstream_as_kernel = tf.transpose(upstream, [1, 2, 0, 3])
    kernel_gradient = tf.nn.conv2d(
        channels_as_batch,
        upstream_as_kernel,
        strides=1,
        padding=[[0, 0], [top, bottom], [left, right], [0, 0]],
    )
    return x_gradient, tf.transpose(kernel_gradient, [1, 2, 0, 3])


@tf.RegisterGradient(CANONICAL_CONV2D_GRADIENT)
def _canonical_conv2d_gradient(op: Any, upstream: Any) -> Tuple[Any, Any]:
    kernel = op.inputs[1]
    padding = _paddings(op, int(kernel.shape[0]), int(kernel.shape[1]))
    return canonical_conv2d_gradients(op.inputs[0], kernel, upstream, padding)


def canonical_depthwise_conv2d_gradients(
    x: Any, kernel: Any, upstream: Any, padding: Tuple[Tuple[int, int], Tuple[int, int]]
) -> Tuple[Any, Any]:
    """Gradients of a stride-1 NHWC `depthwise_conv2d(x, kernel)` from forward (grouped) convolutions only.

    With `C` channels and multiplier `M`, output channel `c M + m` is input
    channel `c` convolved with `kernel[:, :, c, m]`:

    - input gradient: a convolution of `dy` in `C` groups of `M` channels
      with the spatially flipped kernel, padded by `kernel - 1 - padding`;
    - kernel gradient: `dw[i, j, c, m] = sum over n, h, w of x_padded[n, h + i, w + j, c] dy[n, h, w, c M + m]`,
      a convolution of a batch of one whose features are (channel, example)
      pairs, in `C` groups, by `dy` used as the kernel.

    Grouped convolutions have no CPU kernel outside XLA; this runs under XLA only.

    Args:
        x: the convolution's input, `[batch, height, width, channels]`.
        kernel: its filter, `[kernel_height, kernel_width, channels, multiplier]`.
        upstream: the gradient of the output, `[batch, out_height, out_width, channels * multiplier]`.
        padding: `((top, bottom), (left, right))` zero padding of the forward pass.

    Returns:
        `(gradient of x, gradient of kernel)`.
    """
    (top, bottom), (left, right) = padding
    kernel_height, kernel_width, channels, multiplier = (int(size) for size in kernel.shape)
    flipped = tf.transpose(tf.reverse(kernel, axis=[0, 1]), [0, 1, 3, 2])  # [kh, kw, M, C]: C groups of M
    x_gradient = _input_gradient(upstream, flipped, padding)
    shape = tf.shape(x)
    channels_by_examples = tf.reshape(tf.transpose(x, [1, 2, 3, 0]), [1, shape[1], shape[2], channels * shape[0]])
    channels_by_examples.set_shape([1, x.shape[1], x.shape[2], None if x.shape[0] is None else channels * x.shape[0]])
    upstream_as_kernel = tf.transpose(upstream, [1, 2, 0, 3])  # [out_h, out_w, N, C M]: C groups of N
    kernel_gradient = tf.nn.conv2d(
        channels_by_examples,
        upstream_as_kernel,
        strides=1,
        padding=[[0, 0], [top, bottom], [left, right], [0, 0]],
    )
    return x_gradient, tf.reshape(kernel_gradient, [kernel_height, kernel_width, channels, multiplier])


@tf.RegisterGradient(CANONICAL_DEPTHWISE_CONV2D_GRADIENT)
def _canonical_depthwise_conv2d_gradient(op: Any, upstream: Any) -> Tuple[Any, Any]:
    kernel = op.inputs[1]
    padding = _paddings(op, int(kernel.shape[0]), int(kernel.shape[1]))
    return canonical_depthwise_conv2d_gradients(op.inputs[0], kernel, upstream, padding)


@contextlib.contextmanager
def canonical_conv2d_gradient_scope() -> Iterator[None]:
    """`Conv2D` and `DepthwiseConv2dNative` ops created inside get forward-only gradients (graph tracing only)."""
    with tf.compat.v1.get_default_graph().gradient_override_map(_REWRITTEN):
        yield


def conditional_is_fast_under_xla(function: Callable[[Any], Any], spec: tf.TensorSpec) -> bool:
    """Whether `function(x)` can run inside an XLA conditional, gradient included, without slow convolutions.

    Traces `function` once in a scratch graph and checks every op: `Conv2D`
    and `DepthwiseConv2dNative` must be rewritable (stride 1, dilation 1,
    NHWC), and no other convolution or nested function call may appear.

    Nor may an op of the branch take an integer argument that the branch
    computes (`_computed_integer_argument`): the gradient of an op such as
    `Tile`, `Transpose` or `Pad` uses that argument as a shape, and in the
    gradient of a conditional it arrives as a tensor captured from the
    forward branch, which XLA refuses as not a compile-time constant.
    Constants are fine. Llama's grouped-query attention repeats its key and
    value heads by computed multiples, and a `Dense` on a sequence traced
    with an unknown batch (as `fit` traces it) transposes by a permutation
    computed from its input's shape: such a branch is computed and gated.
    """
    graph = tf.function(function, autograph=False).get_concrete_function(spec).graph
    for op in graph.get_operations():
        if op.type in _UNSUPPORTED_IN_CONDITIONAL or _computed_integer_argument(op):
            return False
        if op.type in _REWRITTEN and not is_rewritable_conv2d(op):
            return False
    return True


def _computed_integer_argument(op: Any) -> bool:
    """Whether differentiable `op` takes an integer argument that is not a constant (nor an input of the branch).

    An op with no floating-point input has no gradient to build; the indices
    of a gather are data, not a shape (its gradient scatters by them).
    """
    if not any(tensor.dtype.is_floating for tensor in op.inputs):
        return False
    for index, tensor in enumerate(op.inputs):
        if not tensor.dtype.is_integer or (op.type in _GATHERS and index == 1):
            continue
        producer = tensor.op
        while producer.type == "Identity":
            producer = producer.inputs[0].op
        if producer.type not in ("Const", "Placeholder"):
            return True
    return False

"""JAX: a skipped branch inside `lax.cond`, with its state updates carried out as values.

Keras trains JAX models statelessly: inside the jitted step every variable
read and every assignment goes through a `keras.StatelessScope`, and the new
values of the non-trainable variables (BatchNormalization's moving
statistics, seed generator states) are returned by the step. An assignment
made inside one arm of `lax.cond` would leave a tracer of that arm in the
scope, which JAX refuses ("leaked tracer"). So `conditional` runs the kept
arm in a scope of its own, returns the branch's new non-trainable values
from the arm beside its output (the skipped arm returns the current ones),
and assigns them after the conditional: a dropped branch leaves its moving
statistics untouched, as on TensorFlow.

JAX traces every step, jitted or not, so shapes are always static: a
per-example kept count must be known when tracing (`mode="subset"`), and a
Bernoulli count (`mode="sample"`) is computed and multiplied.

On the CPU XLA compiles the gradient convolutions JAX derives inside a
conditional to slow loops, as under TensorFlow's XLA
(`backend/tensorflow_xla.py`): XLA's pass that puts a convolution in the
layout of its fast kernel (channels last, kernel `HWIO`) only visits the
entry computation, and JAX's transpose rules give the gradients other
dimension orders (one 3x3 convolution's gradient on 64x32x32x32 took
17 s inside `lax.cond` against 0.18 s outside, on a loaded machine). So on
the CPU `conditional` re-evaluates the kept arm's jaxpr with each
channels-last convolution replaced by `convolution_with_forward_gradients`,
whose gradients are forward convolutions in that layout only (0.20 s in the
same measurement; strides, kernel dilation and feature groups, depthwise
included, are covered). A branch with a convolution the rewrite does not
cover (a transposed convolution, `channels_first`) is not put in
`lax.cond` on the CPU (`branch_gradient_scope` returns None, and the block
multiplies). GPUs and TPUs keep JAX's own gradients (not measured there).
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any, Callable, Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple

import jax
import jax.extend.core
import keras

from stochastic_depth_tf.backend._interface import Branch, Cache, GradientScope, Layers, Thunk


def static_shapes() -> bool:
    """True: JAX traces the step, and a traced array has a fixed shape."""
    return True


def _variables(layers: Sequence[keras.layers.Layer]) -> List[keras.Variable]:
    seen, variables = set(), []
    for layer in layers:
        for variable in layer.variables:
            if id(variable) not in seen:
                seen.add(id(variable))
                variables.append(variable)
    return variables


def conditional(predicate: Any, kept: Thunk, skipped: Thunk, layers: Layers, owner: str) -> Any:
    """`lax.cond` on the gate; the state `kept()` assigns in `layers` comes out as values.

    `kept()` may call `layers` (the branch and what it holds) with
    `training=True`: their non-trainable variables are read and assigned in
    a scope local to the arm. Gradients reach the trainable variables
    through the values the arm closes over.
    """
    variables = _variables(layers)
    state = [variable for variable in variables if not variable.trainable]
    current = [variable.value for variable in variables]

    def kept_arm() -> Any:
        with keras.StatelessScope(state_mapping=list(zip(variables, current))) as scope:
            output = kept()
        return output, [scope.get_current_value(variable) for variable in state]

    def skipped_arm() -> Any:
        return skipped(), [value for variable, value in zip(variables, current) if not variable.trainable]

    if rewrite_applies(jax.default_backend()):
        kept_arm = with_forward_convolution_gradients(kept_arm)
    output, new_state = jax.lax.cond(jax.numpy.reshape(predicate, ()), kept_arm, skipped_arm)
    for variable, value in zip(state, new_state):
        variable.assign(value)
    return output


_CONVOLUTIONS = frozenset({"conv_general_dilated"})
# Calls whose jaxpr `_evaluate` inlines (`jax.jit` inside the branch; named "pjit" before JAX 0.7).
_INLINED_CALLS = frozenset({"pjit", "jit"})


def rewrite_applies(platform: str) -> bool:
    """Whether a skipped branch's convolutions get forward-only gradients on this JAX platform.

    Only on the CPU, where XLA runs the gradient convolutions of a
    conditional's branch as slow loops; GPUs and TPUs keep JAX's own
    gradients (nothing was measured there).
    """
    return platform == "cpu"


def _canonical_dimension_numbers(spatial: int) -> jax.lax.ConvDimensionNumbers:
    """Channels-last input and output, spatial-first kernel (`NHWC`, `HWIO`): XLA's CPU fast path."""
    channels_last = (0, spatial + 1) + tuple(range(1, spatial + 1))
    return jax.lax.ConvDimensionNumbers(
        lhs_spec=channels_last, rhs_spec=(spatial + 1, spatial) + tuple(range(spatial)), out_spec=channels_last
    )


class Convolution(NamedTuple):
    """The static parameters of one channels-last `lax.conv_general_dilated` (explicit padding)."""

    window_strides: Tuple[int, ...]
    padding: Tuple[Tuple[int, int], ...]
    rhs_dilation: Tuple[int, ...]
    feature_group_count: int
    precision: Any = None


def _input_gradient_padding(
    convolution: Convolution, kernel: Sequence[int], input_size: Sequence[int], output_size: Sequence[int]
) -> Tuple[Tuple[int, int], ...]:
    """Padding of the (stride-dilated) output gradient so that a forward convolution gives the input gradient."""
    pads = []
    for (low, _), stride, dilation, k, size, out in zip(
        convolution.padding, convolution.window_strides, convolution.rhs_dilation, kernel, input_size, output_size
    ):
        extent = (k - 1) * dilation + 1
        before = extent - 1 - low
        pads.append((before, size - 1 + extent - ((out - 1) * stride + 1) - before))
    return tuple(pads)


def forward_convolution_gradients(convolution: Convolution, inputs: Any, kernel: Any, upstream: Any) -> Tuple[Any, Any]:
    """Both gradients of a channels-last convolution, from canonical forward convolutions only.

    For `y = conv(x, w)` with strides `s`, kernel dilation `d`, padding
    `(low, high)` and `g` feature groups (`g = channels` is depthwise):

    - input gradient: the convolution of `dy`, dilated by `s` and padded by
      `(k - 1) d - low` before, with the spatially flipped kernel whose
      input and output channels are swapped within each group (dilation `d`);
    - kernel gradient: `dw[i, c, o] = sum over n, h of x_pad[n, s h + d i, c] dy[n, h, o]`,
      a convolution of `x` with its in-group channels as the batch and
      (group, example) as the features, by `dy` used as the kernel (stride
      `d`, kernel dilation `s`, `g` groups).

    Args:
        convolution: the forward convolution's static parameters.
        inputs: `x`, `[batch, *spatial, channels]`.
        kernel: `w`, `[*kernel_spatial, channels // groups, out_channels]`.
        upstream: `dy`, `[batch, *out_spatial, out_channels]`.

    Returns:
        `(gradient of x, gradient of w)`, in the dtypes of `x` and `w`.
    """
    spatial = inputs.ndim - 2
    numbers = _canonical_dimension_numbers(spatial)
    groups = convolution.feature_group_count
    kernel_size = tuple(kernel.shape[:spatial])
    group_channels, out_channels = kernel.shape[spatial], kernel.shape[spatial + 1]
    input_size, output_size = tuple(inputs.shape[1:-1]), tuple(upstream.shape[1:-1])
    upstream = upstream.astype(inputs.dtype)
    axes = tuple(range(spatial))

    per_group = kernel.reshape(kernel_size + (group_channels, groups, out_channels // groups))
    flipped = jax.numpy.flip(per_group, axis=axes).transpose(axes + (spatial + 2, spatial + 1, spatial))
    flipped = flipped.reshape(kernel_size + (out_channels // groups, groups * group_channels))
    input_gradient = jax.lax.conv_general_dilated(
        upstream,
        flipped,
        (1,) * spatial,
        _input_gradient_padding(convolution, kernel_size, input_size, output_size),
        lhs_dilation=convolution.window_strides,
        rhs_dilation=convolution.rhs_dilation,
        dimension_numbers=numbers,
        feature_group_count=groups,
        precision=convolution.precision,
    )

    # Crop what the forward windows never reached, so the result has exactly the kernel's size.
    crops, pads = [], []
    for (low, _), stride, dilation, k, size, out in zip(
        convolution.padding, convolution.window_strides, convolution.rhs_dilation, kernel_size, input_size, output_size
    ):
        high = (out - 1) * stride + (k - 1) * dilation + 1 - size - low
        crops.append(size + min(high, 0))
        pads.append((low, max(high, 0)))
    cropped = inputs[(slice(None),) + tuple(slice(0, crop) for crop in crops)]
    channels_as_batch = cropped.reshape(cropped.shape[:-1] + (groups, group_channels))
    channels_as_batch = channels_as_batch.transpose((spatial + 2,) + tuple(range(1, spatial + 1)) + (spatial + 1, 0))
    channels_as_batch = channels_as_batch.reshape((group_channels,) + tuple(crops) + (groups * inputs.shape[0],))
    upstream_as_kernel = upstream.transpose(tuple(range(1, spatial + 1)) + (0, spatial + 1))
    kernel_gradient = jax.lax.conv_general_dilated(
        channels_as_batch,
        upstream_as_kernel,
        convolution.rhs_dilation,
        tuple(pads),
        rhs_dilation=convolution.window_strides,
        dimension_numbers=numbers,
        feature_group_count=groups,
        precision=convolution.precision,
    )
    kernel_gradient = kernel_gradient.transpose(tuple(range(1, spatial + 1)) + (0, spatial + 1))
    return input_gradient, kernel_gradient.astype(kernel.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def convolution_with_forward_gradients(convolution: Convolution, inputs: Any, kernel: Any) -> Any:
    """A channels-last `lax.conv_general_dilated` whose gradients are `forward_convolution_gradients`."""
    return jax.lax.conv_general_dilated(
        inputs,
        kernel,
        convolution.window_strides,
        convolution.padding,
        rhs_dilation=convolution.rhs_dilation,
        dimension_numbers=_canonical_dimension_numbers(inputs.ndim - 2),
        feature_group_count=convolution.feature_group_count,
        precision=convolution.precision,
    )


def _forward(convolution: Convolution, inputs: Any, kernel: Any) -> Tuple[Any, Tuple[Any, Any]]:
    return convolution_with_forward_gradients(convolution, inputs, kernel), (inputs, kernel)


def _backward(convolution: Convolution, residuals: Tuple[Any, Any], upstream: Any) -> Tuple[Any, Any]:
    return forward_convolution_gradients(convolution, *residuals, upstream)


convolution_with_forward_gradients.defvjp(_forward, _backward)


def rewritable_convolution(equation: Any) -> Optional[Convolution]:
    """The `Convolution` of a `conv_general_dilated` equation that the rewrite covers, else None.

    Covered: channels-last input, output and kernel (Keras' default
    `data_format`), no input dilation (a strided transposed convolution
    has one), feature groups (depthwise included) but no batch groups, no
    preferred output type, and a padding no larger than the dilated kernel.
    """
    params = equation.params
    inputs, kernel = (variable.aval for variable in equation.invars)
    output = equation.outvars[0].aval
    spatial = len(params["window_strides"])
    if (
        params["dimension_numbers"] != _canonical_dimension_numbers(spatial)
        or any(dilation != 1 for dilation in params["lhs_dilation"])
        or params["batch_group_count"] != 1
        or params["preferred_element_type"] is not None
    ):
        return None
    convolution = Convolution(
        window_strides=tuple(params["window_strides"]),
        padding=tuple(tuple(pad) for pad in params["padding"]),
        rhs_dilation=tuple(params["rhs_dilation"]),
        feature_group_count=params["feature_group_count"],
        precision=params["precision"],
    )
    pads = _input_gradient_padding(convolution, kernel.shape[:spatial], inputs.shape[1:-1], output.shape[1:-1])
    if min(min(pad) for pad in pads) < 0:
        return None
    return convolution


def _inner_jaxprs(equation: Any) -> Iterator[Any]:
    for parameter in equation.params.values():
        for value in parameter if isinstance(parameter, (list, tuple)) else (parameter,):
            inner = getattr(value, "jaxpr", value)  # a ClosedJaxpr holds its Jaxpr
            if hasattr(inner, "eqns"):
                yield inner


def _convolutions(jaxpr: Any, reached: bool = True) -> Iterator[Tuple[Any, bool]]:
    """Every convolution equation of a jaxpr, and whether `_evaluate` reaches it to rewrite it.

    Calls (`jit`) are inlined by `_evaluate`; a convolution nested in any
    other primitive (`cond`, `scan`, `custom_vjp_call`, ...) is not reached.
    """
    for equation in jaxpr.eqns:
        if equation.primitive.name in _CONVOLUTIONS:
            yield equation, reached
        inlined = reached and equation.primitive.name in _INLINED_CALLS
        for inner in _inner_jaxprs(equation):
            yield from _convolutions(inner, inlined)


def _evaluate(jaxpr: Any, consts: Sequence[Any], *args: Any) -> List[Any]:
    """Evaluates `jaxpr` as `jax.core.eval_jaxpr` does, with rewritable convolutions given forward gradients."""
    env: Dict[Any, Any] = {}

    def read(variable: Any) -> Any:
        return variable.val if isinstance(variable, jax.extend.core.Literal) else env[variable]

    env.update(zip(jaxpr.constvars, consts))
    env.update(zip(jaxpr.invars, args))
    for equation in jaxpr.eqns:
        values = [read(variable) for variable in equation.invars]
        convolution = rewritable_convolution(equation) if equation.primitive.name in _CONVOLUTIONS else None
        if convolution is not None:
            outputs = [convolution_with_forward_gradients(convolution, *values)]
        elif equation.primitive.name in _INLINED_CALLS:
            inner = equation.params["jaxpr"]
            outputs = _evaluate(inner.jaxpr, inner.consts, *values)
        else:
            parameters = equation.primitive.get_bind_params(equation.params)
            # Before JAX 0.9 `get_bind_params` returned (subfunctions, parameters).
            subfunctions, parameters = parameters if isinstance(parameters, tuple) else ((), parameters)
            with equation.ctx.manager:
                result = equation.primitive.bind(*subfunctions, *values, **parameters)
            outputs = result if equation.primitive.multiple_results else [result]
        env.update(zip(equation.outvars, outputs))
    return [read(variable) for variable in jaxpr.outvars]


def with_forward_convolution_gradients(function: Callable[[], Any]) -> Callable[[], Any]:
    """`function` (no arguments), with the rewritable convolutions it computes differentiated by forward ones.

    Traces `function` to a jaxpr (the values it closes over, tracers of the
    enclosing step included, become the jaxpr's constants) and evaluates it
    with `convolution_with_forward_gradients` in place of each
    `rewritable_convolution`. Values are unchanged; inside `lax.cond` the
    gradients then hold forward convolutions only.
    """

    def rewritten() -> Any:
        closed, shapes = jax.make_jaxpr(function, return_shape=True)()
        flat = _evaluate(closed.jaxpr, closed.consts)
        return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(shapes), flat)

    return rewritten


def _branch_jaxpr(function: Branch, inputs: Any, layers: Layers) -> Any:
    """The jaxpr of `function(inputs)` from an abstract trace that assigns nothing.

    The variables of `layers` enter the trace as abstract values in a
    `StatelessScope` of its own, so neither their values (which Keras' JAX
    `fit` may have moved out of the variables) nor the assignments the
    branch makes in training (moving statistics) touch the step being traced.
    """
    variables = _variables(layers)

    def traced(x: Any, values: List[Any]) -> Any:
        with keras.StatelessScope(state_mapping=list(zip(variables, values))):
            return function(x)

    def abstract(value: Any) -> Any:
        return jax.ShapeDtypeStruct(tuple(value.shape), value.dtype)

    return jax.make_jaxpr(traced)(abstract(inputs), [abstract(variable) for variable in variables]).jaxpr


def computes_convolutions(function: Branch, inputs: Any, layers: Layers) -> bool:
    """Whether `function(inputs)` holds a convolution (traced as `_branch_jaxpr` says)."""
    return any(True for _ in _convolutions(_branch_jaxpr(function, inputs, layers)))


def conditional_is_fast(function: Branch, inputs: Any, layers: Layers) -> bool:
    """Whether every convolution of `function(inputs)` gets forward-only gradients in `conditional`.

    True for a branch without convolutions, and for one whose convolutions
    are all `rewritable_convolution`s that `_evaluate` reaches.
    """
    return all(
        reached and rewritable_convolution(equation) is not None
        for equation, reached in _convolutions(_branch_jaxpr(function, inputs, layers))
    )


def branch_gradient_scope(function: Branch, inputs: Any, cache: Cache, layers: Layers) -> GradientScope:
    """JAX's own gradients, or None (compute and multiply) for a branch `conditional` cannot make fast.

    On the CPU `conditional` gives a branch's convolutions forward-only
    gradients (`with_forward_convolution_gradients`); a branch with a
    convolution it does not cover (`conditional_is_fast`) is multiplied.
    `cache` keeps the answer per input shape and dtype for the caller.
    """
    if not rewrite_applies(jax.default_backend()):
        return contextlib.nullcontext()
    key = f"{tuple(inputs.shape)} {inputs.dtype}"
    if key not in cache:
        cache[key] = conditional_is_fast(function, inputs, layers)
    return contextlib.nullcontext() if cache[key] else None

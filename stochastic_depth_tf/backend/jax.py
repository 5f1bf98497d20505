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

On the CPU a branch with convolutions is not put in `lax.cond` at all
(`branch_gradient_scope` returns None, and the block multiplies): XLA
compiles the gradient convolutions inside a conditional to slow loops, as
under TensorFlow's XLA (`stochastic_depth_tf/_xla.py`): a ResNet-20
training step of the skipping block took 16x the plain one in a one-off
`python -m benchmarks.step_time --quick --backend jax` run made before this
fallback, with other jobs on the cores (not committed; the committed
`benchmarks/results/step_time_backends.md` shows the fallback, within noise
of the merge layer). Convolution-free branches
(transformer MLPs and attention) skip on the CPU too, and every branch
skips on GPUs and TPUs, with JAX's own gradients (not measured there).
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, ContextManager, Dict, Iterator, List, Optional, Sequence

import jax
import keras


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


def conditional(
    predicate: Any,
    kept: Callable[[], Any],
    skipped: Callable[[], Any],
    layers: Sequence[keras.layers.Layer],
    owner: str,
) -> Any:
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

    output, new_state = jax.lax.cond(jax.numpy.reshape(predicate, ()), kept_arm, skipped_arm)
    for variable, value in zip(state, new_state):
        variable.assign(value)
    return output


_CONVOLUTIONS = frozenset({"conv_general_dilated"})


def _primitive_names(jaxpr: Any) -> Iterator[str]:
    """Every primitive of a jaxpr, nested ones (`pjit`, `cond`, `custom_vjp_call`, ...) included."""
    for equation in jaxpr.eqns:
        yield equation.primitive.name
        for parameter in equation.params.values():
            for value in parameter if isinstance(parameter, (list, tuple)) else (parameter,):
                inner = getattr(value, "jaxpr", value)  # a ClosedJaxpr holds its Jaxpr
                if hasattr(inner, "eqns"):
                    yield from _primitive_names(inner)


def computes_convolutions(
    function: Callable[[Any], Any], inputs: Any, layers: Sequence[keras.layers.Layer]
) -> bool:
    """Whether `function(inputs)` holds a convolution, from an abstract trace of it that assigns nothing.

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

    closed = jax.make_jaxpr(traced)(abstract(inputs), [abstract(variable) for variable in variables])
    return any(name in _CONVOLUTIONS for name in _primitive_names(closed.jaxpr))


def branch_gradient_scope(
    function: Callable[[Any], Any], inputs: Any, cache: Dict[str, bool], layers: Sequence[keras.layers.Layer]
) -> Optional[ContextManager[None]]:
    """JAX's own gradients, or None (compute and multiply) for a convolution branch on the CPU.

    `cache` keeps the answer per input shape and dtype for the caller.
    """
    if jax.default_backend() != "cpu":
        return contextlib.nullcontext()
    key = f"{tuple(inputs.shape)} {inputs.dtype}"
    if key not in cache:
        cache[key] = not computes_convolutions(function, inputs, layers)
    return contextlib.nullcontext() if cache[key] else None

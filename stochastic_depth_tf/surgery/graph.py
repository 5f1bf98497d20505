"""Reading a functional model's graph: its calls in order, and its residual merges.

Keras 3 has no public API to read the call graph of a functional model node
by node (which tensor came from which call, with which arguments), so this
module reads the attributes Keras itself uses for that
(`KerasTensor._keras_history`, `Operation._inbound_nodes`, `Node.arguments`,
`Functional._nodes_by_depth`, the order `keras.models.clone_model` runs the
graph in); nothing is imported from `keras.src`. Rebuilding is
`stochastic_depth_tf.surgery.rebuild`'s business: this module only reads
(it calls a model's layers on small random arrays to tell what a merge
computes, never changing a weight).
"""

from __future__ import annotations

import collections
import functools
import inspect
import warnings
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Set, Tuple

import keras
import numpy as np

from stochastic_depth_tf._validation import check_pair
from stochastic_depth_tf.layers.shake_drop import ShakeDrop
from stochastic_depth_tf.layers.stochastic_depth import StochasticDepth
from stochastic_depth_tf.layers.stochastic_depth_block import StochasticDepthBlock


def is_functional(model: Any) -> bool:
    """Whether `model` is a functional `keras.Model` (built from inputs and outputs)."""
    # Functional models (and only they, among keras.Model that are not
    # Sequential) carry their graph's endpoints and operations.
    return (
        isinstance(model, keras.Model)
        and not isinstance(model, keras.Sequential)
        and all(hasattr(model, name) for name in ("inputs", "outputs", "operations"))
    )


def check_functional(model: Any) -> None:
    """Refuses anything but a functional model, saying why."""
    if not isinstance(model, keras.Model):
        raise TypeError(
            "Invalid type received for argument `model`. Expected a functional "
            f"keras.Model. Received: model={model!r} of type {type(model).__name__}"
        )
    if isinstance(model, keras.Sequential):
        raise ValueError(
            "Invalid value received for argument `model`. Expected a "
            "functional keras.Model (built with keras.Model(inputs, outputs)); "
            "a Sequential model is a single chain of layers and cannot hold a "
            "residual add (to change a functional model nested in it, such as "
            "a keras.applications base, apply surgery to that model and "
            "rebuild the Sequential). Received: a Sequential model named "
            f"'{model.name}'"
        )
    if not is_functional(model):
        raise ValueError(
            "Invalid value received for argument `model`. Expected a "
            "functional keras.Model (built with keras.Model(inputs, outputs)); "
            "the graph of a subclassed model is Python code that surgery "
            "cannot rewrite (use stochastic_depth_tf.StochasticDepth in its "
            "call() instead). Received: a subclassed model of class "
            f"{type(model).__name__}"
        )


def producer_node(tensor: keras.KerasTensor) -> Any:
    """The node (one call of an operation) that produced `tensor`."""
    operation, node_index, _ = tensor._keras_history
    return operation._inbound_nodes[node_index]


def nodes(model: keras.Model) -> List[Any]:
    """The calls of a functional model's graph, inputs first, in the order Keras runs them.

    The order `keras.models.clone_model` calls them in (deepest first, as
    `Functional._run_through_graph` does), so in a residual network the blocks
    come in the order they are applied.
    """
    by_depth = model._nodes_by_depth
    return [node for depth in sorted(by_depth, reverse=True) for node in by_depth[depth] if not node.is_input]


@functools.cache
def _add_op_class() -> type:
    """The class of the op node that `x + y` on symbolic tensors leaves in a graph."""
    probe = keras.ops.add(keras.KerasTensor((1,)), keras.KerasTensor((1,)))
    return type(probe._keras_history[0])


def _merge_inputs(node: Any) -> Optional[Tuple[Tuple[Any, Any], bool]]:
    """The two tensors a call may merge, and whether it is a plain add; None for any other call.

    A plain add is a `keras.layers.Add` or the op node `x + y` leaves. Any
    other layer that holds no variable and is called, as merge layers are, on
    one list of two tensors may be a scaled merge (`_residual_scale` tells).
    """
    operation = node.operation
    args, kwargs = node.arguments.args, node.arguments.kwargs
    if kwargs:
        return None
    if type(operation) is _add_op_class():
        inputs, plain = tuple(args), True
    elif isinstance(operation, keras.layers.Layer):
        if len(args) != 1 or not isinstance(args[0], (list, tuple)):
            return None
        plain = type(operation) is keras.layers.Add
        if not plain and operation.variables:
            return None
        inputs = tuple(args[0])
    else:
        return None
    if len(inputs) != 2 or not all(isinstance(x, keras.KerasTensor) for x in inputs):
        return None
    return (inputs[0], inputs[1]), plain


def _can_gate(shortcut: Any, residual: Any) -> bool:
    """Whether `StochasticDepth` accepts the pair (floating, same shape, no broadcasting)."""
    try:
        check_pair([shortcut, residual])
    except (TypeError, ValueError):
        return False
    return True


class _Ancestry:
    """Shortest paths back through one functional model's graph."""

    def __init__(self, model: keras.Model) -> None:
        self.input_ids = {id(tensor) for tensor in model.inputs}
        self.tensors: Dict[int, keras.KerasTensor] = {}

    def distances(self, tensor: keras.KerasTensor) -> Dict[int, int]:
        """Shortest number of calls from `tensor` back to each of its ancestors (by id)."""
        distances = {id(tensor): 0}
        self.tensors[id(tensor)] = tensor
        queue = collections.deque([tensor])
        while queue:
            current = queue.popleft()
            if id(current) in self.input_ids:
                continue
            for parent in producer_node(current).input_tensors:
                if id(parent) not in distances:
                    distances[id(parent)] = distances[id(current)] + 1
                    self.tensors[id(parent)] = parent
                    queue.append(parent)
        return distances

    def residual_relation(self, first: Any, second: Any) -> Optional[Tuple[int, keras.KerasTensor]]:
        """Which input of a two-input merge is the shortcut (0 or 1), and the block input; None if not residual."""
        if first is second:
            return None
        first_distances, second_distances = self.distances(first), self.distances(second)
        common = first_distances.keys() & second_distances.keys()
        if not common:
            return None
        # The nearest common ancestor is the block input; the shortcut is the
        # shorter way back to it (zero calls in an identity block).
        block_input = min(
            common,
            key=lambda key: (
                first_distances[key] + second_distances[key],
                max(first_distances[key], second_distances[key]),
            ),
        )
        first_length, second_length = first_distances[block_input], second_distances[block_input]
        if first_length == second_length:
            return None
        return (0 if first_length < second_length else 1), self.tensors[block_input]


# Probing what a merge computes: its layers are called on small random arrays,
# from one fixed seed so that surgery is reproducible. An axis of unknown size
# gets 1 (the batch) or _PROBE_LENGTH (a sequence or image axis).
_PROBE_SEED = 0
_PROBE_LENGTH = 4
# Two outputs differ when they differ by more than this, relative to their
# largest magnitude (one draw against another, not rounding noise).
_PROBE_RTOL = 1e-5


def _probe_shape(tensor: keras.KerasTensor) -> Tuple[int, ...]:
    return tuple(
        (1 if axis == 0 else _PROBE_LENGTH) if size is None else size for axis, size in enumerate(tensor.shape)
    )


def _fixed_array(tensor: keras.KerasTensor, rng: np.random.Generator) -> np.ndarray:
    """An array for a tensor the probe holds fixed: a normal draw for floats, ones otherwise (a mask that masks nothing)."""
    if "float" in keras.backend.standardize_dtype(tensor.dtype):
        return rng.normal(size=_probe_shape(tensor)).astype("float32")
    return np.ones(_probe_shape(tensor), "bool" if tensor.dtype == "bool" else "int32")


def _probe_arrays(tensor: keras.KerasTensor, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """Two different arrays for `tensor`: normal draws for floats; 0/1 and its flip for integers and booleans.

    Floats come as float32 (converted to the tensor's dtype where used).
    """
    shape = _probe_shape(tensor)
    dtype = keras.backend.standardize_dtype(tensor.dtype)
    if "float" in dtype:
        return rng.normal(size=shape).astype("float32"), rng.normal(size=shape).astype("float32")
    bits = rng.integers(0, 2, size=shape)
    kind = "bool" if dtype == "bool" else "int32"
    return bits.astype(kind), (1 - bits).astype(kind)


def _tensor(array: np.ndarray, like: keras.KerasTensor) -> Any:
    return keras.ops.convert_to_tensor(array, like.dtype)


def _numpy(tensor: Any) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(tensor)).astype("float64")


def _residual_scale(operation: Any, inputs: Tuple[Any, Any], shortcut_position: int) -> Optional[float]:
    """`s` if the layer computes `shortcut + s * residual` with `s > 0` (a scaled residual merge), else None.

    Read off the layer's outputs, not its class (keras.applications
    InceptionResNetV2 merges with a private `CustomScaleLayer`): on
    `(shortcut, residual) = (1, 0)` it must return 1, on `(0, 1)` one
    positive number `s` everywhere (exactly what it multiplies by), and on
    random arrays `shortcut + s * residual`.
    """

    like = inputs[0]

    def merge(shortcut: np.ndarray, residual: np.ndarray) -> np.ndarray:
        pair = [shortcut, residual] if shortcut_position == 0 else [residual, shortcut]
        return _numpy(operation([_tensor(x, like) for x in pair]))

    shortcut, residual = _probe_arrays(like, np.random.default_rng(_PROBE_SEED))
    ones, zeros = np.ones_like(shortcut), np.zeros_like(shortcut)
    try:
        if not np.array_equal(merge(ones, zeros), ones):
            return None
        scaled = merge(zeros, ones)
        scale = float(scaled.flat[0])
        if not (np.isfinite(scale) and scale > 0 and np.all(scaled == scale)):
            return None
        # Loose enough for 16-bit rounding, far too tight for a product or maximum.
        expected = _numpy(_tensor(shortcut, like)) + scale * _numpy(_tensor(residual, like))
        if not np.allclose(merge(shortcut, residual), expected, rtol=1e-2, atol=1e-2):
            return None
    except Exception:  # a layer that is not an elementwise merge raises whatever it raises
        return None
    return scale


def _branch_calls(
    graph: Sequence[Any], block_input: keras.KerasTensor, outputs: Sequence[keras.KerasTensor]
) -> Tuple[List[Any], List[keras.KerasTensor]]:
    """The calls computing `outputs` from `block_input`, in run order, and the other tensors they read."""
    downstream, downstream_nodes = {id(block_input)}, set()
    for node in graph:
        if any(id(x) in downstream for x in node.input_tensors):
            downstream_nodes.add(id(node))
            downstream.update(id(x) for x in node.outputs)
    needed: Set[int] = set()
    stack = [x for x in outputs if x is not block_input]
    while stack:
        node = producer_node(stack.pop())
        if id(node) in needed or id(node) not in downstream_nodes:
            continue
        needed.add(id(node))
        stack.extend(x for x in node.input_tensors if id(x) in downstream and x is not block_input)
    calls = [node for node in graph if id(node) in needed]
    computed = {id(block_input)} | {id(x) for node in calls for x in node.outputs}
    others = {id(x): x for node in calls for x in node.input_tensors if id(x) not in computed}
    return calls, list(others.values())


def _perturbed_variables(calls: Sequence[Any], rng: np.random.Generator) -> List[Tuple[Any, np.ndarray]]:
    """Every trainable floating variable of the calls' layers, with a slightly different value.

    Values that make a branch constant (a zero-initialized last
    normalization, as `zero_init_residual` leaves) do not make it any less a
    branch: the probe runs with weights moved by 10% and a little noise,
    magnitudes kept.
    """
    variables = {id(v): v for node in calls for v in getattr(node.operation, "trainable_variables", [])}
    mapping = []
    for variable in variables.values():
        if "float" not in keras.backend.standardize_dtype(variable.dtype):
            continue
        value = np.asarray(keras.ops.convert_to_numpy(variable.value))
        noise = rng.normal(size=value.shape)
        mapping.append((variable, (value * (1.0 + 0.1 * noise) + 0.01 * noise).astype(value.dtype)))
    return mapping


def _run_in_inference(calls: Sequence[Any], values: Dict[int, Any]) -> None:
    """Runs the calls in order on `values` (tensor by id of the graph's tensor), adding their outputs.

    A layer taking a `training` argument not given in the graph gets
    `training=False`, as `predict` would give it.
    """

    def value(x: Any) -> Any:
        return values[id(x)] if isinstance(x, keras.KerasTensor) else x

    for node in calls:
        operation = node.operation
        args, kwargs = keras.tree.map_structure(value, (node.arguments.args, node.arguments.kwargs))
        if "training" not in kwargs and "training" in inspect.signature(operation.call).parameters:
            kwargs = {**kwargs, "training": False}
        for tensor, output in zip(node.outputs, keras.tree.flatten(operation(*args, **kwargs))):
            values[id(tensor)] = output


def _reads_values(graph: Sequence[Any], block_input: keras.KerasTensor, outputs: Sequence[keras.KerasTensor]) -> bool:
    """Whether each of `outputs` changes with the values of `block_input`, from which the graph computes it.

    A branch that reads only its input's shape (a position embedding: its
    rows for the input's sequence length) computes the same output for any
    values: it is not a residual branch. The calls from `block_input` to
    `outputs` run twice, in inference, on two random draws of it (batch 1,
    every other tensor they read held fixed, weights perturbed by
    `_perturbed_variables` in a `keras.StatelessScope`, so nothing in the
    model changes). When the probe cannot run (a layer refuses the arrays) or
    gives non-finite values, the merge is taken as residual, as surgery took
    every add before it probed.
    """
    outputs = [x for x in outputs if x is not block_input]
    if not outputs:
        return True
    calls, others = _branch_calls(graph, block_input, outputs)
    rng = np.random.default_rng(_PROBE_SEED)
    draws = []
    try:
        fixed = {id(x): _tensor(_fixed_array(x, rng), x) for x in others}
        perturbed = _perturbed_variables(calls, rng)
        for array in _probe_arrays(block_input, rng):
            values = dict(fixed)
            values[id(block_input)] = _tensor(array, block_input)
            with keras.StatelessScope(state_mapping=perturbed):
                _run_in_inference(calls, values)
            draws.append([_numpy(values[id(x)]) for x in outputs])
    except Exception:  # whatever a layer raises on the probe's arrays: not a judgement on the branch
        return True
    for first, second in zip(*draws):
        if not (np.all(np.isfinite(first)) and np.all(np.isfinite(second))):
            return True
        largest = max(np.abs(first).max(initial=0.0), np.abs(second).max(initial=0.0))
        if np.abs(first - second).max(initial=0.0) <= _PROBE_RTOL * largest:
            return False
    return True


class ResidualMerge(NamedTuple):
    """One residual merge of a functional graph: where a branch is added to its shortcut.

    Attributes:
        model: the functional model whose graph holds the call (the model
            passed in, or a functional model nested in it).
        node: the call: of a `keras.layers.Add`, of the op `x + y` leaves, of
            a layer computing `shortcut + s * residual` (a scaled merge), of
            a `StochasticDepth` or `ShakeDrop`, or of a `StochasticDepthBlock`.
        shortcut: the tensor carried past the branch (the block input in an
            identity block, its projection in a projection block); None for a
            `StochasticDepthBlock`, whose shortcut layer (None for identity)
            and branch are inside it, applied to `node.input_tensors[0]`.
        residual: the tensor the branch computes; None for a block.
        residual_scale: what the merge multiplies the residual by: `s` for
            a scaled merge (keras.applications InceptionResNetV2 merges
            `x + 0.17 * branch`), 1 for any other.
    """

    model: keras.Model
    node: Any
    shortcut: Optional[keras.KerasTensor]
    residual: Optional[keras.KerasTensor]
    residual_scale: float = 1.0

    @property
    def is_add(self) -> bool:
        """Whether the merge is a plain or scaled add (not yet one of this package's layers)."""
        return not isinstance(self.node.operation, (StochasticDepth, ShakeDrop, StochasticDepthBlock))


def residual_merges(model: keras.Model) -> List[ResidualMerge]:
    """Every residual merge of a functional model, nested functional models included, in block order.

    A merge is a call of one of this package's layers (`StochasticDepth` and
    `ShakeDrop` take `[shortcut, residual]`), or a residual add: a
    `keras.layers.Add` of exactly two inputs, an `x + y` op node, or a
    scaled merge, a layer holding no variable that computes `shortcut + s *
    residual` with `s > 0` (read off its outputs, not its class:
    InceptionResNetV2's `CustomScaleLayer`), whose inputs have the same
    floating shape and a common ancestor, the block input. The shortcut is
    the input with the shorter path back to it, read from the graph, not the
    argument order (ResNet adds `[shortcut, x]`, EfficientNet `[x, inputs]`);
    two paths of equal length are parallel branches, not a residual.

    A residual computes something from the VALUES of the block input. An add
    whose branch (or projected shortcut) does not, such as GPT-2's token
    embedding plus a position embedding (which reads only the token
    embedding's shape), looks like a residual by the graph but is not one:
    each candidate's branch is run twice on small random inputs
    (`_reads_values`), and the adds whose branch gives the same output are
    left out, with a `UserWarning` naming them. Merges come in the order the
    graph runs them; a nested model's where it is first called.

    Args:
        model: a functional `keras.Model`.

    Returns:
        A list of `ResidualMerge`, possibly empty.

    Example:

    ```python
    import keras
    from stochastic_depth_tf.surgery.graph import residual_merges

    inputs = keras.Input((4,))
    outputs = keras.layers.Dense(4)(inputs) + inputs
    (merge,) = residual_merges(keras.Model(inputs, outputs))
    assert merge.shortcut is inputs and merge.is_add
    ```
    """
    found: List[ResidualMerge] = []
    not_residual: List[str] = []
    seen_models: Set[int] = set()

    def visit(current: keras.Model) -> None:
        seen_models.add(id(current))
        ancestry = _Ancestry(current)
        graph = nodes(current)
        for node in graph:
            operation = node.operation
            if is_functional(operation):
                if id(operation) not in seen_models:
                    visit(operation)
            elif isinstance(operation, StochasticDepthBlock):
                found.append(ResidualMerge(current, node, None, None))
            elif isinstance(operation, (StochasticDepth, ShakeDrop)):
                shortcut, residual = node.input_tensors
                found.append(ResidualMerge(current, node, shortcut, residual))
            else:
                candidate = _residual_add(current, ancestry, node)
                if candidate is None:
                    continue
                merge, block_input = candidate
                if _reads_values(graph, block_input, (merge.shortcut, merge.residual)):
                    found.append(merge)
                else:
                    not_residual.append(operation.name)

    visit(model)
    if not_residual:
        warnings.warn(
            f"{len(not_residual)} add(s) of model '{model.name}' left alone as not residual: "
            f"{', '.join(not_residual)}. By the graph each adds a branch to a shortcut, but the branch's "
            "output does not depend on the values of the block input (as a position embedding, which "
            "reads only its input's shape), so it is no residual block to drop.",
            stacklevel=2,
        )
    return found


def _residual_add(
    model: keras.Model, ancestry: _Ancestry, node: Any
) -> Optional[Tuple[ResidualMerge, keras.KerasTensor]]:
    """The call as a residual add (plain or scaled) by the graph, with its block input; None if it is none."""
    candidate = _merge_inputs(node)
    if candidate is None:
        return None
    inputs, plain = candidate
    relation = ancestry.residual_relation(*inputs)
    if relation is None:
        return None
    position, block_input = relation
    shortcut, residual = inputs[position], inputs[1 - position]
    if not _can_gate(shortcut, residual):
        return None
    scale = 1.0 if plain else _residual_scale(node.operation, inputs, position)
    if scale is None:
        return None
    return ResidualMerge(model, node, shortcut, residual, scale), block_input

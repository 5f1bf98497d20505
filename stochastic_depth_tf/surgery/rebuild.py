"""Rebuilding a functional model with chosen calls replaced, through `keras.models.clone_model`.

`keras.models.clone_model` runs the graph in order, fills in each call's
arguments, builds the new model (of the original's class when that class is
built as `cls(inputs, outputs)`) and carries the compile config over; its
`call_function` hook may call something else in a layer's place. What it
does not do, and this module adds:

- tell which call of a layer the hook is at (`call_function` gets the layer
  and the new arguments, not the node), which a replacement needs: a residual
  add's shortcut is a property of the call, and an `Add` called twice is two
  blocks. The hook maps the new arguments back to the original tensors;
- rebuild nested functional models with the same replacements (with
  `recursive=True` Keras makes their inputs itself, out of the hook's sight);
- copy every variable (clone_model makes freshly initialized layers):
  weights, our layers' current survival probability, seed-generator state,
  and the state assigning leaves behind (a `Normalization` layer's mean and
  variance);
- share, rather than fail on, a stateless layer that cannot be re-created
  from its config (a `Lambda` of a Python lambda).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Mapping, Set, Tuple

import keras
import numpy as np

from stochastic_depth_tf.layers import stochastic_depth_layers
from stochastic_depth_tf.surgery.graph import is_functional, producer_node

# What to call in place of one node: gets the original node and the rebuild
# (for the new tensor of any original tensor, and copies of layers) and
# returns the new outputs.
Replacement = Callable[[Any, "Rebuild"], Any]


def rebuild(model: keras.Model, replacements: Mapping[int, Replacement]) -> keras.Model:
    """A copy of a functional model, with the calls in `replacements` replaced.

    Every other operation is re-created from its config (shared ones once)
    and given a copy of the original's weights; nested functional models are
    rebuilt the same way, replacements included.

    Args:
        model: a functional `keras.Model`.
        replacements: `id(node)` of a call in `model`'s graph (or a nested
            functional model's) to a `Replacement` that builds what stands in
            its place.

    Returns:
        A new functional model, with the name of `model`, compiled like it.

    Raises:
        TypeError: a layer that holds weights cannot be re-created from its
            config.
    """
    state = Rebuild(replacements)
    new_model = state.model(model)
    state.copy_weights()
    # The setter is recursive, and each copied layer already has its own
    # flag from its config: only a frozen model needs it.
    if not model.trainable:
        new_model.trainable = False
    return new_model


class Rebuild:
    """One rebuild in progress: the copies made so far and the new tensor of each original one."""

    def __init__(self, replacements: Mapping[int, Replacement]) -> None:
        self.replacements = replacements
        self.copies: Dict[int, Any] = {}
        self.new_tensors: Dict[int, Any] = {}
        self.nodes_run: Set[int] = set()
        self.weight_pairs: List[Tuple[Any, Any]] = []

    def tensor(self, original: keras.KerasTensor) -> keras.KerasTensor:
        """The new tensor standing for `original` (computed earlier in the graph)."""
        return self.new_tensors[id(original)]

    def copy(self, operation: Any) -> Any:
        """One copy per original operation, so what is shared in the original stays shared."""
        if id(operation) not in self.copies:
            if is_functional(operation):
                copy = self.model(operation)
                if not operation.trainable:
                    copy.trainable = False
            else:
                if isinstance(operation, keras.Sequential):
                    copy = keras.models.clone_model(operation)
                else:
                    copy = _copy_from_config(operation)
                if copy is not operation and isinstance(operation, keras.layers.Layer):
                    self.weight_pairs.append((operation, copy))
            self.copies[id(operation)] = copy
        return self.copies[id(operation)]

    def model(self, model: keras.Model) -> keras.Model:
        """`model` rebuilt by `keras.models.clone_model` on new inputs, calling through `_call`."""
        input_tensors = keras.tree.flatten(model.input)
        new_inputs = [
            keras.Input(
                batch_shape=tensor.shape,
                dtype=tensor.dtype,
                sparse=tensor.sparse,
                ragged=tensor.ragged,
                name=producer_node(tensor).operation.name,
            )
            for tensor in input_tensors
        ]
        for old, new in zip(input_tensors, new_inputs):
            self.new_tensors[id(old)] = new
        # Operations are copied in `_call`, once the node is known: a
        # replaced one is never copied.
        return keras.models.clone_model(
            model,
            input_tensors=keras.tree.pack_sequence_as(model.input, new_inputs),
            clone_function=lambda operation: operation,
            call_function=self._call,
        )

    def _call(self, operation: Any, *args: Any, **kwargs: Any) -> Any:
        node = self._node(operation, args, kwargs)
        replacement = self.replacements.get(id(node))
        if replacement is not None:
            outputs = replacement(node, self)
        else:
            outputs = self.copy(operation)(*args, **kwargs)
        for old, new in zip(node.outputs, keras.tree.flatten(outputs)):
            self.new_tensors[id(old)] = new
        return outputs

    def _node(self, operation: Any, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Any:
        """The original call of `operation` whose inputs the new arguments stand for.

        Keras runs each call once, so of two calls on the same inputs the
        first not yet run is the one.
        """
        arguments = [id(x) for x in keras.tree.flatten((args, kwargs)) if isinstance(x, keras.KerasTensor)]
        node = next(
            node
            for node in operation._inbound_nodes
            if id(node) not in self.nodes_run
            and [id(self.new_tensors.get(id(x))) for x in node.input_tensors] == arguments
        )
        self.nodes_run.add(id(node))
        return node

    def copy_weights(self) -> None:
        """Copies every original's weights into its copy, once all are built.

        A layer's variables exist only after its first call, so this runs
        after the whole graph is rebuilt.
        """
        for original, copy in self.weight_pairs:
            copy_weights(original, copy)


def copy_weights(original: Any, copy: Any) -> None:
    """Copies every variable of `original` into `copy`, then the state that leaves behind.

    Every variable, not only the weights: statistics, our layers' survival
    probability (kept out of the weights, and a schedule may have moved it
    from the configured value) and the state of each seed generator (so the
    copy draws what the original would have drawn next). Each value is
    copied: under JAX, `assign(source.value)` would share the buffer, which
    a compiled step of either model may donate and delete.

    Assigning variables is not all: a `Normalization` layer keeps
    normalizing with the mean and variance it had until `finalize_state()`
    recomputes them from its variables (keras.applications EfficientNet's
    input normalization).

    Raises:
        RuntimeError: the copy has other variables than the original.
    """
    sources, targets = original.variables, copy.variables
    if len(sources) != len(targets) or any(a.shape != b.shape for a, b in zip(sources, targets)):
        raise RuntimeError(
            f"The copy of layer '{original.name}' has other variables than the original "
            f"({len(targets)} against {len(sources)}); its config does not describe it."
        )
    for source, target in zip(sources, targets):
        target.assign(np.array(keras.ops.convert_to_numpy(source.value)))
    # Under PyTorch the survival probability is a buffer of the module, not one of `variables`.
    for source_layer, target_layer in zip(stochastic_depth_layers(original), stochastic_depth_layers(copy)):
        value = keras.ops.convert_to_numpy(source_layer.survival_probability_variable)
        target_layer.survival_probability_variable.assign(np.array(value))
    for layer in copy._flatten_layers(include_self=True, recursive=True):
        if hasattr(layer, "finalize_state"):
            layer.finalize_state()


def _copy_from_config(operation: Any) -> Any:
    """A new instance of the operation's class from its config; stateless ones may be shared."""
    try:
        return type(operation).from_config(operation.get_config())
    except Exception as error:  # from_config raises whatever the class raises
        if getattr(operation, "variables", None):
            raise TypeError(
                "Invalid layer received in argument `model`. Expected layers "
                "that can be re-created with `from_config(get_config())` (the "
                "new model holds copies of the original's weights). Received: "
                f"layer '{operation.name}' of class {type(operation).__name__}, "
                f"which raised {type(error).__name__}: {error}"
            ) from error
        # Nothing to copy: sharing a stateless operation (a Lambda of a Python
        # lambda, which safe mode will not deserialize) changes no weight.
        return operation

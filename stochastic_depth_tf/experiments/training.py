"""Training runs with a recipe: `Trainer` (one compiled step for many runs), `train`, and the BatchNormalization set-up.

The demo, the notebooks and the benchmarks train with these; a recipe's
settings, schedule and optimizer are `sdt.recipes`'.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Sequence, Tuple, Union

import keras
import numpy as np

from stochastic_depth_tf import layers as layers_module
from stochastic_depth_tf import models
from stochastic_depth_tf._validation import validate_positive_int
from stochastic_depth_tf.datasets import Split
from stochastic_depth_tf.experiments.pipeline import training_dataset
from stochastic_depth_tf.experiments.timing import Timer
from stochastic_depth_tf.recipes import DIGITS, Recipe, optimizer, steps_per_epoch
from stochastic_depth_tf.surgery.graph import is_functional, producer_node, residual_merges


def _layers(layer: keras.layers.Layer) -> List[keras.layers.Layer]:
    """`layer` and every layer inside it: nested models, and blocks' `branch` and `shortcut`."""
    found = [layer]
    inner = list(getattr(layer, "layers", [])) if isinstance(layer, keras.Model) else []
    inner += [
        getattr(layer, name)
        for name in ("branch", "shortcut")
        if isinstance(getattr(layer, name, None), keras.layers.Layer)
    ]
    for child in inner:
        found += _layers(child)
    return found


def set_batch_norm_momentum(model: keras.Model, momentum: float) -> int:
    """Sets the momentum of every BatchNormalization in `model`; returns how many.

    Call it before the training step is traced: the momentum is read then.
    """
    norms = [layer for layer in _layers(model) if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in norms:
        layer.momentum = momentum
    return len(norms)


def zero_init_residual_branches(model: keras.Model) -> int:
    """Sets to 0 the gamma of the last BatchNormalization of every residual branch of `model`.

    The builders do this themselves with `zero_init_residual=True` (what
    `Trainer` uses); this is for a model built without it. The branches are
    read from the model's graph, not from layer names, as model surgery reads
    them (`surgery.graph.residual_merges`): the branch of every
    `StochasticDepthBlock`, and the residual input of every `StochasticDepth`,
    `ShakeDrop`, two-input `keras.layers.Add` or `x + y` merge, the input with
    the longer path back to the block input. Functional models nested in the
    model, or in a block's branch, are searched too. A branch that does not
    end in a BatchNormalization is left alone.

    Returns the number of branches changed (`3n` for a `cifar_resnet` of
    depth `6n + 2`).
    """
    norms: Dict[int, keras.layers.BatchNormalization] = {}
    for container in _layers(model):
        if not is_functional(container):
            continue
        for merge in residual_merges(container):
            operation = merge.node.operation
            if isinstance(operation, layers_module.StochasticDepthBlock):
                branch = operation.branch
                end = producer_node(branch.outputs[0]).operation if isinstance(branch, keras.Model) else branch
            else:
                end = producer_node(merge.residual).operation
            if isinstance(end, keras.layers.BatchNormalization):
                norms[id(end)] = end
    for norm in norms.values():
        norm.gamma.assign(keras.ops.zeros(norm.gamma.shape, norm.gamma.dtype))
    return len(norms)


VariableName = Tuple[str, str, int]  # (top-level layer, variable name, which one of that name in the layer)


def _named_variables(model: keras.Model) -> Dict[VariableName, keras.Variable]:
    """Every variable of `model` under its layer's name and its own (not its path: seed generators' paths
    carry a process-wide counter, so two builds of one architecture differ there)."""
    named: Dict[VariableName, keras.Variable] = {}
    seen = set()
    owners = [(layer.name, layer.variables) for layer in model.layers] + [("", model.variables)]
    for owner, variables in owners:
        counts: Dict[str, int] = {}
        for variable in variables:
            if id(variable) in seen:  # shared, or the model's own list of its layers' variables
                continue
            seen.add(id(variable))
            index = counts[variable.name] = counts.get(variable.name, -1) + 1
            named[owner, variable.name, index] = variable
    return named


def _describe(names: Sequence[VariableName]) -> str:
    shown = [f"{layer}/{name}" + (f" #{index + 1}" if index else "") for layer, name, index in sorted(names)[:5]]
    return ", ".join(shown) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


class Trainer:
    """Trains runs of one architecture (by default `sdt.models.cifar_resnet`) with one compiled step.

    Tracing the training step of a ResNet-110 takes one to three minutes on
    2 CPU cores, longer than the training of a short run. A `Trainer` builds
    and compiles one model per architecture (plain with `Add`, or stochastic
    in one mode) and, for every run, copies into it the variables of a fresh
    model built with the run's seed and survival probabilities (weights,
    BatchNormalization statistics, gate seeds, survival probabilities: the
    step reads them as variables, so nothing retraces) and zeroes the
    optimizer's state (its step counter, hence the learning-rate schedule,
    and its momenta). A run is then the run a new model would give.
    Variables are paired by the name of their layer and their own name, and
    a fresh model that does not match (another architecture, another number
    of classes) is refused with the variables that differ.

    Args:
        data: `{"train", "test"}` and, if `validation`, `"validation"`, each
            `(images, labels)`, as `sdt.datasets.load_digits` returns; labels
            are class indices below `num_classes`.
        recipe: a `sdt.recipes.Recipe`.
        depth: `6n + 2` for `cifar_resnet`; passed to `model_builder`.
        plain: True for the plain network (`Add`); False for stochastic
            depth (`StochasticDepthBlock`, which skips the compute of dropped
            blocks in batch mode).
        mode: `"batch"` or `"sample"` gates (stochastic only). In sample
            mode whether dropped examples are skipped is decided when the
            step is traced, from `p_L = 0.5`; runs at other values train
            correctly, at that speed.
        validation: evaluate on `data["validation"]` after every epoch.
        jit_compile: True to compile the training step with XLA, False for
            TensorFlow's graph mode (PyTorch: eager), or `"auto"` (default),
            Keras' choice: graph mode under TensorFlow on a CPU, XLA on a
            GPU, the jitted step under JAX (un-jitted JAX runs op by op, many
            times slower), eager under PyTorch.
        num_classes: the classifier's outputs (10, the digits' and CIFAR-10's).
        model_builder: builds the model of a run; called with the keyword
            arguments of `sdt.models.cifar_resnet` (the default): `depth`,
            `num_classes`, `final_survival_probability`, `mode`,
            `skip_compute=True`, `seed`, `input_shape`, `name` and
            `zero_init_residual`. It must build the same layers for every
            seed and survival probability; `sdt.models.pyramidnet` with its
            `alpha` bound (`functools.partial`) is another.

    Example:

    ```python
    import stochastic_depth_tf as sdt
    from stochastic_depth_tf.experiments.training import Trainer

    data = sdt.datasets.load_digits()
    recipe = sdt.recipes.DIGITS.with_epochs(2)
    trainer = Trainer(data, recipe, depth=8, plain=False)
    runs = [trainer.run(final_survival_probability=0.5, seed=seed) for seed in range(2)]
    ```
    """

    def __init__(
        self,
        data: Dict[str, Split],
        recipe: Recipe = DIGITS,
        depth: int = 32,
        plain: bool = False,
        mode: str = "batch",
        validation: bool = True,
        jit_compile: Union[bool, str] = "auto",
        num_classes: int = 10,
        model_builder: Callable[..., keras.Model] = models.cifar_resnet,
    ) -> None:
        num_classes = validate_positive_int(num_classes, name="num_classes")
        largest = max(int(np.max(labels)) for _, labels in data.values())
        if largest >= num_classes:
            raise ValueError(
                "Invalid value received for argument `num_classes`. Expected more classes than the "
                f"largest label of `data`, {largest}. Received: num_classes={num_classes}"
            )
        self.data = data
        self.recipe = recipe
        self.depth = depth
        self.plain = plain
        self.mode = mode
        self.validation = validation
        self.num_classes = num_classes
        self.model_builder = model_builder
        # Any p_L below 1 gives the stochastic architecture; run() sets the real values.
        self.model = self._build(1.0 if plain else 0.5, seed=0)
        set_batch_norm_momentum(self.model, recipe.batch_norm_momentum)
        self.model.compile(
            optimizer=optimizer(recipe, steps_per_epoch(recipe, len(data["train"][0]))),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
            jit_compile=jit_compile,
        )

    def _build(self, final_survival_probability: float, seed: int) -> keras.Model:
        return self.model_builder(
            depth=self.depth,
            num_classes=self.num_classes,
            final_survival_probability=final_survival_probability,
            mode=self.mode,
            skip_compute=True,
            seed=seed,
            input_shape=self.data["train"][0].shape[1:],
            name="plain" if self.plain else "stochastic_depth",
            zero_init_residual=self.recipe.zero_init_residual,
        )

    def _load(self, fresh: keras.Model, received: str) -> None:
        """Copies every variable of `fresh` into the compiled model, paired by name."""
        targets, sources = _named_variables(self.model), _named_variables(fresh)
        missing, extra = set(targets) - set(sources), set(sources) - set(targets)
        mismatched = [
            name
            for name in set(targets) & set(sources)
            if tuple(targets[name].shape) != tuple(sources[name].shape) or targets[name].dtype != sources[name].dtype
        ]
        if missing or extra or mismatched:
            found = [
                f"{what}: {_describe(names)}"
                for what, names in (
                    ("variables only the trainer's model has", list(missing)),
                    ("variables only this model has", list(extra)),
                    ("variables of another shape or dtype", mismatched),
                )
                if names
            ]
            raise ValueError(
                "Invalid value received for argument `model_builder`. Expected the same layers and "
                "variables for every seed and survival probability, so that a run's variables can be "
                f"copied into the trainer's compiled model. Received: a model for {received} with {'; '.join(found)}"
            )
        for name, target in targets.items():
            target.assign(sources[name].value)
        # The survival probabilities, paired by layer name (under PyTorch each is a
        # buffer of its module, not one of `variables`), through the layers' setter
        # so that their configs agree with their variables.
        fresh_layers = {layer.name: layer for layer in layers_module.stochastic_depth_layers(fresh)}
        for layer in layers_module.stochastic_depth_layers(self.model):
            layer.survival_probability = fresh_layers[layer.name].survival_probability

    def run(
        self,
        final_survival_probability: float = 0.5,
        seed: int = 0,
        verbose: Union[int, str] = 0,
        callbacks: Sequence[keras.callbacks.Callback] = (),
    ) -> Dict[str, Any]:
        """Trains from the seed's initial weights and evaluates on `data["test"]`.

        The seed fixes Keras' global seed (initial weights), the shuffling,
        the augmentation and the gates, so a plain and a stochastic run with
        the same seed start from the same weights and see the same batches.

        Args:
            final_survival_probability: `p_L` of the linear decay; must be
                1.0 for a plain trainer and below 1.0 for a stochastic one.
            seed: the run's seed.
            verbose: Keras' progress output: 0 none, 1 a progress bar
                (for a terminal: it redraws its line), 2 one line per epoch.
            callbacks: more Keras callbacks.

        Returns:
            A dict: `model` (this trainer's, trained), `history` (Keras'
            per-epoch logs), `test_accuracy`, `seconds_per_epoch` (the
            median epoch, the first left out since it traces and compiles;
            the median, because under JAX a model may compile once more in
            its second epoch, and a load spike is one epoch too) and
            `epoch_seconds` (all of them).
        """
        if (final_survival_probability == 1.0) != self.plain:
            raise ValueError(
                "Invalid value received for argument `final_survival_probability`. Expected "
                f"{'1.0 for a plain trainer' if self.plain else 'a value below 1.0 for a stochastic trainer'}. "
                f"Received: final_survival_probability={final_survival_probability!r}"
            )
        keras.utils.set_random_seed(seed)
        fresh = self._build(final_survival_probability, seed)
        self._load(fresh, f"seed={seed}, final_survival_probability={final_survival_probability!r}")
        for variable in self.model.optimizer.variables:
            variable.assign(keras.ops.zeros(variable.shape, variable.dtype))
        x_train, y_train = self.data["train"]
        timer = Timer()
        history = self.model.fit(
            training_dataset(self.recipe, x_train, y_train, seed),
            epochs=self.recipe.epochs,
            validation_data=self.data["validation"] if self.validation else None,
            callbacks=[timer, *callbacks],
            shuffle=False,  # the dataset shuffles itself, every epoch
            verbose=verbose,
        )
        _, test_accuracy = self.model.evaluate(*self.data["test"], batch_size=256, verbose=0)
        steady = timer.seconds[1:] or timer.seconds
        return {
            "model": self.model,
            "history": history.history,
            "test_accuracy": float(test_accuracy),
            "seconds_per_epoch": float(np.median(steady)),
            "epoch_seconds": list(timer.seconds),
        }


def train(
    data: Dict[str, Split],
    recipe: Recipe = DIGITS,
    depth: int = 32,
    final_survival_probability: float = 0.5,
    mode: str = "batch",
    seed: int = 0,
    validation: bool = True,
    jit_compile: Union[bool, str] = "auto",
    verbose: Union[int, str] = 0,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    num_classes: int = 10,
    model_builder: Callable[..., keras.Model] = models.cifar_resnet,
) -> Dict[str, Any]:
    """Trains one model (by default `sdt.models.cifar_resnet`) with the recipe: a `Trainer` used once.

    Arguments and result as `Trainer` and `Trainer.run`; `final_survival_probability=1.0`
    is the plain network. For several runs of one architecture keep a
    `Trainer`: it traces the training step once.
    """
    trainer = Trainer(
        data,
        recipe,
        depth=depth,
        plain=final_survival_probability == 1.0,
        mode=mode,
        validation=validation,
        jit_compile=jit_compile,
        num_classes=num_classes,
        model_builder=model_builder,
    )
    return trainer.run(final_survival_probability, seed, verbose=verbose, callbacks=callbacks)

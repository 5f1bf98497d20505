"""The training recipe of the demo, the notebooks and the digits benchmark, written once.

A regularizer can only lose under a short run at a constant learning rate:
it slows fitting and never gets the long, annealed training it exists for.
So everything here follows the paper's recipe (Huang et al., 2016, section 4,
itself He et al.'s for CIFAR): SGD with Nesterov momentum 0.9, learning rate
0.1 decayed to (almost) zero, weight decay, and random shifts of the images
within their zero padding; plus He et al.'s warm-up for deep networks
(ResNet-110 diverges now and then without it).

Three recipes are defined:

- `DIGITS`: the bundled 12x12 digits, sized for the demo's budget on a CPU
  (15 epochs of batch 64, cosine decay, a 2-epoch warm-up).
- `MNIST1D`: MNIST-1D (`sdt.datasets.load_mnist1d`) with 500 training
  signals seen for 20 epochs of batch 50 (200 steps, what the sweep could
  afford on a shared CPU), the paper's weight decay, no augmentation (the
  generator already shifts, scales and shears every signal).
- `PAPER`: the paper's CIFAR-10 setting (500 epochs of batch 128, learning
  rate divided by 10 at epochs 250 and 375, a 1-epoch warm-up at 0.01).

`Trainer` (and `train`, for one run) builds `sdt.models.cifar_resnet`,
compiles it with the recipe's optimizer, fits it on a `tf.data` pipeline
with the recipe's augmentation and returns test accuracy, the curves and the
time per epoch; one `Trainer` serves many seeds and survival probabilities
with one traced step.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import time
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple, Union

import keras
import numpy as np

if TYPE_CHECKING:  # the pipeline needs TensorFlow; the recipe itself does not
    import tensorflow as tf

from stochastic_depth_tf import layers as layers_module
from stochastic_depth_tf import models
from stochastic_depth_tf._requirements import import_tensorflow
from stochastic_depth_tf._validation import validate_choice, validate_positive_int
from stochastic_depth_tf.datasets import Split
from stochastic_depth_tf.surgery.graph import is_functional, producer_node, residual_merges

DECAYS = ("cosine", "step")


@dataclasses.dataclass(frozen=True)
class Recipe:
    """One training recipe; every default below is the paper's unless it says why not.

    Args:
        name: a label for tables and `--recipe`.
        epochs: passes over the training split.
        batch_size: examples per step. The paper's is 128.
        learning_rate: the peak learning rate after warm-up, 0.1 in the paper.
        momentum: SGD momentum, 0.9 in the paper.
        nesterov: Nesterov momentum, as in the paper (fb.resnet.torch).
        weight_decay: Keras' decoupled weight decay, applied to every
            trainable weight (BatchNormalization included, as in the paper's
            Torch code) as `w <- w - learning_rate * weight_decay * w` each
            step. It is not added to the gradient, so momentum does not
            amplify it: the paper's L2 penalty of 1e-4 with momentum 0.9
            shrinks the weights about as much as `weight_decay=1e-3` here.
        decay: `"cosine"` (to zero at the last step; one smooth schedule that
            needs no milestones tuned to the epoch count) or `"step"` (the
            paper's: divided by 10 at 50% and 75% of training).
        warmup_epochs: He et al. trained ResNet-110 at 0.01 for about 400
            steps before 0.1, because at 0.1 from the start it sometimes
            never starts to converge. For `"cosine"` the rate rises linearly
            from `warmup_learning_rate` to `learning_rate` over these epochs
            (the gradual warm-up of Goyal et al., 2017, a smoother
            equivalent); for `"step"` it is held at `warmup_learning_rate`.
        warmup_learning_rate: the rate at the start of the warm-up, 0.01.
        shift: random translation of up to this many pixels in each
            direction, filled with zeros: the paper pads CIFAR by 4 and
            crops back to 32x32; the digits have 2 pixels of zero padding
            around the 8x8 digit, so shifts of up to 2 never cut the digit.
        horizontal_flip: the paper flips CIFAR images at random; a flipped
            digit is another symbol, so the digits recipe does not.
        zero_init_residual: start the last BatchNormalization scale (gamma)
            of every residual branch at 0, so every block is the identity at
            initialization (Goyal et al., 2017; torchvision's
            `zero_init_residual`). Measured here: without it a ResNet-110 on
            the digits diverged in its first epoch even with the warm-up
            (training loss 6.3, at learning rates 0.1 and 0.05), because the
            54 branches at initialization add up to a residual stream whose
            variance grows with depth. Both arms of a comparison get it.
        batch_norm_momentum: the momentum of every BatchNormalization's
            running statistics. The paper's Torch code keeps them with
            Torch's default (momentum 0.1, which is Keras' 0.9); Keras'
            default 0.99 averages over about 100 steps, and a run of a few
            hundred steps then evaluates with statistics of weights long
            gone (measured: a ResNet-110 at 98.6% training accuracy tested
            at 75%).
    """

    name: str
    epochs: int
    batch_size: int
    learning_rate: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 1e-3
    decay: str = "cosine"
    warmup_epochs: float = 1.0
    warmup_learning_rate: float = 0.01
    shift: int = 4
    horizontal_flip: bool = True
    zero_init_residual: bool = True
    batch_norm_momentum: float = 0.9

    def __post_init__(self) -> None:
        for argument in ("epochs", "batch_size"):
            # A frozen dataclass: the checked Python int is stored past `__setattr__`.
            object.__setattr__(self, argument, validate_positive_int(getattr(self, argument), name=argument))
        validate_choice(self.decay, DECAYS, name="decay")
        if not 0 <= self.warmup_epochs < self.epochs:
            raise ValueError(
                "Invalid value received for argument `warmup_epochs`. Expected a "
                f"number in [0, epochs={self.epochs}). Received: warmup_epochs={self.warmup_epochs!r}"
            )

    def replace(self, **changes: Any) -> Recipe:
        """A copy with some fields changed (validated again), e.g. `DIGITS.replace(epochs=60)`."""
        return dataclasses.replace(self, **changes)

    def with_epochs(self, epochs: int) -> Recipe:
        """A copy trained for `epochs`, its warm-up cut to a quarter of them if it was longer."""
        # `replace` runs `__post_init__`, which checks `epochs` (first); only
        # the warm-up's arithmetic needs a number before that.
        warmup_epochs = min(self.warmup_epochs, epochs / 4) if isinstance(epochs, numbers.Real) else self.warmup_epochs
        return self.replace(epochs=epochs, warmup_epochs=warmup_epochs)

    def with_steps(self, steps: int, num_examples: int) -> Recipe:
        """A copy trained for at least `steps` steps on `num_examples` examples (whole epochs).

        The schedule is stretched with the run: the warm-up keeps its epochs
        (cut as in `with_epochs`) and the decay reaches zero at the last step.
        """
        steps = validate_positive_int(steps, name="steps")
        num_examples = validate_positive_int(num_examples, name="num_examples")
        return self.with_epochs(math.ceil(steps / math.ceil(num_examples / self.batch_size)))


DIGITS = Recipe(
    # 15 epochs of 20 steps: the demo's budget (two models, two seeds, a
    # ResNet-32, under 3 minutes on 2 quiet cores: about 1.6 s per epoch
    # plus about 20 s to trace each model). The warm-up and the cosine decay
    # run their whole course in any epoch count; longer runs
    # (`DIGITS.with_epochs(40)`, the demo's `--epochs`) favour stochastic
    # depth, a regularizer for long trainings.
    name="digits",
    epochs=15,
    # 1,257 training images: batch 64 gives 20 steps per epoch (128 would
    # give 10, too few updates for the warm-up and decay to mean anything).
    batch_size=64,
    # The digits are 1,257 images, far fewer than CIFAR's 50,000: more
    # decay than the paper's (this is 5e-5 as a coupled L2 penalty).
    weight_decay=5e-4,
    # 40 steps: He et al.'s 400 steps are about 1 CIFAR epoch; with the
    # zero-initialized residuals a ResNet-110 on the digits then trains at
    # 0.1 without diverging (measured: 12 epochs, training accuracy 98.6%).
    warmup_epochs=2.0,
    shift=2,
    horizontal_flip=False,
)

MNIST1D = Recipe(
    # The paper's regime scaled down to what 2 shared CPU cores allow: a
    # small training set (`load_mnist1d(train_samples=500)`) seen for many
    # epochs, so that the plain network fits it and overfits, with the
    # schedule stretched to the run (`with_steps` stretches it to any
    # other length). Measured on the shared machine: a ResNet-110-1D step of
    # batch 64 took 1.1 s with one thread at a load average of 13, so the
    # 40 runs of the sweep got 200 steps each (20 epochs of batch 50).
    name="mnist1d",
    epochs=20,
    batch_size=50,
    # The paper's 1e-4 as an L2 penalty (see `weight_decay` above).
    weight_decay=1e-3,
    # 20 steps: with the zero-initialized residuals a ResNet-110 starts at 0.1
    # after a short warm-up (the digits recipe uses 40).
    warmup_epochs=2.0,
    # MNIST-1D's generator already translates, scales, shears and adds
    # noise to every signal; a zero-filled shift of a 40-step signal would
    # cut it (the digits have a zero border, the signals none).
    shift=0,
    horizontal_flip=False,
)

PAPER = Recipe(
    # Huang et al., section 4: 500 epochs, batch 128, 0.1 divided by 10 at
    # epochs 250 and 375, Nesterov momentum 0.9, weight decay 1e-4 (as L2),
    # 4-pixel shifts and horizontal flips.
    name="paper",
    epochs=500,
    batch_size=128,
    weight_decay=1e-3,
    decay="step",
    warmup_epochs=1.0,
    shift=4,
    horizontal_flip=True,
)

RECIPES: Dict[str, Recipe] = {recipe.name: recipe for recipe in (DIGITS, MNIST1D, PAPER)}


def learning_rate_schedule(recipe: Recipe, steps_per_epoch: int) -> keras.optimizers.schedules.LearningRateSchedule:
    """The recipe's learning rate per step: warm-up, then cosine or step decay."""
    total = recipe.epochs * steps_per_epoch
    warmup = int(round(recipe.warmup_epochs * steps_per_epoch))
    if recipe.decay == "cosine":
        return keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=recipe.warmup_learning_rate if warmup else recipe.learning_rate,
            decay_steps=total - warmup,
            warmup_target=recipe.learning_rate if warmup else None,
            warmup_steps=warmup,
        )
    boundaries = [warmup, total // 2, (3 * total) // 4]
    values = [recipe.warmup_learning_rate, recipe.learning_rate, recipe.learning_rate / 10, recipe.learning_rate / 100]
    if not warmup:
        boundaries, values = boundaries[1:], values[1:]
    return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)


def optimizer(recipe: Recipe, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """SGD with the recipe's momentum, Nesterov, weight decay and schedule."""
    return keras.optimizers.SGD(
        learning_rate=learning_rate_schedule(recipe, steps_per_epoch),
        momentum=recipe.momentum,
        nesterov=recipe.nesterov,
        weight_decay=recipe.weight_decay or None,
    )


def augmentation(recipe: Recipe, image_shape: Sequence[int], seed: Optional[int] = None) -> keras.Sequential:
    """Keras preprocessing layers: per-image shifts of up to `recipe.shift` pixels, zero fill, optional flips.

    Nearest-neighbour interpolation keeps the shifts whole pixels, as the
    paper's pad-and-crop does, with the zero fill in place of its padding.
    """
    if len(image_shape) != 3 and (recipe.shift or recipe.horizontal_flip):
        raise ValueError(
            "Invalid value received for argument `image_shape`. Expected an image shape "
            "(height, width, channels) for a recipe that shifts or flips; sequences take "
            f"shift=0 and horizontal_flip=False. Received: image_shape={tuple(image_shape)!r}"
        )
    layers: List[keras.layers.Layer] = []
    if recipe.shift:
        height, width = image_shape[0], image_shape[1]
        layers.append(
            keras.layers.RandomTranslation(
                recipe.shift / height,
                recipe.shift / width,
                fill_mode="constant",
                interpolation="nearest",
                fill_value=0.0,
                seed=seed,
            )
        )
    if recipe.horizontal_flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=None if seed is None else seed + 1))
    return keras.Sequential(layers, name="augmentation")


def training_dataset(
    recipe: Recipe, images: np.ndarray, labels: np.ndarray, seed: Optional[int] = None
) -> tf.data.Dataset:
    """A `tf.data` pipeline: shuffled every epoch, batched, augmented, prefetched.

    Needs TensorFlow on every backend (Keras' JAX and PyTorch trainers read
    `tf.data` too).
    """
    tf = import_tensorflow("`recipes.training_dataset` (a tf.data pipeline)")
    augment = augmentation(recipe, images.shape[1:], seed)
    dataset = tf.data.Dataset.from_tensor_slices((images, labels))
    dataset = dataset.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(recipe.batch_size)
    # Layer by layer: a Keras preprocessing layer runs TensorFlow ops inside
    # `tf.data` whatever the backend, a `Sequential` holding it does not.
    for layer in augment.layers:
        dataset = dataset.map(
            lambda x, y, layer=layer: (layer(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE
        )
    return dataset.prefetch(tf.data.AUTOTUNE)


def steps_per_epoch(recipe: Recipe, num_examples: int) -> int:
    return math.ceil(num_examples / recipe.batch_size)


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


class Timer(keras.callbacks.Callback):
    """Wall-clock seconds of each training epoch, or of each training step, of `fit`.

    The one timer of the recipes and the benchmarks: `Trainer` times epochs
    with it, `benchmarks/` times steps.

    Args:
        per: `"epoch"` (default) or `"step"`.

    Example:

    ```python
    import stochastic_depth_tf as sdt

    timer = sdt.recipes.Timer(per="step")
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


class Trainer:
    """Trains `sdt.models.cifar_resnet` runs of one architecture with one compiled step.

    Tracing the training step of a ResNet-110 takes one to three minutes on
    2 CPU cores, longer than the training of a short run. A `Trainer` builds
    and compiles one model per architecture (plain with `Add`, or stochastic
    in one mode) and, for every run, copies into it the variables of a fresh
    model built with the run's seed and survival probabilities (weights,
    BatchNormalization statistics, gate seeds, survival probabilities: the
    step reads them as variables, so nothing retraces) and zeroes the
    optimizer's state (its step counter, hence the learning-rate schedule,
    and its momenta). A run is then the run a new model would give.

    Args:
        data: `{"train", "test"}` and, if `validation`, `"validation"`, each
            `(images, labels)`, as `sdt.datasets.load_digits` returns.
        recipe: a `Recipe`.
        depth: `6n + 2`.
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

    Example:

    ```python
    import stochastic_depth_tf as sdt

    data = sdt.datasets.load_digits()
    recipe = sdt.recipes.DIGITS.with_epochs(2)
    trainer = sdt.recipes.Trainer(data, recipe, depth=8, plain=False)
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
    ) -> None:
        self.data = data
        self.recipe = recipe
        self.depth = depth
        self.plain = plain
        self.mode = mode
        self.validation = validation
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
        return models.cifar_resnet(
            depth=self.depth,
            num_classes=10,
            final_survival_probability=final_survival_probability,
            mode=self.mode,
            skip_compute=True,
            seed=seed,
            input_shape=self.data["train"][0].shape[1:],
            name="plain" if self.plain else "stochastic_depth",
            zero_init_residual=self.recipe.zero_init_residual,
        )

    def run(
        self,
        final_survival_probability: float = 0.5,
        seed: int = 0,
        verbose: int = 0,
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
            verbose: Keras' progress output.
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
        # Same architecture, so the two lists pair one to one (zip's strict= needs Python 3.10).
        targets, sources = list(self.model.variables), list(fresh.variables)
        assert len(targets) == len(sources), (len(targets), len(sources))
        for target, source in zip(targets, sources):
            target.assign(source.value)
        # Through the layers' setter too, so their configs agree with their variables.
        for target, source in zip(
            layers_module.stochastic_depth_layers(self.model), layers_module.stochastic_depth_layers(fresh)
        ):
            target.survival_probability = source.survival_probability
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
    verbose: int = 0,
    callbacks: Sequence[keras.callbacks.Callback] = (),
) -> Dict[str, Any]:
    """Trains one `sdt.models.cifar_resnet` with the recipe: a `Trainer` used once.

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
    )
    return trainer.run(final_survival_probability, seed, verbose=verbose, callbacks=callbacks)


Values = Union[Sequence[float], np.ndarray]
"""Numbers, one per seed (a sequence or a one-dimensional array), as the statistics below take them."""


def mean_interval(values: Values, confidence: float = 0.95) -> Tuple[float, float]:
    """The mean and the half-width of its Student-t confidence interval (nan for one value).

    Needs scipy, which comes with scikit-learn (the `demo` and `notebooks` extras).
    """
    array = np.asarray(values, dtype=float)
    if len(array) < 2:
        return float(array.mean()), float("nan")
    from scipy import stats

    half_width = stats.t.ppf(0.5 + confidence / 2, len(array) - 1) * array.std(ddof=1) / np.sqrt(len(array))
    return float(array.mean()), float(half_width)


MAX_SEEDS = 100  # the most seeds `seeds_to_separate` considers


def seeds_to_separate(differences: Values, confidence: float = 0.95) -> Optional[int]:
    """How many paired seeds would put 0 outside the interval, were their mean and spread these.

    The smallest `n` with `t(n - 1) * std / sqrt(n) < |mean|`, or None when
    no `n` up to `MAX_SEEDS` does (a mean of 0 never separates).
    """
    array = np.asarray(differences, dtype=float)
    mean, std = abs(float(array.mean())), float(array.std(ddof=1))
    from scipy import stats

    for n in range(2, MAX_SEEDS + 1):
        if stats.t.ppf(0.5 + confidence / 2, n - 1) * std / np.sqrt(n) < mean:
            return n
    return None


def describe_difference(
    differences: Values, name: str = "stochastic depth", baseline: str = "plain", confidence: float = 0.95
) -> str:
    """One sentence, computed from paired differences (`name` − `baseline`, one per seed).

    When the confidence interval of the mean difference excludes 0 the
    verdict is "higher" or "lower by more than the spread of the seeds".
    When it contains 0 the seeds cannot separate the two, and the sentence
    says how much that means: the range of true differences the seeds fit
    (two seeds' interval can span tens of points) and about how many paired
    seeds at this spread would separate a difference of the size seen. One
    seed gets no verdict.

    Args:
        differences: per-seed differences of a metric (e.g. test accuracy).
        name: what the first term is.
        baseline: what is subtracted.
        confidence: the level of the Student-t interval.

    Returns:
        A sentence such as "stochastic depth − plain: -0.0593 ± 0.3765 (95%
        interval over 2 paired seeds): 2 seeds cannot tell a 0.0593
        difference from seed-to-seed noise (true differences from -0.4358 to
        +0.3172 fit them); about 12 paired seeds at this spread would".
    """
    array = np.asarray(differences, dtype=float)
    if array.ndim != 1 or len(array) < 1:
        raise ValueError(
            "Invalid value received for argument `differences`. Expected a non-empty "
            f"1-D sequence of numbers. Received: differences={differences!r}"
        )
    mean, half_width = mean_interval(array, confidence)
    if len(array) == 1:
        return (
            f"{name} − {baseline}: {mean:+.4f} on one seed; one seed cannot tell a difference from seed-to-seed noise"
        )
    if abs(mean) <= half_width:
        verdict = (
            f"{len(array)} seeds cannot tell a {abs(mean):.4f} difference from seed-to-seed noise "
            f"(true differences from {mean - half_width:+.4f} to {mean + half_width:+.4f} fit them)"
        )
        needed = seeds_to_separate(array, confidence)
        verdict += (
            f"; about {needed} paired seeds at this spread would"
            if needed is not None
            else f"; no number of seeds up to {MAX_SEEDS} at this spread would"
        )
    else:
        verdict = f"{name} {'higher' if mean > 0 else 'lower'} by more than the spread of the seeds"
    return (
        f"{name} − {baseline}: {mean:+.4f} ± {half_width:.4f} ({confidence:.0%} interval over "
        f"{len(array)} paired seeds): {verdict}"
    )

"""Training recipes: the settings, learning-rate schedule and optimizer of the paper's training, written once.

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

A recipe's optimizer (`optimizer`, with `learning_rate_schedule`) trains any
Keras model. The training loop, input pipeline, timer and statistics the
demo, the notebooks and the benchmarks run the recipes with live in
`stochastic_depth_tf.experiments`; the names earlier releases defined here
(`sdt.recipes.Trainer`, `train`, `training_dataset`, `augmentation`,
`Timer`, `set_batch_norm_momentum`, `zero_init_residual_branches`,
`mean_interval`, `seeds_to_separate`, `describe_difference`, `MAX_SEEDS`,
`Values`) still import from here, as the same objects.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import numbers
from typing import Any, Dict, List

import keras

from stochastic_depth_tf._validation import validate_choice, validate_positive_int

__all__ = [
    "DECAYS",
    "DIGITS",
    "MNIST1D",
    "PAPER",
    "RECIPES",
    "Recipe",
    "learning_rate_schedule",
    "optimizer",
    "steps_per_epoch",
]

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


def steps_per_epoch(recipe: Recipe, num_examples: int) -> int:
    """Steps of one epoch over `num_examples` examples in the recipe's batches (the last one may be short)."""
    return math.ceil(num_examples / recipe.batch_size)


# Where the names earlier releases defined here live now. `experiments` imports
# this module, so they are imported on first use (PEP 562), not at import.
_MOVED = {
    **dict.fromkeys(("augmentation", "training_dataset"), "stochastic_depth_tf.experiments.pipeline"),
    **dict.fromkeys(
        ("Trainer", "train", "set_batch_norm_momentum", "zero_init_residual_branches"),
        "stochastic_depth_tf.experiments.training",
    ),
    "Timer": "stochastic_depth_tf.experiments.timing",
    **dict.fromkeys(
        ("Values", "mean_interval", "MAX_SEEDS", "seeds_to_separate", "describe_difference"),
        "stochastic_depth_tf.experiments.statistics",
    ),
}


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> List[str]:
    return sorted([*globals(), *_MOVED])

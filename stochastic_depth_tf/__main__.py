"""`python -m stochastic_depth_tf`: a short usage example of the core layer.

Builds a small residual network with `StochasticDepth` in place of `Add`,
trains it for a few steps on random data, and shows the two phases: the
training output varies with the gates, the inference output does not.
"""

from __future__ import annotations

import argparse
import os
from typing import Optional, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import stochastic_depth_tf as sdt  # noqa: E402


def build_model(num_blocks: int, survival_probability: float, seed: int) -> keras.Model:
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    for index in range(num_blocks):
        branch = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
        branch = keras.layers.Conv2D(8, 3, padding="same")(branch)
        x = sdt.StochasticDepth(survival_probability, seed=seed + index)([x, branch])
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(10, activation="softmax")(x)
    return keras.Model(inputs, outputs)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stochastic_depth_tf", description=__doc__)
    parser.add_argument("--blocks", type=int, default=4, help="residual blocks (default 4)")
    parser.add_argument("--survival-probability", type=float, default=0.5, help="p of every block (default 0.5)")
    parser.add_argument("--seed", type=int, default=0, help="seed of data and gates (default 0)")
    args = parser.parse_args(argv)

    keras.utils.set_random_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    images = rng.normal(size=(256, 8, 8, 1)).astype("float32")
    labels = rng.integers(0, 10, size=256)

    model = build_model(args.blocks, args.survival_probability, args.seed)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    print(f"stochastic_depth_tf {sdt.__version__}: {args.blocks} blocks, "
          f"survival probability {args.survival_probability}")
    model.fit(images, labels, batch_size=32, epochs=2, verbose=2)

    sample = images[:4]
    training_outputs = [model(sample, training=True).numpy() for _ in range(5)]
    inference_outputs = [model(sample, training=False).numpy() for _ in range(5)]
    training_spread = float(np.max(np.ptp(np.stack(training_outputs), axis=0)))
    inference_spread = float(np.max(np.ptp(np.stack(inference_outputs), axis=0)))
    print(f"largest spread of 5 training calls:  {training_spread:.4f} (gates differ)")
    print(f"largest spread of 5 inference calls: {inference_spread:.4f} (deterministic)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""A recipe's input pipeline: its augmentation as Keras preprocessing layers, inside `tf.data`."""

from __future__ import annotations

from typing import TYPE_CHECKING, List, Optional, Sequence

import keras
import numpy as np

if TYPE_CHECKING:  # the pipeline needs TensorFlow on every backend; importing this module does not
    import tensorflow as tf

from stochastic_depth_tf._requirements import import_tensorflow
from stochastic_depth_tf.recipes import Recipe


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
    # Named as users call it: `sdt.recipes.training_dataset` is this function.
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

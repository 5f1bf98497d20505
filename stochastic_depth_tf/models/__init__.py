"""Model builders: the paper's CIFAR ResNets, EfficientNet B0-B7 on stochastic depth, PyramidNet.

Conventions shared by the builders:

- Block `l` of a network, counted from 0 over its stochastic-depth blocks,
  gets the seed `seed + l`, as `sdt.apply_stochastic_depth` counts layers.
- `zero_init_residual=True` starts the last BatchNormalization scale of
  every residual branch at 0 (torchvision's argument of that name).
- The number of classes is `num_classes` (KerasHub's and the package's
  spelling); EfficientNet keeps keras.applications' `classes`, because its
  signature is that of `keras.applications.EfficientNetB*`, which it
  replaces as is.
"""

from stochastic_depth_tf.models.cifar_resnet import cifar_resnet
from stochastic_depth_tf.models.efficientnet import (
    EfficientNetB0,
    EfficientNetB1,
    EfficientNetB2,
    EfficientNetB3,
    EfficientNetB4,
    EfficientNetB5,
    EfficientNetB6,
    EfficientNetB7,
    efficientnet,
    efficientnet_survival_probabilities,
)
from stochastic_depth_tf.models.efficientnet_weights import load_keras_applications_weights
from stochastic_depth_tf.models.pyramidnet import pyramidnet, pyramidnet_widths

__all__ = [
    "EfficientNetB0",
    "EfficientNetB1",
    "EfficientNetB2",
    "EfficientNetB3",
    "EfficientNetB4",
    "EfficientNetB5",
    "EfficientNetB6",
    "EfficientNetB7",
    "cifar_resnet",
    "efficientnet",
    "efficientnet_survival_probabilities",
    "load_keras_applications_weights",
    "pyramidnet",
    "pyramidnet_widths",
]

"""Model builders: the paper's CIFAR ResNets, EfficientNet B0-B7 on stochastic depth, PyramidNet."""

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
    load_keras_applications_weights,
)
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

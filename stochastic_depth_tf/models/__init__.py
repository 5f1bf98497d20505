"""Model builders: the paper's CIFAR ResNets."""

from stochastic_depth_tf.models.cifar_resnet import cifar_resnet

__all__ = ["cifar_resnet"]

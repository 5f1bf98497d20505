"""What differs by backend, behind one small interface.

The layers and `ops.py` call these functions and never ask which backend
runs. Only TensorFlow is implemented so far (`backend/tensorflow.py`): the
replica ids of `tf.distribute`, the host placement of a conditional's gate,
and the detection of cross-replica collectives inside a branch.
"""

from stochastic_depth_tf.backend.tensorflow import (
    branch_synchronizes_replicas,
    host_device,
    host_variables,
    num_replicas_in_sync,
    replica_uniform,
    track_in_checkpoints,
)

__all__ = [
    "branch_synchronizes_replicas",
    "host_device",
    "host_variables",
    "num_replicas_in_sync",
    "replica_uniform",
    "track_in_checkpoints",
]

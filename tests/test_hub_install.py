"""stochastic_depth_tf.hub without KerasHub: the package imports, the hub path says how to install."""

import sys

import pytest

from stochastic_depth_tf import hub


def test_missing_keras_hub_names_the_install_line(monkeypatch):
    # None in sys.modules makes `import keras_hub` raise ImportError.
    monkeypatch.setitem(sys.modules, "keras_hub", None)
    with pytest.raises(ImportError, match="needs KerasHub, which is not installed"):
        hub.register_backbones()
    with pytest.raises(ImportError, match="--no-deps"):
        hub.strip_stochastic_depth(object())

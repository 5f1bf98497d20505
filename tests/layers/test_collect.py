"""`stochastic_depth_layers`: the one collector of a model's stochastic-depth layers."""

import keras

import stochastic_depth_tf as sdt


def test_a_block_is_listed_once_not_with_the_gate_it_wraps():
    model = sdt.models.cifar_resnet(depth=8, final_survival_probability=0.5, input_shape=(12, 12, 1))
    found = sdt.layers.stochastic_depth_layers(model)
    assert [type(layer) for layer in found] == [sdt.StochasticDepthBlock] * 3


def test_layers_inside_a_block_branch_and_nested_models_are_found_in_order():
    inner_input = keras.Input((4,))
    inner = keras.Model(
        inner_input, sdt.StochasticDepth(0.9, name="inner")([inner_input, keras.layers.Dense(4)(inner_input)])
    )
    branch = keras.Sequential([keras.layers.Dense(4), inner])
    inputs = keras.Input((4,))
    x = sdt.StochasticDepthBlock(branch, survival_probability=0.8, name="block")(inputs)
    x = sdt.ShakeDrop(0.7, name="shake")([x, keras.layers.Dense(4)(x)])
    model = keras.Model(inputs, x)
    assert [layer.name for layer in sdt.layers.stochastic_depth_layers(model)] == ["block", "inner", "shake"]

"""Tests of `stochastic_depth_tf.recipes` and of the experiments' tooling that trains with it."""

import keras
import numpy as np
import pytest

from stochastic_depth_tf import datasets, recipes
from stochastic_depth_tf.experiments import pipeline, statistics, timing, training


def test_digits_recipe_is_the_papers_optimizer_with_digit_shifts():
    recipe = recipes.DIGITS
    assert (recipe.momentum, recipe.nesterov, recipe.decay) == (0.9, True, "cosine")
    assert recipe.shift == 2 and not recipe.horizontal_flip
    assert recipe.warmup_learning_rate == recipe.learning_rate / 10
    assert recipes.RECIPES["paper"] is recipes.PAPER
    assert (recipes.PAPER.epochs, recipes.PAPER.batch_size, recipes.PAPER.learning_rate) == (500, 128, 0.1)


def test_cosine_schedule_warms_up_linearly_then_decays_to_zero():
    recipe = recipes.DIGITS.replace(epochs=10, warmup_epochs=2)
    schedule = recipes.learning_rate_schedule(recipe, steps_per_epoch=20)

    def rate(step):
        return float(schedule(step))

    assert rate(0) == pytest.approx(recipe.warmup_learning_rate)
    assert rate(20) == pytest.approx((recipe.warmup_learning_rate + recipe.learning_rate) / 2)
    assert rate(40) == pytest.approx(recipe.learning_rate)
    assert rate(120) == pytest.approx(recipe.learning_rate / 2, rel=1e-3)
    assert rate(200) == pytest.approx(0.0, abs=1e-6)


def test_step_schedule_is_the_papers_divided_by_ten_at_half_and_three_quarters():
    schedule = recipes.learning_rate_schedule(recipes.PAPER, steps_per_epoch=352)
    total = 500 * 352
    rates = [float(schedule(step)) for step in (0, 351, 353, total // 2 - 1, total // 2 + 1, total * 3 // 4 + 1)]
    assert rates == pytest.approx([0.01, 0.01, 0.1, 0.1, 0.01, 0.001])


def test_optimizer_is_nesterov_sgd_with_weight_decay():
    optimizer = recipes.optimizer(recipes.DIGITS, steps_per_epoch=20)
    assert isinstance(optimizer, keras.optimizers.SGD)
    assert optimizer.nesterov and optimizer.momentum == 0.9
    assert optimizer.weight_decay == recipes.DIGITS.weight_decay


def test_augmentation_shifts_whole_pixels_within_the_zero_padding():
    images = datasets.load_digits()["train"][0][:256]
    shifted = np.asarray(pipeline.augmentation(recipes.DIGITS, images.shape[1:], seed=0)(images, training=True))
    # Whole-pixel shifts of at most 2 keep every pixel of the 8x8 digit inside the 12x12 image.
    np.testing.assert_allclose(shifted.sum(axis=(1, 2, 3)), images.sum(axis=(1, 2, 3)), rtol=1e-5)
    moved = [not np.array_equal(a, b) for a, b in zip(shifted, images)]
    # 25 integer offsets per image; "no move" has probability about 1/9 under nearest rounding.
    assert 0.6 < np.mean(moved) < 1.0


def test_training_dataset_batches_every_example_each_epoch():
    images, labels = datasets.load_digits()["train"]
    dataset = pipeline.training_dataset(recipes.DIGITS, images, labels, seed=0)
    seen = np.concatenate([y.numpy() for _, y in dataset])
    assert sorted(seen.tolist()) == sorted(labels.tolist())
    first = next(iter(dataset))[0]
    assert tuple(first.shape) == (recipes.DIGITS.batch_size, 12, 12, 1)


@pytest.mark.parametrize(
    "changes, argument",
    [
        ({"epochs": 0}, "epochs"),
        ({"batch_size": 2.5}, "batch_size"),
        ({"decay": "linear"}, "decay"),
        ({"epochs": 2, "warmup_epochs": 2}, "warmup_epochs"),
    ],
)
def test_bad_recipes_are_refused(changes, argument):
    with pytest.raises(ValueError, match=rf"Invalid value received for argument `{argument}`"):
        recipes.DIGITS.replace(**changes)


def test_mean_interval_is_the_student_t_interval():
    mean, half_width = statistics.mean_interval([1.0, 2.0, 3.0])
    # t(0.975, 2) = 4.3027; std 1; three values.
    assert mean == 2.0 and half_width == pytest.approx(4.3027 / np.sqrt(3), rel=1e-4)
    assert np.isnan(statistics.mean_interval([0.5])[1])


@pytest.mark.parametrize(
    "differences, verdict",
    [
        ([0.01, -0.01, 0.005], "3 seeds cannot tell a 0.0017 difference from seed-to-seed noise"),
        (
            [-0.01, -0.11],
            "2 seeds cannot tell a 0.0600 difference from seed-to-seed noise (true differences from -0.6953",
        ),
        ([-0.030, -0.028, -0.032], "stochastic depth lower by more than the spread of the seeds"),
        ([0.020, 0.021, 0.019], "stochastic depth higher by more than the spread of the seeds"),
        ([0.02], "one seed cannot tell"),
    ],
)
def test_describe_difference_computes_its_verdict(differences, verdict):
    assert verdict in statistics.describe_difference(differences)


def test_describe_difference_says_how_many_seeds_would_separate_the_arms():
    # mean -0.06, std 0.0707 (ddof 1): t(n - 1) * 0.0707 / sqrt(n) < 0.06 first at n = 8
    # (n = 7: 2.447 * 0.0267 = 0.0654; n = 8: 2.365 * 0.0250 = 0.0591).
    assert "about 8 paired seeds at this spread would" in statistics.describe_difference([-0.01, -0.11])
    assert statistics.seeds_to_separate([-0.01, -0.11]) == 8
    assert statistics.seeds_to_separate([0.01, -0.01]) is None
    assert "no number of seeds up to 100 at this spread would" in statistics.describe_difference([0.01, -0.01])


def test_describe_difference_refuses_no_values():
    with pytest.raises(ValueError, match="Invalid value received for argument `differences`"):
        statistics.describe_difference([])


@pytest.mark.parametrize("final_survival_probability", [1.0, 0.5])
def test_zero_init_residual_makes_every_block_start_as_the_identity(final_survival_probability):
    import stochastic_depth_tf as sdt

    model = sdt.models.cifar_resnet(
        depth=14, final_survival_probability=final_survival_probability, input_shape=(12, 12, 1)
    )
    assert training.zero_init_residual_branches(model) == 6
    last_gammas = [v for v in model.trainable_weights if v.path.endswith("_bn2/gamma")]
    assert all(np.all(keras.ops.convert_to_numpy(v) == 0.0) for v in last_gammas)
    assert all(
        np.all(keras.ops.convert_to_numpy(v) == 1.0) for v in model.trainable_weights if v.path.endswith("_bn1/gamma")
    )


def test_with_epochs_keeps_the_warm_up_within_a_quarter_of_a_short_run():
    assert recipes.DIGITS.with_epochs(60).warmup_epochs == recipes.DIGITS.warmup_epochs
    assert recipes.DIGITS.with_epochs(4).warmup_epochs == 1.0
    with pytest.raises(ValueError, match="Invalid value received for argument `epochs`. Expected a positive int"):
        recipes.DIGITS.with_epochs(0)


@pytest.mark.parametrize("per, expected", [("epoch", 3), ("step", 6)])
def test_timer_records_one_duration_per_epoch_or_per_step(per, expected):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    timer = timing.Timer(per=per)
    model.fit(np.zeros((8, 2)), np.zeros((8, 1)), batch_size=4, epochs=3, callbacks=[timer], verbose=0)
    assert len(timer.seconds) == expected and all(seconds > 0 for seconds in timer.seconds)


def test_timer_of_an_unknown_unit_is_a_clear_error():
    with pytest.raises(ValueError, match="Invalid value received for argument `per`. Expected 'epoch' or 'step'"):
        timing.Timer(per="batch")


@pytest.mark.slow  # trains a ResNet-8 twice: minutes outside TensorFlow's graph mode
def test_trainer_reuses_one_compiled_step_and_sets_each_runs_survival_probabilities():
    import stochastic_depth_tf as sdt

    data = datasets.load_digits()
    trainer = training.Trainer(data, recipes.DIGITS.with_epochs(1), depth=8, plain=False, validation=False)
    first = trainer.run(final_survival_probability=0.5, seed=0)
    step = trainer.model.train_function
    second = trainer.run(final_survival_probability=0.8, seed=1)
    assert trainer.model.train_function is step  # not traced again
    layers = sdt.callbacks.stochastic_depth_layers(trainer.model)
    expected = sdt.schedules.linear_decay(3, 0.8)
    np.testing.assert_allclose([layer.survival_probability for layer in layers], expected, rtol=1e-6)
    np.testing.assert_allclose(
        [float(keras.ops.convert_to_numpy(layer.survival_probability_variable)) for layer in layers],
        expected,
        rtol=1e-6,
    )
    assert int(keras.ops.convert_to_numpy(trainer.model.optimizer.iterations)) == recipes.steps_per_epoch(
        trainer.recipe, len(data["train"][0])
    )
    for run in (first, second):
        assert 0.0 <= run["test_accuracy"] <= 1.0 and len(run["epoch_seconds"]) == 1


def test_trainer_refuses_a_survival_probability_of_the_other_architecture():
    trainer = training.Trainer(datasets.load_digits(), recipes.DIGITS.with_epochs(1), depth=8, plain=True)
    with pytest.raises(ValueError, match="argument `final_survival_probability`. Expected 1.0 for a plain trainer"):
        trainer.run(final_survival_probability=0.5)


@pytest.mark.parametrize("final_survival_probability", [1.0, 0.5])
def test_batch_norm_momentum_reaches_every_batch_normalization(final_survival_probability):
    import stochastic_depth_tf as sdt

    model = sdt.models.cifar_resnet(
        depth=14, final_survival_probability=final_survival_probability, shortcut="projection", input_shape=(12, 12, 1)
    )
    # stem + 2 per block x 6 blocks + 2 projection shortcuts
    assert training.set_batch_norm_momentum(model, 0.9) == 15


def test_mnist1d_recipe_is_the_papers_optimizer_without_augmentation():
    recipe = recipes.MNIST1D
    assert recipes.RECIPES["mnist1d"] is recipe
    assert (recipe.momentum, recipe.nesterov, recipe.decay, recipe.weight_decay) == (0.9, True, "cosine", 1e-3)
    assert recipe.shift == 0 and not recipe.horizontal_flip
    # 500 training signals seen many times: 200 steps, 20 epochs.
    assert recipe.epochs * recipes.steps_per_epoch(recipe, 500) == 200
    assert pipeline.augmentation(recipe, (40, 1)).layers == []


def test_with_steps_stretches_the_schedule_to_the_run():
    base = recipes.MNIST1D.replace(batch_size=64)
    recipe = base.with_steps(1000, num_examples=640)  # 10 steps per epoch
    assert recipe.epochs == 100 and recipe.warmup_epochs == recipes.MNIST1D.warmup_epochs
    schedule = recipes.learning_rate_schedule(recipe, steps_per_epoch=10)
    assert float(schedule(20)) == pytest.approx(recipe.learning_rate)
    assert float(schedule(510)) == pytest.approx(recipe.learning_rate / 2, rel=1e-2)
    assert float(schedule(1000)) == pytest.approx(0.0, abs=1e-6)
    # Whole epochs, at least the steps asked for; a short run keeps a quarter for the warm-up at most.
    assert base.with_steps(1001, num_examples=640).epochs == 101
    assert base.with_steps(30, num_examples=640).warmup_epochs == 0.75


@pytest.mark.parametrize(
    "arguments, argument", [((0, 640), "steps"), ((100, 0), "num_examples"), ((1.5, 640), "steps")]
)
def test_with_steps_refuses_bad_arguments(arguments, argument):
    with pytest.raises(ValueError, match=rf"Invalid value received for argument `{argument}`"):
        recipes.MNIST1D.with_steps(*arguments)


def test_sequences_refuse_shifts_and_flips():
    with pytest.raises(ValueError, match="Invalid value received for argument `image_shape`"):
        pipeline.augmentation(recipes.DIGITS, (40, 1))


def test_training_dataset_of_sequences_is_not_augmented():
    signals, labels = datasets.load_mnist1d(num_samples=200)["train"]
    recipe = recipes.MNIST1D.replace(batch_size=len(labels))
    x, y = next(iter(pipeline.training_dataset(recipe, signals, labels, seed=0)))
    # One batch holds the whole split, shuffled but unchanged.
    assert x.shape == signals.shape
    assert sorted(map(bytes, np.asarray(x))) == sorted(map(bytes, signals))
    assert sorted(y.numpy().tolist()) == sorted(labels.tolist())


# The names the docs, the notebooks and the benchmarks use, defined in `recipes` before they moved.
MOVED = {
    pipeline: ["augmentation", "training_dataset"],
    training: ["Trainer", "train", "set_batch_norm_momentum", "zero_init_residual_branches"],
    timing: ["Timer"],
    statistics: ["Values", "mean_interval", "MAX_SEEDS", "seeds_to_separate", "describe_difference"],
}


@pytest.mark.one_backend
@pytest.mark.parametrize("module, name", [(module, name) for module, names in MOVED.items() for name in names])
def test_recipes_still_lends_the_names_that_moved_to_experiments(module, name):
    assert getattr(recipes, name) is getattr(module, name)
    assert name in dir(recipes)


@pytest.mark.one_backend
def test_recipes_names_what_it_does_not_have():
    with pytest.raises(AttributeError, match="module 'stochastic_depth_tf.recipes' has no attribute 'Trainerr'"):
        recipes.Trainerr  # noqa: B018  (the attribute access is the test)


def _dense_builder(seed, num_classes, input_shape, name, **kwargs):
    """A small model for `Trainer`'s `model_builder`, one unit wider for seeds above 0."""
    inputs = keras.Input(input_shape)
    hidden = keras.layers.Dense(4 + (seed > 0), activation="relu", name="hidden")(keras.layers.Flatten()(inputs))
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="predictions")(hidden)
    return keras.Model(inputs, outputs, name=name)


@pytest.mark.one_backend
def test_trainer_refuses_a_run_whose_variables_do_not_match_by_name():
    trainer = training.Trainer(
        datasets.load_digits(), recipes.DIGITS.with_epochs(1), plain=True, model_builder=_dense_builder
    )
    with pytest.raises(ValueError, match="argument `model_builder`. Expected the same layers and variables") as info:
        trainer.run(final_survival_probability=1.0, seed=1)
    message = str(info.value)
    assert "a model for seed=1, final_survival_probability=1.0 with variables of another shape or dtype" in message
    assert message.endswith("of another shape or dtype: hidden/bias, hidden/kernel, predictions/kernel")


def test_trainer_trains_the_model_its_builder_builds_with_its_number_of_classes():
    data = datasets.load_digits()
    trainer = training.Trainer(
        data, recipes.DIGITS.with_epochs(1), plain=True, validation=False, num_classes=12, model_builder=_dense_builder
    )
    run = trainer.run(final_survival_probability=1.0, seed=0)
    assert trainer.model.get_layer("predictions").units == 12
    assert 0.0 <= run["test_accuracy"] <= 1.0 and len(run["epoch_seconds"]) == 1


@pytest.mark.one_backend
def test_trainer_refuses_fewer_classes_than_the_labels_have():
    with pytest.raises(ValueError, match="argument `num_classes`. Expected more classes than the largest label of"):
        training.Trainer(datasets.load_digits(), num_classes=9, plain=True, model_builder=_dense_builder)

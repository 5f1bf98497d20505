"""The benchmark scripts' data and contenders (their timings are not tested)."""

import numpy as np
import pytest

import stochastic_depth_tf as sdt
from benchmarks import harness, prune_latency, step_time

# TensorFlow only: the benchmarks' graph-mode, XLA and SavedModel contenders.
pytestmark = pytest.mark.tensorflow_only


def test_digits_batch_is_the_demo_data():
    x, y = step_time.batch_of("digits", 64)
    assert x.shape == (64, 12, 12, 1) and x.dtype == np.float32
    assert y.shape == (64,) and set(np.unique(y)) <= set(range(10))


def test_cifar_shaped_batch_is_random_32x32x3():
    x, y = step_time.batch_of("cifar-shaped", 8)
    assert x.shape == (8, 32, 32, 3) and y.shape == (8,)


def test_digits_batch_larger_than_the_training_split_is_a_clear_error():
    with pytest.raises(ValueError, match="Invalid value received for argument `batch`. Expected at most 1257"):
        step_time.batch_of("digits", 5000)


def test_contenders_are_built_for_the_input_shape():
    builders = step_time.contenders(8, (12, 12, 1))
    for name in ("add", "merge_batch", "block", "keras_dropout"):
        model = builders[name]()
        assert model.input_shape == (None, 12, 12, 1)
        assert model.output_shape == (None, 10)


def test_table_header_names_the_device_tensorflow_chose():
    table = step_time.markdown([], "python -m benchmarks.step_time", "settings")
    assert f"- backend tensorflow: tensorflow {__import__('tensorflow').__version__}; device: " in table
    assert step_time.device_description() in table
    import tensorflow as tf

    accelerators = tf.config.list_logical_devices("GPU") + tf.config.list_logical_devices("TPU")
    assert step_time.device_description().startswith(accelerators[0].name if accelerators else "CPU")


def test_rows_pair_each_round_with_the_baseline_round_timed_next_to_it():
    # a load spike in round 2 slows both: the paired ratio ignores it, min and median do not
    rows = harness.timed_rows(
        {"add": [1.0, 4.0, 1.2], "block": [0.8, 3.2, 0.96]},
        "add",
        backend="tensorflow",
        network="ResNet-8",
        compilation="graph",
        what="train step",
    )
    block = rows[1]
    assert block["backend"] == "tensorflow" and block["contender"] == "block"
    assert block["ratio_paired"] == pytest.approx(0.8)
    assert block["ratio_min"] == pytest.approx(0.8) and block["ratio_median"] == pytest.approx(0.8)
    skewed = harness.timed_rows({"add": [1.0, 1.0, 1.0], "block": [2.0, 0.5, 0.9]}, "add")
    assert skewed[1]["ratio_paired"] == pytest.approx(0.9)
    assert skewed[1]["ratio_min"] == pytest.approx(0.5)


def test_other_backends_get_the_arguments_without_backend_output_and_rows():
    argv = ["--depths", "56", "--backend", "jax", "torch", "--output", "table.md", "--rows-json=rows.json", "--quick"]
    assert harness.without_options(argv, ["--backend", "--output", "--rows-json"]) == ["--depths", "56", "--quick"]


def test_efficientnet_contenders_share_the_survival_probabilities():
    # A --quick run traces four EfficientNets (minutes on 2 cores), so only the builders are tested.
    from benchmarks import efficientnet_step_time

    builders = efficientnet_step_time.contenders(32, "linear")
    expected = sdt.models.efficientnet_survival_probabilities("b0", 0.5, "linear")
    keras_model = builders["keras"]()
    assert [1.0 - l.rate for l in keras_model.layers if l.name.endswith("_drop")] == pytest.approx(expected)
    for name in ("add", "merge_sample", "block_batch"):
        model = builders[name]()
        assert model.input_shape == (None, 32, 32, 3) and model.output_shape == (None, 10)
        layers = [l for l in model.layers if isinstance(l, (sdt.StochasticDepth, sdt.StochasticDepthBlock))]
        assert [l.survival_probability for l in layers] == ([] if name == "add" else pytest.approx(expected))
    assert efficientnet_step_time.expected_dropped_blocks("linear") == pytest.approx(2.5)


def test_digits_mode_trains_with_the_recipes_optimizer(monkeypatch):
    import keras

    import stochastic_depth_tf as sdt

    compiled = []
    monkeypatch.setattr(
        step_time, "contenders", lambda depth, shape: {"add": lambda: step_time.plain_network(depth, shape)}
    )
    monkeypatch.setattr(keras.Model, "compile", lambda self, optimizer, **kwargs: compiled.append(optimizer))
    monkeypatch.setattr(keras.Model, "train_on_batch", lambda self, x, y: 0.0)
    x, y = step_time.batch_of("digits", 8)
    step_time.time_training(8, False, x, y, rounds=1, steps=1, warmup=1, recipe=sdt.recipes.DIGITS)
    assert isinstance(compiled[0], keras.optimizers.SGD) and compiled[0].nesterov
    assert compiled[0].weight_decay == sdt.recipes.DIGITS.weight_decay


@pytest.mark.parametrize("network", ["vit", "convnext"])
def test_per_example_contenders_build_the_same_network(network):
    from benchmarks import per_example

    counts = set()
    for contender in per_example.CONTENDERS:
        model = per_example.build(network, contender, drop_rate=0.4, blocks=1)
        assert model.output_shape == (None, 10)
        counts.add(model.count_params())
    assert len(counts) == 1, "every contender trains the same weights"


def test_hub_per_example_contenders_build_the_same_network():
    pytest.importorskip("keras_hub")
    from benchmarks import hub_per_example

    counts = set()
    for contender in hub_per_example.CONTENDERS:
        model = hub_per_example.build(contender, drop_rate=0.4, layers=1, hidden=12, image=16, patch=8)
        assert model.output_shape == (None, 10)
        counts.add(model.count_params())
    assert len(counts) == 1, "every contender trains the same weights"


def test_another_backend_runs_in_its_own_process_and_its_rows_join_the_table(tmp_path, capsys):
    output = tmp_path / "table.md"
    assert (
        step_time.main(
            [
                "--backend",
                "torch",
                "--depths",
                "8",
                "--batch",
                "4",
                "--rounds",
                "1",
                "--steps",
                "1",
                "--warmup",
                "1",
                "--output",
                str(output),
            ]
        )
        == 0
    )
    table = output.read_text()
    assert "- backend torch: torch " in table and "--rows-json" not in table
    rows = [line for line in table.splitlines() if line.startswith("| torch |")]
    assert [row.split(" | ")[4] for row in rows] == ["add", "merge_batch", "merge_sample", "block", "keras_dropout"]
    assert all(row.split(" | ")[2] == "eager" for row in rows)


def _timed(contender, median, **labels):
    return {
        "contender": contender,
        "min": median,
        "median": median,
        "ratio_min": 1.0,
        "ratio_median": 1.0,
        "ratio_paired": 1.0,
        **labels,
    }


def test_ratio_to_the_fastest_plain_configuration_crosses_compilations_not_networks():
    # XLA's `add` is slower than graph mode's: the XLA block is compared with the graph-mode `add`.
    rows = [
        _timed("add", 0.4, network="ResNet-56", compilation="graph"),
        _timed("block", 0.32, network="ResNet-56", compilation="graph"),
        _timed("add", 0.8, network="ResNet-56", compilation="XLA"),
        _timed("block", 0.5, network="ResNet-56", compilation="XLA"),
        _timed("add", 2.0, network="ResNet-110", compilation="XLA"),
        _timed("block", 1.0, network="ResNet-110", compilation="XLA"),
    ]
    notes = harness.add_fastest_plain(rows, "add", group=("network",))
    assert [row[harness.FASTEST_PLAIN] for row in rows] == pytest.approx([1.0, 0.8, 2.0, 1.25, 1.0, 0.5])
    assert notes == [
        "fastest plain (`add`) of ResNet-56: graph, median 0.4000 s",
        "fastest plain (`add`) of ResNet-110: XLA, median 2.0000 s",
    ]


def _columns(table):
    header = next(line for line in table.splitlines() if line.startswith("| "))
    return [cell.strip() for cell in header.strip("|").split("|")]


def test_every_table_has_both_ratios_the_backend_and_the_device():
    from benchmarks import efficientnet_step_time, per_example, shake_drop_step_time

    rows = [
        _timed(
            "add",
            0.4,
            setting="linear",
            network="n",
            what="train step",
            drop_rate=0.4,
            backend="tensorflow",
            compilation="graph",
        )
    ]
    tables = {
        "step_time": step_time.markdown([dict(rows[0])], "command", "settings"),
        "efficientnet": efficientnet_step_time.markdown([dict(rows[0])], "command", "settings"),
        "shake_drop": shake_drop_step_time.markdown([dict(rows[0])], "command", "settings"),
        "per_example": per_example.markdown([dict(rows[0])], "command", "settings"),
    }
    for name, table in tables.items():
        assert "- backend tensorflow: tensorflow " in table and f"device: {harness.device_description()}" in table, name
        assert "compilation" in _columns(table), name
        assert _columns(table)[-2:] in (
            ["ratio (paired)", "ratio to fastest plain (median)"],
            ["ratio (paired median)", "ratio to fastest plain (median)"],
        ), name
        assert table.rstrip().endswith("| 1.00 | 1.00 |"), name


def test_per_example_has_the_plain_network_as_a_contender():
    from benchmarks import per_example

    model = per_example.build("vit", "add", drop_rate=0.4, blocks=1)
    assert not [layer for layer in model.layers if isinstance(layer, (sdt.StochasticDepth, sdt.StochasticDepthBlock))]
    assert len([layer for layer in model.layers if isinstance(layer, __import__("keras").layers.Add)]) == 2


def test_one_command_plans_every_table_and_quick_never_overwrites_the_committed_ones(tmp_path):
    from benchmarks import __main__ as every

    full = every.planned(list(every.TABLES), quick=False, output_dir=every.RESULTS)
    assert [name for name, _, _ in full] == list(every.TABLES)
    for name, command, output in full:
        assert command[1:3] == ["-m", f"benchmarks.{every.TABLES[name].script}"]
        assert command[-2:] == ["--output", output] and output == f"{every.RESULTS}/{name}.md"
    quick = every.planned(list(every.TABLES), quick=True, output_dir=str(tmp_path))
    assert all("--quick" in command and output.startswith(str(tmp_path)) for _, command, output in quick)
    assert every.main(["--quick", "--dry-run"]) == 0


@pytest.mark.slow
def test_one_command_runs_the_tables_into_one_report(tmp_path, monkeypatch, capsys):
    from benchmarks import __main__ as every

    tiny = ["--batch", "4", "--rounds", "1", "--steps", "1", "--warmup", "1", "--compilations", "graph"]
    monkeypatch.setattr(
        every,
        "TABLES",
        {
            "step_time": every.Table("step_time", [], ["--depths", "8", "--no-serving", *tiny]),
            "per_example": every.Table(
                "per_example", [], ["--networks", "vit", "--vit-blocks", "1", "--drop-rates", "0.4", *tiny]
            ),
            # A table whose script fails (here at once: no such module) is reported; the others still run.
            "broken": every.Table("no_such_table", [], []),
        },
    )
    assert every.main(["--quick", "--output-dir", str(tmp_path)]) == 1  # one table failed
    report = (tmp_path / "report.md").read_text()
    assert report.rstrip() in capsys.readouterr().out
    assert report.startswith("# Every benchmark table\n")
    assert f"- backend tensorflow: tensorflow {__import__('tensorflow').__version__}; device: " in report
    assert "## Step time of stochastic depth" in report and "## Per-example compute skipping" in report
    assert "## broken\n\nFAILED (exit code 1)" in report
    for name in ("step_time", "per_example"):
        table = (tmp_path / f"{name}.md").read_text()
        assert table.lstrip("#") in report
        assert _columns(table)[-1] == "ratio to fastest plain (median)"
        rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line][1:]
        contenders = {row.split(" | ")[_columns(table).index("contender")] for row in rows}
        assert "add" in contenders and any(contender.startswith("block") for contender in contenders)
        fastest_plain = [row for row in rows if " add " in row][0].rstrip(" |").rsplit("| ", 1)[-1]
        assert fastest_plain == "1.00"  # one compilation: the plain network is the fastest plain


def test_prune_latency_builds_the_full_model_and_one_pruned_copy_per_fraction():
    built = prune_latency.models(20, (1.0, 0.5, 0.25), (32, 32, 3))
    assert list(built) == ["full", "keep=1.0", "keep=0.5", "keep=0.25"]
    assert [len(sdt.layers.stochastic_depth_layers(model)) for model in built.values()] == [9, 9, 5, 2]
    assert all(model.output_shape == (None, 10) for model in built.values())


def test_prune_latency_table_names_its_command():
    rows = [
        {
            "contender": "full",
            "blocks": "9 of 9",
            "block_fraction": 1.0,
            "parameters": 1000,
            "median": 0.01,
            "ratio_paired": 1.0,
        }
    ]
    table = prune_latency.markdown(rows, "python -m benchmarks.prune_latency --quick", "settings")
    assert "- command: `python -m benchmarks.prune_latency --quick`" in table
    assert "| full | 9 of 9 | 1.00 | 1,000 | 0.0100 | 1.00 |" in table


def test_layerdrop_expected_share_of_layers_computed():
    from benchmarks import layerdrop_step_time

    shares = {name: layerdrop_step_time.expected_share(name, 0.2, 16) for name in layerdrop_step_time.CONTENDERS}
    # subset keeps round(0.8 * 16) = 13 of 16 sequences per layer
    assert shares == pytest.approx(
        {"plain": 1.0, "merge": 1.0, "batch": 0.8, "sample": 0.8, "subset": 13 / 16, "no_layers": 0.0}
    )


def test_layerdrop_limit_is_the_fixed_part_plus_the_share_of_the_layers():
    from benchmarks import layerdrop_step_time

    rows = [
        {"contender": "plain", "median": 1.0, "share": 1.0},
        {"contender": "batch", "median": 0.9, "share": 0.8},
        {"contender": "no_layers", "median": 0.2, "share": 0.0},
    ]
    limits = [row["limit"] for row in layerdrop_step_time.with_limits(rows, fixed=0.2)]
    assert limits == pytest.approx([1.0, 0.2 + 0.8 * 0.8, 0.2])


def test_layerdrop_table_names_its_command_the_limit_and_tokens_per_second():
    from benchmarks import layerdrop_step_time

    row = {
        **_timed("batch", 0.5, backend="tensorflow", compilation="graph", what="train step"),
        "share": 0.8,
        "limit": 0.84,
        "tokens_per_second": 4096.0,
    }
    table = layerdrop_step_time.markdown([row], "python -m benchmarks.layerdrop_step_time --quick", "settings")
    assert "- command: `python -m benchmarks.layerdrop_step_time --quick`" in table
    assert _columns(table)[4:6] == ["share of layers", "limit"]
    assert "| tensorflow | graph | train step | batch | 0.80 | 0.84 | 0.5000 | 1.00 | 1.00 | 1.00 | 4,096 |" in table


def test_layerdrop_passes_its_arguments_on_without_backend_output_and_rows():

    argv = ["--quick", "--backend", "jax", "--output", "t.md", "--rows-json=r.json", "--layers", "4"]
    passed_on = harness.without_options(argv, ["--backend", "--output", "--rows-json"])
    assert passed_on == ["--quick", "--layers", "4"]


@pytest.mark.slow
def test_layerdrop_contenders_train_the_same_weights_and_the_half_model_has_half_the_layers():
    pytest.importorskip("keras_hub")
    from benchmarks import layerdrop_step_time

    counts = set()
    for contender in layerdrop_step_time.CONTENDERS[:-1]:  # all but no_layers
        model = layerdrop_step_time.build(contender, layers=2, hidden=16, drop_rate=0.2)
        counts.add(model.count_params())
    assert len(counts) == 1, "every LayerDrop contender trains the plain backbone's weights"
    half = layerdrop_step_time.build_for_generation("half", layers=4, hidden=16)
    assert type(half.backbone).__name__.endswith("LlamaBackbone") and len(half.backbone.transformer_layers) == 2


@pytest.mark.slow
def test_layerdrop_table_runs_at_a_tiny_size_on_another_backend(tmp_path):
    from benchmarks import layerdrop_step_time

    pytest.importorskip("keras_hub")
    output = tmp_path / "table.md"
    tiny = ["--layers", "2", "--hidden", "16", "--sequence", "8", "--prompt", "4", "--batch", "4"]
    tiny += ["--rounds", "1", "--steps", "2", "--warmup", "1", "--backend", "torch", "--output", str(output)]
    assert layerdrop_step_time.main(tiny) == 0
    table = output.read_text()
    assert "- backend torch: torch " in table and "--rows-json" not in table
    rows = [line.split(" | ") for line in table.splitlines() if line.startswith("| torch |")]
    assert [(row[2], row[3]) for row in rows] == [
        *(("train step", name) for name in layerdrop_step_time.CONTENDERS),
        *(("generate", name) for name in layerdrop_step_time.GENERATION_CONTENDERS),
    ]


def test_layerdrop_contender_that_does_not_train_is_reported_not_timed(monkeypatch):
    import argparse

    from benchmarks import layerdrop_step_time

    def train_steppers(builders, *args, **kwargs):
        (name,) = builders
        if name == "batch":
            raise ValueError("Input 1 to node `cond/Reshape` must be a compile-time constant")
        return {name: lambda: None}

    monkeypatch.setattr(layerdrop_step_time.harness, "train_steppers", train_steppers)
    monkeypatch.setattr(layerdrop_step_time, "build", lambda *args: None)
    settings = argparse.Namespace(batch=4, sequence=8, layers=2, hidden=16, drop_rate=0.2, warmup=1, rounds=2, steps=1)
    failures = []
    rows = layerdrop_step_time.time_training(settings, True, failures)
    assert [row["contender"] for row in rows] == [name for name in layerdrop_step_time.CONTENDERS if name != "batch"]
    assert failures == [
        "`batch` fails to train under tensorflow XLA: ValueError: Input 1 to node `cond/Reshape` must be a "
        "compile-time constant"
    ]
    table = layerdrop_step_time.markdown(rows, "command", "settings", failures=failures)
    assert f"- {failures[0]}" in table

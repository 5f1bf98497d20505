"""Export for serving: SavedModel (plain and XLA-compiled) and TFLite.

What is proved, for functional models with `StochasticDepth` (both modes,
both `inverted` settings), with `StochasticDepthBlock` (projection shortcut)
and for `sdt.models.cifar_resnet(depth=8)` (blocks):

- `model.export(path)` and `tf.saved_model.save(model, path)` reload with
  `tf.saved_model.load` in a fresh process that never imports the package
  (`tests/serve_saved_model.py`, which refuses the import), and every
  signature serves exactly (bit for bit) what `model.predict` returns;
- `serving_default` compiled with `tf.function(jit_compile=True)` (what TPU
  serving needs) matches `predict` to float32 rounding (XLA fuses
  differently: about 1e-7 apart);
- no random op anywhere in the SavedModel (main graph and every function of
  its library), and no random instruction in the XLA programs; the
  detectors are shown to find the gate of a training-mode export;
- the inference model and its `sdt.strip_stochastic_depth` form convert to
  TFLite with builtin ops only, and the interpreter matches `predict`.
"""

import contextlib
import io
import json
import pathlib
import re
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

import stochastic_depth_tf as sdt
from tests.helpers import as_trained, block_model, images, merge_model, run_tflite
from tests.serve_saved_model import HLO_RANDOM

# TensorFlow only: SavedModel and TFLite export.
pytestmark = pytest.mark.tensorflow_only

SERVER = pathlib.Path(__file__).with_name("serve_saved_model.py")
BATCH = 4

# TensorFlow ops that draw random numbers or hold random state, by name:
# RandomUniform, StatelessRandomUniformV2, StatelessRandomGetKeyCounter,
# RngReadAndSkip, RngSkip, StatefulUniform, TruncatedNormal, Multinomial,
# AnonymousSeedGenerator, RandomShuffle, ...
RANDOM_OP = re.compile(
    r"Random|Rng|TruncatedNormal|Multinomial|StatefulUniform|StatefulStandardNormal"
    r"|NonDeterministicInts|SeedGenerator|Shuffle|CandidateSampler|SampleDistortedBoundingBox"
)


# Models: each with moved BatchNormalization statistics and a survival
# probability variable moved away from its configured value (as a schedule
# leaves it), so serving the training form, or the configured `p`, shows.


CASES = {
    "merge_batch": lambda: merge_model("batch", False),
    "merge_sample": lambda: merge_model("sample", False),
    "merge_batch_inverted": lambda: merge_model("batch", True),
    "merge_sample_inverted": lambda: merge_model("sample", True),
    "block_batch": lambda: block_model("batch", False),
    "block_sample_inverted": lambda: block_model("sample", True),
    "cifar_resnet": lambda: sdt.models.cifar_resnet(depth=8, num_classes=3, input_shape=(12, 12, 3), seed=0),
}

SAVERS = {
    "model_export": lambda model, path: model.export(path, verbose=False),
    "tf_saved_model_save": lambda model, path: tf.saved_model.save(model, path),
}

# Every (case, way of saving) pair. Each test below checks them all and
# reports every pair that fails, by name.
EXPORTS = [f"{case}-{saver}" for case in CASES for saver in SAVERS]


def build(case):
    """The model of a case, with state moved as training would leave it."""
    return as_trained(CASES[case]())


def images_for(model, seed=0):
    return images(model.input.shape[1:], n=BATCH, seed=seed)


def op_types(saved_model_dir):
    """Op types of a SavedModel: (main graphs, functions of their libraries)."""
    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((pathlib.Path(saved_model_dir) / "saved_model.pb").read_bytes())
    main, library = set(), set()
    for meta_graph in proto.meta_graphs:
        main |= {node.op for node in meta_graph.graph_def.node}
        for function in meta_graph.graph_def.library.function:
            library |= {node.op for node in function.node_def}
    return main, library


def random_ops(op_type_set):
    return sorted(op for op in op_type_set if RANDOM_OP.search(op))


class Served:
    """SavedModels of every case, written here and served by a fresh process."""

    def __init__(self, directory):
        directory = pathlib.Path(directory)
        self.paths, self.expected, manifest = {}, {}, []
        for case in CASES:
            model = build(case)
            x = images_for(model)
            np.save(directory / f"{case}.npy", x)
            expected = model.predict(x, verbose=0)
            for saver, save in SAVERS.items():
                name = f"{case}-{saver}"
                self.paths[name] = str(directory / name)
                self.expected[name] = expected
                save(model, self.paths[name])
                manifest.append({"name": name, "path": self.paths[name], "inputs": str(directory / f"{case}.npy")})
        manifest_path = directory / "manifest.json"
        manifest_path.write_text(json.dumps(manifest), encoding="utf-8")
        # A cwd with nothing importable in it; the child script itself
        # refuses any import of the package.
        process = subprocess.run(
            [sys.executable, str(SERVER), str(manifest_path)],
            cwd=directory,
            timeout=600,
            capture_output=True,
            text=True,
        )
        assert process.returncode == 0, process.stderr[-3000:]
        with np.load(str(manifest_path) + ".npz") as arrays:
            self.outputs = dict(arrays)
        self.report = json.loads(pathlib.Path(str(manifest_path) + ".report.json").read_text(encoding="utf-8"))

    def output(self, name, signature, compiled=False):
        return self.outputs[f"{name}/{signature}/{'xla' if compiled else 'graph'}"]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    return Served(tmp_path_factory.mktemp("served"))


# The detectors, shown to detect.


def test_random_op_pattern_covers_tensorflow_random_ops():
    """The op-name pattern matches TensorFlow's random ops and none of the ops a model serves with."""
    for op in (
        "RandomUniform",
        "StatelessRandomUniformV2",
        "StatelessRandomGetKeyCounter",
        "RngReadAndSkip",
        "RngSkip",
        "StatefulUniform",
        "TruncatedNormal",
        "StatelessMultinomial",
        "AnonymousSeedGenerator",
        "RandomShuffle",
    ):
        assert RANDOM_OP.search(op), op
    for op in ("Conv2D", "AddV2", "Mul", "StatefulPartitionedCall", "StatelessIf", "If", "ReadVariableOp"):
        assert not RANDOM_OP.search(op), op


@pytest.mark.parametrize("case", ["merge_batch", "block_batch"])
def test_random_op_detector_finds_the_gate_of_a_training_export(tmp_path, case):
    """A SavedModel serving the training form holds the gate's random ops, in its function library."""
    model = build(case)
    archive = keras.export.ExportArchive()
    archive.track(model)
    spec = tf.TensorSpec((None,) + tuple(model.input.shape[1:]), tf.float32)
    archive.add_endpoint("serve", lambda x: model(x, training=True), input_signature=[spec])
    archive.write_out(str(tmp_path / "training"), verbose=False)
    main, library = op_types(tmp_path / "training")
    assert random_ops(main) == []  # the model's ops live in the functions
    assert "StatelessRandomUniformV2" in random_ops(library)


def test_hlo_random_pattern_finds_the_gate_of_a_compiled_training_step():
    """The HLO check of the serving process finds the gate's `rng-bit-generator` in a training call."""
    model = build("merge_batch")
    batch = tf.constant(images_for(model))
    compiled = tf.function(lambda x: model(x, training=True), jit_compile=True)
    assert HLO_RANDOM.search(compiled.experimental_get_compiler_ir(batch)(stage="hlo"))
    inference = tf.function(lambda x: model(x, training=False), jit_compile=True)
    assert not HLO_RANDOM.search(inference.experimental_get_compiler_ir(batch)(stage="hlo"))


# SavedModel.


def test_saved_model_has_no_random_op(served):
    """No op of any SavedModel, in its main graph or a library function, draws random numbers."""
    found = {}
    for name in EXPORTS:
        main, library = op_types(served.paths[name])
        assert "Conv2D" in library, name  # the model's ops were read
        if random_ops(main | library):
            found[name] = random_ops(main | library)
    assert found == {}


def test_serving_process_never_imports_the_package(served):
    """Every SavedModel loads and serves in a process where `stochastic_depth_tf` is not in `sys.modules`."""
    assert sorted(served.report["signatures"]) == sorted(EXPORTS)
    assert served.report["import_attempts"] == []
    assert served.report["package_modules"] == []


def test_saved_model_signatures(served):
    """`model.export` writes `serve` and `serving_default`; `tf.saved_model.save` writes `serving_default`."""
    expected = {"model_export": ["serve", "serving_default"], "tf_saved_model_save": ["serving_default"]}
    for name in EXPORTS:
        assert served.report["signatures"][name] == expected[name.split("-")[1]], name


def test_served_outputs_equal_predict(served):
    """Every signature of every SavedModel, loaded without the package, returns exactly `predict`'s values."""
    differences = {}
    for name in EXPORTS:
        for signature in served.report["signatures"][name]:
            difference = np.abs(served.output(name, signature) - served.expected[name]).max()
            if difference != 0:
                differences[f"{name}/{signature}"] = difference
    assert differences == {}


def test_xla_compiled_serving_matches_predict(served):
    """`serving_default` under `tf.function(jit_compile=True)` matches `predict` to float32 rounding."""
    mismatches = {}
    for name in EXPORTS:
        actual, expected = served.output(name, "serving_default", compiled=True), served.expected[name]
        if not np.allclose(actual, expected, rtol=1e-5, atol=1e-6):
            mismatches[name] = np.abs(actual - expected).max()
    assert mismatches == {}


def test_xla_serving_program_has_no_random_instruction(served):
    """The HLO that XLA compiles for `serving_default` holds no random-number instruction."""
    assert served.report["hlo_has_random"] == {name: False for name in EXPORTS}


# TFLite.

TFLITE_CASES = ["merge_batch", "merge_sample_inverted", "block_batch"]


class TFLiteModels:
    """Builtin-ops TFLite conversions of a case, as it is and stripped, by both converters."""

    def __init__(self, directory):
        self.directory = pathlib.Path(directory)

    def convert(self, case):
        """{(form, converter): (flatbuffer, inputs, `predict`'s outputs)}."""
        converted = {}
        for form in ("model", "stripped"):
            model = build(case)
            if form == "stripped":
                model = sdt.strip_stochastic_depth(model)
            x = images_for(model)
            expected = model.predict(x, verbose=0)
            path = str(self.directory / f"{case}-{form}")
            model.export(path, verbose=False)
            converters = {
                "from_keras_model": tf.lite.TFLiteConverter.from_keras_model(model),
                "from_saved_model": tf.lite.TFLiteConverter.from_saved_model(path),
            }
            for name, converter in converters.items():
                converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
                converted[form, name] = converter.convert(), x, expected
        return converted


@pytest.fixture(scope="module")
def tflite(tmp_path_factory):
    """Conversions by case, made once for the module."""
    models = TFLiteModels(tmp_path_factory.mktemp("tflite"))
    return {case: models.convert(case) for case in TFLITE_CASES}


def tflite_ops(flatbuffer):
    """The op names of a TFLite model, read from `tf.lite.experimental.Analyzer`."""
    report = io.StringIO()
    with contextlib.redirect_stdout(report):
        tf.lite.experimental.Analyzer.analyze(model_content=flatbuffer)
    return set(re.findall(r"Op#\d+ (\w+)\(", report.getvalue()))


@pytest.mark.filterwarnings("ignore:.*tf.lite.Interpreter is deprecated")
@pytest.mark.parametrize("case", TFLITE_CASES)
def test_tflite_builtin_ops_match_predict(tflite, case):
    """Model and stripped model, from either converter with builtin ops only, match `predict` in the interpreter."""
    mismatches = {}
    for (form, converter), (flatbuffer, x, expected) in tflite[case].items():
        actual = run_tflite(flatbuffer, x)
        if not np.allclose(actual, expected, rtol=1e-5, atol=1e-5):
            mismatches[form, converter] = np.abs(actual - expected).max()
    assert len(tflite[case]) == 4
    assert mismatches == {}


@pytest.mark.parametrize("case", TFLITE_CASES)
def test_tflite_model_has_only_deterministic_builtin_ops(tflite, case):
    """The TFLite ops are builtins (no Flex or custom op), none of them RANDOM_* or MULTINOMIAL."""
    for key, (flatbuffer, _, _) in tflite[case].items():
        ops = tflite_ops(flatbuffer)
        assert "CONV_2D" in ops, key
        assert all(re.fullmatch(r"[A-Z][A-Z0-9_]*", op) for op in ops), (key, ops)
        assert not {op for op in ops if "RANDOM" in op or "MULTINOMIAL" in op}, (key, ops)


def test_tflite_cifar_resnet_folds_batch_normalization_and_survival_scale(tmp_path):
    """A `cifar_resnet` export becomes convolutions, adds and the zero-pad shortcut's ops, nothing else.

    BatchNormalization and the inference scale `p` are folded into the
    convolution weights (no MUL op), as the README says.
    """
    model = build("cifar_resnet")
    model.export(str(tmp_path / "resnet"), verbose=False)
    converter = tf.lite.TFLiteConverter.from_saved_model(str(tmp_path / "resnet"))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    assert tflite_ops(converter.convert()) == {
        "CONV_2D",
        "ADD",
        "STRIDED_SLICE",
        "PAD",
        "MEAN",
        "FULLY_CONNECTED",
        "SOFTMAX",
    }

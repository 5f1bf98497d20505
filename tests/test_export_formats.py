"""`model.export(path, format=...)` in every format Keras offers on the backend under test.

Keras 3.15.1's `Model.export` offers, by backend (keras/src/export/):

| format           | tensorflow       | jax                  | torch                           |
|------------------|------------------|----------------------|---------------------------------|
| `tf_saved_model` | yes              | yes (jax2tf)         | needs torch_xla; fails (below)  |
| `litert`         | yes              | refused              | needs litert-torch, fixed shape |
| `onnx`           | tf2onnx          | jax2onnx             | torch.onnx                      |
| `openvino`       | openvino         | openvino; fails      | openvino                        |
| `torch`          | refused          | refused              | yes (`torch.export`, `.pt2`)    |

For a merge model (`StochasticDepth`, paper scaling), a block model
(`StochasticDepthBlock` with a projection shortcut) and a small residual
model after `sdt.apply_stochastic_depth` (ResNet50V2 after surgery in a
slow test), each with BatchNormalization statistics and survival
probabilities moved as training leaves them, every test here exports the
model in one format and proves:

- the exported graph holds no random op, read from the artifact itself
  (SavedModel: its TensorFlow ops and the HLO XLA compiles it to, which is
  where a JAX export's ops live; ONNX: node op types, subgraphs and
  functions included; LiteRT: the interpreter's op list; OpenVINO: the
  IR's op types; torch: the ATen ops of the ExportedProgram), and each
  detector is shown to find the random ops of a training graph;
- the exported model, run by its own runtime, returns `model.predict`'s
  values to `rtol=1e-5, atol=1e-5` (float32 kernels of different
  runtimes; the small models differ by less than 3e-7). OpenVINO runs with
  `INFERENCE_PRECISION_HINT="f32"`: on a CPU with bfloat16 units its
  default computes in bfloat16 (about 2e-3 away, for any model).

A format missing its exporter's package skips, naming it; OpenVINO is
optional. Two cells fail in Keras 3.15.1 for any model, ours or not, and
are strict expected failures (a fix shows as an unexpected pass): see
`KERAS_FAILURES`.
"""

import importlib.util
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

import stochastic_depth_tf as sdt
from tests.helpers import as_trained, block_model, merge_model
from tests.test_export import images_for, op_types, random_ops

BACKEND = keras.backend.backend()
RTOL = ATOL = 1e-5

# The modules each exporter of Keras 3.15.1 imports beyond the backend, by
# format and backend (the runtime that reads the artifact included). A
# backend missing from a format's row is refused by `Model.export`.
EXPORTERS = {
    "tf_saved_model": {"tensorflow": (), "jax": (), "torch": ()},
    "litert": {"tensorflow": (), "torch": ("litert_torch",)},
    "onnx": {
        "tensorflow": ("tf2onnx", "onnx", "onnxruntime"),
        "jax": ("jax2onnx", "onnx", "onnxruntime"),
        "torch": ("onnx", "onnxruntime"),
    },
    "openvino": {"tensorflow": ("openvino",), "jax": ("openvino",), "torch": ("openvino",)},
    "torch": {"torch": ()},
}

# Cells that fail in Keras 3.15.1 for a plain Keras model as well.
KERAS_FAILURES = {
    ("tf_saved_model", "torch"): (
        "Keras 3.15.1: torch.export refuses the sample inputs Keras builds (`Detected mismatch between the "
        "structure of inputs and dynamic_shapes`) before torch_xla, which the export also needs, is reached"
    ),
    ("openvino", "jax"): (
        "Keras 3.15.1 converts through jax2tf with native_serialization=False, which JAX 0.10 no longer "
        "honours: OpenVINO meets an `XlaCallModule` op it cannot convert"
    ),
}

# The random ops of each format, by name.
ONNX_RANDOM_OP = re.compile(r"Random|Bernoulli|Multinomial|Dropout")  # RandomUniform(Like), RandomNormal(Like), ...
LITERT_RANDOM_OP = re.compile(r"random|multinomial|rng", re.IGNORECASE)  # RANDOM_UNIFORM, FlexStatelessRandomUniformV2
OPENVINO_RANDOM_OP = re.compile(r"Random|Multinomial")  # RandomUniform, Multinomial
ATEN_RANDOM_OP = re.compile(r"rand|bernoulli|dropout|normal|uniform|multinomial|exponential|poisson|geometric|cauchy")
# Random bits in an XLA program: an `rng*` instruction (TensorFlow's random
# ops) or `xor`, the mixing step of JAX's threefry hash, which the program of
# a float model otherwise never holds.
HLO_RANDOM_BITS = re.compile(r"\b(rng[\w-]*|xor)\(")


def surgery_model():
    """Two identity residual blocks joined by `keras.layers.Add`, after `sdt.apply_stochastic_depth`."""
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="stem")(inputs)
    for block in range(2):
        residual = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name=f"conv{block}")(x)
        residual = keras.layers.BatchNormalization(name=f"bn{block}")(residual)
        x = keras.layers.Add(name=f"add{block}")([x, residual])
    outputs = keras.layers.Dense(3, name="head")(keras.layers.GlobalAveragePooling2D()(x))
    return sdt.apply_stochastic_depth(keras.Model(inputs, outputs), final_survival_probability=0.5)


def resnet50v2():
    original = keras.applications.ResNet50V2(weights=None, input_shape=(32, 32, 3), classes=10)
    return sdt.apply_stochastic_depth(original, final_survival_probability=0.5)


MODELS = {
    "merge": lambda: merge_model("batch", False),
    "block": lambda: block_model("batch", False),
    "surgery": surgery_model,
    "resnet50v2": resnet50v2,
}
CASES = ["merge", "block", "surgery", pytest.param("resnet50v2", marks=pytest.mark.slow)]
# LiteRT and ONNX (tf2onnx) convert the TensorFlow graph that the SavedModel
# test checks on ResNet50V2 too; the three small models are enough for the
# converters (ResNet50V2's ONNX conversion alone took 30 s).
CONVERTED_CASES = CASES[:3]


def require(format, request):
    """Skip unless Keras offers `format` here and its modules import; expect Keras' own failures."""
    if BACKEND not in EXPORTERS[format]:
        pytest.skip(f"Keras {keras.__version__} does not offer format={format!r} under KERAS_BACKEND={BACKEND}")
    missing = [name for name in EXPORTERS[format][BACKEND] if importlib.util.find_spec(name) is None]
    if missing:
        pytest.skip(f"format={format!r} under {BACKEND} needs {', '.join(missing)}, not installed")
    if (format, BACKEND) in KERAS_FAILURES:
        request.applymarker(pytest.mark.xfail(strict=True, reason=KERAS_FAILURES[format, BACKEND]))


def prepared(case):
    """The model of a case, as training leaves it, with its images and `predict`'s outputs for them."""
    model = as_trained(MODELS[case]())
    images = images_for(model)
    return model, images, model.predict(images, verbose=0)


def assert_close(actual, expected):
    np.testing.assert_allclose(np.asarray(actual), expected, rtol=RTOL, atol=ATOL)


# Readers of each format's ops.


def saved_model_random_ops(path, images):
    """Random ops of a SavedModel: its TensorFlow ops, and the instructions of the XLA program of `serve`."""
    main, library = op_types(path)
    loaded = tf.saved_model.load(str(path))  # held: `serve` reads its variables
    hlo = tf.function(loaded.serve, jit_compile=True).experimental_get_compiler_ir(tf.constant(images))(stage="hlo")
    assert "convolution(" in hlo  # the model's program was read
    return random_ops(main | library) + sorted(set(HLO_RANDOM_BITS.findall(hlo)))


def onnx_op_types(model):
    """Op types of every node of an ONNX model: main graph, subgraphs (If, Loop, Scan) and local functions."""
    import onnx

    found = set()

    def walk(nodes):
        for node in nodes:
            found.add(node.op_type)
            for attribute in node.attribute:
                if attribute.type == onnx.AttributeProto.GRAPH:
                    walk(attribute.g.node)
                for graph in attribute.graphs:
                    walk(graph.node)

    walk(model.graph.node)
    for function in model.functions:
        walk(function.node)
    return found


def litert_op_names(path):
    interpreter = tf.lite.Interpreter(model_path=str(path))
    return {op["op_name"] for op in interpreter._get_ops_details()}


def aten_op_names(exported_program):
    """The call targets of an ExportedProgram, its submodules' graphs (cond, while) included."""
    import torch

    return {
        str(node.target)
        for module in exported_program.graph_module.modules()
        if isinstance(module, torch.fx.GraphModule)
        for node in module.graph.nodes
        if node.op == "call_function"
    }


def matching(pattern, names):
    return sorted(name for name in names if pattern.search(name))


# The detectors, shown to detect.


@pytest.mark.one_backend
def test_random_op_patterns_cover_each_formats_random_ops():
    """Each format's pattern matches its random ops and none of the ops the exported models hold."""
    cases = {
        ONNX_RANDOM_OP: (
            ["RandomUniform", "RandomUniformLike", "RandomNormal", "RandomNormalLike", "Bernoulli", "Multinomial"],
            ["Conv", "Add", "Mul", "MatMul", "Relu", "GlobalAveragePool", "ReduceMean", "If", "Gather"],
        ),
        LITERT_RANDOM_OP: (
            ["RANDOM_UNIFORM", "RANDOM_STANDARD_NORMAL", "MULTINOMIAL", "FlexStatelessRandomUniformV2"],
            ["CONV_2D", "ADD", "MUL", "MEAN", "FULLY_CONNECTED", "PAD", "TRANSPOSE", "FlexConv2D"],
        ),
        OPENVINO_RANDOM_OP: (
            ["RandomUniform", "Multinomial"],
            ["Convolution", "Add", "Multiply", "MatMul", "Relu", "ReduceMean", "Transpose", "Parameter"],
        ),
        ATEN_RANDOM_OP: (
            ["aten.rand_like.default", "aten.randn.default", "aten.bernoulli.p", "aten.dropout.default"]
            + ["aten.uniform_.default", "aten.normal.Tensor_float", "aten.multinomial.default"],
            ["aten.conv2d.default", "aten.add.Tensor", "aten.mul.Tensor", "aten.mean.dim", "aten.matmul.default"]
            + ["aten.relu.default", "aten._native_batch_norm_legit_no_training.default", "aten.pad.default"],
        ),
    }
    for pattern, (random_names, model_names) in cases.items():
        assert matching(pattern, random_names) == sorted(random_names), pattern
        assert matching(pattern, model_names) == [], pattern


@pytest.mark.one_backend
def test_onnx_reader_finds_random_ops_in_subgraphs_and_functions():
    """A random op inside an `If` branch or a model-local function is among the op types read."""
    onnx = pytest.importorskip("onnx")
    helper = onnx.helper
    value = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2])

    def branch(name, op_type):
        return helper.make_graph([helper.make_node(op_type, ["x"], [f"{name}_out"])], name, [], [value])

    condition = helper.make_node(
        "If", ["flag"], ["y"], then_branch=branch("then", "RandomUniformLike"), else_branch=branch("else", "Identity")
    )
    local = helper.make_function("local", "Noise", ["x"], ["z"], [helper.make_node("Bernoulli", ["x"], ["z"])], [])
    graph = helper.make_graph(
        [condition, helper.make_node("Noise", ["x"], ["z"], domain="local")],
        "g",
        [value, helper.make_tensor_value_info("flag", onnx.TensorProto.BOOL, [])],
        [value],
    )
    model = helper.make_model(graph, functions=[local])
    assert matching(ONNX_RANDOM_OP, onnx_op_types(model)) == ["Bernoulli", "RandomUniformLike"]


def test_saved_model_reader_finds_the_gate_of_a_training_export(tmp_path):
    """A SavedModel serving the training form shows random ops: TensorFlow's, or the xor of JAX's threefry."""
    if BACKEND == "torch":
        pytest.skip(KERAS_FAILURES["tf_saved_model", "torch"])
    model, images, _ = prepared("merge")
    archive = keras.export.ExportArchive()
    archive.track(model)
    spec = keras.InputSpec(shape=(None,) + images.shape[1:], dtype="float32")
    # Under JAX the gate's seed state changes during the call: not static.
    static = {"is_static": False} if BACKEND == "jax" else {}
    archive.add_endpoint("serve", lambda x: model(x, training=True), input_signature=[spec], **static)
    archive.write_out(str(tmp_path / "training"), verbose=False)
    expected = {"tensorflow": "StatelessRandomUniformV2", "jax": "xor"}[BACKEND]
    assert expected in saved_model_random_ops(tmp_path / "training", images)


@pytest.mark.tensorflow_only
@pytest.mark.filterwarnings("ignore:.*tf.lite.Interpreter is deprecated")
def test_litert_reader_finds_the_gate_of_a_training_conversion():
    """A LiteRT conversion of the training form holds the gate as Flex random ops, in the interpreter's list."""
    model, images, _ = prepared("merge")
    function = tf.function(lambda x: model(x, training=True))
    concrete = function.get_concrete_function(tf.TensorSpec((None,) + images.shape[1:], tf.float32))
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], model)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
    interpreter = tf.lite.Interpreter(model_content=converter.convert())
    names = {op["op_name"] for op in interpreter._get_ops_details()}
    assert "FlexStatelessRandomUniformV2" in matching(LITERT_RANDOM_OP, names)


def test_aten_reader_finds_random_ops_of_an_exported_program():
    """The ATen ops read from a `torch.export` program include its random ones."""
    if BACKEND != "torch":
        pytest.skip("torch.export programs come from the torch backend only")
    import torch

    class Noisy(torch.nn.Module):
        def forward(self, x):
            noise = torch.rand_like(x) + torch.bernoulli(torch.full_like(x, 0.5))
            return torch.nn.functional.dropout(x, 0.5, training=True) + noise

    program = torch.export.export(Noisy(), (torch.ones(2, 3),))
    assert matching(ATEN_RANDOM_OP, aten_op_names(program)) == [
        "aten.bernoulli.default",
        "aten.dropout.default",
        "aten.rand_like.default",
    ]


def test_keras_refuses_the_formats_it_does_not_offer(tmp_path):
    """`model.export` refuses, by Keras' own error, the formats missing from this backend's column."""
    refused = [format for format, backends in EXPORTERS.items() if BACKEND not in backends]
    if not refused:
        pytest.skip(f"Keras offers every format under {BACKEND}")
    model, _, _ = prepared("merge")
    for format in refused:
        with pytest.raises(ValueError, match="export requires"):
            model.export(str(tmp_path / ("model.tflite" if format == "litert" else "model.pt2")), format=format)


# One test per format: the export serves `predict`'s values with no random op.


@pytest.mark.parametrize("case", CASES)
def test_tf_saved_model_equals_predict_with_no_random_op(case, tmp_path, request):
    require("tf_saved_model", request)
    model, images, expected = prepared(case)
    model.export(str(tmp_path / "model"), format="tf_saved_model", verbose=False)
    assert saved_model_random_ops(tmp_path / "model", images) == []
    loaded = tf.saved_model.load(str(tmp_path / "model"))
    assert_close(loaded.serve(images), expected)


@pytest.mark.filterwarnings("ignore:.*tf.lite.Interpreter is deprecated")
@pytest.mark.parametrize("case", CONVERTED_CASES)
def test_litert_equals_predict_with_no_random_op(case, tmp_path, request):
    require("litert", request)
    model, images, expected = prepared(case)
    path = str(tmp_path / "model.tflite")
    # The torch exporter traces fixed shapes (a `None` batch becomes 1).
    fixed = [keras.InputSpec(shape=images.shape, dtype="float32")] if BACKEND == "torch" else None
    model.export(path, format="litert", input_signature=fixed, verbose=False)
    names = litert_op_names(path)
    assert "CONV_2D" in names  # the model's ops were read
    assert matching(LITERT_RANDOM_OP, names) == []
    interpreter = tf.lite.Interpreter(model_path=path)
    (inputs,), (outputs,) = interpreter.get_input_details(), interpreter.get_output_details()
    interpreter.resize_tensor_input(inputs["index"], images.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(inputs["index"], images)
    interpreter.invoke()
    assert_close(interpreter.get_tensor(outputs["index"]), expected)


@pytest.mark.parametrize("case", CONVERTED_CASES)
def test_onnx_equals_predict_with_no_random_op(case, tmp_path, request):
    require("onnx", request)
    import onnx
    import onnxruntime

    model, images, expected = prepared(case)
    # Keras refuses an ONNX export of a model never called eagerly, and under
    # JAX `predict` does not count as a call (a plain Keras model too).
    model(images)
    path = str(tmp_path / "model.onnx")
    model.export(path, format="onnx", verbose=False)
    op_types_read = onnx_op_types(onnx.load(path))
    assert "Conv" in op_types_read  # the model's ops were read
    assert matching(ONNX_RANDOM_OP, op_types_read) == []
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    (inputs,) = session.get_inputs()
    (actual,) = session.run(None, {inputs.name: images})
    assert_close(actual, expected)


@pytest.mark.parametrize("case", CASES)
def test_openvino_equals_predict_with_no_random_op(case, tmp_path, request):
    require("openvino", request)
    import openvino

    model, images, expected = prepared(case)
    path = str(tmp_path / "model.xml")
    model.export(path, format="openvino", verbose=False)
    core = openvino.Core()
    names = {op.get_type_name() for op in core.read_model(path).get_ops()}
    assert "Convolution" in names  # the model's ops were read
    assert matching(OPENVINO_RANDOM_OP, names) == []
    compiled = core.compile_model(path, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    assert_close(compiled(images)[0], expected)


@pytest.mark.parametrize("case", CASES)
def test_torch_export_equals_predict_with_no_random_op(case, tmp_path, request):
    require("torch", request)
    import torch

    model, images, expected = prepared(case)
    path = str(tmp_path / "model.pt2")
    # Without `dynamic_shapes` the program is traced for a batch of 1 only.
    model.export(path, format="torch", verbose=False, dynamic_shapes={0: torch.export.Dim("batch", min=1, max=64)})
    program = torch.export.load(path)
    names = aten_op_names(program)
    assert "aten.conv2d.default" in names  # the model's ops were read
    assert matching(ATEN_RANDOM_OP, names) == []
    with torch.no_grad():
        assert_close(program.module()(torch.from_numpy(images)).numpy(), expected)

"""Serves SavedModels in a process that never imports stochastic_depth_tf.

Run by `tests/test_export.py` as a subprocess, as a serving binary would
run: `python serve_saved_model.py MANIFEST.json`. The manifest lists
`{"name", "path", "inputs"}` entries (`inputs` a `.npy` file). For each
SavedModel this script writes to `MANIFEST.json.npz`

- `<name>/<signature>/graph`: the output of every signature (what TF Serving
  and `saved_model_cli run` call), called as it is;
- `<name>/serving_default/xla`: the output of `serving_default` inside
  `tf.function(jit_compile=True)`, what TPU serving compiles;

and to `MANIFEST.json.report.json` the signature names, whether the XLA
program (its HLO) holds a random-number instruction, and whether anything
in this process imported or tried to import the package.

Run as a script, it refuses any import of `stochastic_depth_tf` (and checks
`sys.modules` at the end): a SavedModel that needed our Python code would
fail to load. Importing this module (the tests read `HLO_RANDOM`) changes
nothing.
"""

import json
import os
import re
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

PACKAGE = "stochastic_depth_tf"

# HLO instructions that draw random numbers: rng, rng-bit-generator,
# rng-get-and-update-state.
HLO_RANDOM = re.compile(r"\brng[\w-]*\(")

# The signature compiled with XLA: every SavedModel has it and TF Serving
# calls it by default (`model.export`'s `serve` is the same function).
XLA_SIGNATURE = "serving_default"


class _RefusePackage:
    """A meta path finder that records and refuses any import of the package."""

    def __init__(self):
        self.attempts = []

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == PACKAGE:
            self.attempts.append(name)
            raise ImportError(f"{name} must not be imported while serving")
        return None


def _one_tensor_function(signature):
    """A signature as a function of its single input to its single output."""
    (argument,) = signature.structured_input_signature[1]

    def call(x):
        (output,) = signature(**{argument: x}).values()
        return output

    return call


def serve(path, inputs):
    """(outputs by key, signature names, whether the XLA program draws random numbers)."""
    loaded = tf.saved_model.load(path)
    x = tf.constant(inputs)
    outputs = {}
    for key, signature in loaded.signatures.items():
        outputs[f"{key}/graph"] = _one_tensor_function(signature)(x).numpy()
    compiled = tf.function(_one_tensor_function(loaded.signatures[XLA_SIGNATURE]), jit_compile=True)
    outputs[f"{XLA_SIGNATURE}/xla"] = compiled(x).numpy()
    hlo = compiled.experimental_get_compiler_ir(x)(stage="hlo")
    return outputs, sorted(loaded.signatures), bool(HLO_RANDOM.search(hlo))


def main(manifest_path):
    refuse = _RefusePackage()
    sys.meta_path.insert(0, refuse)
    with open(manifest_path, encoding="utf-8") as file:
        manifest = json.load(file)
    arrays, report = {}, {"signatures": {}, "hlo_has_random": {}}
    for entry in manifest:
        outputs, signatures, hlo_has_random = serve(entry["path"], np.load(entry["inputs"]))
        arrays.update({f"{entry['name']}/{key}": value for key, value in outputs.items()})
        report["signatures"][entry["name"]] = signatures
        report["hlo_has_random"][entry["name"]] = hlo_has_random
    report["import_attempts"] = refuse.attempts
    report["package_modules"] = sorted(name for name in sys.modules if name.split(".")[0] == PACKAGE)
    np.savez(manifest_path + ".npz", **arrays)
    with open(manifest_path + ".report.json", "w", encoding="utf-8") as file:
        json.dump(report, file)


if __name__ == "__main__":
    main(sys.argv[1])

"""Installs stochastic_depth_tf: `pip install .`, or `pip install -e ".[test]"` to develop."""

import pathlib
import re

from setuptools import find_packages, setup

HERE = pathlib.Path(__file__).parent
VERSION = re.search(r'__version__ = "([^"]+)"', (HERE / "stochastic_depth_tf" / "version.py").read_text()).group(1)

setup(
    name="stochastic_depth_tf",
    version=VERSION,
    description="Stochastic depth (Huang et al., ECCV 2016) for Keras 3 / TensorFlow residual networks",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    packages=find_packages(include=["stochastic_depth_tf", "stochastic_depth_tf.*"]),
    python_requires=">=3.9",
    # TensorFlow ships as several distributions (tensorflow, tensorflow-cpu,
    # tensorflow[and-cuda], tensorflow-macos) that install the same module;
    # requiring one of them would pull it in beside the one a user already
    # has. So TensorFlow comes through an extra, and importing the package
    # checks that some TensorFlow >= 2.16 is there.
    # The floors are the oldest versions the CI subset passes on
    # (tests/oldest_versions.sh, run by .ci/run): Keras 3.10 with TensorFlow
    # 2.16, JAX 0.4.34 and PyTorch 2.13. Below Keras 3.10 the layers cannot
    # be built or saved (docs/development.md, "Versions"). No upper bounds:
    # no release is known to break.
    install_requires=["keras>=3.10", "numpy"],
    extras_require={
        "cpu": ["tensorflow-cpu>=2.16"],
        "gpu": ["tensorflow[and-cuda]>=2.16"],
        "tensorflow": ["tensorflow>=2.16"],
        # Keras' other backends (TensorFlow stays needed for the tests and
        # for SavedModel export). PyTorch's default wheel pulls CUDA; for a
        # CPU-only machine install `torch==2.13.0+cpu` (PyTorch's CPU index).
        "jax": ["jax[cpu]>=0.4.34"],
        "torch": ["torch>=2.13"],
        "demo": ["scikit-learn", "matplotlib"],
        # `sdt.datasets.load_mnist1d` generates MNIST-1D offline with the
        # `mnist1d` package's own generator (never its download URL).
        "mnist1d": ["mnist1d"],
        # What keras-hub's backbones import. keras-hub itself goes in with
        # `pip install --no-deps "keras-hub==0.32.0"`: its declared
        # tensorflow-text pulls the full `tensorflow` beside tensorflow-cpu.
        # stochastic_depth_tf.hub supports keras-hub 0.30 and newer (tested:
        # 0.30.0 and 0.32.0), which need Keras 3.15 or newer.
        "hub": [
            "kagglehub",
            "kagglesdk==0.1.28",
            "sentencepiece",
            "tokenizers",
            "regex",
            "rich",
            "absl-py",
            "packaging",
        ],
        "test": [
            # Pinned to what CI ran, as ruff and mypy are: a fresh machine
            # resolves the same test runner (docs/development.md says how
            # to move the pins).
            "pytest==9.2.0",
            # tests/all_backends.py runs each backend's tests on 2 workers.
            "pytest-xdist==3.8.0",
            "ruff==0.17.6",
            "mypy==2.4.1",
            "build",
            "twine",
            "setuptools>=64",
            "wheel",
            "mkdocs-material",
            "mkdocstrings[python]",
            "h5py",
            "scikit-learn",
            "matplotlib",
            "nbclient",
            "nbformat",
            "ipykernel",
            "mnist1d",
            # Model.export(format="onnx") under each backend, checked with
            # onnxruntime (tests/test_export_formats.py); seconds to install.
            "onnx",
            "onnxruntime",
            "tf2onnx",
        ],
        "docs": ["mkdocs-material", "mkdocstrings[python]"],
        "notebooks": ["scikit-learn", "matplotlib", "nbclient", "nbformat", "ipykernel", "mnist1d"],
        "bench": ["keras-cv"],
    },
    entry_points={"console_scripts": ["stochastic-depth-tf=stochastic_depth_tf.__main__:main"]},
    classifiers=[
        # Beta: the API of the reference (docs/api/) is settled and tested on three
        # backends, but it has not yet been through a 1.0 release.
        "Development Status :: 4 - Beta",
        "Programming Language :: Python :: 3",
        "Framework :: Keras",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)

"""The release a user installs: sdist and wheel build, pass `twine check`, and the wheel works alone.

The wheel is installed into a new virtual environment that sees this
environment's site-packages, with `--no-index`: pip checks the wheel's
declared dependencies against what is installed (Keras and NumPy, no
download), and the package imported, from an empty folder, is the installed
wheel, not this checkout. "This environment" is the interpreter running the
tests, a virtual environment or not: `venv --system-site-packages` would
expose the base interpreter's packages instead, which a venv does not use.
"""

from __future__ import annotations

import os
import re
import shutil
import site
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import stochastic_depth_tf as sdt

ROOT = Path(__file__).resolve().parents[1]
DIST_INFO = f"stochastic_depth_tf-{sdt.__version__}.dist-info"

pytestmark = pytest.mark.slow


# What a clone holds that is not the project: environments, builds, caches.
NOT_SOURCES = shutil.ignore_patterns(
    ".git", ".venv*", "bazel-*", "build", "dist", "site", "*.egg-info", "__pycache__", ".pytest_cache", ".*_cache"
)


@pytest.fixture(scope="module")
def distributions(tmp_path_factory: pytest.TempPathFactory) -> dict:
    # From a copy of the sources: the build writes beside them (build/,
    # *.egg-info), and under `bazel test` the workspace is read-only.
    sources = tmp_path_factory.mktemp("sources") / "stochastic_depth_tf"
    shutil.copytree(ROOT, sources, ignore=NOT_SOURCES)
    out = tmp_path_factory.mktemp("dist")
    # --no-isolation: the build backend comes from the test extra, not a download.
    result = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(sources)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (wheel,) = out.glob("*.whl")
    (sdist,) = out.glob("*.tar.gz")
    return {"wheel": wheel, "sdist": sdist}


def test_version_names_the_release_in_the_changelog():
    assert re.fullmatch(r"\d+\.\d+\.\d+((a|b|rc)\d+)?", sdt.__version__)
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    first_release = re.search(r"^## \[?([^\]\s]+)\]?", changelog, flags=re.MULTILINE)
    assert first_release is not None and first_release.group(1) == sdt.__version__


def test_distributions_are_named_for_the_version(distributions):
    for path in distributions.values():
        assert f"stochastic_depth_tf-{sdt.__version__}" in path.name


def test_twine_check_passes(distributions):
    result = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *map(str, distributions.values())],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_wheel_holds_the_package_only(distributions):
    names = zipfile.ZipFile(distributions["wheel"]).namelist()
    top_level = {name.split("/")[0] for name in names}
    assert top_level == {"stochastic_depth_tf", DIST_INFO}
    assert not [name for name in names if re.search(r"(^|/)(tests|notebooks|benchmarks|results)/", name)]
    assert not [name for name in names if name.endswith((".ipynb", ".keras", ".json", ".md"))]
    assert any(name.startswith(f"{DIST_INFO}/") and name.endswith("LICENSE") for name in names), names


def test_wheel_declares_its_requirements(distributions):
    text = zipfile.ZipFile(distributions["wheel"]).read(f"{DIST_INFO}/METADATA").decode("utf-8")
    requires = re.findall(r"^Requires-Dist: (.+)$", text, flags=re.MULTILINE)
    assert {"keras>=3.10", "numpy"} <= set(requires), requires
    # TensorFlow through an extra only (setup.py says why), never as a plain requirement.
    assert not [line for line in requires if line.startswith("tensorflow") and "extra ==" not in line], requires
    assert 'tensorflow-cpu>=2.16; extra == "cpu"' in requires, requires
    assert re.search(r"^License(-Expression)?: Apache-2.0$", text, flags=re.MULTILINE), text[:2000]
    assert re.search(r"^Requires-Python: >=3.9$", text, flags=re.MULTILINE)


def test_sdist_holds_the_sources_and_the_license(distributions):
    with tarfile.open(distributions["sdist"]) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    for needed in (
        "setup.py",
        "pyproject.toml",
        "README.md",
        "CHANGELOG.md",
        "LICENSE",
        "PKG-INFO",
        "stochastic_depth_tf/__init__.py",
        "stochastic_depth_tf/layers/stochastic_depth.py",
    ):
        assert needed in names, needed
    # The tests need a clone (notebooks, docs, benchmarks); setuptools would have taken test_*.py alone.
    assert not [name for name in names if name.startswith(("tests/", "benchmarks/", "notebooks/", "docs/", "site/"))]


def test_installed_wheel_imports_runs_the_quick_start_and_the_demo_help(distributions, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    # The new venv sees this environment's site-packages after its own, as
    # plain path lines: their .pth files (this checkout's editable install
    # among them) are not run, so the package can only come from the wheel.
    venv_site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(venv_site, "tested_environment.pth").write_text("\n".join(site.getsitepackages()) + "\n", encoding="utf-8")
    work = tmp_path / "empty"
    work.mkdir()
    # Away from the checkout: its build leaves an .egg-info that pip would
    # take for the package already installed.
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    subprocess.run(
        [python, "-m", "pip", "install", "--no-index", "--quiet", str(distributions["wheel"])],
        check=True,
        capture_output=True,
        text=True,
        cwd=work,
        env=env,
    )

    def run(*args: str) -> str:
        result = subprocess.run([python, *args], cwd=work, env=env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    quick_start = re.search(r"```python\n(.*?)```", readme, flags=re.DOTALL).group(1)
    # One process (TensorFlow imports once): where the package comes from, then the quick start.
    location = run("-c", f"import stochastic_depth_tf as s\nprint(s.__file__, s.__version__)\n{quick_start}")
    imported_from = location.splitlines()[0]  # the first line; the quick start's output follows
    assert str(venv) in imported_from and imported_from.endswith(f" {sdt.__version__}")
    assert (work / "model.keras").exists()
    assert "usage" in run("-m", "stochastic_depth_tf", "--help").lower()

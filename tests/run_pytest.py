"""Entry point of the Bazel `py_test` targets: runs pytest on the files given."""

import os
import sys

import pytest

if __name__ == "__main__":
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys.exit(
        pytest.main(
            ["-q", "-p", "no:cacheprovider", "--rootdir", root, "-c", os.path.join(root, "pytest.ini")] + sys.argv[1:]
        )
    )

"""ruff over the package, the tests and the notebooks, as part of `make test`."""

import subprocess
import sys

from cachelab import paths


def test_ruff_finds_nothing():
    root = paths.project_root()
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "cachelab", "tests", "notebooks"],
                          cwd=root, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr

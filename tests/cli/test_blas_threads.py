"""The command line caps numpy's BLAS at one thread unless told otherwise
(voipalert/cli/_blas_threads.py, docs/capacity.md §4)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

_PROBE = "import voipalert.cli, os; print(os.environ['OPENBLAS_NUM_THREADS'])"


@pytest.mark.parametrize(("given", "expected"), [(None, "1"), ("3", "3")])
def test_blas_threads_default_to_one_and_the_environment_wins(
    given: str | None, expected: str
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    if given is not None:
        env["OPENBLAS_NUM_THREADS"] = given
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == expected

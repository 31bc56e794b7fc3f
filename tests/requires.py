"""What a test needs from the machine: skipped on a developer's machine that lacks it, a
failure under CI (``CI`` set), where every tool is installed by ``.ci/run`` and a skip would
hide a test that never ran."""

from __future__ import annotations

import os
import shutil

import pytest


def need(condition: bool, message: str) -> None:
    """Go on when ``condition`` holds; otherwise skip, or fail under CI."""
    if condition:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{message} (missing under CI: .ci/run installs it)", pytrace=False)
    pytest.skip(message)


def need_program(name: str, hint: str = "") -> str:
    """The path of program ``name``, or skip/fail saying how to install it."""
    path = shutil.which(name)
    need(path is not None, f"needs {name}" + (f" ({hint})" if hint else ""))
    assert path is not None
    return path


def need_root(why: str) -> None:
    need(os.geteuid() == 0, f"needs root: {why}")

"""``deploy/install.sh --system`` creates what the example configuration and the unit expect,
with the owners and modes the service needs; the service user can then open the database
there (the real CLI, as that user). Paths and user are redirected to a scratch directory
and ``nobody``, so that the test changes nothing else on the machine."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sysconfig
import tempfile
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.requires import need_root

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"


@pytest.fixture(autouse=True)
def _root() -> None:
    need_root("install.sh --system creates a user and system directories")


@pytest.fixture
def root() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="voipalert-install-"))
    os.chmod(path, 0o755)  # another user must be able to enter (pytest's tmp is root-only)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def install(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "VOIPALERT_USER": "nobody",
        "VOIPALERT_GROUP": "nogroup",
        "VOIPALERT_STATE_DIR": str(root / "var/lib/voipalert"),
        "VOIPALERT_CACHE_DIR": str(root / "var/cache/voipalert"),
        "VOIPALERT_CONFIG_DIR": str(root / "etc/voipalert"),
    }
    return subprocess.run(
        ["bash", str(DEPLOY / "install.sh"), *args],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def owner_mode(path: Path) -> tuple[int, int, int]:
    info = path.stat()
    return info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)


def test_the_example_and_the_unit_name_the_directories_install_sh_creates() -> None:
    example = tomllib.loads((DEPLOY / "voipalert.example.toml").read_text())
    script = (DEPLOY / "install.sh").read_text()
    unit = (DEPLOY / "voipalert.service").read_text()
    database = Path(example["database"]["path"])
    assert f"state_dir=${{VOIPALERT_STATE_DIR:-{database.parent}}}" in script
    assert f"cache_dir=${{VOIPALERT_CACHE_DIR:-{example['tts']['cache_dir']}}}" in script
    assert f"WorkingDirectory={database.parent}" in unit
    assert f"VOIPALERT_DATABASE__PATH={database}" in unit
    assert f"VOIPALERT_TTS__CACHE_DIR={example['tts']['cache_dir']}" in unit


def test_system_install_creates_owned_directories_and_a_private_config(root: Path) -> None:
    result = install(root, "--system", "--no-venv")
    assert result.returncode == 0, result.stderr
    state, cache, config = (
        root / "var/lib/voipalert", root / "var/cache/voipalert", root / "etc/voipalert"
    )  # fmt: skip
    assert owner_mode(state) == (65534, 65534, 0o750)
    assert owner_mode(cache) == (65534, 65534, 0o750)
    assert owner_mode(config) == (0, 65534, 0o750)
    assert owner_mode(config / "voipalert.toml") == (0, 65534, 0o640)

    # An edited configuration is never overwritten by a second run.
    (config / "voipalert.toml").write_text("# edited\n")
    assert install(root, "--system", "--no-venv").returncode == 0
    assert (config / "voipalert.toml").read_text() == "# edited\n"

    # The service user can create and use the database there.
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOIPALERT_")}
    env |= {
        "PYTHONPATH": f"{REPO}{os.pathsep}{sysconfig.get_paths()['purelib']}",
        "HOME": str(state),
        "VOIPALERT_DATABASE__PATH": str(state / "voipalert.db"),
    }
    listed = subprocess.run(
        ["/usr/bin/python3", "-m", "voipalert", "token", "list"], cwd=state, env=env,
        capture_output=True, text=True, timeout=60, check=False, user="nobody",
        group="nogroup", extra_groups=[],
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    assert (state / "voipalert.db").stat().st_uid == 65534


def test_system_install_refuses_without_root_and_bad_options(root: Path) -> None:
    bad = install(root, "--sytem")
    assert bad.returncode == 2 and "usage" in bad.stderr
    as_user = subprocess.run(
        ["bash", str(DEPLOY / "install.sh"), "--system", "--no-venv"],
        capture_output=True, text=True, timeout=60, check=False, user="nobody",
        cwd=root,
    )  # fmt: skip
    assert as_user.returncode == 1 and "run it as root" in as_user.stderr
    assert not (root / "var").exists()

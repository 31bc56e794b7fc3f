"""``[console]`` in the configuration reaches the console's own config."""

from __future__ import annotations

from pathlib import Path

import pytest

from voipalert.app.config import console_config
from voipalert.errors import ConfigError
from voipalert.settings import load_settings


def test_console_section_maps_onto_the_console_config(tmp_path: Path) -> None:
    path = tmp_path / "voipalert.toml"
    path.write_text(
        "[console]\nenabled = false\nsession_hours = 8\nlockout_failures = 3\n"
        "lockout_seconds = 60\nlogin_attempts = 20\nlogin_window_seconds = 30\n"
    )
    settings = load_settings(path, environ={})
    assert settings.console.enabled is False
    config = console_config(settings)
    assert (config.session_hours, config.lockout_failures, config.lockout_seconds) == (8, 3, 60)
    assert (config.login_attempts, config.login_window_seconds) == (20, 30)
    defaults = console_config(load_settings(None, environ={}))
    assert (defaults.lockout_failures, defaults.session_hours) == (5, 12.0)


def test_a_bad_console_value_names_its_key(tmp_path: Path) -> None:
    path = tmp_path / "voipalert.toml"
    path.write_text("[console]\nlockout_failures = 0\n")
    with pytest.raises(ConfigError, match=r"console\.lockout_failures"):
        load_settings(path, environ={})

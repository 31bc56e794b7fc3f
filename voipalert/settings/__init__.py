"""Configuration: a TOML file overlaid by ``VOIPALERT_*`` environment variables.

Where the file comes from, first match wins: ``--config FILE``, the ``VOIPALERT_CONFIG``
variable, ``./voipalert.toml`` when it exists; with none of them only the defaults and the
environment apply. Nested keys use ``__`` in the environment, so
``VOIPALERT_SIP__REGISTRAR=sip:127.0.0.1:5070`` sets ``[sip] registrar``.

This module is the composition root's view of the configuration (docs/architecture.md §3):
the cores never import it; ``voipalert.app.config`` maps these models onto each component's
own config dataclass.
Secrets are ``SecretStr``: they print as ``**********`` in ``repr``, logs and
``config check``.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from voipalert.errors import ConfigError
from voipalert.settings.callin import CallinSettings
from voipalert.settings.sections import (
    AlertmanagerHookSettings,
    CallSettings,
    ClusterSettings,
    ConsoleSettings,
    DatabaseSettings,
    EmailRuleSettings,
    EngineSettings,
    GenericHookSettings,
    HeartbeatSettings,
    HooksSettings,
    HttpSettings,
    ImapSettings,
    MediaSettings,
    OutboundSettings,
    RotaSourcesSettings,
    RouteSettings,
    SelfTestSettings,
    SipSettings,
    SmtpSettings,
    TtsSettings,
)
from voipalert.settings.text import MailSettings, TextSettings

__all__ = [
    "CONFIG_ENV_VAR",
    "ENV_PREFIX",
    "AlertmanagerHookSettings",
    "CallSettings",
    "CallinSettings",
    "ClusterSettings",
    "ConsoleSettings",
    "DatabaseSettings",
    "EmailRuleSettings",
    "EngineSettings",
    "GenericHookSettings",
    "HeartbeatSettings",
    "HooksSettings",
    "HttpSettings",
    "ImapSettings",
    "MailSettings",
    "MediaSettings",
    "OutboundSettings",
    "RotaSourcesSettings",
    "RouteSettings",
    "SelfTestSettings",
    "Settings",
    "SipSettings",
    "SmtpSettings",
    "TextSettings",
    "TtsSettings",
    "config_path",
    "load_settings",
    "masked_dump",
]

ENV_PREFIX: Final = "VOIPALERT_"
CONFIG_ENV_VAR: Final = "VOIPALERT_CONFIG"
DEFAULT_CONFIG_FILE: Final = Path("voipalert.toml")


class Settings(BaseSettings):
    """Everything voipalert can be told. Each section is one ``[table]`` in the TOML file."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        case_sensitive=False,
        extra="forbid",
        frozen=True,
    )

    sip: SipSettings = SipSettings()
    media: MediaSettings = MediaSettings()
    tts: TtsSettings = TtsSettings()
    http: HttpSettings = HttpSettings()
    smtp: SmtpSettings = SmtpSettings()
    imap: ImapSettings = ImapSettings()
    routes: list[RouteSettings] = Field(default_factory=list)
    hooks: HooksSettings = HooksSettings()
    heartbeat: HeartbeatSettings = HeartbeatSettings()
    rota_sources: RotaSourcesSettings = RotaSourcesSettings()
    database: DatabaseSettings = DatabaseSettings()
    engine: EngineSettings = EngineSettings()
    cluster: ClusterSettings = ClusterSettings()
    call: CallSettings = CallSettings()
    console: ConsoleSettings = ConsoleSettings()
    outbound: OutboundSettings = OutboundSettings()
    selftest: SelfTestSettings = SelfTestSettings()
    text: TextSettings = TextSettings()
    mail: MailSettings = MailSettings()
    callin: CallinSettings = CallinSettings()

    @model_validator(mode="after")
    def _srtp_over_tls(self) -> Settings:
        # SDES puts the SRTP keys in the SDP in clear (RFC 4568 §8.3): over UDP or TCP
        # anyone on the path could read them. Refused here, not discovered in a call.
        if self.media.srtp != "off" and self.sip.transport != "tls":
            raise ValueError(
                f"[media] srtp = {self.media.srtp!r} needs [sip] transport = 'tls' (the SRTP "
                f"keys travel in the SDP; over {self.sip.transport} they would be readable)"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The file's contents arrive as init arguments; the environment overlays them.
        return (env_settings, init_settings)


def config_path(explicit: Path | None, environ: Mapping[str, str] | None = None) -> Path | None:
    """Which configuration file applies: ``--config``, then $VOIPALERT_CONFIG, then
    ./voipalert.toml when it exists."""
    env = os.environ if environ is None else environ
    if explicit is not None:
        return explicit
    if env.get(CONFIG_ENV_VAR):
        return Path(env[CONFIG_ENV_VAR])
    if DEFAULT_CONFIG_FILE.is_file():
        return DEFAULT_CONFIG_FILE
    return None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError([f"{path}: configuration file not found"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read configuration file: {exc.strerror}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"]) from None


def _describe(error: Mapping[str, Any], from_file: Path | None) -> str:
    loc = [str(part) for part in error["loc"]]
    key = ".".join(loc) if loc else "(top level)"
    env_name = ENV_PREFIX + "__".join(part.upper() for part in loc)
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown key"
    where = f" (in {from_file} or ${env_name})" if from_file else f" (${env_name})"
    got = ""
    if error["type"] not in ("missing", "extra_forbidden", "value_error") and not isinstance(
        error.get("input"), dict | SecretStr
    ):
        got = f"; got {error.get('input')!r}"
        if "password" in key or "secret" in key or "token" in key:
            got = ""
    return f"{key}{where}: {message}{got}"


def load_settings(path: Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Load and validate the configuration, or raise ``ConfigError`` with one line per
    problem, each naming the key."""
    chosen = config_path(path, environ)
    data = _read_toml(chosen) if chosen is not None else {}
    try:
        return Settings(**data)
    except ValidationError as exc:
        raise ConfigError([_describe(err, chosen) for err in exc.errors()]) from None


def masked_dump(settings: Settings) -> dict[str, Any]:
    """The effective configuration as plain data, secrets replaced by ``**********``."""
    return settings.model_dump(mode="json", exclude_none=False)


# ---------------------------------------------------------------- mapping onto the cores

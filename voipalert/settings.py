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
    latching: bool = Field(
        default=True,
        description="send RTP to where the far end's media really comes from when it differs "
        "from the SDP address (NAT); decided once, after two consistent packets",
    )
    inband_dtmf: bool = Field(
        default=True,
        description="also listen for DTMF tones in the received audio (PBXs with in-band "
        "DTMF, or no telephone-event in the SDP answer)",
    )

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


class TtsSettings(_Section):
    voice: str = "en_US-joe-medium"
    voices_dir: Path = Path("voices")
    cache_dir: Path = Path("voipalert-cache")
    cache_max_mb: int = Field(default=256, ge=1)


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

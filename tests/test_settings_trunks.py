"""``[[sip.trunk]]``: further trunks after ``[sip]`` (docs/sip-failover.md)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from voipalert.app.config import trunk_configs, ua_config
from voipalert.errors import ConfigError
from voipalert.settings import load_settings
from voipalert.sip.uri import SipUri

TWO_TRUNKS = """
[sip]
name = "pbx-a"
registrar = "sip:10.0.0.1:5060"
username = "alert"
password = "secret-a"
local_port = 5062
failover_cooldown_seconds = 30

[[sip.trunk]]
name = "carrier"
local_port = 5064
registrar = "sip:sip.carrier.example"
outbound_proxy = "sip:10.9.9.9:5070"
username = "4930123"
auth_username = "acct-77"
password = "secret-b"
max_calls_per_second = 2.5

[[sip.trunk]]
name = "ip-auth"
local_port = 5066
outbound_proxy = "sip:192.0.2.10"
register = false
"""


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("VOIPALERT_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "conf.toml"
    path.write_text(text)
    return path


def test_a_single_registrar_is_a_list_of_one(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, '[sip]\nregistrar = "sip:10.0.0.1"\n'))
    assert settings.sip.name == "primary" and settings.sip.trunk == []
    assert trunk_configs(settings) == []
    assert settings.sip.failover_cooldown_seconds == 60


def test_further_trunks_inherit_sip_and_keep_their_own_identity(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, TWO_TRUNKS))
    base = ua_config(settings)
    carrier, ip_auth = trunk_configs(settings)
    assert (carrier.name, carrier.bind, carrier.register) == ("carrier", ("127.0.0.1", 5064), True)
    assert carrier.ua.registrar == SipUri(host="sip.carrier.example")
    assert carrier.ua.outbound_proxy == SipUri(host="10.9.9.9", port=5070)
    assert carrier.ua.domain == "sip.carrier.example"
    assert (carrier.ua.user, carrier.ua.auth_username) == ("4930123", "acct-77")
    assert carrier.ua.password == "secret-b" and base.password == "secret-a"
    # Only IP literals are trusted; the registrar here is a name, so no trusted list.
    assert carrier.ua.trusted_hosts is None
    assert carrier.ua.transport == base.transport and carrier.ua.timers == base.timers
    assert (ip_auth.register, ip_auth.ua.registrar) == (False, None)
    assert ip_auth.ua.domain == "192.0.2.10"
    assert ip_auth.ua.trusted_hosts == frozenset({"192.0.2.10"})
    assert "secret-b" not in repr(settings.sip.trunk[0])
    # The call rate: [sip]'s by default (20 a second), a trunk's own when it sets one.
    assert base.max_calls_per_second == 20.0
    assert carrier.ua.max_calls_per_second == 2.5
    assert ip_auth.ua.max_calls_per_second == 20.0


@pytest.mark.parametrize("value", ["-1", "1001", '"fast"'])
def test_a_bad_call_rate_is_refused_naming_the_key(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match="max_calls_per_second"):
        load_settings(write(tmp_path, f"[sip]\nmax_calls_per_second = {value}\n"))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('[[sip.trunk]]\nname = "pbx-a"\nlocal_port = 5070\ndomain = "x"\n', "unique"),
        ('[[sip.trunk]]\nname = "b"\nlocal_port = 5062\ndomain = "x"\n', "own local_port"),
        ('[[sip.trunk]]\nname = "b"\nlocal_port = 5070\n', "set registrar, outbound_proxy"),
        ('[[sip.trunk]]\nname = "B c"\nlocal_port = 5070\ndomain = "x"\n', "sip.trunk.0.name"),
        ('[[sip.trunk]]\nname = "b"\ndomain = "x"\n', "sip.trunk.0.local_port"),
        ('[[sip.trunk]]\nname = "b"\nlocal_port = 5070\nregistrar = "pbx"\n', "SIP URI"),
        ('[[sip.trunk]]\nname = "b"\nlocal_port = 5070\ndomain = "x"\nregistar = "s"\n',
         "unknown key"),
        ('[[sip.trunk]]\nname = "b"\nlocal_port = 5070\ndomain = "x"\npassword = "p"\n',
         "password is set but username"),
    ],
)  # fmt: skip
def test_bad_trunks_are_refused_with_the_reason(tmp_path: Path, extra: str, message: str) -> None:
    text = '[sip]\nname = "pbx-a"\nregistrar = "sip:10.0.0.1"\nlocal_port = 5062\n' + extra
    with pytest.raises(ConfigError, match=message):
        load_settings(write(tmp_path, text))


def test_at_most_eight_trunks(tmp_path: Path) -> None:
    text = '[sip]\nregistrar = "sip:10.0.0.1"\n' + "".join(
        f'[[sip.trunk]]\nname = "t{i}"\nlocal_port = {6000 + i}\ndomain = "x"\n' for i in range(8)
    )
    with pytest.raises(ConfigError, match=r"sip\.trunk"):
        load_settings(write(tmp_path, text))


def test_trunks_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "VOIPALERT_SIP__TRUNK",
        '[{"name": "b", "local_port": 5070, "registrar": "sip:10.0.0.2", "register": false}]',
    )
    (trunk,) = trunk_configs(load_settings())
    assert trunk.name == "b" and trunk.register is False


def test_config_check_shows_trunks_as_written_with_secrets_masked(tmp_path: Path) -> None:
    from voipalert.settings import masked_dump

    dumped = masked_dump(load_settings(write(tmp_path, TWO_TRUNKS)))
    carrier, ip_auth = dumped["sip"]["trunk"]
    assert carrier["password"] == "**********" and "secret-b" not in str(dumped)
    assert carrier["register"] is True and ip_auth["register"] is False
    assert "registers" not in carrier

"""``voipalert sip register`` as an administrator runs it, against the testbed's Kamailio."""

from __future__ import annotations

from testbed import Testbed

from tests.cli.test_main import run
from tests.net.sip_harness import free_port


def env_for(testbed: Testbed, password: str) -> dict[str, str]:
    return {
        "VOIPALERT_SIP__REGISTRAR": testbed.registrar,
        "VOIPALERT_SIP__USERNAME": "voipalert",
        "VOIPALERT_SIP__PASSWORD": password,
        "VOIPALERT_SIP__LOCAL_PORT": str(free_port()),
    }


def test_register_succeeds_and_reports_the_granted_expiry(testbed: Testbed) -> None:
    result = run("sip", "register", env=env_for(testbed, testbed.users["voipalert"]))
    assert result.returncode == 0, result.stderr
    assert "registered sip:voipalert@127.0.0.1" in result.stdout
    assert "200 OK, granted expiry 600 s" in result.stdout


def test_wrong_password_exits_1_with_the_reason(testbed: Testbed) -> None:
    result = run("sip", "register", env=env_for(testbed, "wrong"))
    assert result.returncode == 1
    assert "failed: 401" in result.stdout
    assert "credentials refused" in result.stdout
    assert "wrong" not in result.stdout + result.stderr  # the password is never printed


def test_without_registrar_it_says_so() -> None:
    result = run("sip", "register", env={"VOIPALERT_SIP__LOCAL_PORT": str(free_port())})
    assert result.returncode == 1
    assert "no [sip] registrar" in result.stdout

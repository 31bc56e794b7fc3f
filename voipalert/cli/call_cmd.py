"""``voipalert call TARGET --message TEXT``: one test call through the configured PBX.

What an administrator runs after changing the PBX: the same call script as an alert, the
outcome printed (or one JSON object with ``--json``), exit status 0 only when the callee
acknowledged.

Next to a running ``voipalert serve``, which holds the SIP port and the registration:

- with an admin token (``--token-file FILE`` or ``$VOIPALERT_TOKEN``), the running service
  places the call (``POST /api/v1/test-call``) with its own phone and registration;
- without one, the call goes out from an ephemeral local SIP port (a second, short-lived
  registration under the same account), and a note says so.

The phone, speech and HTTP modules are imported only when a call is made: they take seconds
to import, and ``voipalert --help`` or ``voipalert token list`` should not wait for them.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import json
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from voipalert.calls import CallReport, Phone
    from voipalert.settings import Settings
    from voipalert.sip.config import UAConfig
    from voipalert.sip.dialog import Address

REGISTER_WAIT_SECONDS = 10.0
TOKEN_ENV = "VOIPALERT_TOKEN"
# The service answers once the call has ended: ringing, then up to `repetitions` rounds.
API_SLACK_SECONDS = 300.0


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    call = subparsers.add_parser(
        "call",
        help="place one test call with the alert call script; exit 0 only when acknowledged",
    )
    call.add_argument("target", help="a SIP URI, a PBX extension or a number (+E.164)")
    call.add_argument("--message", required=True, help="what to say after the greeting")
    call.add_argument("--lang", default="en", help="language of the prompts (default en)")
    call.add_argument("--ring-timeout", type=float, default=30.0, metavar="SECONDS")
    call.add_argument("--repetitions", type=int, default=3, help="times the message is said")
    call.add_argument("--json", action="store_true", help="print one JSON object")
    call.add_argument(
        "--token-file",
        type=Path,
        metavar="FILE",
        help=f"admin API token (else ${TOKEN_ENV}): the running `voipalert serve` places the call",
    )
    call.set_defaults(func=run_call)


def _token(args: argparse.Namespace) -> str | None:
    if args.token_file is not None:
        try:
            return str(args.token_file.read_text(encoding="utf-8")).strip()
        except OSError as exc:
            message = f"voipalert call: cannot read {args.token_file}: {exc.strerror}"
            raise SystemExit(message) from None
    return os.environ.get(TOKEN_ENV) or None


def run_call(args: argparse.Namespace) -> int:
    from voipalert.settings import load_settings

    settings = load_settings(args.config)
    token = _token(args)
    if token is not None:
        data = asyncio.run(_call_via_api(settings, args, token))
        if data is None:
            return 1
        if args.json:
            print(json.dumps(data))
        else:
            _print(data)
        return 0 if data.get("outcome") == "acknowledged" else 1
    report = asyncio.run(_call(settings, args))
    if report is None:
        return 1
    return _show(report, args)


def _show(report: CallReport, args: argparse.Namespace) -> int:
    from voipalert.app.test_call import report_json
    from voipalert.domain.alert import AttemptOutcome

    data = {"target": args.target, **report_json(report)}
    if args.json:
        print(json.dumps(data))
    else:
        _print(data)
    return 0 if report.outcome is AttemptOutcome.ACKNOWLEDGED else 1


def api_url(settings: Settings) -> str:
    """The service's API as seen from this machine (a wildcard listener is reached on
    loopback)."""
    host = str(settings.http.host)
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.http.port}"


async def _call_via_api(
    settings: Settings, args: argparse.Namespace, token: str
) -> dict[str, object] | None:
    import aiohttp

    url = f"{api_url(settings)}/api/v1/test-call"
    body = {
        "target": args.target, "message": args.message, "lang": args.lang,
        "ring_timeout": args.ring_timeout, "repetitions": args.repetitions,
    }  # fmt: skip
    if not args.json:
        print(f"asking the running service ({url}) to place the call")
    timeout = aiohttp.ClientTimeout(total=args.ring_timeout + API_SLACK_SECONDS)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as http,
            http.post(url, json=body, headers={"Authorization": f"Bearer {token}"}) as answer,
        ):
            data = await answer.json(content_type=None)
            status = answer.status
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        detail = str(exc) or type(exc).__name__
        print(f"voipalert call: no answer from voipalert serve at {url}: {detail}", file=sys.stderr)
        return None
    if status != 200 or not isinstance(data, dict):
        message = data.get("message") if isinstance(data, dict) else data
        print(f"voipalert call: the service refused ({status}): {message}", file=sys.stderr)
        return None
    return data


async def _call(settings: Settings, args: argparse.Namespace) -> CallReport | None:
    from voipalert.app.config import (
        dns_config,
        media_config,
        script_config,
        sip_bind,
        sip_tls,
        ua_config,
    )
    from voipalert.app.heap import settle_heap
    from voipalert.calls import Phone
    from voipalert.notify.voice import SpokenPrompts, menu_fields, target_uri
    from voipalert.tts.speech import Speech

    ua = ua_config(settings)
    try:
        target = target_uri(args.target, ua.domain)
    except ValueError as exc:
        print(f"voipalert: cannot call {args.target!r}: {exc}", file=sys.stderr)
        return None
    say = (lambda text: None) if args.json else print
    speech = await asyncio.to_thread(Speech.open, settings.tts.to_config())
    script = replace(script_config(settings), repetitions=args.repetitions)
    media, tls = media_config(settings), sip_tls(settings)
    dns = dns_config(settings)
    phone = Phone(ua, sip_bind(settings), media, tls=tls, script=script, dns=dns)
    try:
        await speech.renderer.preload()
        try:
            await phone.start(register=ua.registrar is not None)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            print(port_taken_note(sip_bind(settings), "calling"), file=sys.stderr)
            ua, bind = beside_serve(ua, sip_bind(settings))
            phone = Phone(ua, bind, media, tls=tls, script=script, dns=dns)
            await phone.start(register=ua.registrar is not None)
        if ua.registrar is not None:
            await _wait_registered(phone, say)
        # As serve does before it says ready: a full collection of start-up's objects
        # in the middle of the call would stall its audio 20-75 ms (docs/realtime.md §4).
        settle_heap()
        menu = menu_fields(script.ack_digit, script.repeat_digit, args.lang)
        prompts = SpokenPrompts(speech, args.lang, {"summary": args.message}, menu)
        try:
            return await phone.call(target, prompts, ring_timeout=args.ring_timeout, progress=say)
        finally:
            await prompts.close()
    finally:
        await phone.stop()
        await speech.aclose()


def beside_serve(ua: UAConfig, bind: Address) -> tuple[UAConfig, Address]:
    """The user agent's settings and address for a second, short-lived endpoint next to a
    running serve: a free port of the same host, and the same port in the Via and Contact
    (RFC 3261 §18.1.1: responses and requests for this binding come to the port it really
    has; the configured one belongs to serve)."""
    import socket

    family = socket.AF_INET6 if ":" in bind[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.bind((bind[0], 0))
        port = int(probe.getsockname()[1])
    return replace(ua, local_port=port), (bind[0], port)


def port_taken_note(bind: Address, doing: str) -> str:
    return (
        f"note: SIP port {bind[0]}:{bind[1]} is in use (is `voipalert serve` running?); "
        f"{doing} from an ephemeral local port instead, with a short-lived second "
        f"registration. To use the running service, give an admin token "
        f"(--token-file FILE or ${TOKEN_ENV})."
    )


async def _wait_registered(phone: Phone, say: Callable[[str], None]) -> None:
    from voipalert.sip.events import RegistrationState

    status = await phone.wait_registered(REGISTER_WAIT_SECONDS)
    if status is None or status.state is not RegistrationState.REGISTERED:
        detail = "no answer" if status is None else f"{status.last_status} {status.last_reason}"
        say(f"warning: not registered ({detail}); calling anyway")


def _print(report: dict[str, object]) -> None:
    outcome = str(report.get("outcome", "?")).replace("_", " ")
    status = report.get("sip_status")
    reason = report.get("sip_reason") or ""
    print(f"outcome: {outcome}")
    print(f"sip: {f'{status} {reason}' if status else reason}")
    if report.get("progress"):
        by = report.get("classified_by")
        print(f"progress: {report['progress']}" + (f"; classified by {by}" if by else ""))
    if report.get("digit"):
        print(f"digit: {report['digit']} (via {report.get('digit_source')})")
    for key, label in (("ring_seconds", "ringing"), ("talk_seconds", "talking")):
        value = report.get(key)
        if isinstance(value, int | float):
            print(f"{label}: {value:.1f} s")

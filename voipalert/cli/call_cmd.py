"""``voipalert call TARGET --message TEXT``: one test call through the configured PBX.

What an administrator runs after changing the PBX: the same call script as an alert, the
outcome printed (or one JSON object with ``--json``), exit status 0 only when the callee
acknowledged.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import asdict, replace

from voipalert.app.config import media_config, script_config, sip_bind, sip_tls, ua_config
from voipalert.calls import CallReport, Phone
from voipalert.domain.alert import AttemptOutcome
from voipalert.notify.voice import SpokenPrompts, menu_fields, target_uri
from voipalert.settings import Settings, load_settings
from voipalert.sip.events import RegistrationState
from voipalert.tts.speech import Speech

REGISTER_WAIT_SECONDS = 10.0


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
    call.set_defaults(func=run_call)


def run_call(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    report = asyncio.run(_call(settings, args))
    if report is None:
        return 1
    if args.json:
        print(json.dumps({"target": args.target, **_as_json(report)}))
    else:
        _print(report)
    return 0 if report.outcome is AttemptOutcome.ACKNOWLEDGED else 1


async def _call(settings: Settings, args: argparse.Namespace) -> CallReport | None:
    ua = ua_config(settings)
    try:
        target = target_uri(args.target, ua.domain)
    except ValueError as exc:
        print(f"voipalert: cannot call {args.target!r}: {exc}", file=sys.stderr)
        return None
    say = (lambda text: None) if args.json else print
    speech = await asyncio.to_thread(Speech.open, settings.tts.to_config())
    script = replace(script_config(settings), repetitions=args.repetitions)
    phone = Phone(
        ua, sip_bind(settings), media_config(settings), tls=sip_tls(settings), script=script
    )
    try:
        await speech.renderer.preload()
        await phone.start(register=ua.registrar is not None)
        if ua.registrar is not None:
            status = await phone.wait_registered(REGISTER_WAIT_SECONDS)
            if status is None or status.state is not RegistrationState.REGISTERED:
                detail = (
                    "no answer" if status is None else f"{status.last_status} {status.last_reason}"
                )
                say(f"warning: not registered ({detail}); calling anyway")
        menu = menu_fields(script.ack_digit, script.repeat_digit, args.lang)
        prompts = SpokenPrompts(speech, args.lang, {"summary": args.message}, menu)
        try:
            return await phone.call(target, prompts, ring_timeout=args.ring_timeout, progress=say)
        finally:
            await prompts.close()
    finally:
        await phone.stop()
        await speech.aclose()


def _as_json(report: CallReport) -> dict[str, object]:
    data = asdict(report)
    data["outcome"] = report.outcome.value
    for key in ("ring_seconds", "talk_seconds"):
        if data[key] is not None:
            data[key] = round(data[key], 2)
    return data


def _print(report: CallReport) -> None:
    outcome = report.outcome.value.replace("_", " ")
    status = f"{report.sip_status} {report.sip_reason}" if report.sip_status else report.sip_reason
    print(f"outcome: {outcome}")
    print(f"sip: {status}")
    if report.digit:
        print(f"digit: {report.digit} (via {report.digit_source})")
    if report.ring_seconds is not None:
        print(f"ringing: {report.ring_seconds:.1f} s")
    if report.talk_seconds is not None:
        print(f"talking: {report.talk_seconds:.1f} s")

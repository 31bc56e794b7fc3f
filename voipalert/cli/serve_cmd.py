"""``voipalert serve``: run the main job until SIGTERM/SIGINT; ``voipalert ready``: ask a
running one whether it can do its job (its ``/readyz``), for container health checks and
scripts."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

READY_TIMEOUT_SECONDS = 4.0


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    command = subparsers.add_parser(
        "serve",
        help="run voipalert: HTTP/e-mail triggers, the escalation engine and the phone",
    )
    command.set_defaults(func=run_serve)
    ready = subparsers.add_parser(
        "ready",
        help="exit 0 when the running `voipalert serve` (at [http] host:port) says it is "
        "ready: database writable, SIP registered or not needed",
    )
    ready.set_defaults(func=run_ready)


def run_serve(args: argparse.Namespace) -> int:
    # Imported here: the service's modules (speech, SIP, HTTP) cost seconds to import, and
    # the commands that do not serve should not pay for them.
    from voipalert.app.serve import StartupError, serve
    from voipalert.logs import written_in_background
    from voipalert.settings import load_settings

    settings = load_settings(args.config)
    try:
        with written_in_background():
            return asyncio.run(serve(settings))
    except StartupError as exc:
        print(f"voipalert: cannot start: {exc}", file=sys.stderr)
        return 1


def run_ready(args: argparse.Namespace) -> int:
    import urllib.error
    import urllib.request

    from voipalert.cli.call_cmd import api_url
    from voipalert.settings import load_settings

    url = f"{api_url(load_settings(args.config))}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=READY_TIMEOUT_SECONDS) as answer:
            body = answer.read()
            status = int(answer.status)
    except urllib.error.HTTPError as exc:
        body, status = exc.read(), exc.code
    except OSError as exc:
        print(f"voipalert ready: no answer at {url}: {exc}", file=sys.stderr)
        return 1
    print(f"{url}: {status} {body.decode(errors='replace').strip()}")
    try:
        ready = status == 200 and json.loads(body).get("ready") is True
    except (ValueError, AttributeError):
        ready = False
    return 0 if ready else 1

"""``voipalert token create|list|revoke``: API tokens for the HTTP API and webhooks.

The secret is printed once, at creation; only its SHA-256 is stored, so a lost token is
revoked and replaced, never recovered. A token that may trigger (scope ``trigger`` or
``admin``) also gets a webhook signing secret, derived from the server secret file
(``store.secret``): ``token signing-secret NAME`` prints it again, or a new one with
``--rotate``, for whoever can read that file. A read-only token gets none, so nothing
printed is ever refused. Exit status: 0 done, 1 refused (name taken, no such token, a token
that may not sign).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import sys
from pathlib import Path

from voipalert.app.store_config import store_config
from voipalert.cli.with_store import with_store
from voipalert.clock import SystemClock
from voipalert.ingest.tokens import TOKEN_NAME
from voipalert.settings import load_settings
from voipalert.store import ApiToken, Scope, Store, StoreConfig, StoreError
from voipalert.store.api_reads import ApiReads

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    token = subparsers.add_parser("token", help="create, list or revoke API tokens")
    actions = token.add_subparsers(dest="token_command", metavar="ACTION", required=True)
    create = actions.add_parser("create", help="create a token; its secret is shown once")
    create.add_argument("name", metavar="NAME", help="recorded in the audit log as the actor")
    create.add_argument(
        "--scope",
        action="append",
        choices=[s.value for s in Scope],
        required=True,
        help="trigger (send alerts), read (see alerts), admin (everything, incl. ack and "
        "resolve); repeat for several",
    )
    create.add_argument("--json", action="store_true", help="print one JSON object")
    create.set_defaults(func=run_create)
    listing = actions.add_parser("list", help="list tokens (never their secrets)")
    listing.add_argument("--json", action="store_true", help="print a JSON array")
    listing.set_defaults(func=run_list)
    revoke = actions.add_parser(
        "revoke",
        help="revoke a token at once (a running server "
        "stops accepting it within [http] token_cache_seconds)",
    )
    revoke.add_argument("name", metavar="NAME")
    revoke.set_defaults(func=run_revoke)
    signing = actions.add_parser(
        "signing-secret",
        help="print the webhook signing secret of a token that may trigger (needs the "
        "server secret file)",
    )
    signing.add_argument("name", metavar="NAME")
    signing.add_argument(
        "--rotate", action="store_true", help="make a new one; the old one stops working"
    )
    signing.set_defaults(func=run_signing_secret)


async def _create(
    store: Store, name: str, scopes: frozenset[Scope]
) -> tuple[str, str | None] | None:
    """The new token's secret and signing secret (None for a token that may not sign), or
    None when the name is taken."""
    if any(t.name == name for t in await ApiReads(store, SystemClock()).list_tokens()):
        return None
    try:
        _, secret = await store.create_api_token(name, scopes)
    except StoreError as exc:
        if isinstance(exc.__cause__, sqlite3.IntegrityError):  # created meanwhile
            return None
        raise
    return secret, await store.signing_secret(name)


def _database(args: argparse.Namespace) -> tuple[Path | str, StoreConfig]:
    settings = load_settings(args.config)
    return settings.database.location, store_config(settings)


def _record_json(record: ApiToken) -> dict[str, object]:
    return {
        "name": record.name,
        "scopes": sorted(s.value for s in record.scopes),
        "created_at": record.created_at.isoformat(),
        "last_used_at": record.last_used_at.isoformat() if record.last_used_at else None,
        "revoked_at": record.revoked_at.isoformat() if record.revoked_at else None,
    }


def run_create(args: argparse.Namespace) -> int:
    name: str = args.name
    if TOKEN_NAME.match(name) is None:
        print(
            f"voipalert: token name {name!r}: use 1-64 letters, digits, '.', '_' or '-'",
            file=sys.stderr,
        )
        return EXIT_USAGE
    scopes = frozenset(Scope(s) for s in args.scope)
    created = asyncio.run(with_store(_database(args), lambda store: _create(store, name, scopes)))
    if created is None:
        print(
            f"voipalert: a token named {name!r} already exists; revoke it or pick another name",
            file=sys.stderr,
        )
        return EXIT_REFUSED
    secret, signing = created
    scope_text = " ".join(sorted(s.value for s in scopes))
    if args.json:
        record = {"name": name, "scopes": sorted(scope_text.split()), "token": secret}
        if signing is not None:
            record["signing_secret"] = signing
        print(json.dumps(record))
        return EXIT_OK
    print(f"token {name} created (scopes: {scope_text}). It is shown only now:")
    print(f"\n    {secret}\n")
    print("Send it as:  Authorization: Bearer <token>")
    if signing is not None:
        print(
            "Webhook senders that sign instead (Grafana 'HMAC signature' with Timestamp Header "
            "X-Grafana-Alerting-Timestamp, or X-Voipalert-Signature + X-Voipalert-Timestamp) "
            f"use this signing secret, which grants the trigger scope only:\n\n    {signing}\n"
        )
    return EXIT_OK


def run_list(args: argparse.Namespace) -> int:
    records = asyncio.run(
        with_store(_database(args), lambda store: ApiReads(store, SystemClock()).list_tokens())
    )
    if args.json:
        print(json.dumps([_record_json(r) for r in records], indent=2))
        return EXIT_OK
    if not records:
        print("no tokens; create one with: voipalert token create NAME --scope trigger")
        return EXIT_OK
    print(f"{'NAME':<24} {'SCOPES':<22} {'CREATED':<20} {'LAST USED':<20} STATE")
    for r in records:
        last = r.last_used_at.strftime("%Y-%m-%d %H:%M") if r.last_used_at else "never"
        state = f"revoked {r.revoked_at:%Y-%m-%d %H:%M}" if r.revoked_at else "active"
        scopes = ",".join(sorted(s.value for s in r.scopes))
        print(f"{r.name:<24} {scopes:<22} {r.created_at:%Y-%m-%d %H:%M}     {last:<20} {state}")
    return EXIT_OK


def run_revoke(args: argparse.Namespace) -> int:
    name: str = args.name
    if not asyncio.run(with_store(_database(args), lambda store: store.revoke_api_token(name))):
        print(f"voipalert: no active token named {name!r}", file=sys.stderr)
        return EXIT_REFUSED
    print(f"token {name} revoked")
    return EXIT_OK


def run_signing_secret(args: argparse.Namespace) -> int:
    name: str = args.name
    rotate: bool = args.rotate
    signing = asyncio.run(
        with_store(_database(args), lambda store: store.signing_secret(name, rotate=rotate))
    )
    if signing is None:
        print(
            f"voipalert: no active token named {name!r} that may sign (only trigger or admin "
            "tokens have a signing secret)",
            file=sys.stderr,
        )
        return EXIT_REFUSED
    print(signing)
    return EXIT_OK

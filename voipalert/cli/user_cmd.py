"""``voipalert user add|list|set-role|remove|passwd``: the people who log in to the web console;
``voipalert user set-pin``: a rota person's call-in PIN (docs/call-in.md).

Roles, each allowing what the ones before it allow: ``viewer`` (sees everything),
``responder`` (acknowledges and resolves, adds and removes their own overrides),
``manager`` (anyone's overrides), ``admin`` (everything). A user whose name is also a
person of the rota acts under that name in the audit log, as everyone does.

The password is asked twice on a terminal, read from the first line of standard input with
``--password-stdin``, or made up and printed once with ``--generate``. Only an scrypt hash
is stored (``console.passwords``). A new password ends every session of that user and lifts
a lockout. Exit status: 0 done, 1 refused (name taken, no such user), 2 bad input.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import secrets
import sys
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Final, TypeVar

from voipalert.app.store_config import store_config
from voipalert.clock import SystemClock
from voipalert.console.passwords import hash_password, password_problem
from voipalert.settings import load_settings
from voipalert.store import Store, StoreConfig
from voipalert.store.callin import check_pin_format
from voipalert.store.users import INVITATION_HOURS, USER_NAME, Role, UserTables

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
ROLES: Final = [r.label for r in Role]

T = TypeVar("T")


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    user = subparsers.add_parser("user", help="add, list or change web console users")
    actions = user.add_subparsers(dest="user_command", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="add a user")
    add.add_argument("name", metavar="NAME", help="the log-in name (best: the rota name)")
    add.add_argument("--role", choices=ROLES, default="viewer", help="default: viewer")
    _password_options(add)
    add.set_defaults(func=run_add)
    listing = actions.add_parser("list", help="list users and roles")
    listing.add_argument("--json", action="store_true", help="print a JSON array")
    listing.set_defaults(func=run_list)
    invite = actions.add_parser(
        "invite",
        help="print a one-time link (72 hours) with which NAME chooses their own password",
    )
    invite.add_argument("name", metavar="NAME")
    invite.add_argument("--role", choices=ROLES, default="viewer", help="default: viewer")
    invite.add_argument(
        "--url",
        metavar="URL",
        help="the console's address as people reach it (default: from [http] host and port)",
    )
    invite.set_defaults(func=run_invite)
    role = actions.add_parser("set-role", help="change a user's role")
    role.add_argument("name", metavar="NAME")
    role.add_argument("role", choices=ROLES)
    role.set_defaults(func=run_set_role)
    remove = actions.add_parser("remove", help="remove a user (their sessions end)")
    remove.add_argument("name", metavar="NAME")
    remove.set_defaults(func=run_remove)
    passwd = actions.add_parser("passwd", help="set a new password (sessions end)")
    passwd.add_argument("name", metavar="NAME")
    _password_options(passwd)
    passwd.set_defaults(func=run_passwd)
    pin = actions.add_parser(
        "set-pin",
        help="set the call-in PIN of a person of the rota (docs/call-in.md)",
        description="The PIN (4-8 digits) is asked twice on a terminal or read from the "
        "first line of standard input; only a keyed digest is stored.",
    )
    pin.add_argument("name", metavar="PERSON", help="a person of the rota")
    pin.add_argument(
        "--may-resolve", action="store_true", help="let them resolve alerts by phone (key 2)"
    )
    pin.add_argument("--clear", action="store_true", help="remove their PIN")
    pin.set_defaults(func=run_set_pin)


def _password_options(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    source.add_argument(
        "--generate", action="store_true", help="make up a password and print it once"
    )


async def _run(
    database: tuple[Path | str, StoreConfig], action: Callable[[UserTables], Awaitable[T]]
) -> T:
    store = await Store.open(database[0], SystemClock(), database[1])
    try:
        return await action(UserTables(store, SystemClock()))
    finally:
        await store.close()


def _database(args: argparse.Namespace) -> tuple[Path | str, StoreConfig]:
    settings = load_settings(args.config)
    return settings.database.location, store_config(settings)


def _password(args: argparse.Namespace) -> str | None:
    """The new password, or None after saying why there is none."""
    if args.generate:
        password = secrets.token_urlsafe(15)
        print(f"password (shown only now): {password}")
        return password
    if args.password_stdin or not sys.stdin.isatty():
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            print("voipalert: the passwords differ", file=sys.stderr)
            return None
    problem = password_problem(password)
    if problem is not None:
        print(f"voipalert: {problem}", file=sys.stderr)
        return None
    return password


def run_add(args: argparse.Namespace) -> int:
    name: str = args.name
    if USER_NAME.match(name) is None:
        print(
            f"voipalert: user name {name!r}: use 1-64 letters, digits, '.', '_', '@' or '-'",
            file=sys.stderr,
        )
        return EXIT_USAGE
    password = _password(args)
    if password is None:
        return EXIT_USAGE
    role = Role.parse(args.role)
    hashed = hash_password(password)
    added = asyncio.run(_run(_database(args), lambda t: t.add_user(name, role, hashed, "cli")))
    if added is None:
        print(f"voipalert: a user named {name!r} already exists", file=sys.stderr)
        return EXIT_REFUSED
    print(f"user {name} added (role {role.label})")
    return EXIT_OK


def run_invite(args: argparse.Namespace) -> int:
    name: str = args.name
    if USER_NAME.match(name) is None:
        print(
            f"voipalert: user name {name!r}: use 1-64 letters, digits, '.', '_', '@' or '-'",
            file=sys.stderr,
        )
        return EXIT_USAGE
    settings = load_settings(args.config)
    base = args.url or f"http://{settings.http.host}:{settings.http.port}"
    role = Role.parse(args.role)
    lifetime = timedelta(hours=INVITATION_HOURS)
    token = asyncio.run(_run(_database(args), lambda t: t.invite(name, role, lifetime, "cli")))
    if token is None:
        print(f"voipalert: a user named {name!r} already exists", file=sys.stderr)
        return EXIT_REFUSED
    print(f"invitation for {name} (role {role.label}), one use, {INVITATION_HOURS} hours:")
    print(f"\n    {base.rstrip('/')}/invite/{token}\n")
    return EXIT_OK


def run_list(args: argparse.Namespace) -> int:
    users = asyncio.run(_run(_database(args), lambda t: t.list_users()))
    if args.json:
        records = [
            {
                "name": u.name,
                "role": u.role.label,
                "created_at": u.created_at.isoformat(),
                "last_login_at": u.last_login_at.isoformat() if u.last_login_at else None,
                "locked_until": u.locked_until.isoformat() if u.locked_until else None,
            }
            for u in users
        ]
        print(json.dumps(records, indent=2))
        return EXIT_OK
    if not users:
        print("no users; add one with: voipalert user add NAME --role admin")
        return EXIT_OK
    print(f"{'NAME':<24} {'ROLE':<10} {'LAST LOG-IN':<17} STATE")
    now = SystemClock().now_utc()
    for u in users:
        last = u.last_login_at.strftime("%Y-%m-%d %H:%M") if u.last_login_at else "never"
        locked = u.locked_until is not None and u.locked_until > now
        state = f"locked until {u.locked_until:%H:%M}" if locked else "active"
        print(f"{u.name:<24} {u.role.label:<10} {last:<17} {state}")
    return EXIT_OK


def run_set_role(args: argparse.Namespace) -> int:
    name: str = args.name
    role = Role.parse(args.role)
    if not asyncio.run(_run(_database(args), lambda t: t.set_role(name, role, "cli"))):
        print(f"voipalert: no user named {name!r}", file=sys.stderr)
        return EXIT_REFUSED
    print(f"user {name} is now {role.label}")
    return EXIT_OK


def run_remove(args: argparse.Namespace) -> int:
    name: str = args.name
    if not asyncio.run(_run(_database(args), lambda t: t.remove_user(name, "cli"))):
        print(f"voipalert: no user named {name!r}", file=sys.stderr)
        return EXIT_REFUSED
    print(f"user {name} removed")
    return EXIT_OK


def run_passwd(args: argparse.Namespace) -> int:
    name: str = args.name
    password = _password(args)
    if password is None:
        return EXIT_USAGE
    hashed = hash_password(password)
    if not asyncio.run(_run(_database(args), lambda t: t.set_password(name, hashed, "cli"))):
        print(f"voipalert: no user named {name!r}", file=sys.stderr)
        return EXIT_REFUSED
    print(f"password of {name} changed; their sessions have ended")
    return EXIT_OK


def _pin() -> str | None:
    if not sys.stdin.isatty():
        pin = sys.stdin.readline().strip()
    else:
        pin = getpass.getpass("PIN: ")
        if getpass.getpass("again: ") != pin:
            print("voipalert: the PINs differ", file=sys.stderr)
            return None
    try:
        return check_pin_format(pin)
    except ValueError as exc:
        print(f"voipalert: {exc}", file=sys.stderr)
        return None


def run_set_pin(args: argparse.Namespace) -> int:
    name: str = args.name
    pin = None if args.clear else _pin()
    if pin is None and not args.clear:
        return EXIT_USAGE
    location, config = _database(args)

    async def apply() -> bool:
        async with await Store.open(location, SystemClock(), config) as store:
            if (await store.load_rota()).person(name) is None:
                return False
            await store.set_callin_pin(name, pin, may_resolve=args.may_resolve, actor="cli")
            return True

    if not asyncio.run(apply()):
        print(f"voipalert: no person named {name!r} in the rota", file=sys.stderr)
        return EXIT_REFUSED
    what = "cleared" if pin is None else "set"
    resolve = " (may resolve by phone)" if args.may_resolve and pin else ""
    print(f"call-in PIN of {name} {what}{resolve}")
    return EXIT_OK

"""A person's contacts and notification rules in a rota file.

A contact is a mapping with exactly one address key (``sip``, ``extension``, ``number``,
``email``)
and an optional ``name``. A rule names a contact (by its ``name``, or by its 1-based
position in the list), a method (``call``, ``message`` or ``email``) and a delay ``after`` the step
starts notifying the person (docs/text-channels.md)."""

from __future__ import annotations

import re
from typing import Final, Literal

from voipalert.domain.rota import (
    CALL_CONTACT_KINDS,
    TEXT_CONTACT_KINDS,
    Contact,
    ContactKind,
    NotifyMethod,
    NotifyRule,
    ShiftNotice,
)
from voipalert.rotafile.reader import Reader, join
from voipalert.rotafile.source import Node

# Contact addresses end up in a SIP request line: no whitespace, quotes or angle brackets.
CONTACT_PATTERNS: Final = {
    ContactKind.SIP: (
        re.compile(r"sips?:[^\s<>\"'\\]{1,250}"),
        "a SIP URI like sip:alice@pbx.example.com",
    ),
    ContactKind.EXTENSION: (re.compile(r"[A-Za-z0-9*#+._-]{1,32}"), "a PBX extension like 201"),
    ContactKind.NUMBER: (re.compile(r"\+?[0-9]{2,20}"), "a phone number like +33612345678"),
    # An address that goes into a To header: no spaces, quotes, brackets, commas or
    # semicolons, one @, a host of letters, digits, dots and hyphens.
    ContactKind.EMAIL: (
        re.compile(
            r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?"
        ),
        "an e-mail address like alice@example.com",
    ),
}
# Which contact kinds each method can reach.
METHOD_KINDS: Final = {
    NotifyMethod.CALL: (CALL_CONTACT_KINDS, "a call goes to a sip, extension or number contact"),
    NotifyMethod.MESSAGE: (
        TEXT_CONTACT_KINDS,
        "a message goes to a sip or extension contact, not a number",
    ),
    NotifyMethod.EMAIL: (frozenset({ContactKind.EMAIL}), "an email goes to an email contact"),
}
CONTACT_NAME: Final = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,31}")
MAX_RULES: Final = 16
MAX_RULE_DELAY_SECONDS: Final = 86_400
SHIFT_NOTICE_SECONDS: Final = (60, 7 * 86_400)


def contact(r: Reader, node: Node, path: str) -> Contact | None:
    kinds = [k.value for k in ContactKind]
    items = r.mapping(node, path, (), [*kinds, "name"])
    if items is None:
        return None
    given = [k for k in items if k in kinds]
    if len(given) != 1:
        if all(k in kinds or k == "name" for k in items):  # else: reported as unknown
            r.fail(node, path, f"give exactly one of: {', '.join(kinds)}")
        return None
    name = None
    if "name" in items:
        name = r.text(items["name"], join(path, "name"), CONTACT_NAME, "a contact name like mobile")
        if name is None:
            return None
    kind = ContactKind(given[0])
    pattern, what = CONTACT_PATTERNS[kind]
    value = items[given[0]]
    text = r.text(value, join(path, kind.value))
    if text is None:
        return None
    if kind is ContactKind.NUMBER:
        text = re.sub(r"[\s().-]", "", text)  # "+33 6 12-34" is a number too
    if pattern.fullmatch(text) is None:
        r.fail(value, join(path, kind.value), f"{text!r} is not {what}")
        return None
    return Contact(kind, text, name)


def check_contact_names(r: Reader, node: Node | None, path: str, contacts: list[Contact]) -> None:
    seen: set[str] = set()
    items = r.sequence(node, path) if node is not None and isinstance(node.value, list) else []
    for i, (item, c) in enumerate(zip(items, contacts, strict=False)):
        if c.name is not None and c.name in seen:
            r.fail(item, join(path, i), f"duplicate contact name {c.name!r}")
        if c.name is not None:
            seen.add(c.name)


def _contact_ref(r: Reader, node: Node | None, path: str, contacts: list[Contact]) -> int | None:
    if node is None:
        return None
    if isinstance(node.value, int) and not isinstance(node.value, bool):
        if 1 <= node.value <= len(contacts):
            return node.value - 1
        r.fail(node, path, f"no contact number {node.value} (this person has {len(contacts)})")
        return None
    name = str(node.raw if node.raw is not None else node.value).strip()
    for i, c in enumerate(contacts):
        if c.name == name:
            return i
    r.fail(node, path, f"no contact named {name!r} (name it with name: {name} in contacts)")
    return None


def _rule(r: Reader, node: Node, path: str, contacts: list[Contact]) -> NotifyRule | None:
    items = r.mapping(node, path, ("contact", "method"), ("after",))
    if items is None:
        return None
    index = _contact_ref(r, items.get("contact"), join(path, "contact"), contacts)
    method_text = r.text(items.get("method"), join(path, "method"))
    methods = {m.value: m for m in NotifyMethod}
    method = methods.get(method_text) if method_text is not None else None
    if method_text is not None and method is None:
        r.fail(items.get("method"), join(path, "method"), "expected call, message or email")
    after = 0
    if "after" in items:
        after_read = r.duration(items["after"], join(path, "after"))
        if after_read is not None and after_read > MAX_RULE_DELAY_SECONDS:
            r.fail(items["after"], join(path, "after"), "must be at most 1d")
            return None
        if after_read is None:
            return None
        after = after_read
    if index is None or method is None:
        return None
    kinds, why = METHOD_KINDS[method]
    if contacts[index].kind not in kinds:
        r.fail(items.get("contact"), join(path, "contact"), why)
        return None
    return NotifyRule(index, method, after)


def rules(
    r: Reader, node: Node | None, path: str, contacts: list[Contact]
) -> list[NotifyRule] | None:
    """The person's rules, or None after recording a problem."""
    if node is None:
        return []
    items = r.sequence(node, path)
    if isinstance(node.value, list) and not node.value:
        r.fail(node, path, "must not be empty (leave rules out to call the contacts in order)")
        return None
    if len(items) > MAX_RULES:
        r.fail(node, path, f"at most {MAX_RULES} rules")
        return None
    found: list[NotifyRule] = []
    ok = bool(items)
    for i, item in enumerate(items):
        rule = _rule(r, item, join(path, i), contacts)
        if rule is None:
            ok = False
        elif rule in found:
            r.fail(item, join(path, i), "the same rule twice")
            ok = False
        else:
            found.append(rule)
    return found if ok else None


def shift_notice(
    r: Reader, node: Node | None, path: str, contacts: list[Contact]
) -> ShiftNotice | Literal[False] | None:
    """The person's shift notice; None when not asked for; False after a problem."""
    if node is None:
        return None
    items = r.mapping(node, path, ("contact", "before"), ())
    if items is None:
        return False
    index = _contact_ref(r, items.get("contact"), join(path, "contact"), contacts)
    before = r.duration(items["before"], join(path, "before")) if "before" in items else None
    if index is None or before is None:
        return False
    low, high = SHIFT_NOTICE_SECONDS
    if not low <= before <= high:
        r.fail(items["before"], join(path, "before"), "must be between 1m and 7d")
        return False
    if contacts[index].kind not in TEXT_CONTACT_KINDS | {ContactKind.EMAIL}:
        r.fail(
            items.get("contact"), join(path, "contact"),
            "a shift notice is a text (sip or extension contact) or an e-mail (email contact)",
        )  # fmt: skip
        return False
    return ShiftNotice(index, before)

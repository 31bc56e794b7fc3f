from __future__ import annotations

import random
import secrets

from voipalert.sip import NameAddr, SipUri, Via
from voipalert.sip.ids import new_branch, new_call_id, new_tag


def test_identifiers_have_the_required_entropy_and_syntax() -> None:
    rng = random.Random(42)
    branch, tag, call_id = new_branch(rng), new_tag(rng), new_call_id(rng)
    assert branch.startswith("z9hG4bK") and len(branch) == 7 + 20
    assert len(tag) == 16 and len(call_id) == 32
    via = Via.parse(Via(host="192.0.2.1", params=(("branch", branch),)).format())
    assert via.has_rfc3261_branch and via.branch == branch
    assert NameAddr.parse(NameAddr(SipUri(host="h")).with_tag(tag).format()).tag == tag


def test_every_branch_is_new() -> None:
    rng = secrets.SystemRandom()
    assert len({new_branch(rng) for _ in range(1000)}) == 1000
    assert new_call_id(random.Random(1)) == new_call_id(random.Random(1))

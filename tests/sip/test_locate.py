"""RFC 3263 §4 server location as pure functions: hops, NAPTR and SRV ordering, and the
whole lookup walked over an in-memory zone (no network, no event loop)."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voipalert.sip.errors import RemoteProtocolError
from voipalert.sip.locate import (
    MAX_TARGETS,
    Hop,
    Naptr,
    Query,
    RecordType,
    Resolution,
    Srv,
    hop_of,
    naptr_srv_names,
    order_srv,
    parse_hosts,
)
from voipalert.sip.uri import AbsoluteUri, SipUri

Zone = Mapping[tuple[str, RecordType], Sequence[Naptr | Srv | str]]


def walk(
    hop: Hop, zone: Zone, *, seed: int = 1, ipv6: bool = False
) -> tuple[list[Query], Resolution]:
    """Run a resolution against ``zone`` (TTL 300 everywhere); return the questions asked."""
    resolution = Resolution(hop, random.Random(seed), ipv6=ipv6)
    asked: list[Query] = []
    while (query := resolution.next_query()) is not None:
        asked.append(query)
        assert len(asked) < 50, "the resolution never ends"
        resolution.answer(zone.get((query.name, query.rdtype), ()), 300.0)
    assert resolution.done
    return asked, resolution


# ---------------------------------------------------------------- hops


def test_hop_of_a_uri() -> None:
    assert hop_of(SipUri(host="PBX.Example.COM."), "udp") == Hop("pbx.example.com", None, "udp")
    assert hop_of(SipUri(host="pbx.example.com", port=5080), "tcp") == Hop(
        "pbx.example.com", 5080, "tcp"
    )
    maddr = SipUri(host="pbx.example.com", params=(("maddr", "192.0.2.7"),))
    assert hop_of(maddr, "udp") == Hop("192.0.2.7", None, "udp")
    assert hop_of(SipUri(host="[2001:DB8::1]"), "udp") == Hop("2001:db8::1", None, "udp")
    with pytest.raises(RemoteProtocolError):
        hop_of(SipUri(user="+4930123", host="", scheme="tel"), "udp")
    with pytest.raises(RemoteProtocolError):
        hop_of(AbsoluteUri("http", "//example.com"), "udp")


def test_numeric_hop_is_used_as_is() -> None:
    asked, resolution = walk(Hop("192.0.2.10", None, "udp"), {})
    assert asked == [] and resolution.targets == [("192.0.2.10", 5060)]
    _, tls = walk(Hop("192.0.2.10", None, "tls"), {})
    assert tls.targets == [("192.0.2.10", 5061)]
    _, explicit = walk(Hop("192.0.2.10", 5080, "udp"), {})
    assert explicit.targets == [("192.0.2.10", 5080)]


def test_explicit_port_means_address_records_only() -> None:
    zone: Zone = {
        ("pbx.example.com", RecordType.A): ["192.0.2.1", "192.0.2.2"],
        ("_sip._udp.pbx.example.com", RecordType.SRV): [Srv(1, 1, 5070, "other.example.com")],
    }
    asked, resolution = walk(Hop("pbx.example.com", 5080, "udp"), zone)
    assert asked == [Query("pbx.example.com", RecordType.A)]
    assert resolution.targets == [("192.0.2.1", 5080), ("192.0.2.2", 5080)]


# ---------------------------------------------------------------- NAPTR


def test_naptr_filters_our_transport_and_orders_by_order_then_preference() -> None:
    records = [
        Naptr(20, 10, "s", "SIP+D2U", "_sip._udp.late.example.com"),
        Naptr(10, 20, "S", "SIP+D2U", "_sip._udp.second.example.com."),
        Naptr(10, 10, "s", "sip+d2u", "_sip._udp.first.example.com"),
        Naptr(5, 10, "s", "SIP+D2T", "_sip._tcp.example.com"),  # another transport
        Naptr(5, 10, "u", "SIP+D2U", "."),  # a regexp record: not for SIP
        Naptr(5, 10, "a", "SIP+D2U", "a.example.com"),  # flag a: not SRV
    ]
    assert naptr_srv_names(records, "udp") == [
        "_sip._udp.first.example.com",
        "_sip._udp.second.example.com",
        "_sip._udp.late.example.com",
    ]
    assert naptr_srv_names(records, "tcp") == ["_sip._tcp.example.com"]
    assert naptr_srv_names(records, "tls") == []


def test_naptr_srv_a_chain() -> None:
    zone: Zone = {
        ("example.com", RecordType.NAPTR): [
            Naptr(10, 10, "s", "SIPS+D2T", "_sips._tcp.example.com"),
            Naptr(20, 10, "s", "SIP+D2U", "_sip._udp.sip.example.com"),
        ],
        ("_sip._udp.sip.example.com", RecordType.SRV): [
            Srv(10, 0, 5060, "b.example.com"),
            Srv(5, 0, 5062, "a.example.com"),
        ],
        ("a.example.com", RecordType.A): ["192.0.2.1"],
        ("b.example.com", RecordType.A): ["192.0.2.2", "192.0.2.3"],
    }
    asked, resolution = walk(Hop("example.com", None, "udp"), zone)
    assert asked == [
        Query("example.com", RecordType.NAPTR),
        Query("_sip._udp.sip.example.com", RecordType.SRV),
        Query("a.example.com", RecordType.A),
        Query("b.example.com", RecordType.A),
    ]
    assert resolution.targets == [
        ("192.0.2.1", 5062),
        ("192.0.2.2", 5060),
        ("192.0.2.3", 5060),
    ]


def test_naptr_replacement_without_srv_falls_to_the_next_then_the_standard_name() -> None:
    zone: Zone = {
        ("example.com", RecordType.NAPTR): [
            Naptr(10, 10, "s", "SIP+D2T", "_sip._tcp.gone.example.com"),
        ],
        ("_sip._tcp.example.com", RecordType.SRV): [Srv(1, 1, 5070, "pbx.example.com")],
        ("pbx.example.com", RecordType.A): ["192.0.2.9"],
    }
    asked, resolution = walk(Hop("example.com", None, "tcp"), zone)
    assert [q.name for q in asked] == [
        "example.com",
        "_sip._tcp.gone.example.com",
        "_sip._tcp.example.com",
        "pbx.example.com",
    ]
    assert resolution.targets == [("192.0.2.9", 5070)]


# ---------------------------------------------------------------- SRV and fallbacks


@pytest.mark.parametrize(
    ("transport", "name", "port"),
    [("udp", "_sip._udp.example.com", 5060), ("tcp", "_sip._tcp.example.com", 5060),
     ("tls", "_sips._tcp.example.com", 5061)],
)  # fmt: skip
def test_no_naptr_asks_the_transport_srv_then_a_on_the_default_port(
    transport: str, name: str, port: int
) -> None:
    zone: Zone = {("example.com", RecordType.A): ["192.0.2.5"]}
    asked, resolution = walk(Hop("example.com", None, transport), zone)
    assert asked == [
        Query("example.com", RecordType.NAPTR),
        Query(name, RecordType.SRV),
        Query("example.com", RecordType.A),
    ]
    assert resolution.targets == [("192.0.2.5", port)]


def test_srv_dot_means_no_service() -> None:
    zone: Zone = {
        ("_sip._udp.example.com", RecordType.SRV): [Srv(0, 0, 0, ".")],
        ("example.com", RecordType.A): ["192.0.2.5"],
    }
    _, resolution = walk(Hop("example.com", None, "udp"), zone)
    assert resolution.targets == []


def test_srv_targets_without_addresses_do_not_fall_back_to_a() -> None:
    # RFC 3263 §4.2: A/AAAA of the domain only when there were no SRV records.
    zone: Zone = {
        ("_sip._udp.example.com", RecordType.SRV): [Srv(1, 1, 5060, "nowhere.example.com")],
        ("example.com", RecordType.A): ["192.0.2.5"],
    }
    _, resolution = walk(Hop("example.com", None, "udp"), zone)
    assert resolution.targets == []


def test_nothing_at_all_gives_no_targets() -> None:
    _, resolution = walk(Hop("missing.example.com", None, "udp"), {})
    assert resolution.targets == []


def test_ipv6_asks_aaaa() -> None:
    zone: Zone = {("example.com", RecordType.AAAA): ["2001:DB8::5"]}
    asked, resolution = walk(Hop("example.com", 5060, "udp"), zone, ipv6=True)
    assert asked == [Query("example.com", RecordType.AAAA)]
    assert resolution.targets == [("2001:db8::5", 5060)]


def test_ttl_is_the_shortest_seen_and_addresses_are_deduplicated_and_bounded() -> None:
    resolution = Resolution(Hop("example.com", 5060, "udp"), random.Random(1))
    resolution.answer([f"192.0.2.{i}" for i in range(40)] + ["192.0.2.0"], 60.0)
    assert resolution.ttl == 60.0
    assert len(resolution.targets) == MAX_TARGETS
    assert len(set(resolution.targets)) == MAX_TARGETS
    assert resolution.next_query() is None
    with pytest.raises(ValueError, match="finished"):
        resolution.answer([], None)


def test_srv_orders_by_priority_first() -> None:
    records = [Srv(20, 100, 1, "c"), Srv(10, 1, 1, "b"), Srv(10, 0, 1, "a"), Srv(30, 0, 1, "d")]
    for seed in range(20):
        ordered = [r.target for r in order_srv(records, random.Random(seed))]
        assert set(ordered[:2]) == {"a", "b"} and ordered[2:] == ["c", "d"]


def test_srv_weights_share_first_place_in_proportion() -> None:
    # RFC 2782: weights 60/30/10 (and 0) get chosen first about that often.
    records = [Srv(1, 60, 1, "a"), Srv(1, 30, 1, "b"), Srv(1, 10, 1, "c"), Srv(1, 0, 1, "z")]
    rng = random.Random(2026)
    first = Counter(order_srv(records, rng)[0].target for _ in range(10_000))
    assert 5700 < first["a"] < 6300
    assert 2700 < first["b"] < 3300
    assert 800 < first["c"] < 1200
    assert 0 < first["z"] < 200  # weight 0: a small chance (1 in 101 when first)
    assert all(len(order_srv(records, rng)) == 4 for _ in range(100))


def test_srv_all_zero_weights_are_all_reachable() -> None:
    records = [Srv(1, 0, 1, "a"), Srv(1, 0, 1, "b")]
    firsts = {order_srv(records, random.Random(seed))[0].target for seed in range(50)}
    assert firsts == {"a", "b"}


def test_hosts_file() -> None:
    text = "127.0.0.1 localhost\n# comment\n192.0.2.7 PBX.lan pbx # trailing\n\nbad line\n"
    text += "192.0.2.8 pbx.lan\n"
    assert parse_hosts(text) == {
        "localhost": ("127.0.0.1",),
        "pbx.lan": ("192.0.2.7", "192.0.2.8"),
        "pbx": ("192.0.2.7",),
    }


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.builds(Srv, st.integers(0, 3), st.integers(0, 100), st.integers(1, 65535),
                  st.sampled_from(["a.test", "b.test", "c.test", "."])),
        max_size=12,
    ),
    st.integers(0, 2**32),
)  # fmt: skip
def test_srv_order_is_a_priority_sorted_permutation_of_the_live_records(
    records: list[Srv], seed: int
) -> None:
    ordered = order_srv(records, random.Random(seed))
    live = [r for r in records if r.target != "."]
    assert sorted(ordered, key=repr) == sorted(live, key=repr)
    assert [r.priority for r in ordered] == sorted(r.priority for r in ordered)

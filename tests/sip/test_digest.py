from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voipalert.sip import RemoteProtocolError, Response, SipUri, parse_message
from voipalert.sip.digest import (
    AuthField,
    DigestCredentials,
    NonceCounter,
    authorization_headers,
    build_authorization,
    choose_challenge,
    digest_response,
    is_stale,
    make_cnonce,
    parse_challenges,
    parse_credentials,
)

GOLDEN = Path(__file__).parent.parent / "data" / "sip"
MUFASA = DigestCredentials("Mufasa", "Circle of Life")
RFC7616_NONCE = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
RFC7616_OPAQUE = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"
RFC7616_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"


def rfc7616_challenge(algorithm: str) -> str:
    return (
        f'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm={algorithm}, '
        f'nonce="{RFC7616_NONCE}", opaque="{RFC7616_OPAQUE}"'
    )


def response_of(value: str) -> str | None:
    return parse_credentials(value).get("response")


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def load_response(name: str) -> Response:
    message = parse_message((GOLDEN / f"{name}.sip").read_bytes())
    assert isinstance(message, Response)
    return message


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_rfc7616_section_3_9_1_vectors(algorithm: str, expected: str) -> None:
    (challenge,) = parse_challenges(rfc7616_challenge(algorithm))
    assert challenge.qop_options == ("auth", "auth-int")
    value = build_authorization(
        challenge, MUFASA, method="GET", uri="/dir/index.html", cnonce=RFC7616_CNONCE, nc=1
    )
    fields = parse_credentials(value)
    assert fields.get("response") == expected
    assert fields.get("username") == "Mufasa"
    assert fields.get("realm") == "http-auth@example.org"
    assert fields.get("uri") == "/dir/index.html"
    assert fields.get("algorithm") == algorithm
    assert fields.get("nonce") == RFC7616_NONCE
    assert fields.get("nc") == "00000001"
    assert fields.get("cnonce") == RFC7616_CNONCE
    assert fields.get("qop") == "auth"
    assert fields.get("opaque") == RFC7616_OPAQUE


def test_rfc2617_section_3_5_vector() -> None:
    (challenge,) = parse_challenges(
        'Digest realm="testrealm@host.com", qop="auth,auth-int", '
        'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    )
    value = build_authorization(
        challenge,
        DigestCredentials("Mufasa", "Circle Of Life"),
        method="GET",
        uri="/dir/index.html",
        cnonce="0a4f113b",
        nc=1,
    )
    assert response_of(value) == "6629fae49393a05397450978507c4ef1"
    assert "algorithm" not in value  # not offered, so not echoed


def test_rfc2069_form_without_qop() -> None:
    (challenge,) = parse_challenges('Digest realm="r", nonce="n"')
    value = build_authorization(challenge, MUFASA, method="BYE", uri="sip:a@h", cnonce="c", nc=1)
    expected = md5(f"{md5('Mufasa:r:Circle of Life')}:n:{md5('BYE:sip:a@h')}")
    assert response_of(value) == expected
    for absent in ("cnonce", "nc", "qop", "opaque"):
        assert parse_credentials(value).get(absent) is None


def test_sess_and_sha512_256_variants() -> None:
    (sess,) = parse_challenges('Digest realm="r", nonce="n", qop="auth", algorithm=md5-SESS')
    ha1 = md5(f"{md5('Mufasa:r:Circle of Life')}:n:c")
    expected = md5(f"{ha1}:n:00000002:c:auth:{md5('INVITE:sip:x@y')}")
    got = digest_response(sess, MUFASA, method="INVITE", uri="sip:x@y", cnonce="c", nc=2)
    assert got == expected

    def h(text: str) -> str:
        return hashlib.new("sha512_256", text.encode()).hexdigest()

    (sha,) = parse_challenges('Digest realm="r", nonce="n", qop="auth", algorithm=SHA-512-256')
    expected = h(f"{h('Mufasa:r:Circle of Life')}:n:00000001:c:auth:{h('INVITE:sip:x@y')}")
    got = digest_response(sha, MUFASA, method="INVITE", uri="sip:x@y", cnonce="c", nc=1)
    assert got == expected


def test_challenge_parsing_quotes_commas_case_and_several_schemes() -> None:
    challenges = parse_challenges(
        'Basic realm="basic, really", DIGEST REALM="a \\"b\\", c", Nonce=abc/+=, '
        'QOP="auth-int,AUTH", Algorithm=sha-256, STALE=TRUE, domain="sip:a sip:b"'
    )
    assert [c.scheme for c in challenges] == ["Basic", "DIGEST"]
    digest = challenges[1]
    assert digest.is_digest and not challenges[0].is_digest
    assert digest.realm == 'a "b", c'
    assert digest.nonce == "abc/+="
    assert digest.qop_options == ("auth-int", "auth")
    assert digest.algorithm == "SHA-256"
    assert digest.stale
    assert digest.get("domain") == "sip:a sip:b"
    assert choose_challenge(challenges) is digest


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("", "empty header value"),
        ('realm="x"', "parameter before any auth scheme"),
        ("Digest realm=", "empty parameter value"),
        ('Digest realm="open', "unterminated quoted string"),
        ('Digest realm="a\\\x00b"', "control character"),
        ('Digest realm="x", =y', "expected auth scheme or parameter"),
    ],
)
def test_malformed_challenges(value: str, fragment: str) -> None:
    with pytest.raises(RemoteProtocolError, match=fragment):
        parse_challenges(value)


@pytest.mark.parametrize(
    ("challenges", "chosen"),
    [
        (["SHA-512-256", "SHA-256", "MD5"], "SHA-512-256"),
        (["MD5", "SHA-256"], "MD5"),  # server order wins (RFC 8760)
        (["SHA3-256", "SHA-256-sess", "MD5"], "SHA-256-SESS"),
        (["SHA3-256"], None),
    ],
)
def test_algorithm_choice_follows_the_server_order(
    challenges: list[str], chosen: str | None
) -> None:
    fields = [
        parse_challenges(f'Digest realm="r", nonce="n", qop="auth", algorithm={a}')[0]
        for a in challenges
    ]
    picked = choose_challenge(fields)
    assert (picked.algorithm if picked else None) == chosen


def test_unanswerable_challenges() -> None:
    auth_int_only = parse_challenges('Digest realm="r", nonce="n", qop="auth-int"')
    sess_without_qop = parse_challenges('Digest realm="r", nonce="n", algorithm=MD5-sess')
    no_nonce = parse_challenges('Digest realm="r"')
    for challenges in (auth_int_only, sess_without_qop, no_nonce):
        assert choose_challenge(challenges) is None
    with pytest.raises(RemoteProtocolError, match="cannot answer"):
        digest_response(no_nonce[0], MUFASA, method="A", uri="u", cnonce="c", nc=1)


def test_asterisk_style_401_on_register() -> None:
    response = load_response("asterisk_401_register")
    credentials = DigestCredentials("alerts-auth", "s3cret")
    counter = NonceCounter()
    ((name, value),) = authorization_headers(
        response,
        credentials,
        method="REGISTER",
        uri=SipUri(host="pbx.example.com"),
        rng=random.Random(7),
        counter=counter,
    )
    assert name == "Authorization"
    fields = parse_credentials(value)
    nonce = "1712345678/4f0c1a6ea7d54b7e8d2f0e3c9b1a5d67"
    assert fields.get("username") == "alerts-auth"  # the separate auth username
    assert (fields.get("realm"), fields.get("nonce")) == ("asterisk", nonce)
    assert (fields.get("uri"), fields.get("qop"), fields.get("nc")) == (
        "sip:pbx.example.com",
        "auth",
        "00000001",
    )
    assert fields.get("opaque") == "5f3e2b1c0d9a8b7c" and fields.get("algorithm") == "MD5"
    cnonce = fields.get("cnonce")
    assert cnonce == make_cnonce(random.Random(7)) and len(cnonce) == 32
    ha1, ha2 = md5("alerts-auth:asterisk:s3cret"), md5("REGISTER:sip:pbx.example.com")
    assert fields.get("response") == md5(f"{ha1}:{nonce}:00000001:{cnonce}:auth:{ha2}")
    assert "s3cret" not in value and "s3cret" not in repr(credentials)


def test_kamailio_style_challenge_without_algorithm_or_opaque() -> None:
    response = Response.build(
        401,
        headers=[("WWW-Authenticate", 'Digest realm="testbed", nonce="Zk3Vq2ZN1Hbx+", qop="auth"')],
    )
    ((name, value),) = authorization_headers(
        response,
        DigestCredentials("phone1", "phone1pw"),
        method="REGISTER",
        uri="sip:127.0.0.1:5060",
        rng=random.Random(1),
        counter=NonceCounter(),
    )
    fields = parse_credentials(value)
    assert name == "Authorization"
    assert fields.get("algorithm") is None and fields.get("opaque") is None
    assert fields.get("qop") == "auth" and fields.get("uri") == "sip:127.0.0.1:5060"


def test_freeswitch_style_407_and_stale_rechallenge() -> None:
    first = load_response("freeswitch_407_invite_compact")
    assert not is_stale(first)
    counter = NonceCounter()
    uri = SipUri(user="1001", host="fs.example.com")
    credentials = DigestCredentials("alerts", "pw")

    def answer(response: Response) -> AuthField:
        ((name, value),) = authorization_headers(
            response, credentials, method="INVITE", uri=uri, rng=random.Random(3), counter=counter
        )
        assert name == "Proxy-Authorization"
        return parse_credentials(value)

    assert answer(first).get("nc") == "00000001"
    assert answer(first).get("nc") == "00000002"  # same nonce used again
    stale = first.with_header(
        "Proxy-Authenticate",
        'Digest realm="fs.example.com", nonce="fresh-nonce", algorithm=MD5, qop="auth", stale=true',
    )
    assert is_stale(stale)
    fields = answer(stale)
    assert (fields.get("nonce"), fields.get("nc")) == ("fresh-nonce", "00000001")


def test_pyvoip_407_gives_proxy_authorization() -> None:
    """pyVoIP #69 / #216: a 407 on INVITE must be answered with Proxy-Authorization."""
    response = load_response("freeswitch_407_invite_compact")
    headers = authorization_headers(
        response,
        DigestCredentials("alerts", "pw"),
        method="INVITE",
        uri=SipUri(user="1001", host="fs.example.com"),
        rng=random.Random(0),
        counter=NonceCounter(),
    )
    assert [name for name, _ in headers] == ["Proxy-Authorization"]


def test_pyvoip_digest_uses_the_request_uri() -> None:
    """pyVoIP hashed the server address; digest-uri must be the Request-URI (§22.4)."""
    request_uri = SipUri(user="+4930123", host="trunk.example.net", params=(("user", "phone"),))
    response = load_response("asterisk_401_register")

    def authorize(uri: SipUri) -> AuthField:
        ((_, value),) = authorization_headers(
            response,
            DigestCredentials("u", "p"),
            method="INVITE",
            uri=uri,
            rng=random.Random(5),
            counter=NonceCounter(),
        )
        return parse_credentials(value)

    fields = authorize(request_uri)
    assert fields.get("uri") == "sip:+4930123@trunk.example.net;user=phone"
    ha1 = md5("u:asterisk:p")
    ha2 = md5("INVITE:sip:+4930123@trunk.example.net;user=phone")
    nonce, cnonce = fields.get("nonce"), fields.get("cnonce")
    assert fields.get("response") == md5(f"{ha1}:{nonce}:00000001:{cnonce}:auth:{ha2}")
    assert authorize(SipUri(host="trunk.example.net")).get("response") != fields.get("response")


def test_401_and_407_together_and_several_realms() -> None:
    response = Response.build(
        407,
        headers=[
            ("Proxy-Authenticate", 'Digest realm="proxy", nonce="p1", qop="auth"'),
            ("WWW-Authenticate", 'Digest realm="uas", nonce="u1", algorithm=SHA3, qop="auth"'),
            ("WWW-Authenticate", 'Digest realm="uas", nonce="u2", algorithm=SHA-256, qop="auth"'),
            ("Proxy-Authenticate", 'Digest realm="proxy", nonce="p2", qop="auth"'),
        ],
    )
    headers = authorization_headers(
        response,
        MUFASA,
        method="INVITE",
        uri="sip:a@h",
        rng=random.Random(0),
        counter=NonceCounter(),
    )
    assert [(name, parse_credentials(value).get("nonce")) for name, value in headers] == [
        ("Proxy-Authorization", "p1"),
        ("Authorization", "u2"),
    ]


def test_no_supported_challenge_is_a_remote_error() -> None:
    response = Response.build(401, headers=[("WWW-Authenticate", 'Basic realm="x"')])
    with pytest.raises(RemoteProtocolError, match="no digest challenge we support"):
        authorization_headers(
            response,
            MUFASA,
            method="REGISTER",
            uri="sip:h",
            rng=random.Random(0),
            counter=NonceCounter(),
        )


def test_nonce_counter_forgets_old_nonces() -> None:
    counter = NonceCounter()
    assert [counter.next("a"), counter.next("a"), counter.next("b")] == [1, 2, 1]
    for index in range(40):
        counter.next(f"n{index}")
    assert counter.next("a") == 1


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list(' \t,="\\aDigestrlmnoc\x00é')), max_size=60))
def test_random_challenges_raise_nothing_but_remote_protocol_error(text: str) -> None:
    try:
        challenges = parse_challenges(text)
    except RemoteProtocolError:
        return
    chosen = choose_challenge(challenges)
    if chosen is not None:
        build_authorization(chosen, MUFASA, method="INVITE", uri="sip:a@h", cnonce="c", nc=1)

"""Who a caller ID names: extensions and numbers by the user part, SIP contacts by user and
host, and a caller ID two people share names nobody."""

from __future__ import annotations

from voipalert.domain.rota import Contact, ContactKind
from voipalert.notify.callin import contact_matches, person_for
from voipalert.rotafile.parse import parse_rota
from voipalert.sip.uri import SipUri

ROTA = """
people:
  - {name: alice, contacts: [{extension: "201"}, {number: "+49 30 1234"}]}
  - {name: bob, contacts: [{sip: "sip:bob@pbx.example.com"}]}
  - {name: carol, contacts: [{extension: "300"}]}
  - {name: dave, contacts: [{extension: "300"}]}
policies:
  - name: default
    steps: [{targets: [{person: alice}], timeout: 300}]
routes:
  - {name: rest, default: true, policy: default}
"""


def uri(text: str) -> SipUri:
    return SipUri.parse(text)


def test_contacts_match_by_what_the_pbx_shows() -> None:
    extension = Contact(ContactKind.EXTENSION, "201")
    assert contact_matches(extension, uri("sip:201@10.0.0.1"))
    assert not contact_matches(extension, uri("sip:2010@10.0.0.1"))
    number = Contact(ContactKind.NUMBER, "+49 30 1234")
    assert contact_matches(number, uri("sip:+49301234@trunk;user=phone"))
    sip = Contact(ContactKind.SIP, "sip:bob@pbx.example.com")
    assert contact_matches(sip, uri("sip:bob@PBX.example.com:5060"))
    assert not contact_matches(sip, uri("sip:bob@evil.example.com"))
    assert not contact_matches(Contact(ContactKind.EMAIL, "a@b.c"), uri("sip:a@b.c"))


def test_person_for() -> None:
    rota = parse_rota(ROTA)
    assert person_for(rota, uri("sip:201@pbx")) == "alice"
    assert person_for(rota, uri("sip:bob@pbx.example.com")) == "bob"
    assert person_for(rota, uri("sip:300@pbx")) is None  # shared: nobody
    assert person_for(rota, uri("sip:999@pbx")) is None
    assert person_for(rota, None) is None

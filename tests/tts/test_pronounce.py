import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voipalert.tts.pronounce import Change, Pronouncer, supported_languages

en = Pronouncer("en")
fr = Pronouncer("fr_FR")


@pytest.mark.parametrize(
    ("text", "spoken"),
    [
        ("SRV-DB-01 is down", "S R V D B zero one is down"),
        ("srv-db-01 is down", "S R V D B zero one is down"),
        ("SRV-PROD-01", "S R V prod zero one"),
        ("web-01 and db01", "web zero one and D B zero one"),
        ("db01.example.com", "D B zero one dot example dot com"),
        ("Disk at 95 %", "Disk at 95 percent"),
        ("Disk at 95%", "Disk at 95 percent"),
        ("80 °C", "80 degrees Celsius"),
        ("3.5 GB free", "3.5 gigabytes free"),
        ("1 GB used", "1 gigabyte used"),
        ("latency 250ms", "latency 250 milliseconds"),
        ("supply 12V", "supply 12 volts"),
        ("room 5 A", "room 5 A"),  # a one-letter unit must touch the number
        ("ping 192.168.1.10 failed", "ping 192 dot 168 dot 1 dot 10 failed"),
        ("10.0.0.1:8080.", "10 dot 0 dot 0 dot 1 port 8080."),
        ("999.1.1.1", "999 dot 1 dot 1 dot 1"),  # not an address: read as a version
        ("fe80::1", "F E eight zero colon colon one"),
        ("CPU and RAM on HTTP", "C P U and ram on H T T P"),
        ("status OK", "status okay"),
        ("THE SERVER IS DOWN", "THE SERVER IS DOWN"),
        ("well-known self-test", "well-known self-test"),
        ("e.g. this", "e.g. this"),
        ("pi is 3.14", "pi is 3.14"),
        ("since 2024-01-15", "since 2024 01 15"),
        ("ticket #42", "ticket number 42"),
        ("R&D", "R and D"),
        ("see https://grafana.example.com/d/x?a=1 now", "see a link now"),
    ],
)
def test_english(text: str, spoken: str) -> None:
    assert en.spoken(text) == spoken


@pytest.mark.parametrize(
    ("text", "spoken"),
    [
        ("SRV-DB-01 est arrêté", "S R V D B zéro un est arrêté"),
        ("Disque à 95 %", "Disque à 95 pour cent"),
        ("80 °C", "80 degrés Celsius"),
        ("3.5 GB libres", "3,5 gigaoctets libres"),
        ("1,5 Go", "1,5 gigaoctet"),  # French: singular below two
        ("2 Go", "2 gigaoctets"),
        ("-5 °C", "moins 5 degrés Celsius"),
        ("pi vaut 3.14", "pi vaut 3,14"),
        ("192.168.1.10", "192 point 168 point 1 point 10"),
        ("R&D", "R et D"),
        ("voir https://x.example/y", "voir un lien"),
    ],
)
def test_french(text: str, spoken: str) -> None:
    assert fr.spoken(text) == spoken


def test_the_english_letter_a_is_not_read_as_the_article() -> None:
    assert en.spoken("SRV-A1") == "S R V eh one"
    assert fr.spoken("SRV-A1") == "S R V A un"


def test_site_entries_win_and_are_final() -> None:
    site = Pronouncer("en", {"SRV-DB-01": "the main database", "Kx3": "kay ex three"})
    assert site.spoken("srv-db-01 down, kx3 too") == "the main database down, kay ex three too"
    # Longest entry first: "SRV-DB-01-B" is not read as "SRV-DB-01" + "-B".
    longer = Pronouncer("en", {"SRV-DB-01": "main", "SRV-DB-01-B": "backup"})
    assert longer.spoken("SRV-DB-01-B and SRV-DB-01") == "backup and main"


def test_explain_lists_each_rewrite_in_text_order() -> None:
    explanation = en.explain("SRV-DB-01: disk at 95 %")
    assert explanation.spoken == "S R V D B zero one: disk at 95 percent"
    assert explanation.changes == (
        Change("SRV-DB-01", "S R V D B zero one", "host name"),
        Change("95 %", "95 percent", "unit"),
    )


def test_hostile_text_is_cleaned_before_the_rules() -> None:
    hostile = '<speak><prosody rate="x-slow">SRV-DB-01</prosody></speak>\x00\x1b[2J [[ ʃ ]]'
    assert en.spoken(hostile) == "S R V D B zero one ʃ"
    long_text = "SRV-DB-01 " * 2000
    assert en.spoken(long_text).count("S R V D B zero one") == 2000


def test_unknown_language_is_refused() -> None:
    assert supported_languages() == ("en", "fr")
    with pytest.raises(ValueError, match="no pronunciation rules for language 'de'"):
        Pronouncer("de")


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=200), st.sampled_from([en, fr]))
def test_any_text_gives_clean_spoken_text(text: str, pronouncer: Pronouncer) -> None:
    spoken = pronouncer.spoken(text)
    assert "[" not in spoken and "<speak" not in spoken
    assert "  " not in spoken
    assert spoken == spoken.strip()

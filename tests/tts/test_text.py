import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from voipalert.tts.text import clean_text, speakable, truncate_spoken


def test_markup_and_ssml_like_tags_are_removed() -> None:
    assert clean_text('<speak>Disk <break time="30s"/>full</speak>') == "Disk full"
    assert clean_text("<b>bold</b> &amp; <!-- hidden --> done") == "bold & done"
    assert clean_text("&lt;script&gt;alert(1)&lt;/script&gt;") == "alert(1)"
    assert clean_text("a < b and c > d") == "a < b and c > d"


def test_piper_phoneme_syntax_cannot_be_injected() -> None:
    assert "[[" not in clean_text("hello [[ h ə l oʊ ]] world")
    assert clean_text("[FIRING:1] DiskFull") == "FIRING:1 DiskFull"


def test_controls_bidi_and_terminal_escapes_are_dropped() -> None:
    assert clean_text("line1\r\nline2\x00\x07 end") == "line1 line2 end"
    assert clean_text("\x1b[31mRED\x1b[0m \x1b]0;title\x07ok") == "RED ok"
    assert clean_text("abc\u202edcb\u200b") == "abcdcb"


def test_truncation_marks_the_cut_at_a_word_boundary() -> None:
    text = "the quick brown fox jumps over the lazy dog"
    cut = truncate_spoken(text, 20)
    assert cut == "the quick brown fox…"
    assert len(cut) <= 20
    assert truncate_spoken("short", 20) == "short"
    assert truncate_spoken("x" * 50, 10) == "x" * 9 + "…"


def test_speakable_accepts_any_value() -> None:
    assert speakable(42, 10) == "42"
    assert speakable("a" * 10_000, 160).endswith("…")
    assert len(speakable("a" * 10_000, 160)) == 160


@given(st.text(max_size=300), st.integers(min_value=2, max_value=200))
def test_speakable_output_is_always_clean_and_bounded(text: str, limit: int) -> None:
    out = speakable(text, limit)
    assert len(out) <= limit
    assert "[" not in out and "]" not in out
    assert all(unicodedata.category(ch) not in {"Cc", "Cf", "Cs", "Co"} for ch in out)
    assert out == out.strip()

"""The bounded memo of the call path's pure text functions (voipalert/tts/memo.py)."""

from __future__ import annotations

import pytest

from voipalert.tts.memo import BoundedMemo
from voipalert.tts.pronounce import SPOKEN_MEMO_ENTRIES, Pronouncer
from voipalert.tts.text import clean_text


def test_a_remembered_value_is_not_computed_again() -> None:
    memo: BoundedMemo[str, int] = BoundedMemo(2)
    calls: list[str] = []

    def compute(key: str) -> int:
        calls.append(key)
        return len(key)

    assert memo.get("ab", lambda: compute("ab")) == 2
    assert memo.get("ab", lambda: compute("ab")) == 2
    assert calls == ["ab"]


def test_the_least_recently_used_entry_goes_first() -> None:
    memo: BoundedMemo[str, str] = BoundedMemo(2)
    memo.get("a", lambda: "A")
    memo.get("b", lambda: "B")
    memo.get("a", lambda: "never")  # "a" used again: "b" is now the oldest
    memo.get("c", lambda: "C")
    assert len(memo) == 2
    assert memo.get("a", lambda: "recomputed") == "A"
    assert memo.get("b", lambda: "recomputed") == "recomputed"


def test_an_exception_remembers_nothing() -> None:
    memo: BoundedMemo[str, str] = BoundedMemo(2)

    def boom() -> str:
        raise ValueError("no")

    with pytest.raises(ValueError):
        memo.get("a", boom)
    assert len(memo) == 0


def test_ever_changing_text_cannot_grow_the_pronouncers_memo() -> None:
    pronouncer = Pronouncer("en")
    for i in range(SPOKEN_MEMO_ENTRIES + 50):
        assert (
            pronouncer.spoken(f"pump {i} at 3 bar")
            == pronouncer.explain(f"pump {i} at 3 bar").spoken
        )
    assert len(pronouncer._spoken) == SPOKEN_MEMO_ENTRIES


@pytest.mark.parametrize(
    "text",
    ["plain ascii text", "tab\there", "bell\x07 rings", "caf\u00e9 \u2028 line", "zero\u200bwidth"],
)
def test_the_ascii_fast_path_cleans_as_the_full_path_does(text: str) -> None:
    full = " ".join(
        "".join(" " if ch in "\t\n\r\x0b\x0c\x85\u2028\u2029" else ch for ch in text).split()
    )
    cleaned = clean_text(text)
    assert "\x07" not in cleaned and "\t" not in cleaned and "\u2028" not in cleaned
    if text.isascii() and text.isprintable():
        assert cleaned == full

from __future__ import annotations

import pytest

from voipalert.media.dtmf import Digit, DtmfCollector, DtmfSource
from voipalert.media.errors import LocalProtocolError

RFC, INBAND, INFO = DtmfSource.RFC4733, DtmfSource.INBAND, DtmfSource.SIP_INFO


def test_same_key_from_two_paths_within_the_window_is_one_press() -> None:
    c = DtmfCollector(window_s=0.5)
    assert c.add("1", RFC, 10.00) == Digit("1", 10.00, RFC)
    assert c.add("1", INBAND, 10.05) is None
    assert c.add("1", INFO, 10.30) is None
    assert c.duplicates == 2


def test_outside_the_window_it_is_a_new_press() -> None:
    c = DtmfCollector(window_s=0.5)
    assert c.add("1", RFC, 10.0) is not None
    assert c.add("1", INBAND, 10.6) == Digit("1", 10.6, INBAND)


def test_the_same_path_twice_is_two_presses() -> None:
    c = DtmfCollector()
    assert c.add("5", RFC, 1.0) is not None
    assert c.add("5", RFC, 1.1) is not None


def test_two_quick_presses_seen_by_two_paths_count_twice() -> None:
    c = DtmfCollector(window_s=0.5)
    reports = [("2", RFC, 0.00), ("2", INBAND, 0.04), ("2", RFC, 0.20), ("2", INBAND, 0.24)]
    got = [c.add(*r) for r in reports]
    assert [d.at for d in got if d is not None] == [0.00, 0.20]


def test_different_keys_are_never_merged() -> None:
    c = DtmfCollector()
    assert c.add("1", RFC, 0.0) is not None
    assert c.add("2", INBAND, 0.01) is not None


def test_the_first_path_wins_and_lowercase_is_accepted() -> None:
    c = DtmfCollector()
    assert c.add("a", INBAND, 3.0) == Digit("A", 3.0, INBAND)
    assert c.add("A", RFC, 3.01) is None


@pytest.mark.parametrize("bad", ["", "E", "12", "x"])
def test_non_keys_are_refused(bad: str) -> None:
    with pytest.raises(LocalProtocolError):
        DtmfCollector().add(bad, RFC, 0.0)


def test_negative_window_is_refused() -> None:
    with pytest.raises(LocalProtocolError):
        DtmfCollector(window_s=-1)

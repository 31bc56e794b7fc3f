"""A bounded memo for pure text functions on the call path.

A call's answer asks for the same few phrases every time (greeting, menu, the alert's
message); their spoken form and prompt key are pure functions of the text, and computing
them (Unicode normalisation, pronunciation rules, a JSON and sha256 over the render
settings) took about half a millisecond a phrase on the event loop. Sixteen calls answered
in one loop iteration paid that 64 times in a row (docs/realtime.md §4). The memo keeps the
most recently used results, bounded in entries, so hostile or ever-changing alert text
cannot grow it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class BoundedMemo(Generic[K, V]):
    """``memo.get(key, compute)``: the remembered value, or ``compute()`` remembered."""

    def __init__(self, max_entries: int) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._max = max_entries
        self._values: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K, compute: Callable[[], V]) -> V:
        try:
            value = self._values[key]
        except KeyError:
            value = compute()
            self._values[key] = value
            if len(self._values) > self._max:
                self._values.popitem(last=False)
            return value
        self._values.move_to_end(key)
        return value

    def __len__(self) -> int:
        return len(self._values)

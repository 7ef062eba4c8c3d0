"""Bounded in-memory maps and sets: caches of the ledger that cannot grow without limit.

A bot left running for weeks must not keep one entry per order or per fill forever. The
ledger is the state; memory only caches it. ``BoundedDict`` and ``BoundedSet`` keep at
most ``max_size`` entries, forgetting the oldest-inserted first (writing a key again makes
it the newest), and ``BoundedDict`` can also forget entries older than ``max_age_s``
(by the ``clock`` given, checked on every write and on ``prune()``). What a user of one
does when a key was forgotten is its own business and must be documented there: usually
"ask the ledger", or "too old to matter".

Pure: no I/O. The clock is whatever callable the caller passes (monotonic seconds).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator, MutableMapping, MutableSet
from typing import TypeVar

__all__ = ["BoundedDict", "BoundedSet"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class BoundedDict(MutableMapping[K, V]):
    """An insertion-ordered dict of at most ``max_size`` entries (optionally ``max_age_s``)."""

    __slots__ = ("_born", "_clock", "_data", "evicted", "max_age_s", "max_size")

    def __init__(self, max_size: int, *, max_age_s: float | None = None,
                 clock: Callable[[], float] | None = None) -> None:
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        if max_age_s is not None and clock is None:
            raise ValueError("max_age_s needs a clock")
        self.max_size = max_size
        self.max_age_s = max_age_s
        self._clock = clock
        self._data: dict[K, V] = {}
        # key -> when written, same order as _data; only kept when ages matter.
        self._born: dict[K, float] | None = {} if max_age_s is not None else None
        self.evicted = 0  # entries forgotten for size or age (not popped by the owner)

    # -- reading (fast paths: these sit on the per-event path) --------------------------

    def __getitem__(self, key: K) -> V:
        return self._data[key]

    def get(self, key: K, default: V | None = None) -> V | None:  # type: ignore[override]
        return self._data.get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __iter__(self) -> Iterator[K]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"BoundedDict({len(self._data)}/{self.max_size})"

    # -- writing -------------------------------------------------------------------------

    def __setitem__(self, key: K, value: V) -> None:
        data = self._data
        if key in data:
            del data[key]  # re-inserted below: the newest again
            if self._born is not None:
                del self._born[key]
        data[key] = value
        if self._born is not None:
            assert self._clock is not None
            now = self._clock()
            self._born[key] = now
            self._expire(now)
        while len(data) > self.max_size:
            oldest = next(iter(data))
            del data[oldest]
            if self._born is not None:
                del self._born[oldest]
            self.evicted += 1

    def setdefault(self, key: K, default: V = None) -> V:  # type: ignore[assignment]
        try:
            return self._data[key]
        except KeyError:
            self[key] = default
            return default

    def __delitem__(self, key: K) -> None:
        del self._data[key]
        if self._born is not None:
            del self._born[key]

    def pop(self, key: K, *default: V) -> V:  # type: ignore[override]
        if key in self._data:
            value = self._data.pop(key)
            if self._born is not None:
                del self._born[key]
            return value
        if default:
            return default[0]
        raise KeyError(key)

    def clear(self) -> None:
        self._data.clear()
        if self._born is not None:
            self._born.clear()

    def _expire(self, now: float) -> int:
        born = self._born
        if born is None or self.max_age_s is None:
            return 0
        edge = now - self.max_age_s
        n = 0
        while born:
            key = next(iter(born))
            if born[key] > edge:
                break
            del born[key]
            del self._data[key]
            n += 1
        self.evicted += n
        return n

    def prune(self, now: float | None = None) -> int:
        """Forget entries older than ``max_age_s``; returns how many."""
        if self._born is None or self._clock is None:
            return 0
        return self._expire(self._clock() if now is None else now)


class BoundedSet(MutableSet[K]):
    """An insertion-ordered set of at most ``max_size`` members, the oldest forgotten first."""

    __slots__ = ("_data", "evicted", "max_size")

    def __init__(self, max_size: int, items: Iterable[K] = ()) -> None:
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        self.max_size = max_size
        self._data: dict[K, None] = {}
        self.evicted = 0
        self.update(items)

    @classmethod
    def _from_iterable(cls, it: Iterable[K]) -> set[K]:  # type: ignore[override]
        return set(it)  # set algebra (a & b) gives a plain set, not another bounded one

    def __contains__(self, item: object) -> bool:
        return item in self._data

    def __iter__(self) -> Iterator[K]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"BoundedSet({len(self._data)}/{self.max_size})"

    def add(self, item: K) -> None:
        data = self._data
        if item in data:
            del data[item]  # the newest again
        data[item] = None
        if len(data) > self.max_size:
            del data[next(iter(data))]
            self.evicted += 1

    def discard(self, item: K) -> None:
        self._data.pop(item, None)

    def update(self, items: Iterable[K]) -> None:
        for item in items:
            self.add(item)

    def clear(self) -> None:
        self._data.clear()

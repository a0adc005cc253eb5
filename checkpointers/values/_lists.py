"""The cache of list values: the latest list each (thread, namespace, channel) holds."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from checkpointers.values._format import digest

#: How many (thread, namespace, channel) list states the cache remembers.
TAIL_CACHE_SIZE = 4096
#: How many bytes of serialized list items the cache holds, at most.
TAIL_CACHE_BYTES = 32 * 1024 * 1024

#: One serialized list item: (type tag, bytes).
Item = tuple[bytes, bytes]
#: (thread, namespace, channel).
ListKey = tuple[str, str, str]


@dataclass(frozen=True, slots=True)
class ListState:
    """The latest value this process stored or read for a list channel.

    `key` is the blob holding it, `depth` the number of appended tails below that blob,
    `items` the serialized list items and `digests` theirs, `size` their bytes. Blob
    contents never change under a key (versions are unique and blobs insert-if-absent),
    so a state stays true for as long as its blob exists. Items are kept serialized:
    each read deserializes fresh objects, so a caller mutating what it got can never
    alter what later reads return.
    """

    key: str
    depth: int
    digests: tuple[bytes, ...]
    items: tuple[Item, ...]
    size: int

    @classmethod
    def of(cls, key: str, depth: int, items: Sequence[Item]) -> ListState:
        """The state of blob `key` holding `items`, `depth` tails above a full copy."""
        return cls(
            key,
            depth,
            tuple(digest(t, d) for t, d in items),
            tuple(items),
            sum(len(t) + len(d) for t, d in items),
        )


class ListCache(Mapping[ListKey, ListState]):
    """Least-recently-used list states, bounded in count and in item bytes.

    Args:
        max_states: how many states it keeps (default `TAIL_CACHE_SIZE`).
        max_bytes: how many item bytes it keeps (default `TAIL_CACHE_BYTES`); a state
            larger than that is not kept.
    """

    def __init__(self, *, max_states: int | None = None, max_bytes: int | None = None) -> None:
        self._states: OrderedDict[ListKey, ListState] = OrderedDict()
        self._max_states = TAIL_CACHE_SIZE if max_states is None else max_states
        self._max_bytes = TAIL_CACHE_BYTES if max_bytes is None else max_bytes
        self.nbytes = 0
        """The item bytes held now."""

    def __getitem__(self, key: ListKey) -> ListState:
        return self._states[key]

    def __iter__(self) -> Iterator[ListKey]:
        return iter(self._states)

    def __len__(self) -> int:
        return len(self._states)

    def peek(self, key: ListKey) -> ListState | None:
        """The state of `key`, or None (not marked as used)."""
        return self._states.get(key)

    def hit(self, key: ListKey, blob: str) -> ListState | None:
        """The state of `key` if it is the value of blob `blob` (marked as used)."""
        state = self._states.get(key)
        if state is None or state.key != blob:
            return None
        self._states.move_to_end(key)
        return state

    def remember(self, states: Mapping[ListKey, ListState]) -> None:
        """Keep `states` as the latest list values, least recently used out first."""
        cache = self._states
        for key, state in states.items():
            old = cache.pop(key, None)
            if old is not None:
                self.nbytes -= old.size
            if state.size > self._max_bytes:
                continue
            cache[key] = state
            self.nbytes += state.size
        while len(cache) > self._max_states or self.nbytes > self._max_bytes:
            _, evicted = cache.popitem(last=False)
            self.nbytes -= evicted.size

    def forget(self, threads: Iterable[str]) -> None:
        """Drop every state of `threads`."""
        gone = set(threads)
        for key in [k for k in self._states if k[0] in gone]:
            self.nbytes -= self._states.pop(key).size

    def __repr__(self) -> str:
        return f"ListCache(states={len(self._states)}, nbytes={self.nbytes})"

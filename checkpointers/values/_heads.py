"""The head cache: the newest snapshot this process wrote or read per (thread, namespace)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from checkpointers.record import RecordId
from checkpointers.values._format import value_keys
from checkpointers.values._lists import TAIL_CACHE_SIZE


def same_versions(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether `a` and `b` name the same value keys, without computing them: equal
    mappings of exactly-typed str or int versions (`1 == 1.0 == True`, yet their keys
    differ); any other version type counts as different, so its keys get compared."""
    if a != b:
        return False
    for channel, version in a.items():
        kind = type(version)
        if (kind is not str and kind is not int) or type(b[channel]) is not kind:
            return False
    return True


@dataclass(slots=True)
class Head:
    """The newest snapshot this process wrote or read for a (thread, namespace): a guess
    that lets a reader fetch its values in the same round trip that finds the newest.

    `snapshot` is its id, `versions` its channel versions, `keys` the value key of each
    channel, `ids` the value records of `keys` (filled by `ValueStore.prefetch`).
    """

    snapshot: str
    versions: dict[str, Any]
    keys: dict[str, str]
    ids: tuple[RecordId, ...] | None = None

    def keys_for(self, versions: Mapping[str, Any]) -> dict[str, str] | None:
        """`keys` if `versions` names the same value records, else None."""
        if same_versions(self.versions, versions) or self.keys == value_keys(versions):
            return self.keys
        return None


class HeadCache:
    """Heads by (thread, namespace), least recently noted out first past `size`."""

    def __init__(self, size: int = TAIL_CACHE_SIZE) -> None:
        self._heads: OrderedDict[tuple[str, str], Head] = OrderedDict()
        self._size = size

    def get(self, thread: str, namespace: str) -> Head | None:
        """The head of (thread, namespace), or None."""
        return self._heads.get((thread, namespace))

    def note(self, thread: str, namespace: str, snapshot: str, versions: Mapping[str, Any]) -> None:
        """Record `snapshot` with channel `versions` as the newest of (thread, namespace)."""
        key = (thread, namespace)
        head = self._heads.get(key)
        if head is None or head.snapshot != snapshot or not same_versions(head.versions, versions):
            head = Head(snapshot, dict(versions), value_keys(versions))
        self._heads[key] = head
        self._heads.move_to_end(key)
        while len(self._heads) > self._size:
            self._heads.popitem(last=False)

    def forget(self, threads: Iterable[str]) -> None:
        """Drop the heads of `threads`."""
        gone = set(threads)
        for key in [k for k in self._heads if k[0] in gone]:
            del self._heads[key]

    def __repr__(self) -> str:
        return f"HeadCache(heads={len(self._heads)})"

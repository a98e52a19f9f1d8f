"""A table's shape (its key, its columns) and the source position since when it holds,
kept in a collection of the read model so that a restarted consumer knows it too
(``consumer.rekey``, ``consumer.reshape``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

S = TypeVar("S")

# ShapeStore.verdict's answers.
APPLY = "apply"
SKIP = "skip"
CHANGED = "changed"


@dataclass(frozen=True, slots=True)
class Known(Generic[S]):
    shape: S
    since: tuple[int, int, int]  # position of the first event seen with this shape


class ShapeStore(Generic[S]):
    """``table -> Known`` cached in memory, stored as ``{_id: table, <field>: [...],
    since: [...]}`` documents (positions as text: LSNs are unsigned 64-bit)."""

    def __init__(
        self,
        db: Any,
        collection: str,
        field: str,
        retrying: Callable[[str, Callable[[], Any]], Any],
        decode: Callable[[Iterable[Any]], S],
    ) -> None:
        self.coll = db[collection]
        self.field = field
        self._retrying = retrying
        self._decode = decode
        self._known: dict[str, Known[S] | None] = {}

    def load(self, table: str) -> Known[S] | None:
        if table not in self._known:
            doc = self._retrying(f"{self.field} read", lambda: self.coll.find_one({"_id": table}))
            self._known[table] = (
                Known(self._decode(doc[self.field]), tuple(int(p) for p in doc["since"]))  # type: ignore[arg-type]
                if doc
                else None
            )
        return self._known[table]

    def remember(
        self, table: str, shape: S, stored: list[Any], since: tuple[int, int, int]
    ) -> None:
        self._known[table] = Known(shape, since)
        doc = {self.field: stored, "since": [str(p) for p in since]}
        self._retrying(
            f"{self.field} write",
            lambda: self.coll.replace_one({"_id": table}, doc, upsert=True),
        )

    def verdict(
        self, table: str, shape: S, stored: list[Any], position: tuple[int, int, int]
    ) -> str:
        """``"apply"`` when ``shape`` is the table's known one (or the first seen, then
        remembered from ``position`` on), ``"skip"`` for an event from before the last
        change (an old-shape re-send), ``"changed"`` when the shape changed at it."""
        known = self.load(table)
        if known is None:
            self.remember(table, shape, stored, position)
            return APPLY
        if shape == known.shape:
            return APPLY
        if position < known.since:
            return SKIP
        return CHANGED

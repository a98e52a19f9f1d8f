"""Key changes of generic tables: a primary key added, dropped or changed.

A generic table's documents are named by its key (``doc_id``), or by their content when
it has none (``row_hash_id``). When the key changes (``ALTER TABLE … ADD PRIMARY KEY``
after a bulk load, the key dropped again, other key columns), the events after the DDL
carry the new key, and the documents written before it would stay beside the new ones
for ever. Debezium emits nothing for the DDL itself; the first event with the new key
shape is the moment the consumer learns of it.

The mechanism is a re-key of the collection at that moment, not a Debezium incremental
snapshot: a table's changes reach the consumer in commit order on one partition (see
``Settings.topic_partitions``), so when the first event with the new key arrives, every
change before the DDL has been applied and the collection holds exactly the table's
rows as of the DDL. Renaming each document to its new ``_id`` is then exact, costs the
source nothing, needs no signal table in the user's database, and works where an
incremental snapshot cannot (a table whose key was dropped has no key to chunk by).
Events with the old key shape that arrive later are replays of changes the re-key
already folded in (their position lies before the change): they are skipped.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

from pymongo import DeleteOne, ReplaceOne
from pymongo.errors import BulkWriteError

from event_processor.consumer.envelope import ChangeEvent
from event_processor.consumer.projection import (
    KEYS_COLLECTION,
    doc_id,
    keyless_count,
    row_hash_id,
)
from event_processor.consumer.shapes import CHANGED, ShapeStore

log = logging.getLogger(__name__)

KeyShape = tuple[str, ...]  # the key's column names in key order; () for no key
REKEY = "rekey"
META_FIELDS = ("_id", "_ops", "_lsn")


def key_shape(event: ChangeEvent) -> KeyShape:
    return tuple(event.key) if event.key else ()


class KeyShapes:
    """The key shape each generic table's documents have, stored in ``_ep_tables``."""

    def __init__(self, db: Any, retrying: Callable[[str, Callable[[], Any]], Any]) -> None:
        self.store: ShapeStore[KeyShape] = ShapeStore(db, KEYS_COLLECTION, "key", retrying, tuple)

    def check(self, event: ChangeEvent) -> str:
        """APPLY, SKIP (an old-shape event from before the last key change) or REKEY."""
        shape = key_shape(event)
        verdict = self.store.verdict(event.table, shape, list(shape), event.position)
        return REKEY if verdict == CHANGED else verdict

    def shape_of(self, table: str) -> KeyShape:
        known = self.store.load(table)
        return known.shape if known else ()

    def remember(self, table: str, shape: KeyShape, since: tuple[int, int, int]) -> None:
        self.store.remember(table, shape, list(shape), since)


def rekeyed(docs: list[dict[str, Any]], new_key: KeyShape, change: str) -> list[dict[str, Any]]:
    """The collection's documents named by ``new_key`` (() for content-named).

    Keyless documents stand for ``keyless_count`` copies; under a key each row is one
    document (PostgreSQL refused the key if rows repeated). Keyed documents becoming
    keyless count one copy each, under a change name of their own (``change``)."""
    out: dict[str, dict[str, Any]] = {}
    for d in docs:
        copies = keyless_count(d) if "_ops" in d else 1
        if copies <= 0:
            continue
        row = {k: v for k, v in d.items() if k not in META_FIELDS}
        if new_key:
            new = {**row, "_lsn": d.get("_lsn", 0)}
            out[doc_id([row.get(c) for c in new_key])] = new
        else:
            hid = row_hash_id(row)
            have = out.setdefault(hid, {**row, "_ops": {}})
            ops = have["_ops"]
            ops[f"k{change}"] = ops.get(f"k{change}", 0) + copies
    return [{"_id": i, **d} for i, d in out.items()]


def rekey_collection(coll: Any, old_key: KeyShape, new_key: KeyShape, change: str) -> int:
    """Rename every document of ``coll`` to its ``_id`` under ``new_key``; returns the
    number of documents after. The new documents are written before the old ones are
    removed, so a crash in between leaves both (verify names them) and loses nothing."""
    docs = list(coll.find({}))
    new_docs = rekeyed(docs, new_key, change)
    if old_key and new_key:
        # Both named by a key: a new _id may be an old document's. Replace, then remove
        # the documents no row is named by any more.
        ops: list[Any] = [ReplaceOne({"_id": d["_id"]}, d, upsert=True) for d in new_docs]
        new_ids = {d["_id"] for d in new_docs}
        ops += [DeleteOne({"_id": d["_id"]}) for d in docs if d["_id"] not in new_ids]
        for i in range(0, len(ops), 16):  # FerretDB: a connection per statement
            coll.bulk_write(ops[i : i + 16], ordered=True)
    else:
        # Keyed and content-named documents never share an _id ("h:" prefix): insert
        # the new ones in bulk (a re-run after a crash finds them there), then remove
        # the old shape in one statement.
        for i in range(0, len(new_docs), 10_000):
            with contextlib.suppress(BulkWriteError):  # already there: a re-run
                coll.insert_many(new_docs[i : i + 10_000], ordered=False)
        coll.delete_many({"_ops": {"$exists": not old_key}})
    log.info("re-keyed %s: %d documents -> %d under key %s",
             coll.name, len(docs), len(new_docs), list(new_key) or "(none)")  # fmt: skip
    return len(new_docs)

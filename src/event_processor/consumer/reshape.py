"""Column changes of keyed generic tables: ``ADD COLUMN`` (with or without a default),
``DROP COLUMN``, ``RENAME COLUMN``.

PostgreSQL logs no row changes for them: a column added with a default is filled in
place, a dropped or renamed one changes only the catalogue. The documents written
before the DDL would keep the old columns for ever, and only the rows changed afterwards
would show the new ones. Debezium emits nothing for the DDL itself; the first change
event whose columns differ from the ones the documents were written with is the moment
the consumer learns of it (``ColumnShapes``).

At that moment the collection is re-read from the table (``resync_collection``), the
way ``consumer.rekey`` renames documents when a key changes, with the same reasoning: a
table's changes arrive in commit order on one partition, so every change before the DDL
has been applied. The table is read as it is *now*, which may be later than the DDL;
every document is replaced by its row, converted exactly as ``verify`` converts it. The
changes between the DDL and the read that follow in the stream are then applied again
on top: each is a whole row (or a delete), so a document may step back to an older
version for a moment but ends as the row's last change, and a row deleted in between is
deleted when its delete arrives. Events with the old columns that arrive afterwards are
replays from before the change (their position lies before it): skipped, the read
already holds them. A crash in the middle leaves the old shape recorded, so the next
event with the new columns reads the table again.

Keyless tables are not re-read (a read would count each row once more than the changes
that follow it): their documents keep the old columns, which ``verify`` reports.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from pymongo import ReplaceOne

from event_processor.consumer.envelope import ChangeEvent
from event_processor.consumer.projection import doc_id
from event_processor.consumer.shapes import APPLY, CHANGED, ShapeStore

log = logging.getLogger(__name__)

COLUMNS_COLLECTION = "_ep_columns"
RESHAPE = "reshape"
ColumnNames = frozenset[str]


def column_names(event: ChangeEvent) -> ColumnNames:
    """The columns of the row an insert, update or read carries (a delete's old row may
    hold only the key, by its replica identity: it tells nothing)."""
    return frozenset(event.after or ())


class ColumnShapes:
    """The columns each generic table's documents have, stored in ``_ep_columns``."""

    def __init__(self, db: Any, retrying: Callable[[str, Callable[[], Any]], Any]) -> None:
        self.store: ShapeStore[ColumnNames] = ShapeStore(
            db, COLUMNS_COLLECTION, "columns", retrying, frozenset
        )

    def check(self, event: ChangeEvent) -> str:
        """APPLY, SKIP (an old-columns event from before the last change) or RESHAPE."""
        names = column_names(event)
        if not names:
            return APPLY
        verdict = self.store.verdict(event.table, names, sorted(names), event.position)
        return RESHAPE if verdict == CHANGED else verdict

    def remember(self, table: str, names: ColumnNames, since: tuple[int, int, int]) -> None:
        self.store.remember(table, names, sorted(names), since)


# A DDL that commits between the catalogue read and the SELECT (a column dropped or
# renamed, the table dropped) makes the SELECT name what is gone: the read is started
# again on a fresh snapshot, whose catalogue has the change. Bounded, for a DDL storm.
RESYNC_ATTEMPTS = 5


def resync_collection(dsn: str, coll: Any, schema: str, table: str, lsn: int) -> int | None:
    """Replace every document of ``coll`` by its row of ``schema.table`` as it is now;
    returns the rows read, or None for a keyless table (not re-read, see the module) or
    one that no longer exists (its drop reaches the consumer as it does)."""
    import psycopg2
    from psycopg2 import errors as pg_errors

    conn = psycopg2.connect(dsn, application_name="ep-consumer-resync")
    try:
        for attempt in range(1, RESYNC_ATTEMPTS + 1):
            try:
                return _resync_once(conn, coll, schema, table, lsn)
            except (pg_errors.UndefinedColumn, pg_errors.UndefinedTable) as exc:
                conn.rollback()
                if attempt == RESYNC_ATTEMPTS:
                    raise
                log.info("%s.%s changed during its re-read (%s): reading it again",
                         schema, table, str(exc).splitlines()[0])  # fmt: skip
        raise AssertionError("unreachable")
    finally:
        conn.close()


def _resync_once(conn: Any, coll: Any, schema: str, table: str, lsn: int) -> int | None:
    from event_processor.verify.source import begin_snapshot, read_catalog, read_rows

    begin_snapshot(conn)
    with conn.cursor() as cur:
        info = next((t for t in read_catalog(cur, [schema]).values() if t.table == table), None)
    if info is None or info.keyless:
        conn.rollback()
        return None
    ops: list[Any] = []
    rows = 0
    for row in read_rows(conn, info):
        rows += 1
        key = doc_id([row.get(c) for c in info.primary_key])
        ops.append(ReplaceOne({"_id": key}, {**row, "_lsn": lsn}, upsert=True))
        if len(ops) == 16:  # FerretDB: a connection per statement of a command
            coll.bulk_write(ops, ordered=False)
            ops = []
    if ops:
        coll.bulk_write(ops, ordered=False)
    conn.rollback()
    return rows

"""How the race sees a row: the commit time of its change event (``CommitReader``) and
the moment its document first becomes visible in a sink's database (``Watcher`` over
one ``Probe`` per sink). See ``race.run`` for why the local probe reads FerretDB's
PostgreSQL storage.
"""

from __future__ import annotations

import contextlib
import json
import queue
import threading
from typing import Any, Protocol

from event_processor.errors import EventProcessorError
from event_processor.metrics.timing import wall_us
from event_processor.race.sinks import Sink
from event_processor.settings import Settings

MAX_IDS_PER_QUERY = 500


class RaceError(EventProcessorError):
    """The race (or a black-box run) could not be carried out."""

    def __init__(self, problem: str, fix: str | None = None) -> None:
        super().__init__("race", problem, fix)


# --- visibility probes ---------------------------------------------------------------------


class Probe(Protocol):
    def visible(self, ids: list[int]) -> list[int]: ...

    def close(self) -> None: ...


class StoreProbe:
    """Reads FerretDB's PostgreSQL storage by ``_id`` (indexed), see the module doc. The
    collection's table is looked up when first needed and until it exists: a sink that
    was not given one creates it with its first write."""

    name = "FerretDB storage by _id index"

    def __init__(self, dsn: str, sink: Sink, collection: str) -> None:
        import psycopg2

        self.sink = sink
        self.collection = collection
        self.conn = psycopg2.connect(dsn, application_name="ep-race-watch")
        self.conn.autocommit = True
        self.sql: str | None = None

    def _resolve(self) -> str | None:
        from psycopg2 import errors as pg_errors

        database = self.sink.database
        try:
            with self.conn.cursor() as cur:
                cur.execute(
                    f"SELECT _jsonb->>'table' FROM \"{database}\"._ferretdb_database_metadata "
                    "WHERE _jsonb->'_id' = %s::jsonb",
                    (json.dumps(self.collection),),
                )
                row = cur.fetchone()
        except pg_errors.UndefinedTable:  # no such database (FerretDB schema) yet
            return None
        if row is None:
            return None
        return (
            f'SELECT _jsonb->\'_id\' FROM "{database}"."{row[0]}" '
            "WHERE _jsonb->'_id' = ANY(%s::jsonb[])"
        )

    def visible(self, ids: list[int]) -> list[int]:
        if self.sql is None:
            self.sql = self._resolve()
            if self.sql is None:
                return []
        keys = [json.dumps(k) for i in ids for k in self.sink.encode_ids(i)]
        with self.conn.cursor() as cur:
            cur.execute(self.sql, (keys,))
            return [self.sink.decode_id(r[0]) for r in cur.fetchall()]

    def close(self) -> None:
        self.conn.close()


class WireProbe:
    """``find({_id: {$in: pending}})`` over the MongoDB wire protocol."""

    name = "MongoDB find by _id"

    def __init__(self, uri: str, sink: Sink, collection: str) -> None:
        from pymongo import MongoClient

        self.sink = sink
        self.client: Any = MongoClient(uri, serverSelectionTimeoutMS=10_000)
        self.coll = self.client[sink.database][collection]

    def visible(self, ids: list[int]) -> list[int]:
        keys = [k for i in ids for k in self.sink.encode_ids(i)]
        docs = self.coll.find({"_id": {"$in": keys}}, {"_id": 1})
        return [self.sink.decode_id(d["_id"]) for d in docs]

    def close(self) -> None:
        self.client.close()


def make_probe(settings: Settings, sink: Sink, collection: str) -> Probe:
    if settings.mongo_external:
        return WireProbe(settings.mongodb_uri(), sink, collection)
    from event_processor.stack.ferretdb import store_dsn

    return StoreProbe(store_dsn(settings), sink, collection)


def probe_name(settings: Settings) -> str:
    return WireProbe.name if settings.mongo_external else StoreProbe.name


class Watcher(threading.Thread):
    """Polls every sink's database for the committed rows not yet seen; stamps first
    sight."""

    def __init__(self, probes: dict[str, Probe], interval_s: float) -> None:
        super().__init__(name="ep-race-watcher", daemon=True)
        self.probes = probes
        self.interval_s = interval_s
        self.inbox: queue.SimpleQueue[int] = queue.SimpleQueue()
        self.pending: dict[str, set[int]] = {s: set() for s in probes}
        self.visible: dict[str, dict[int, int]] = {s: {} for s in probes}
        self.polls = 0
        self.error: BaseException | None = None
        self._lock = threading.Lock()
        self._halt = threading.Event()

    def add(self, row_id: int) -> None:
        self.inbox.put(row_id)

    def run(self) -> None:
        order = list(self.probes)
        try:
            while not self._halt.is_set():
                while True:
                    try:
                        row_id = self.inbox.get_nowait()
                    except queue.Empty:
                        break
                    for pending in self.pending.values():
                        pending.add(row_id)
                for side in order:
                    self._poll(side)
                order = order[1:] + order[:1]  # no sink is always looked at first
                self.polls += 1
                self._halt.wait(self.interval_s)
        except BaseException as exc:  # re-raised on the race thread
            self.error = exc

    def _poll(self, side: str) -> None:
        pending = self.pending[side]
        if not pending:
            return
        ids = sorted(pending)[:MAX_IDS_PER_QUERY]
        stamp = wall_us()  # the query's snapshot is taken after this instant
        found = self.probes[side].visible(ids)
        with self._lock:
            seen = self.visible[side]
            for row_id in found:
                seen.setdefault(row_id, stamp)
        pending.difference_update(found)

    def count(self, side: str, ids: set[int]) -> int:
        if self.error is not None:
            raise RaceError(f"the visibility watcher failed: {self.error}")
        with self._lock:
            return sum(1 for i in self.visible[side] if i in ids)

    def snapshot(self) -> dict[str, dict[int, int]]:
        with self._lock:
            return {s: dict(v) for s, v in self.visible.items()}

    def stop(self) -> None:
        self._halt.set()
        self.join(10)


class CommitReader(threading.Thread):
    """T0 of every row: ``source.ts_us`` of its create event on a race topic."""

    def __init__(self, settings: Settings, topic: str, start: dict[int, int]) -> None:
        from kafka import KafkaConsumer, TopicPartition

        super().__init__(name="ep-race-t0", daemon=True)
        self.consumer = KafkaConsumer(
            bootstrap_servers=settings.kafka_servers(),
            group_id=None,
            enable_auto_commit=False,
            fetch_max_wait_ms=50,
        )
        parts = [TopicPartition(topic, p) for p in sorted(start)]
        self.consumer.assign(parts)
        for tp in parts:
            self.consumer.seek(tp, start[tp.partition])
        self.t0_us: dict[int, int] = {}
        self.error: BaseException | None = None
        self._lock = threading.Lock()
        self._halt = threading.Event()

    def run(self) -> None:
        try:
            while not self._halt.is_set():
                polled = self.consumer.poll(timeout_ms=100)
                for messages in polled.values():
                    for m in messages:
                        self._take(m.value)
        except BaseException as exc:
            self.error = exc

    def _take(self, raw: bytes | None) -> None:
        if not raw:
            return
        value = json.loads(raw)
        payload = value.get("payload", value)
        if not isinstance(payload, dict) or payload.get("op") not in ("c", "r"):
            return
        row_id = int(payload["after"]["id"])
        with self._lock:
            self.t0_us.setdefault(row_id, int(payload["source"]["ts_us"]))

    def count(self, ids: set[int]) -> int:
        if self.error is not None:
            raise RaceError(f"reading commit times from Kafka failed: {self.error}")
        with self._lock:
            return sum(1 for i in self.t0_us if i in ids)

    def snapshot(self) -> dict[int, int]:
        with self._lock:
            return dict(self.t0_us)

    def stop(self) -> None:
        self._halt.set()
        self.join(10)
        with contextlib.suppress(Exception):
            self.consumer.close()

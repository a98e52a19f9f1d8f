"""``run_race``: the same inserts through our consumer and Debezium's MongoDB sink, timed alike.

1. the race table is created (if missing) and emptied; both race databases are dropped
   and their ``race_events`` collections created (one at a time: FerretDB can fail
   concurrent first creations);
2. our consumer starts as a fresh process in a new group writing to ``ep_race_ours``
   (EP_MONGO_DATABASE); the sink connector is registered with its group's offsets
   committed at the end of the race topic, writing to ``ep_race_debezium``;
3. warm-up rows (negative ids, left out of every figure) must become visible in both;
4. the open-loop generator inserts rows 1..N, one per transaction, at the fixed rate; a
   reader takes every row's T0 (``source.ts_us``) from the change topic, and one watcher
   polls both databases for pending rows, alternating which goes first, stamping each
   document's first-visible time (host wall clock just before the query that saw it);
5. when every row is visible in both (or the timeout after the last insert passed), the
   connector is deleted (with its consumer group), our consumer stopped, the race table
   emptied again; the databases stay for inspection until the next race.

Visibility probe: on the local FerretDB the watcher reads FerretDB's own PostgreSQL
(its storage) by ``_id`` through the unique ``_id`` index, because FerretDB 1.x scans
the whole collection for ``{_id: {$in: [...]}}`` and for any document-valued ``_id``
(Debezium's ``{"id": n}``), which would make the watcher the bottleneck. A write
FerretDB acknowledged is committed there, and a find runs the same SQL, so the first
moment a query there sees a row is the first moment a MongoDB client could. With an
external store (EP_MONGO_URI) the watcher uses ``find({_id: {$in: pending}})``.
"""

from __future__ import annotations

import contextlib
import json
import math
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from event_processor.errors import EventProcessorError
from event_processor.metrics.timing import wall_us
from event_processor.race.result import (
    DATABASES,
    OURS,
    SIDES,
    SINK_CONNECTOR_NAME,
    THEIRS,
    RaceBrokenError,
    assemble,
    latency_samples_ms,
    race_topic,
    sink_connector_config,
    sink_group,
)
from event_processor.report.schema import RaceResult
from event_processor.settings import Settings
from event_processor.source.schema import RACE_TABLE

ProgressFn = Callable[[str], None]

WARMUP_IDS = (-1, -2, -3)
READY_TIMEOUT_S = 90.0
PAYLOAD_BYTES = 64
MAX_IDS_PER_QUERY = 500
EVENTS_PER_CONNECTION = 500


class RaceError(EventProcessorError):
    """The race could not be carried out."""

    def __init__(self, problem: str, fix: str | None = None) -> None:
        super().__init__("race", problem, fix)


@dataclass(slots=True)
class RaceOutcome:
    result: RaceResult
    samples_ms: dict[str, list[float]] = field(default_factory=dict)
    plots: dict[str, bytes] = field(default_factory=dict)
    consumer_log: str = ""


# --- how a document id looks in each database ---------------------------------------------


def encode_id(side: str, row_id: int) -> Any:
    """The ``_id`` each sink gives row ``row_id``: ours the string key, Debezium's the key
    document."""
    return str(row_id) if side == OURS else {"id": row_id}


def decode_id(side: str, value: Any) -> int:
    return int(value) if side == OURS else int(value["id"])


# --- visibility probes ---------------------------------------------------------------------


class Probe(Protocol):
    def visible(self, ids: list[int]) -> list[int]: ...

    def close(self) -> None: ...


class StoreProbe:
    """Reads FerretDB's PostgreSQL storage by ``_id`` (indexed), see the module doc."""

    name = "FerretDB storage by _id index"

    def __init__(self, dsn: str, side: str, database: str, collection: str) -> None:
        import psycopg2

        self.side = side
        self.conn = psycopg2.connect(dsn, application_name="ep-race-watch")
        self.conn.autocommit = True
        with self.conn.cursor() as cur:
            cur.execute(
                f"SELECT _jsonb->>'table' FROM \"{database}\"._ferretdb_database_metadata "
                "WHERE _jsonb->'_id' = %s::jsonb",
                (json.dumps(collection),),
            )
            row = cur.fetchone()
        if row is None:
            raise RaceError(f"FerretDB has no collection {database}.{collection}")
        self.sql = (
            f'SELECT _jsonb->\'_id\' FROM "{database}"."{row[0]}" '
            "WHERE _jsonb->'_id' = ANY(%s::jsonb[])"
        )

    def visible(self, ids: list[int]) -> list[int]:
        keys = [json.dumps(encode_id(self.side, i)) for i in ids]
        with self.conn.cursor() as cur:
            cur.execute(self.sql, (keys,))
            return [decode_id(self.side, r[0]) for r in cur.fetchall()]

    def close(self) -> None:
        self.conn.close()


class WireProbe:
    """``find({_id: {$in: pending}})`` over the MongoDB wire protocol."""

    name = "MongoDB find by _id"

    def __init__(self, uri: str, side: str, database: str, collection: str) -> None:
        from pymongo import MongoClient

        self.side = side
        self.client: Any = MongoClient(uri, serverSelectionTimeoutMS=10_000)
        self.coll = self.client[database][collection]

    def visible(self, ids: list[int]) -> list[int]:
        keys = [encode_id(self.side, i) for i in ids]
        docs = self.coll.find({"_id": {"$in": keys}}, {"_id": 1})
        return [decode_id(self.side, d["_id"]) for d in docs]

    def close(self) -> None:
        self.client.close()


def make_probe(settings: Settings, side: str) -> Probe:
    if settings.mongo_external:
        return WireProbe(settings.mongodb_uri(), side, DATABASES[side], RACE_TABLE)
    from event_processor.stack.ferretdb import store_dsn

    return StoreProbe(store_dsn(settings), side, DATABASES[side], RACE_TABLE)


class Watcher(threading.Thread):
    """Polls both databases for the committed rows not yet seen; stamps first sight."""

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
                order.reverse()  # neither sink is always looked at first
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
    """T0 of every row: ``source.ts_us`` of its create event on the race topic."""

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


# --- the generator --------------------------------------------------------------------------


def payload_for(row_id: int) -> str:
    """A deterministic payload of PAYLOAD_BYTES characters."""
    seed = f"race-{row_id}-"
    return (seed * (PAYLOAD_BYTES // len(seed) + 1))[:PAYLOAD_BYTES]


def _insert(conn: Any, row_id: int) -> None:
    with conn.cursor() as cur:
        cur.execute(
            f"INSERT INTO public.{RACE_TABLE} (id, payload) VALUES (%s, %s)",
            (row_id, payload_for(row_id)),
        )
    conn.commit()


def run_inserts(
    dsn: str, ids: list[int], rate: float, on_commit: Callable[[int], None]
) -> list[int]:
    """Insert ``ids`` open loop at ``rate`` (one row per transaction); schedule lags in µs."""
    import psycopg2

    from event_processor.source.generator import START_LEAD_S, Schedule

    n = max(1, min(8, math.ceil(rate / EVENTS_PER_CONNECTION)))
    conns = [psycopg2.connect(dsn, application_name="ep-race-generator") for _ in range(n)]
    lags: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    schedule = Schedule.start_in(rate, START_LEAD_S)

    def work(k: int) -> None:
        conn = conns[k]
        try:
            for i in range(k, len(ids), n):
                due = schedule.due_ns(i)
                while (delay := due - time.perf_counter_ns()) > 0:
                    time.sleep(delay / 1e9)
                lag = schedule.now_us() - schedule.intended_us(i)
                _insert(conn, ids[i])
                on_commit(ids[i])
                with lock:
                    lags.append(lag)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,), daemon=True) for k in range(n)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        for c in conns:
            c.close()
    if errors:
        raise RaceError(f"an insert failed: {errors[0]}", "check the source database")
    return lags


# --- set-up and tear-down ----------------------------------------------------------------------


def _prepare_source(settings: Settings) -> None:
    import psycopg2

    from event_processor.source.schema import apply_race_schema

    conn = psycopg2.connect(settings.postgres_dsn(), application_name="ep-race-setup")
    try:
        apply_race_schema(conn)
    finally:
        conn.close()


def _empty_source(settings: Settings) -> None:
    import psycopg2

    from event_processor.source.schema import truncate_race

    conn = psycopg2.connect(settings.postgres_dsn(), application_name="ep-race-cleanup")
    try:
        truncate_race(conn)
    finally:
        conn.close()
    # The race's inserts would stay in the change topic: a consumer replaying the topics
    # from the beginning (a rebuild) would put race rows into the read model. The next
    # race creates the topic again.
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_servers())
    try:
        if race_topic(settings) in admin.list_topics():
            admin.delete_topics([race_topic(settings)])
    except KafkaError as exc:
        raise RaceError(f"could not delete the race topic: {exc}", "delete it by hand") from None
    finally:
        admin.close()


def _prepare_databases(settings: Settings) -> None:
    from pymongo import MongoClient

    client: Any = MongoClient(settings.mongodb_uri(), serverSelectionTimeoutMS=10_000)
    try:
        for side in SIDES:
            client.drop_database(DATABASES[side])
            client[DATABASES[side]].create_collection(RACE_TABLE)
    finally:
        client.close()


def _wire_counts(settings: Settings) -> dict[str, int]:
    """Documents per race database over the MongoDB wire (a final cross-check)."""
    from pymongo import MongoClient

    client: Any = MongoClient(settings.mongodb_uri(), serverSelectionTimeoutMS=10_000)
    try:
        return {s: client[DATABASES[s]][RACE_TABLE].count_documents({}) for s in SIDES}
    finally:
        client.close()


def _start_offsets(settings: Settings, topic: str) -> dict[int, int]:
    from event_processor.testing import end_offsets

    return {p: off for (t, p), off in end_offsets(settings, [topic]).items() if t == topic}


def _group_exists(admin: Any, group: str) -> bool:
    return any(g.get("group_id") == group for g in admin.list_groups())


def _delete_group(settings: Settings, group: str, timeout_s: float = 15.0) -> None:
    """Delete a consumer group once its members left (a deleted connector's task needs a
    moment); a group that does not exist is fine."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_servers())
    try:
        deadline = time.monotonic() + timeout_s
        while _group_exists(admin, group):
            with contextlib.suppress(KafkaError):  # non-empty yet: try again
                admin.delete_groups([group])
            if time.monotonic() >= deadline:
                break
            time.sleep(0.2)
    finally:
        admin.close()


def _wait(predicate: Callable[[], bool], timeout_s: float, what: str, fix: str) -> None:
    from event_processor.testing import wait_until

    if not wait_until(predicate, timeout_s, 0.05):
        raise RaceError(f"{what} within {timeout_s:g} s", fix)


def run_race(
    settings: Settings,
    events: int,
    rate: float,
    *,
    timeout_s: float = 60.0,
    poll_ms: float = 2.0,
    batch_size: int | None = None,
    on_progress: ProgressFn | None = None,
    plots: bool = True,
) -> RaceOutcome:
    """Run the race on the live stack and return its figures (see the module doc)."""
    from event_processor.perf.harness import check_stack, ensure_topics
    from event_processor.stack import connect
    from event_processor.testing import (
        ConsumerProcess,
        assigned_topics,
        change_topics,
        commit_at_end,
        new_group,
    )

    say = on_progress or (lambda _msg: None)
    check_stack(settings)
    topic = race_topic(settings)
    batch = batch_size or settings.race_sink_batch_size
    config = sink_connector_config(settings, topic, DATABASES[THEIRS], batch)
    log = settings.state_dir / "logs" / "race-consumer.log"

    say(f"reset: table {RACE_TABLE}, databases {', '.join(DATABASES.values())}")
    connect.delete_connector(settings, SINK_CONNECTOR_NAME)  # a leftover of a failed run
    _delete_group(settings, sink_group())
    _prepare_source(settings)
    _prepare_databases(settings)
    ensure_topics(settings, [topic])

    consumer: ConsumerProcess | None = None
    probes: dict[str, Probe] = {}
    watcher: Watcher | None = None
    reader: CommitReader | None = None
    try:
        group = new_group("race")
        commit_at_end(settings, group, change_topics(settings))
        say(f"starting our consumer (group {group}, database {DATABASES[OURS]})")
        consumer = ConsumerProcess(
            "race", log, group=group, env={"EP_MONGO_DATABASE": DATABASES[OURS]}
        )
        proc = consumer

        def ours_assigned() -> bool:
            if not proc.alive():
                raise RaceError(f"our consumer exited: {proc.last_lines()}", f"read {log}")
            return topic in assigned_topics(settings, group)

        _wait(ours_assigned, READY_TIMEOUT_S, "our consumer was not assigned the race topic",
              f"read {log}")  # fmt: skip

        say(f"starting the Debezium MongoDB sink connector (batch.size {batch})")
        commit_at_end(settings, sink_group(), [topic])
        connect.put_connector(settings, SINK_CONNECTOR_NAME, config, "race")
        _wait(lambda: topic in assigned_topics(settings, sink_group()), READY_TIMEOUT_S,
              "the sink connector was not assigned the race topic",
              "read the Connect log")  # fmt: skip

        probes = {side: make_probe(settings, side) for side in SIDES}
        probe_name = type(probes[OURS]).name  # type: ignore[attr-defined]
        watcher = Watcher(probes, poll_ms / 1000)
        watcher.start()
        w = watcher

        say(f"warm-up: {len(WARMUP_IDS)} rows must become visible through both sinks")
        warm = set(WARMUP_IDS)
        run_inserts(settings.postgres_dsn(), list(WARMUP_IDS), 100.0, watcher.add)
        _wait(
            lambda: all(w.count(s, warm) == len(warm) for s in SIDES),
            READY_TIMEOUT_S,
            "the warm-up rows did not reach both databases",
            "read the Connect log and " + str(log),
        )

        ids = list(range(1, events + 1))
        wanted = set(ids)
        reader = CommitReader(settings, topic, _start_offsets(settings, topic))
        reader.start()
        say(f"race: {events} rows at {rate:g}/s")
        lags = run_inserts(settings.postgres_dsn(), ids, rate, watcher.add)
        r = reader
        deadline = time.monotonic() + timeout_s
        next_check = 0.0
        while time.monotonic() < deadline:
            done = all(w.count(s, wanted) == events for s in SIDES)
            if done and r.count(wanted) == events:
                break
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + 1.0
                trace = connect.failed_task_trace(
                    connect.connector_status(settings, SINK_CONNECTOR_NAME)
                )
                if trace is not None:
                    raise RaceError(f"the Debezium sink task failed: {trace}",
                                    "read the Connect log")  # fmt: skip
                if not proc.alive():
                    raise RaceError(f"our consumer exited: {proc.last_lines()}", f"read {log}")
            time.sleep(0.05)
        visible = watcher.snapshot()
        t0 = reader.snapshot()
        counts = _wire_counts(settings)
    finally:
        if watcher is not None:
            watcher.stop()
        if reader is not None:
            reader.stop()
        for p in probes.values():
            p.close()
        say("tear-down: deleting the sink connector, stopping our consumer")
        with contextlib.suppress(EventProcessorError, OSError):
            connect.delete_connector(settings, SINK_CONNECTOR_NAME)
        _delete_group(settings, sink_group())
        if consumer is not None:
            consumer.stop()
            if consumer.group:
                _delete_group(settings, consumer.group)
        _empty_source(settings)

    notes = [
        f"T0 = source.ts_us of each row's create event; visible = host wall clock just "
        f"before the first query that returned the document; watcher polls both databases "
        f"every {poll_ms:g} ms, alternating which goes first ({watcher.polls} polls)",
        "documents over the MongoDB wire after the run: "
        + ", ".join(f"{DATABASES[s]} {counts[s]}" for s in SIDES)
        + f" (expected {events + len(WARMUP_IDS)} each, warm-up rows included)",
    ]
    missing_t0 = events - len([i for i in ids if i in t0])
    if missing_t0:
        notes.append(f"{missing_t0} row(s) had no create event on {topic} within the timeout")
    try:
        result = assemble(
            events=events,
            rate=rate,
            timeout_s=timeout_s,
            topic=topic,
            probe=probe_name,
            poll_interval_ms=poll_ms,
            ids=ids,
            t0_us=t0,
            visible_us=visible,
            schedule_lag_us=lags,
            sink_config=config,
            notes=notes,
        )
    except RaceBrokenError as exc:
        raise RaceError(f"broken run: {exc}", "check the host clock") from None
    if result.passed and any(counts[s] != events + len(WARMUP_IDS) for s in SIDES):
        result.passed = False
    samples = {s: latency_samples_ms(ids, t0, visible[s]) for s in SIDES}
    figures: dict[str, bytes] = {}
    if plots:
        from event_processor.race.result import race_plots

        try:
            figures = race_plots(samples)
        except Exception:  # a figure that cannot be drawn must not hide the figures
            figures = {}
    return RaceOutcome(result, samples, figures, str(log))

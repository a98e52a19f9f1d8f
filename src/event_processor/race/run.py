"""``run_race``: the same inserts through our consumer and each peer sink, timed alike.

1. the race tables are created (if missing) and emptied; the race's Connect worker is
   started when a connector races (``race.worker``);
2. the backlog: ``events`` rows are inserted into ``race_backlog`` (one per
   transaction) while no sink runs, and their change events awaited on its topic;
3. legs, repeated ``repeats`` times in the same order (A B C … A B C …): each sink alone
   at the offered rate on ``race_events`` (fresh ids per leg; latency), then each sink
   alone draining the backlog from its first offset (throughput, CPU per row); then one
   leg with every sink at once. Before each leg the sink's database is dropped, its
   group's offsets are committed where the leg starts, and the sink is started; after
   it, the sink is stopped (connector deleted, process stopped) and its group deleted;
4. a leg at the rate: warm-up rows (negative ids, left out of every figure) must become
   visible through every sink of the leg; then the open-loop generator inserts the rows,
   a reader takes every row's T0 (``source.ts_us``) from the change topic, and one
   watcher polls every sink's database for pending rows, rotating which goes first,
   stamping each document's first-visible time (host wall clock just before the query
   that saw it). A backlog leg is watched the same way; its rate counts from the
   watcher's first sighting, so that the sink's start-up is left out;
5. after each leg, every sink's database is checked against PostgreSQL's rows of that
   leg (count, and each row's payload): a sink that loses or duplicates is reported so;
6. at the end the race's worker is stopped and the race tables emptied; the databases
   stay for inspection until the next race.

CPU: the sink's process between the leg's first insert (a backlog: the first sighting)
and its last document visible, per 1,000 rows: our consumer's and quix-streams'
processes, the race's Connect worker for a connector (one sink on it at a time; in the
leg with every sink at once, connectors share it and get no figure).

Visibility probe: on the local FerretDB the watcher reads FerretDB's own PostgreSQL
(its storage) by ``_id`` through the unique ``_id`` index, because FerretDB 1.x scans
the whole collection for ``{_id: {$in: [...]}}`` and for any document-valued ``_id``,
which would make the watcher the bottleneck. A write FerretDB acknowledged is committed
there, and a find runs the same SQL, so the first moment a query there sees a row is the
first moment a MongoDB client could. With an external store (EP_MONGO_URI) the watcher
uses ``find({_id: {$in: pending}})``.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from event_processor.errors import EventProcessorError
from event_processor.metrics.cost import ThreadCpu, cpu_between_s, thread_cpu_ns
from event_processor.metrics.timing import wall_us
from event_processor.race import worker
from event_processor.race.result import (
    RaceBrokenError,
    assemble,
    drain_rate,
    integrity,
    latency_samples_ms,
    side_result,
)
from event_processor.race.sinks import (
    OURS,
    Sink,
    connector_config,
    ours_config,
    process_argv,
    redacted_config,
)
from event_processor.race.watch import (
    CommitReader,
    Probe,
    RaceError,
    Watcher,
    make_probe,
    probe_name,
)
from event_processor.report.schema import RaceLeg, RaceResult, RaceSide
from event_processor.settings import Settings
from event_processor.source.schema import RACE_BACKLOG_TABLE, RACE_TABLE
from event_processor.testing import ConsumerProcess, delete_group

ProgressFn = Callable[[str], None]

WARMUP_ROWS = 3
READY_TIMEOUT_S = 90.0
PAYLOAD_BYTES = 64
EVENTS_PER_CONNECTION = 500
BACKLOG_RATE = 2000.0  # rows/s the backlog is inserted at (no sink runs meanwhile)
LEG_IDS = 1_000_000  # leg k's rows are k * LEG_IDS + 1 …: no two legs share an id


@dataclass(slots=True)
class RaceOutcome:
    result: RaceResult
    samples_ms: dict[str, list[float]] = field(default_factory=dict)
    plots: dict[str, bytes] = field(default_factory=dict)
    consumer_log: str = ""


def race_topic(settings: Settings, table: str = RACE_TABLE) -> str:
    return f"{settings.topic_prefix}.public.{table}"


def sink_group(sink: Sink) -> str:
    """The consumer group Kafka Connect gives a sink connector."""
    return f"connect-{sink.connector_name}"


# --- the generator --------------------------------------------------------------------------


def payload_for(row_id: int) -> str:
    """A deterministic payload of PAYLOAD_BYTES characters."""
    seed = f"race-{row_id}-"
    return (seed * (PAYLOAD_BYTES // len(seed) + 1))[:PAYLOAD_BYTES]


def _insert(conn: Any, relation: str, row_id: int) -> None:
    with conn.cursor() as cur:
        cur.execute(
            f"INSERT INTO {relation} (id, payload) VALUES (%s, %s)",
            (row_id, payload_for(row_id)),
        )
    conn.commit()


def run_inserts(
    dsn: str,
    ids: list[int],
    rate: float,
    on_commit: Callable[[int], None],
    relation: str = f"public.{RACE_TABLE}",
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
                _insert(conn, relation, ids[i])
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
    # The race's inserts would stay in the change topics: a consumer replaying the topics
    # from the beginning (a rebuild) would put race rows into the read model. The next
    # race creates the topics again.
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_servers())
    try:
        topics = [race_topic(settings, t) for t in (RACE_TABLE, RACE_BACKLOG_TABLE)]
        present = [t for t in topics if t in admin.list_topics()]
        if present:
            admin.delete_topics(present)
    except KafkaError as exc:
        raise RaceError(f"could not delete the race topics: {exc}", "delete them by hand") from None
    finally:
        admin.close()


def _mongo(settings: Settings) -> Any:
    from pymongo import MongoClient

    return MongoClient(settings.mongodb_uri(), serverSelectionTimeoutMS=10_000)


def _prepare_database(settings: Settings, sink: Sink, collection: str) -> None:
    client = _mongo(settings)
    try:
        client.drop_database(sink.database)
        client[sink.database].create_collection(collection)
    finally:
        client.close()


def source_rows(settings: Settings, relation: str, ids: list[int]) -> dict[int, str]:
    """PostgreSQL's rows of ``ids`` in ``relation`` (schema.table): id -> payload."""
    import psycopg2

    conn = psycopg2.connect(settings.postgres_dsn(), application_name="ep-race-check")
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT id, payload FROM {relation} WHERE id = ANY(%s)", (ids,))
            return {int(i): str(p) for i, p in cur.fetchall()}
    finally:
        conn.close()


UNREADABLE_ID = -(2**63)  # a document whose _id the sink's rule does not read: an extra


def sink_documents(
    settings: Settings, sink: Sink, collection: str, ids: set[int] | None = None
) -> list[tuple[int, Any]]:
    """Every document of the sink's database as (row id, payload), over the wire; with
    ``ids``, only the documents of those rows."""
    client = _mongo(settings)
    out = []
    try:
        for d in client[sink.database][collection].find({}, {"_id": 1, "payload": 1}):
            try:
                row_id = sink.decode_id(d["_id"])
            except (TypeError, ValueError, KeyError):
                row_id = UNREADABLE_ID
            if ids is None or row_id in ids:
                out.append((row_id, d.get("payload")))
    finally:
        client.close()
    return out


def start_offsets(settings: Settings, topic: str) -> dict[int, int]:
    from event_processor.testing import end_offsets

    return {p: off for (t, p), off in end_offsets(settings, [topic]).items() if t == topic}


def wait_for(
    predicate: Callable[[], bool], timeout_s: float, what: str, fix: str, interval_s: float = 0.05
) -> None:
    from event_processor.testing import wait_until

    if not wait_until(predicate, timeout_s, interval_s):
        raise RaceError(f"{what} within {timeout_s:g} s", fix)


# --- one sink, running --------------------------------------------------------------------------


@dataclass
class Race:
    """What every leg of one race shares."""

    settings: Settings
    worker_settings: Settings
    worker_pid: int | None
    sinks: list[Sink]
    batch: int
    timeout_s: float
    poll_ms: float
    say: ProgressFn
    log_dir: Path
    configs: dict[str, dict[str, str]] = field(default_factory=dict)


class RunningSink:
    """One sink started for one leg: a process of its own or a connector on the worker."""

    def __init__(self, race: Race, sink: Sink, topic: str, offsets: dict[int, int]) -> None:
        from event_processor.stack import connect
        from event_processor.testing import change_topics, commit_at_end, commit_offsets

        self.race = race
        self.sink = sink
        self.topic = topic
        self.proc: ConsumerProcess | None = None
        settings = race.settings
        collection = topic.rsplit(".", 1)[-1]  # the table's name, as ours names it
        if sink.kind == "connector":
            self.group = sink_group(sink)
            config = connector_config(sink, settings, topic, race.batch, collection)
            race.configs[sink.name] = redacted_config(config)
            with contextlib.suppress(EventProcessorError, OSError):
                connect.delete_connector(race.worker_settings, sink.connector_name)
            delete_group(settings, self.group)
            commit_offsets(settings, self.group, topic, offsets)
            connect.put_connector(race.worker_settings, sink.connector_name, config, "race")
            return
        self.group = f"ep-race-{sink.name}-{uuid.uuid4().hex[:8]}"
        log = race.log_dir / f"race-{sink.name}.log"
        if sink.name == OURS:
            # Ours subscribes to every change topic: the others start at their end.
            commit_at_end(settings, self.group, change_topics(settings))
            commit_offsets(settings, self.group, topic, offsets)
            race.configs[sink.name] = ours_config(settings, self.group)
            self.proc = ConsumerProcess("race", log, group=self.group,
                                        env={"EP_MONGO_DATABASE": sink.database})  # fmt: skip
        else:
            from event_processor.race.quix_sink import quix_sink_config

            commit_offsets(settings, self.group, topic, offsets)
            race.configs[sink.name] = redacted_config(
                quix_sink_config(topic, sink.database, collection, self.group)
            )
            argv = process_argv(sink, topic, self.group, collection)
            self.proc = ConsumerProcess(sink.name, log, group=self.group, argv=argv)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else self.race.worker_pid

    def cpu(self) -> ThreadCpu | None:
        pid = self.pid
        return thread_cpu_ns(pid) if pid is not None else None

    def ready(self) -> bool:
        from event_processor.testing import assigned_topics

        failure = self.failure()
        if failure:
            raise RaceError(failure, self.fix())
        return self.topic in assigned_topics(self.race.settings, self.group)

    def failure(self) -> str | None:
        from event_processor.stack import connect

        if self.proc is not None:
            if self.proc.alive():
                return None
            return f"{self.sink.label} exited: {self.proc.last_lines()}"
        status = connect.connector_status(self.race.worker_settings, self.sink.connector_name)
        trace = connect.failed_task_trace(status)
        return None if trace is None else f"{self.sink.label} task failed: {trace}"

    def fix(self) -> str:
        if self.proc is not None:
            return f"read {self.proc.log_path}"
        return f"read the race worker's log ({worker.SERVICE}/connect.log in the state folder)"

    def stop(self) -> None:
        from event_processor.stack import connect

        if self.proc is not None:
            self.proc.stop()
        else:
            with contextlib.suppress(EventProcessorError, OSError):
                connect.delete_connector(self.race.worker_settings, self.sink.connector_name)
        delete_group(self.race.settings, self.group)


# --- legs ----------------------------------------------------------------------------------------


@dataclass
class LegOutcome:
    leg: RaceLeg
    samples_ms: dict[str, list[float]]
    lags_us: list[int]


def run_leg(
    race: Race,
    mode: str,
    repeat: int,
    sinks: list[Sink],
    ids: list[int],
    rate: float,
    backlog: tuple[dict[int, int], dict[int, int]] | None = None,
    warm_ids: list[int] | None = None,
) -> LegOutcome:
    """One leg: ``sinks`` at once on ``ids`` (inserted at ``rate``), or draining the
    ``backlog`` (its start offsets and T0s) when given."""
    settings = race.settings
    table = RACE_BACKLOG_TABLE if backlog is not None else RACE_TABLE
    topic = race_topic(settings, table)
    offsets = backlog[0] if backlog is not None else start_offsets(settings, topic)
    running: list[RunningSink] = []
    probes: dict[str, Probe] = {}
    watcher: Watcher | None = None
    reader: CommitReader | None = None
    lags: list[int] = []
    names = ", ".join(s.name for s in sinks)
    race.say(f"{mode} #{repeat}: {names}")
    try:
        for sink in sinks:
            _prepare_database(settings, sink, table)
        for sink in sinks:
            running.append(RunningSink(race, sink, topic, offsets))
        ready_us: dict[str, int] = {}
        ready_cpu: dict[str, ThreadCpu | None] = {}
        for r in running:
            # Asked often: a fast sink drains much of a backlog within 50 ms.
            wait_for(r.ready, READY_TIMEOUT_S, f"{r.sink.label} was not assigned {topic}",
                  r.fix(), 0.01)  # fmt: skip
            ready_us[r.sink.name] = wall_us()
            ready_cpu[r.sink.name] = r.cpu()
        probes = {s.name: make_probe(settings, s, table) for s in sinks}
        pids = [r.pid for r in running]
        # A process that runs several sinks (the worker, together) gives none a figure.
        cpu = {r.sink.name: r.cpu for r in running if r.pid is not None and pids.count(r.pid) == 1}
        watcher = Watcher(probes, race.poll_ms / 1000)
        watcher.start()
        w = watcher
        wanted = set(ids)
        if backlog is None:
            warm = set(warm_ids or ())
            if warm:
                run_inserts(settings.postgres_dsn(), sorted(warm), 100.0, w.add, f"public.{table}")
                wait_for(lambda: all(w.count(s.name, warm) == len(warm) for s in sinks),
                      READY_TIMEOUT_S, "the warm-up rows did not reach every sink",
                      "read the sinks' logs")  # fmt: skip
            reader = CommitReader(settings, topic, start_offsets(settings, topic))
            reader.start()
            cpu_before = {name: read() for name, read in cpu.items()}
            lags = run_inserts(settings.postgres_dsn(), ids, rate, w.add, f"public.{table}")
        else:
            for i in ids:
                w.add(i)
            cpu_before = {}
        finished_cpu: dict[str, ThreadCpu | None] = {}
        deadline = time.monotonic() + race.timeout_s
        next_check = 0.0
        while time.monotonic() < deadline:
            for s in sinks:
                if s.name not in finished_cpu and w.count(s.name, wanted) == len(ids):
                    read = cpu.get(s.name)
                    finished_cpu[s.name] = read() if read else None
            r0 = reader
            if len(finished_cpu) == len(sinks) and (r0 is None or r0.count(wanted) == len(ids)):
                break
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + 1.0
                for r in running:
                    failure = r.failure()
                    if failure:
                        raise RaceError(failure, r.fix())
            time.sleep(0.02)
        visible = watcher.snapshot()
        t0 = reader.snapshot() if reader is not None else (backlog[1] if backlog else {})
    finally:
        if watcher is not None:
            watcher.stop()
        if reader is not None:
            reader.stop()
        for p in probes.values():
            p.close()
        for r in running:
            r.stop()

    given = ids + list(warm_ids or ()) if backlog is None else ids
    rows = source_rows(settings, f"public.{table}", given)
    sides: dict[str, RaceSide] = {}
    samples: dict[str, list[float]] = {}
    for s in sinks:
        seen = {i: v for i, v in visible[s.name].items() if i in wanted}
        try:
            side = side_result(s.label, s.database, ids, t0, seen)
        except RaceBrokenError as exc:
            raise RaceError(f"broken run: {exc}", "check the host clock") from None
        start = ready_cpu.get(s.name) if backlog is not None else cpu_before.get(s.name)
        end = finished_cpu.get(s.name)
        if start is not None and end is not None and len(seen) == len(ids):
            used = cpu_between_s(start, end)
            side.cpu_s_per_1000_rows = round(used / len(ids) * 1000, 4)
        if backlog is not None:
            side.drain_rows_per_s = drain_rate(seen, ready_us[s.name])
        side.integrity = integrity(rows, sink_documents(settings, s, table))
        sides[s.name] = side
        samples[s.name] = latency_samples_ms(ids, t0, seen)
    leg = RaceLeg(mode=mode, repeat=repeat, events=len(ids), sides=sides)
    return LegOutcome(leg, samples, lags)


def _produce_backlog(race: Race, events: int) -> tuple[dict[int, int], dict[int, int]]:
    """Insert the backlog with no sink running; its start offsets and T0 per row."""
    settings = race.settings
    topic = race_topic(settings, RACE_BACKLOG_TABLE)
    start = start_offsets(settings, topic)
    ids = list(range(1, events + 1))
    reader = CommitReader(settings, topic, start)
    reader.start()
    try:
        race.say(f"backlog: {events} rows into {RACE_BACKLOG_TABLE} with no sink running")
        run_inserts(settings.postgres_dsn(), ids, BACKLOG_RATE, lambda _i: None,
                    f"public.{RACE_BACKLOG_TABLE}")  # fmt: skip
        wanted = set(ids)
        wait_for(lambda: reader.count(wanted) == events, READY_TIMEOUT_S,
              f"the backlog's change events did not reach {topic}",
              "check the Debezium connector (event-processor stack status)")  # fmt: skip
        return start, reader.snapshot()
    finally:
        reader.stop()


def run_race(
    settings: Settings,
    events: int,
    rate: float,
    *,
    sinks: list[Sink],
    repeats: int = 1,
    backlog_rows: int | None = None,
    together: bool = True,
    timeout_s: float = 60.0,
    poll_ms: float = 2.0,
    batch_size: int | None = None,
    on_progress: ProgressFn | None = None,
    plots: bool = True,
) -> RaceOutcome:
    """Run the race on the live stack and return its figures (see the module doc)."""
    from event_processor.perf.harness import check_stack, ensure_topics

    say = on_progress or (lambda _msg: None)
    check_stack(settings)
    if not sinks or sinks[0].name != OURS:
        raise RaceError("the race needs our consumer as its first sink", "list ours first")
    topics = [race_topic(settings, t) for t in (RACE_TABLE, RACE_BACKLOG_TABLE)]
    say(f"reset: tables {RACE_TABLE}, {RACE_BACKLOG_TABLE}")
    _prepare_source(settings)
    ensure_topics(settings, topics)
    worker_pid: int | None = None
    if any(s.kind == "connector" for s in sinks):
        say("starting the race's Connect worker for the sink connectors")
        worker_pid = worker.start(settings)
    race = Race(
        settings=settings,
        worker_settings=worker.worker_settings(settings),
        worker_pid=worker_pid,
        sinks=sinks,
        batch=batch_size or settings.race_sink_batch_size,
        timeout_s=timeout_s,
        poll_ms=poll_ms,
        say=say,
        log_dir=settings.state_dir / "logs",
    )
    legs: list[RaceLeg] = []
    samples: dict[str, list[float]] = {s.name: [] for s in sinks}
    lags: list[int] = []
    counter = 0

    def leg_ids() -> tuple[list[int], list[int]]:
        nonlocal counter
        counter += 1
        base = counter * LEG_IDS
        return list(range(base + 1, base + events + 1)), [-(base + k) for k in
                                                          range(1, WARMUP_ROWS + 1)]  # fmt: skip

    try:
        backlog_n = backlog_rows or events
        backlog = _produce_backlog(race, backlog_n)
        backlog_ids = list(range(1, backlog_n + 1))
        for repeat in range(1, repeats + 1):
            for sink in sinks:
                ids, warm = leg_ids()
                out = run_leg(race, "rate", repeat, [sink], ids, rate, warm_ids=warm)
                legs.append(out.leg)
                samples[sink.name] += out.samples_ms[sink.name]
                lags += out.lags_us
            for sink in sinks:
                out = run_leg(race, "drain", repeat, [sink], backlog_ids, rate, backlog=backlog)
                legs.append(out.leg)
        if together and len(sinks) > 1:
            ids, warm = leg_ids()
            legs.append(run_leg(race, "together", 1, sinks, ids, rate, warm_ids=warm).leg)
    finally:
        if worker_pid is not None:
            say("tear-down: stopping the race's Connect worker")
            worker.stop(settings)
        _empty_source(settings)

    own = {OURS: "its own process (event-processor consume)"}
    processes = {
        s.name: ("the Connect worker JVM running it (alone)" if s.kind == "connector"
                 else own.get(s.name, "its own process (python)"))
        for s in sinks
    }  # fmt: skip
    if settings.connect_external:
        processes.update({s.name: "not measured (the user's Connect cluster)"
                          for s in sinks if s.kind == "connector"})  # fmt: skip
    notes = [
        f"T0 = source.ts_us of each row's create event; visible = host wall clock just "
        f"before the first query that returned the document; the watcher polls every "
        f"sink's database every {poll_ms:g} ms, rotating which goes first",
        f"each sink alone at {rate:g} rows/s ({events} rows, fresh ids each leg) and alone "
        f"draining the same {backlog_rows or events}-row backlog of {RACE_BACKLOG_TABLE}, "
        f"{repeats} time(s) "
        f"in the same order; ratios ours/theirs paired repeat by repeat",
        "drain rows/s and CPU count from the moment the group coordinator shows the sink "
        "assigned the backlog's topic (its start-up left out) to its last document "
        "visible; CPU of a leg at the rate from its first insert to its last document",
    ]
    result = assemble(
        events=events,
        backlog_rows=backlog_rows or events,
        rate=rate,
        repeats=repeats,
        timeout_s=timeout_s,
        table=RACE_TABLE,
        backlog_table=RACE_BACKLOG_TABLE,
        topic=topics[0],
        probe=probe_name(settings),
        poll_interval_ms=poll_ms,
        legs=legs,
        configs=race.configs,
        processes=processes,
        schedule_lag_us=lags,
        notes=notes,
    )
    figures: dict[str, bytes] = {}
    if plots:
        from event_processor.race.result import race_plots

        try:
            figures = race_plots(samples)
        except Exception:  # a figure that cannot be drawn must not hide the figures
            figures = {}
    return RaceOutcome(result, samples, figures, str(race.log_dir / "race-ours.log"))

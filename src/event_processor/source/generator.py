"""The open-loop load generator: runs a planned workload against PostgreSQL on a schedule.

Event i is intended at ``start + i / rate``, fixed before the run. A worker sleeps only
when it is ahead of that time and never waits for the pipeline; when it is behind it sends
at once and the schedule lag (sent - intended) records the delay, so coordinated omission
shows in the numbers instead of hiding in them.

Each event is one transaction of exactly one statement (data-modifying CTEs, sent in
autocommit: one round trip) that also checks its row count and returns
``txid_current() % 2^32``: Debezium's ``source.txId`` is the 32-bit xid, and
reading it in the same statement costs no extra round trip.

With several connections, events are routed by customer id, so every event of a customer
(signup, its orders, their payments) runs in plan order on one connection: no event can
overtake the one that creates what it refers to.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg2
import psycopg2.errors
from psycopg2.extras import Json, execute_values
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from event_processor.errors import EventProcessorError
from event_processor.metrics.timing import SendRecord, wall_us
from event_processor.source.schema import EXPECT_ROWS_MARK, sync_identities
from event_processor.source.workload import (
    CustomerSignup,
    CustomerUpdate,
    EventParams,
    OrderCancelled,
    OrderPlaced,
    OrderStatusChange,
    PaymentCaptured,
    PlannedEvent,
    WorkloadModel,
)

# Measured on the reference box (2 vCPU, local PG 15, fsync on, shared with the stack):
# one connection saturated at ~1,900-2,500 events/s (3 round trips, 1 since, + ~0.1 ms of
# Python per event), but holds a tight schedule-lag tail only up to about a quarter of that.
# At 2,000/s: 1 connection p99 lag 100-240 ms, 2: 30-75 ms, 4: 2-25 ms.
# A connection sends its events one after another, each waiting for its COMMIT: on a
# box whose commits take 2-3 ms (fsync) one connection managed ~285 transactions/s and
# fell 1.5 s behind a 500/s schedule. 100 per connection leaves it ~4x headroom.
EVENTS_PER_CONNECTION = 100
MAX_CONNECTIONS = 8
# The schedule starts this far after the workers are created, so that thread start-up
# is not charged to the first events as schedule lag.
START_LEAD_S = 0.05

_TXID = "txid_current() % 4294967296"


def _checked(types: str, sql: str) -> tuple[str, str]:
    """Append the expected row count as the last parameter; the statement raises (and so
    rolls itself back) when the rows it changed differ (see schema.EXPECT_ROWS_FUNCTION)."""
    n = len(types.split(",")) + 1
    head, _, count = sql.rpartition(f"SELECT {_TXID}, ")
    return f"{types}, bigint", f"{head}SELECT {_TXID}, public.ep_expect_rows({count}, ${n})"


# name -> (parameter types, statement). Each returns (xid, rows changed).
_PLAIN_STATEMENTS: dict[str, tuple[str, str]] = {
    "customer_signup": (
        "bigint, text, text, text, jsonb, text, boolean",
        f"""WITH c AS (
            INSERT INTO public.customers
                (id, email, full_name, phone, address, tier, is_active, created_at, updated_at)
            OVERRIDING SYSTEM VALUE VALUES ($1, $2, $3, $4, $5, $6, $7, now(), now())
            RETURNING 1)
        SELECT {_TXID}, (SELECT count(*) FROM c)""",
    ),
    "customer_update": (
        "bigint, text, text, jsonb, text, boolean",
        f"""WITH c AS (
            UPDATE public.customers SET full_name = $2, phone = $3, address = $4, tier = $5,
                is_active = $6, updated_at = now()
            WHERE id = $1 RETURNING 1)
        SELECT {_TXID}, (SELECT count(*) FROM c)""",
    ),
    "order_placed": (
        "bigint, bigint, numeric, text, text, bigint[], bigint[], int[], numeric[]",
        f"""WITH o AS (
            INSERT INTO public.orders
                (id, customer_id, status, total, currency, notes, placed_at, updated_at)
            OVERRIDING SYSTEM VALUE VALUES ($1, $2, 'placed', $3, $4, $5, now(), now())
            RETURNING id),
        i AS (
            INSERT INTO public.order_items (id, order_id, product_id, quantity, unit_price)
            OVERRIDING SYSTEM VALUE
            SELECT u.id, o.id, u.product_id, u.quantity, u.unit_price
            FROM o, unnest($6, $7, $8, $9) AS u(id, product_id, quantity, unit_price)
            RETURNING 1)
        SELECT {_TXID}, (SELECT count(*) FROM o) + (SELECT count(*) FROM i)""",
    ),
    "payment_captured": (
        "bigint, bigint, numeric, text, uuid",
        f"""WITH p AS (
            INSERT INTO public.payments (id, order_id, amount, method, captured_at, reference)
            OVERRIDING SYSTEM VALUE VALUES ($1, $2, $3, $4, now(), $5)
            RETURNING 1),
        o AS (
            UPDATE public.orders SET status = 'paid', updated_at = now()
            WHERE id = $2 AND status = 'placed' RETURNING 1)
        SELECT {_TXID}, (SELECT count(*) FROM p) + (SELECT count(*) FROM o)""",
    ),
    "order_status_change": (
        "bigint, text, text",
        f"""WITH o AS (
            UPDATE public.orders SET status = $3, updated_at = now()
            WHERE id = $1 AND status = $2 RETURNING 1)
        SELECT {_TXID}, (SELECT count(*) FROM o)""",
    ),
    "order_cancelled": (
        "bigint, text, text",
        f"""WITH p AS (
            DELETE FROM public.payments WHERE order_id = $1 RETURNING 1),
        o AS (
            UPDATE public.orders SET status = 'cancelled', notes = $3, updated_at = now()
            WHERE id = $1 AND status = $2 RETURNING 1)
        SELECT {_TXID}, (SELECT count(*) FROM p) + (SELECT count(*) FROM o)""",
    ),
}


_STATEMENTS = {name: _checked(*stmt) for name, stmt in _PLAIN_STATEMENTS.items()}


class GeneratorError(EventProcessorError):
    """The load run failed: a statement failed or the plan does not match the database."""

    def __init__(self, problem: str, fix: str | None = None) -> None:
        super().__init__("generator", problem, fix)


# --- the plan's parameters as statement arguments -------------------------------------


def _args(params: EventParams) -> tuple[object, ...]:
    match params:
        case CustomerSignup(customer_id, email, full_name, phone, address, tier, is_active):
            return (customer_id, email, full_name, phone, Json(address), tier, is_active)
        case CustomerUpdate(customer_id, full_name, phone, address, tier, is_active):
            return (customer_id, full_name, phone, Json(address), tier, is_active)
        case OrderPlaced(order_id, customer_id, currency, notes, items, total):
            return (
                order_id, customer_id, total, currency, notes,
                [i.item_id for i in items], [i.product_id for i in items],
                [i.quantity for i in items], [i.unit_price for i in items],
            )  # fmt: skip
        case PaymentCaptured(payment_id, order_id, amount, method, reference):
            return (payment_id, order_id, amount, method, reference)
        case OrderStatusChange(order_id, from_status, to_status):
            return (order_id, from_status, to_status)
        case OrderCancelled(order_id, from_status, reason, _voided):
            return (order_id, from_status, reason)


_EXECUTE_SQL = {
    name: f"EXECUTE ep_{name} ({', '.join(['%s'] * len(types.split(',')))})"
    for name, (types, _sql) in _STATEMENTS.items()
}


def _connect(dsn: str) -> Any:
    """A connection in autocommit with the six statements prepared and warmed.

    Autocommit: each event is one statement, so one round trip is its whole transaction
    (was three: BEGIN, the statement, COMMIT). The statement checks its own row count and
    raises on a mismatch, which rolls it back as the explicit ROLLBACK did.
    """
    conn = psycopg2.connect(dsn, application_name="ep-generator")
    conn.autocommit = False
    with conn.cursor() as cur:
        for name, (types, sql) in _STATEMENTS.items():
            cur.execute(f"PREPARE ep_{name} ({types}) AS {sql}")
        conn.commit()
        _warm_up(cur)
    conn.rollback()
    conn.autocommit = True
    return conn


def _warm_up(cur: Any) -> None:
    """Run every statement once in a transaction the caller rolls back.

    A statement's first execution plans it and loads catalog caches (a few ms): paid
    here, not as schedule lag of the run's first events. Negative ids never clash with
    the model's; an aborted transaction reaches no CDC consumer. No row count is
    expected (NULL): what these change depends on the others.
    """
    key = -int(cur.connection.get_backend_pid())
    address = Json({})
    email = f"warm-up{key}@invalid"
    cur.execute(_EXECUTE_SQL["customer_signup"],
                (key, email, "", None, address, "bronze", True, None))  # fmt: skip
    cur.execute(_EXECUTE_SQL["customer_update"], (key, "", None, address, "bronze", True, None))
    cur.execute(_EXECUTE_SQL["order_placed"], (key, key, 0, "EUR", None, *[[]] * 4, None))
    cur.execute(_EXECUTE_SQL["payment_captured"],
                (key, key, 0, "card", "00000000-0000-4000-8000-000000000000", None))  # fmt: skip
    cur.execute(_EXECUTE_SQL["order_status_change"], (key, "paid", "shipped", None))
    cur.execute(_EXECUTE_SQL["order_cancelled"], (key, "shipped", "", None))


def _run_event(cur: Any, event: PlannedEvent) -> tuple[int, int]:
    """One transaction: the event's statement, which checks its own row count."""
    try:
        cur.execute(_EXECUTE_SQL[event.kind], (*_args(event.params), event.rows))
    except psycopg2.errors.RaiseException as exc:
        if EXPECT_ROWS_MARK not in str(exc):
            raise
        changed = str(exc).split(EXPECT_ROWS_MARK, 1)[1].split()[0]
        raise GeneratorError(
            f"event {event.seq} ({event.kind}) changed {changed} rows, the plan expects "
            f"{event.rows} (rolled back)",
            "run the plan on a truncated source seeded with the same model's catalogue",
        ) from None
    tx_id, rows = cur.fetchone()
    return int(tx_id), int(rows)


# --- the schedule -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Schedule:
    """Intended times, fixed at the start: a monotonic clock anchored to the wall clock.

    Stamps are wall-clock microseconds (they cross processes), but they advance with the
    monotonic clock, so schedule lag and commit time can never go negative on a clock step.
    """

    rate: float
    anchor_wall_us: int
    anchor_ns: int

    @classmethod
    def start_in(cls, rate: float, lead_s: float) -> Schedule:
        """Event 0 is due ``lead_s`` from now: threads start before the schedule does."""
        lead_ns = round(lead_s * 1e9)
        return cls(rate, wall_us() + lead_ns // 1000, time.perf_counter_ns() + lead_ns)

    def offset_us(self, i: int) -> int:
        return round(i * 1e6 / self.rate)

    def due_ns(self, i: int) -> int:
        # Derived from the µs offset, so being due implies now_us() >= intended_us().
        return self.anchor_ns + self.offset_us(i) * 1000

    def intended_us(self, i: int) -> int:
        return self.anchor_wall_us + self.offset_us(i)

    def now_us(self) -> int:
        return self.anchor_wall_us + (time.perf_counter_ns() - self.anchor_ns) // 1000


class _Worker(threading.Thread):
    """Runs its share of the plan on its own connection, each event at its intended time."""

    def __init__(
        self,
        conn: Any,
        events: list[tuple[int, PlannedEvent]],
        schedule: Schedule,
        out: queue.SimpleQueue[SendRecord | BaseException],
        stop: threading.Event,
    ) -> None:
        super().__init__(name="ep-generator", daemon=True)
        self.conn, self.events, self.schedule = conn, events, schedule
        self.out, self.stop = out, stop

    def run(self) -> None:
        try:
            with self.conn.cursor() as cur:
                for i, event in self.events:
                    if self._wait_until_due(i):
                        return
                    self.out.put(self._send(cur, i, event))
        except BaseException as exc:  # handed to the main thread, which raises it
            self.out.put(exc)

    def _wait_until_due(self, i: int) -> bool:
        """Sleep only if ahead of schedule; True when the run was stopped."""
        due_ns = self.schedule.due_ns(i)
        while (delay_ns := due_ns - time.perf_counter_ns()) > 0:
            if self.stop.wait(delay_ns / 1e9):  # loops again if woken early
                return True
        return self.stop.is_set()

    def _send(self, cur: Any, i: int, event: PlannedEvent) -> SendRecord:
        sent = self.schedule.now_us()
        tx_id, rows = _run_event(cur, event)
        committed = self.schedule.now_us()
        intended = self.schedule.intended_us(i)
        return SendRecord(i, event.kind, tx_id, intended, sent, committed, rows)


def _partition(events: Sequence[PlannedEvent], n: int) -> list[list[tuple[int, PlannedEvent]]]:
    """Split by customer so each customer's events stay in plan order on one connection."""
    shares: list[list[tuple[int, PlannedEvent]]] = [[] for _ in range(n)]
    for i, event in enumerate(events):
        shares[event.customer_id % n].append((i, event))
    return shares


def connections_for(rate: float) -> int:
    """Pool size for a target rate: one connection per EVENTS_PER_CONNECTION events/s."""
    return max(1, min(MAX_CONNECTIONS, math.ceil(rate / EVENTS_PER_CONNECTION)))


# --- public API ---------------------------------------------------------------------------


def seed_catalogue(dsn: str, model: WorkloadModel) -> int:
    """Insert the model's product catalogue in one transaction (before timing starts).

    Expects an empty ``products`` table (``truncate_all``); returns the rows inserted.
    """
    rows = [
        (p.id, p.sku, p.name, p.price, list(p.tags), Json(dict(p.attributes)), p.in_stock)
        for p in model.catalogue
    ]
    conn = psycopg2.connect(dsn, application_name="ep-generator")
    try:
        with conn.cursor() as cur:
            execute_values(
                cur,
                "INSERT INTO public.products (id, sku, name, price, tags, attributes, in_stock) "
                "OVERRIDING SYSTEM VALUE VALUES %s",
                rows,
                template="(%s, %s, %s, %s, %s::text[], %s, %s)",
                page_size=1000,
            )
        conn.commit()
        sync_identities(conn)
    finally:
        conn.close()
    return len(rows)


def run_load(
    dsn: str,
    events: list[PlannedEvent],
    rate: float,
    on_sent: Callable[[SendRecord], None] | None = None,
    progress: bool = False,
    *,
    connections: int | None = None,
) -> list[SendRecord]:
    """Run ``events`` open loop at ``rate`` events/s; one SendRecord per event, in order.

    ``on_sent`` is called on the calling thread as records arrive (it cannot slow the
    schedule). ``connections`` defaults to what ``rate`` needs (``connections_for``).
    """
    if rate <= 0:
        raise GeneratorError(f"rate must be > 0, got {rate}")
    if connections is not None and connections < 1:
        raise GeneratorError(f"connections must be >= 1, got {connections}")
    n_conn = min(connections or connections_for(rate), max(1, len(events)))
    conns = [_connect(dsn) for _ in range(n_conn)]  # connecting is not part of the run
    try:
        records = _run_workers(conns, events, rate, on_sent, progress)
        sync_identities(conns[0])
    finally:
        for conn in conns:
            conn.close()
    return records


def _run_workers(
    conns: list[Any],
    events: list[PlannedEvent],
    rate: float,
    on_sent: Callable[[SendRecord], None] | None,
    progress: bool,
) -> list[SendRecord]:
    out: queue.SimpleQueue[SendRecord | BaseException] = queue.SimpleQueue()
    stop = threading.Event()
    shares = _partition(events, len(conns))
    schedule = Schedule.start_in(rate, START_LEAD_S)
    workers = [
        _Worker(conn, share, schedule, out, stop) for conn, share in zip(conns, shares, strict=True)
    ]
    for worker in workers:
        worker.start()
    try:
        return _collect(out, len(events), on_sent, progress)
    finally:
        stop.set()
        for worker in workers:
            worker.join()


def _collect(
    out: queue.SimpleQueue[SendRecord | BaseException],
    n: int,
    on_sent: Callable[[SendRecord], None] | None,
    progress: bool,
) -> list[SendRecord]:
    """Gather the workers' records on this thread; the first failure stops the run."""
    records: list[SendRecord | None] = [None] * n
    with _ProgressView(n, enabled=progress) as view:
        for _ in range(n):
            item = out.get()
            if isinstance(item, GeneratorError):
                raise item
            if isinstance(item, BaseException):
                raise GeneratorError(f"statement failed: {item}".strip()) from item
            records[item.seq] = item
            if on_sent is not None:
                on_sent(item)
            view.advance(item)
    return [r for r in records if r is not None]


class _ProgressView:
    """A rich progress bar with the achieved rate and the worst schedule lag so far."""

    def __init__(self, total: int, enabled: bool) -> None:
        self._progress: Progress | None = None
        if enabled:
            self._progress = Progress(
                TextColumn("[bold]load"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]:>7.0f} ev/s"),
                TextColumn("max lag {task.fields[lag_ms]:.1f} ms"),
                TimeElapsedColumn(),
            )
            self._task = self._progress.add_task("load", total=total, rate=0.0, lag_ms=0.0)
        self._done = 0
        self._max_lag_us = 0
        self._first_sent_us = 0
        self._last_committed_us = 0
        self._last_draw = 0.0

    def __enter__(self) -> _ProgressView:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._draw()
            self._progress.stop()

    def advance(self, record: SendRecord) -> None:
        if self._progress is None:
            return
        if self._done == 0:
            self._first_sent_us = record.sent_us
        self._done += 1
        self._max_lag_us = max(self._max_lag_us, record.schedule_lag_us)
        self._last_committed_us = max(self._last_committed_us, record.committed_us)
        if time.monotonic() - self._last_draw >= 0.1:  # redraws cost the workers' GIL
            self._draw()

    def _draw(self) -> None:
        assert self._progress is not None
        self._last_draw = time.monotonic()
        elapsed_s = max(1e-6, (self._last_committed_us - self._first_sent_us) / 1e6)
        self._progress.update(
            self._task,
            completed=self._done,
            rate=self._done / elapsed_s,
            lag_ms=self._max_lag_us / 1000,
        )

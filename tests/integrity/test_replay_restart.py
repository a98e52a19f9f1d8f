"""Replays and restarts: the read model must come out the same."""

from __future__ import annotations

import signal
import threading
import time
import uuid
from typing import Any

import pytest

from event_processor.settings import Settings
from event_processor.source.generator import run_load, seed_catalogue
from event_processor.source.workload import WorkloadModel
from event_processor.testing import wait_until
from event_processor.verify.baseline import Baseline, write_positions
from event_processor.verify.drain import KafkaProgress
from tests.integrity.integrity_helpers import (
    add_customers,
    add_orders,
    add_products,
    assert_verified,
)

pytestmark = pytest.mark.integrity


def _some_history(pg_conn: Any) -> None:
    """Inserts, updates and deletes on every domain table, in several transactions."""
    with pg_conn.cursor() as cur:
        customers = add_customers(cur, 60)
        products = add_products(cur, 40)
        orders = add_orders(cur, customers, products, 80, items=3)
        cur.execute("UPDATE customers SET tier = 'gold' WHERE id % 4 = 0")
        cur.execute("UPDATE orders SET status = 'paid', total = total + 1 WHERE id = ANY(%s)",
                    (orders[::3],))  # fmt: skip
        cur.execute("DELETE FROM orders WHERE id = ANY(%s)", (orders[::7],))
        cur.execute("DELETE FROM order_items WHERE id % 5 = 0")
        cur.execute("UPDATE products SET price = price + 1 WHERE id % 2 = 0")


def _embedded_maps_defaulted(model: dict[str, dict[Any, Any]]) -> dict[str, dict[Any, Any]]:
    """An order without items may lack the ``items`` map or hold an empty one, depending
    on how the consumer's batches folded $set/$unset: the same read model."""
    for doc in model.get("orders", {}).values():
        doc.setdefault("items", {})
        doc.setdefault("payments", {})
    return model


def _group_lag(settings: Settings, group: str) -> int:
    progress = KafkaProgress(settings, group)
    try:
        return progress.snapshot().lag
    finally:
        progress.close()


def _delete_group(settings: Settings, group: str) -> None:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_servers())
    try:
        admin.delete_groups([group])
    finally:
        admin.close()


def test_replay_from_the_beginning_changes_nothing(
    ep_stack: Settings,
    pg_conn: Any,
    clean_state: Baseline,
    start_consumer: Any,
    mongo_db: Any,
    dump: Any,
) -> None:
    first = start_consumer("first")
    _some_history(pg_conn)
    assert_verified(ep_stack)
    before = dump()
    first.stop()

    # A consumer in a new group reading every change topic from offset 0 (at_end=False):
    # all of the history, including events of earlier tests' rows that TRUNCATE removed.
    group = f"itest-replay-{uuid.uuid4().hex[:8]}"
    replay = start_consumer("replay", group=group, at_end=False)
    try:
        assert wait_until(lambda: _group_lag(ep_stack, group) == 0, 120, 0.5), "replay lags"
        assert replay.alive()
        assert_verified(ep_stack, group=group)
        after = dump()
        assert after == before, "replaying the change topics modified the read model"
    finally:
        replay.stop()
        _delete_group(ep_stack, group)


def test_rebuild_from_the_log_gives_the_same_read_model(
    ep_stack: Settings,
    pg_conn: Any,
    clean_state: Baseline,
    start_consumer: Any,
    mongo_db: Any,
    dump: Any,
) -> None:
    first = start_consumer("first")
    _some_history(pg_conn)
    assert_verified(ep_stack)
    before = dump(include_metadata=False)
    first.stop()

    # Throw the read model away and rewind the positions to where this test began:
    # a new group replays the log and must build the very same documents.
    for name in mongo_db.list_collection_names():
        if not name.startswith("system."):
            mongo_db.drop_collection(name)
    write_positions(mongo_db, clean_state.positions)
    group = f"itest-rebuild-{uuid.uuid4().hex[:8]}"
    rebuild = start_consumer("rebuild", group=group, at_end=False)
    try:
        assert wait_until(lambda: _group_lag(ep_stack, group) == 0, 120, 0.5), "rebuild lags"
        assert_verified(ep_stack, group=group)
        assert _embedded_maps_defaulted(dump(include_metadata=False)) == (
            _embedded_maps_defaulted(before)
        )
    finally:
        rebuild.stop()
        _delete_group(ep_stack, group)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_consumer_restart_in_the_middle_of_a_stream(
    ep_stack: Settings, pg_conn: Any, clean_state: Baseline, start_consumer: Any, sig: int
) -> None:
    model = WorkloadModel(seed=23, catalogue_size=40)
    seed_catalogue(ep_stack.postgres_dsn(), model)
    events = model.plan(900)
    errors: list[BaseException] = []

    def load() -> None:
        try:
            run_load(ep_stack.postgres_dsn(), events, rate=300.0)  # about 3 s
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    first = start_consumer("before-restart")
    loader = threading.Thread(target=load, name="itest-load")
    loader.start()
    try:
        time.sleep(1.2)  # mid-stream: the consumer is applying batches
        assert first.alive()
        first.stop(sig)
        time.sleep(0.5)  # changes keep arriving while no consumer runs
        start_consumer("after-restart")
    finally:
        loader.join(60)
    assert not errors, f"the load failed: {errors[0]!r}"
    assert_verified(ep_stack)

"""Fixtures of the integrity suite: a clean source and read model per test, scratch tables.

Every test starts from the same state: the domain schema applied, every table of schema
``public`` empty, the read model dropped, and the consumer's positions set to the end of
the change topics (``verify.baseline.reset_read_model``), so that no consumer, not even
one replaying Kafka from the beginning, resurrects rows an earlier test left behind.
Debezium does not emit TRUNCATE, which is why the read model is reset by hand; this
happens while no consumer runs (consumers started with ``start_consumer`` are stopped
when their test ends).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from event_processor.settings import Settings
from event_processor.source.schema import DOMAIN_TABLES, apply_schema, truncate_all
from event_processor.verify.baseline import Baseline, reset_read_model

# Tables created by these tests carry this prefix; leftovers of an aborted run are dropped.
SCRATCH_PREFIX = "itest_"


def _public_tables(cur: Any) -> list[str]:
    cur.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition "
        "ORDER BY 1"
    )
    return [r[0] for r in cur.fetchall()]


def _drop_scratch_types(cur: Any) -> None:
    """Types (enums) the tests created, once no table uses them any more."""
    cur.execute(
        "SELECT t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace "
        "WHERE n.nspname = 'public' AND t.typname LIKE %s AND t.typtype = 'e'",
        (SCRATCH_PREFIX.replace("_", r"\_") + "%",),
    )
    for (name,) in cur.fetchall():
        cur.execute(f'DROP TYPE IF EXISTS public."{name}"')


@pytest.fixture
def clean_state(ep_stack: Settings, pg_conn: Any) -> Baseline:
    """Empty source and read model; returns the baseline (positions at the log's end)."""
    with pg_conn.cursor() as cur:
        leftovers = [t for t in _public_tables(cur) if t.startswith(SCRATCH_PREFIX)]
        for t in leftovers:
            cur.execute(f'DROP TABLE IF EXISTS public."{t}"')
        _drop_scratch_types(cur)
        cur.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE %s",
                    (SCRATCH_PREFIX.replace("_", r"\_") + "%",))  # fmt: skip
        for (schema,) in cur.fetchall():
            cur.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    apply_schema(pg_conn)
    truncate_all(pg_conn)
    with pg_conn.cursor() as cur:
        others = [t for t in _public_tables(cur) if t not in DOMAIN_TABLES]
        if others:
            cur.execute("TRUNCATE " + ", ".join(f'public."{t}"' for t in others))
    return reset_read_model(ep_stack)


@pytest.fixture
def scratch_tables(
    ep_stack: Settings, pg_conn: Any, mongo_db: Any, clean_state: Baseline
) -> Iterator[Callable[[str, str], str]]:
    """Factory: ``create(stem, columns_sql)`` makes ``itest_<stem>_<hex>`` and returns its
    name; at teardown the tables and their collections are removed. Their change topics
    stay: deleting a topic Kafka Connect's producer still knows only gets it re-created
    (broker auto-creation) and makes that producer retry; the names never repeat."""
    made: list[str] = []

    def create(stem: str, columns_sql: str) -> str:
        name = f"{SCRATCH_PREFIX}{stem}_{uuid.uuid4().hex[:6]}"
        with pg_conn.cursor() as cur:
            cur.execute(f"CREATE TABLE public.{name} ({columns_sql})")
        made.append(name)
        return name

    yield create
    with pg_conn.cursor() as cur:
        for name in made:
            cur.execute(f"DROP TABLE IF EXISTS public.{name}")
        _drop_scratch_types(cur)
    for name in made:
        mongo_db.drop_collection(name)


@pytest.fixture
def dump(mongo_db: Any) -> Callable[..., dict[str, dict[Any, Any]]]:
    """Full dump of the read model: collection -> _id -> document."""

    def take(include_metadata: bool = True) -> dict[str, dict[Any, Any]]:
        # Without metadata: no "_" collections (_ep_positions, _ep_tables, _ep_columns),
        # the consumer's bookkeeping of what it has seen, which depends on where it
        # started (a rebuild from a baseline also replays the race table's topic, which
        # baselines leave out, and records that table's key and columns).
        out: dict[str, dict[Any, Any]] = {}
        for name in sorted(mongo_db.list_collection_names()):
            if name.startswith("system."):
                continue
            if not include_metadata and name.startswith("_"):
                continue
            out[name] = {d["_id"]: d for d in mongo_db[name].find({})}
        return out

    return take

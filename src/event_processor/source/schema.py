"""The source database: a small commerce model in schema ``public``, applied idempotently.

Table and column names are a contract: the CDC consumer embeds ``order_items`` and
``payments`` into the order document by ``order_id``, and the integrity checks compare
these tables with the read model.
"""

from __future__ import annotations

from typing import Any

# Parents before children: the order in which rows may be inserted.
DOMAIN_TABLES: tuple[str, ...] = ("customers", "products", "orders", "order_items", "payments")

TIERS: tuple[str, ...] = ("bronze", "silver", "gold", "platinum")
ORDER_STATUSES: tuple[str, ...] = ("placed", "paid", "shipped", "delivered", "cancelled")

# Any constant will do: it only serialises concurrent apply_schema calls.
_SCHEMA_LOCK_KEY = 0x45505343  # "EPSC"


def _in_list(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


_DDL: tuple[str, ...] = (
    f"""
    CREATE TABLE IF NOT EXISTS public.customers (
        id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        email       text NOT NULL UNIQUE,
        full_name   text NOT NULL,
        phone       text NULL,
        address     jsonb,
        tier        text NOT NULL DEFAULT 'bronze' CHECK (tier IN ({_in_list(TIERS)})),
        is_active   boolean NOT NULL DEFAULT true,
        created_at  timestamptz NOT NULL DEFAULT now(),
        updated_at  timestamptz NOT NULL DEFAULT now()
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS public.products (
        id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        sku         text NOT NULL UNIQUE,
        name        text NOT NULL,
        price       numeric(12,2) NOT NULL CHECK (price >= 0),
        tags        text[] NOT NULL DEFAULT '{}',
        attributes  jsonb,
        in_stock    boolean NOT NULL DEFAULT true,
        created_at  timestamptz NOT NULL DEFAULT now()
    )
    """,
    f"""
    CREATE TABLE IF NOT EXISTS public.orders (
        id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        customer_id bigint NOT NULL REFERENCES public.customers(id),
        status      text NOT NULL DEFAULT 'placed'
                    CHECK (status IN ({_in_list(ORDER_STATUSES)})),
        total       numeric(14,2) NOT NULL,
        currency    char(3) NOT NULL,
        notes       text NULL,
        placed_at   timestamptz NOT NULL DEFAULT now(),
        updated_at  timestamptz NOT NULL DEFAULT now()
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS public.order_items (
        id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        order_id    bigint NOT NULL REFERENCES public.orders(id) ON DELETE CASCADE,
        product_id  bigint NOT NULL REFERENCES public.products(id),
        quantity    int NOT NULL CHECK (quantity > 0),
        unit_price  numeric(12,2) NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS public.payments (
        id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        order_id    bigint NOT NULL REFERENCES public.orders(id) ON DELETE CASCADE,
        amount      numeric(14,2) NOT NULL,
        method      text NOT NULL,
        captured_at timestamptz NOT NULL DEFAULT now(),
        reference   uuid NOT NULL
    )
    """,
    # Foreign-key lookups: cascades, the cancellation's payment delete, integrity joins.
    "CREATE INDEX IF NOT EXISTS orders_customer_id_idx ON public.orders (customer_id)",
    "CREATE INDEX IF NOT EXISTS order_items_order_id_idx ON public.order_items (order_id)",
    "CREATE INDEX IF NOT EXISTS payments_order_id_idx ON public.payments (order_id)",
)

# The load generator's statements end in this check, so that a transaction sent in one
# round trip (autocommit) still rolls back when it changed other rows than planned.
EXPECT_ROWS_MARK = "ep-generator: rows changed"
EXPECT_ROWS_FUNCTION = f"""
CREATE OR REPLACE FUNCTION public.ep_expect_rows(got bigint, want bigint) RETURNS bigint
LANGUAGE plpgsql AS $$
BEGIN
  IF want IS NOT NULL AND got IS DISTINCT FROM want THEN
    RAISE EXCEPTION '{EXPECT_ROWS_MARK} % (expected %)', got, want;
  END IF;
  RETURN got;
END $$"""


# With the default identity (the primary key) a DELETE's `before` image carries only `id`,
# so the consumer could not tell which order document to remove the item or payment from.
# FULL logs the whole old row: `before.order_id` is there on every update and delete.
_FULL_IDENTITY_TABLES: tuple[str, ...] = ("order_items", "payments")


def apply_schema(conn: Any) -> None:
    """Create the domain tables if missing and set their replica identity; commits."""
    with conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK_KEY,))
        for statement in _DDL:
            cur.execute(statement)
        cur.execute(EXPECT_ROWS_FUNCTION)
        for table in _FULL_IDENTITY_TABLES:
            _ensure_full_identity(cur, table)
    conn.commit()


def _ensure_full_identity(cur: Any, table: str) -> None:
    # ALTER TABLE takes an exclusive lock: skip it when already FULL (a live pipeline).
    cur.execute("SELECT relreplident FROM pg_class WHERE oid = %s::regclass", (f"public.{table}",))
    row = cur.fetchone()
    if row is None or row[0] != "f":
        cur.execute(f"ALTER TABLE public.{table} REPLICA IDENTITY FULL")


def truncate_all(conn: Any) -> None:
    """Empty the domain tables and restart their identities at 1; commits."""
    tables = ", ".join(f"public.{t}" for t in DOMAIN_TABLES)
    with conn.cursor() as cur:
        cur.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
    conn.commit()


def sync_identities(conn: Any) -> None:
    """Move each identity sequence past the highest id; commits.

    The workload inserts model-allocated ids (OVERRIDING SYSTEM VALUE), which does not
    advance the sequences; this keeps later plain INSERTs from colliding with them.
    """
    with conn.cursor() as cur:
        for table in DOMAIN_TABLES:
            cur.execute(
                f"SELECT setval(pg_get_serial_sequence('public.{table}', 'id'), "
                f"COALESCE((SELECT max(id) FROM public.{table}), 0) + 1, false)"
            )
    conn.commit()


# --- the race tables --------------------------------------------------------------------
# `event-processor race` drives one-row inserts into these tables through several sinks
# into databases of their own: RACE_TABLE at a fixed rate (latency), RACE_BACKLOG_TABLE
# once, before any sink runs, as the backlog each sink drains in turn (throughput; a
# table of its own so that the backlog's topic holds nothing else). They are no part of
# the commerce model: the verifier skips them (see verify.compare.SKIPPED_TABLES).
RACE_TABLE = "race_events"
RACE_BACKLOG_TABLE = "race_backlog"
RACE_TABLES = (RACE_TABLE, RACE_BACKLOG_TABLE)


def _race_ddl(table: str) -> str:
    return f"""
CREATE TABLE IF NOT EXISTS public.{table} (
    id       bigint PRIMARY KEY,
    payload  text NOT NULL,
    created  timestamptz NOT NULL DEFAULT now()
)
"""


def apply_race_schema(conn: Any) -> None:
    """Create the race tables if missing and empty them; commits.

    Emptied with DELETE, not TRUNCATE: the connector emits TRUNCATE events (even for an
    empty table), and Debezium's MongoDB sink has no handler for them (its task fails);
    deletes of rows it has are what it expects, and deleting nothing sends nothing.
    """
    with conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK_KEY,))
        for table in RACE_TABLES:
            cur.execute(_race_ddl(table))
            cur.execute(f"DELETE FROM public.{table}")
    conn.commit()


def truncate_race(conn: Any) -> None:
    """Empty the race tables (those that exist); commits."""
    with conn.cursor() as cur:
        for table in RACE_TABLES:
            cur.execute(f"SELECT to_regclass('public.{table}') IS NOT NULL")
            row = cur.fetchone()
            if row and row[0]:
                cur.execute(f"DELETE FROM public.{table}")  # see apply_race_schema
    conn.commit()

"""Reading PostgreSQL for the verifier: the catalogue of the captured schemas (every
schema but PostgreSQL's own unless ``EP_CAPTURE_SCHEMAS`` names them) and its rows.
Tables are named as the read model names them (``consumer.envelope.qualified_name``):
``orders`` in ``public``, ``sales.orders`` elsewhere; a partitioned table is one table
(its partitions publish under its name), its partitions are not listed.

Everything is read in one REPEATABLE READ, READ ONLY transaction (one snapshot for all
tables), one query per table through a server-side cursor, values converted to the read
model's representation by ``verify.convert``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from event_processor.consumer.envelope import qualified_name
from event_processor.verify.convert import ColumnPlan, ColumnType, plan_column, row_converter

SCHEMA = "public"
# Which schemas: a list given (%(schemas)s is then a text[]) or all but the system ones.
_ALL_SCHEMAS = "n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%%'"
_LISTED_SCHEMAS = "n.nspname = ANY(%(schemas)s)"
_ORDINARY = "c.relkind IN ('r', 'p') AND NOT c.relispartition"

_COLUMNS_SQL = """
SELECT n.nspname, c.relname, a.attname, bt.typname, bt.typtype,
       CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END,
       et.typname, et.typtype, format_type(a.atttypid, a.atttypmod)
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
JOIN pg_type t ON t.oid = a.atttypid
JOIN pg_type bt ON bt.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
LEFT JOIN pg_type et ON et.oid = bt.typelem AND bt.typcategory = 'A'
WHERE {schemas} AND {ordinary} AND a.attgenerated = ''
ORDER BY n.nspname, c.relname, a.attnum
"""

_TABLES_SQL = """
SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE {schemas} AND {ordinary} ORDER BY n.nspname, c.relname
"""

# Primary-key columns in key order: Debezium's message key (and so the _id) uses it.
_PK_SQL = """
SELECT n.nspname, c.relname, a.attname
FROM pg_index i
JOIN pg_class c ON c.oid = i.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
WHERE i.indisprimary AND {schemas}
ORDER BY n.nspname, c.relname, k.ord
"""


@dataclass(slots=True)
class TableInfo:
    name: str  # as the read model names it: "orders", "sales.orders"
    plans: list[ColumnPlan] = field(default_factory=list)
    primary_key: list[str] = field(default_factory=list)
    schema: str = SCHEMA
    table: str = ""  # the name in its schema (name, in schema public)

    @property
    def relation(self) -> str:
        """The quoted ``schema.table`` to select from."""
        return f"{_quote(self.schema)}.{_quote(self.table or self.name)}"

    @property
    def keyless(self) -> bool:
        return not self.primary_key

    @property
    def inexact_columns(self) -> list[str]:
        return [f"{p.name} {p.display}" for p in self.plans if not p.exact]

    def float32_columns(self) -> frozenset[str]:
        return frozenset(p.name for p in self.plans if p.float32)


def read_catalog(cur: Any, schemas: Sequence[str] | None = None) -> dict[str, TableInfo]:
    """Every ordinary or partitioned table of ``schemas`` (default: all but PostgreSQL's
    own) with its column plans and primary key, by read-model name."""
    where = _LISTED_SCHEMAS if schemas else _ALL_SCHEMAS
    args = {"schemas": list(schemas or ())}

    def sql(template: str) -> str:
        return template.format(schemas=where, ordinary=_ORDINARY)

    tables: dict[str, TableInfo] = {}
    cur.execute(sql(_TABLES_SQL), args)
    for schema, table in cur.fetchall():
        name = qualified_name(schema, table)
        tables[name] = TableInfo(name, schema=schema, table=table)
    cur.execute(sql(_COLUMNS_SQL), args)
    for row in cur.fetchall():
        schema, table, column, typname, typtype, typmod, elem, elem_typtype, display = row
        ctype = ColumnType(
            name=typname,
            typmod=int(typmod if typmod is not None else -1),
            is_enum=typtype == "e",
            elem=elem,
            elem_is_enum=elem_typtype == "e",
            display=display,
        )
        tables[qualified_name(schema, table)].plans.append(plan_column(column, ctype))
    cur.execute(sql(_PK_SQL), args)
    for schema, table, column in cur.fetchall():
        if (info := tables.get(qualified_name(schema, table))) is not None:
            info.primary_key.append(column)
    return tables


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def begin_snapshot(conn: Any) -> None:
    """Start the read-only snapshot all tables are read in; session settings the
    converters rely on (UTC, ISO-8601 intervals, shortest exact floats)."""
    conn.rollback()
    conn.set_session(isolation_level="REPEATABLE READ", readonly=True, autocommit=False)
    with conn.cursor() as cur:
        cur.execute("SET LOCAL TimeZone = 'UTC'")
        cur.execute("SET LOCAL IntervalStyle = 'iso_8601'")
        cur.execute("SET LOCAL DateStyle = 'ISO, YMD'")
        cur.execute("SET LOCAL extra_float_digits = 1")


def read_rows(conn: Any, table: TableInfo, itersize: int = 10_000) -> Iterator[dict[str, Any]]:
    """The table's rows (ordered by primary key when it has one), converted."""
    columns = ", ".join(p.sql for p in table.plans)
    order = ""
    if table.primary_key:
        order = " ORDER BY " + ", ".join(_quote(c) for c in table.primary_key)
    convert = row_converter(table.plans)
    with conn.cursor(name=f"ep_verify_{abs(hash(table.name))}") as cur:
        cur.itersize = itersize
        cur.execute(f"SELECT {columns} FROM {table.relation}{order}")
        for row in cur:
            yield convert(row)

"""Projections: a change event becomes writes to documents of the MongoDB read model.

Domain tables get a shape made for reads: `customers` and `products` one document per
row, and `orders` one document per order embedding its items and payments (maps keyed
by their ids, so each change is a single $set/$unset without reading the document).
Every other captured table lands generically: one collection per table, one document
per primary key, every column as PostgreSQL had it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from event_processor.consumer.envelope import UNAVAILABLE, ChangeEvent

ORDERS = "orders"
ORDER_CHILDREN = {"order_items": "items", "payments": "payments"}
REPLACED_TABLES = {"customers": "customers", "products": "products"}
# Reference columns rewritten to the string _id of the document they point at.
REFERENCE_COLUMNS = {"customer_id", "product_id", "order_id"}
POSITIONS_COLLECTION = "_ep_positions"
# Per generic table: the key shape its documents are named by (consumer.rekey).
KEYS_COLLECTION = "_ep_tables"


def doc_id(values: list[Any]) -> str:
    """The read model's string _id for a primary key (fast lookups on FerretDB)."""
    if len(values) == 1:
        return _scalar_id(values[0])
    return "|".join(_scalar_id(v) for v in values)


def _scalar_id(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if type(value) is int:  # the usual key: str() is what json.dumps gives, 10x faster
        return str(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def row_hash_id(row: dict[str, Any]) -> str:
    """_id for a row of a table without a primary key: a digest of its content."""
    canonical = json.dumps(row, sort_keys=True, separators=(",", ":"), default=repr)
    return "h:" + hashlib.sha1(canonical.encode()).hexdigest()


def _with_refs(row: dict[str, Any]) -> dict[str, Any]:
    return {
        k: (_scalar_id(v) if k in REFERENCE_COLUMNS and v is not None else v)
        for k, v in row.items()
    }


@dataclass(slots=True)
class Write:
    """One intended change to one document, before folding."""

    kind: str  # "replace" | "update" | "delete"
    doc: dict[str, Any] | None = None  # replace: the full document (without _id)
    sets: dict[str, Any] = field(default_factory=dict)  # update: dotted path -> value
    unsets: tuple[str, ...] = ()  # update: dotted paths
    upsert: bool = True
    # The change created the document's own row (op c): the document is most likely
    # new, so the sink may insert it (batched, fast) and fall back on a duplicate key.
    creates: bool = False


@dataclass(slots=True)
class Projected:
    collection: str
    id: str
    write: Write


def is_generic(table: str) -> bool:
    """A table without a read shape of its own: one collection, documents by its key."""
    return table not in REPLACED_TABLES and table != ORDERS and table not in ORDER_CHILDREN


def project(event: ChangeEvent) -> list[Projected]:
    """The document writes one change event implies (a truncate is handled by the loop)."""
    table = event.table
    if table in REPLACED_TABLES:
        return _replace_or_delete(REPLACED_TABLES[table], event, ["id"], refs=True)
    if table == ORDERS:
        return _order(event)
    if table in ORDER_CHILDREN:
        return _order_child(ORDER_CHILDREN[table], event)
    return _generic(event)


def _pk_values(event: ChangeEvent, row: dict[str, Any], pk: list[str]) -> list[Any]:
    return [row.get(c) for c in pk]


def _meta(event: ChangeEvent) -> dict[str, Any]:
    return {"_lsn": event.lsn}


def _replace_or_delete(
    collection: str, event: ChangeEvent, pk: list[str], refs: bool = False
) -> list[Projected]:
    if event.op == "d":
        assert event.before is not None
        return [Projected(collection, doc_id(_pk_values(event, event.before, pk)), Write("delete"))]
    assert event.after is not None
    row = _with_refs(event.after) if refs else dict(event.after)
    row.update(_meta(event))
    if any(v is UNAVAILABLE for v in row.values()):
        # Unchanged TOASTed columns are not in the event: keep the stored values.
        available = {k: v for k, v in row.items() if v is not UNAVAILABLE}
        key = doc_id(_pk_values(event, event.after, pk))
        return [Projected(collection, key, Write("update", sets=available))]
    out = [
        Projected(
            collection,
            doc_id(_pk_values(event, event.after, pk)),
            Write("replace", doc=row, creates=event.op == "c"),
        )
    ]
    # A primary-key change moves the document.
    if event.op == "u" and event.before is not None:
        old = doc_id(_pk_values(event, event.before, pk))
        if old != out[0].id and all(event.before.get(c) is not None for c in pk):
            out.insert(0, Projected(collection, old, Write("delete")))
    return out


def _order(event: ChangeEvent) -> list[Projected]:
    if event.op == "d":
        assert event.before is not None
        return [Projected(ORDERS, doc_id([event.before["id"]]), Write("delete"))]
    assert event.after is not None
    fields = {k: v for k, v in _with_refs(event.after).items() if v is not UNAVAILABLE}
    fields.update(_meta(event))
    write = Write("update", sets=fields, creates=event.op == "c")
    return [Projected(ORDERS, doc_id([event.after["id"]]), write)]


def _order_child(name: str, event: ChangeEvent) -> list[Projected]:
    row = event.before if event.op == "d" else event.after
    assert row is not None
    order = doc_id([row["order_id"]])
    path = f"{name}.{_scalar_id(row['id'])}"
    if event.op == "d":
        return [Projected(ORDERS, order, Write("update", unsets=(path,), upsert=False))]
    out = []
    before = event.before
    if event.op == "u" and before is not None and before.get("order_id") != row["order_id"]:
        # Moved to another order: remove it from the old one.
        old_path = f"{name}.{_scalar_id(before['id'])}"
        out.append(
            Projected(
                ORDERS,
                doc_id([before["order_id"]]),
                Write("update", unsets=(old_path,), upsert=False),
            )
        )
    child = _with_refs(row)
    if any(v is UNAVAILABLE for v in child.values()):
        sets = {f"{path}.{k}": v for k, v in child.items() if v is not UNAVAILABLE}
        out.append(Projected(ORDERS, order, Write("update", sets={**sets, "_lsn": event.lsn})))
        return out
    out.append(Projected(ORDERS, order, Write("update", sets={path: child, "_lsn": event.lsn})))
    return out


def _generic(event: ChangeEvent) -> list[Projected]:
    collection = event.table
    key_fields = list(event.key) if event.key else []
    if key_fields:
        return _replace_or_delete(collection, event, key_fields)
    # No primary key: one document per distinct row content, counting its copies by
    # the changes that added (+1) or removed (-1) one, so replays change nothing.
    out = []
    op = change_id(event)
    if event.before is not None and event.op in ("u", "d"):
        removed = Write("update", sets={f"_ops.d{op}": -1})
        out.append(Projected(collection, row_hash_id(event.before), removed))
    if event.after is not None and event.op in ("c", "r", "u"):
        # FULL identity: an unchanged TOASTed value is in the before image.
        before = event.before or {}
        row = {k: (before.get(k) if v is UNAVAILABLE else v) for k, v in event.after.items()}
        # Most inserted contents are new: let the sink insert them in bulk (a copy of
        # an existing row falls back to the update on the duplicate key).
        write = Write("update", sets={**row, f"_ops.a{op}": 1}, creates=event.op in ("c", "r"))
        out.append(Projected(collection, row_hash_id(row), write))
    return out


def change_id(event: ChangeEvent) -> str:
    """A name for one row change that a replay or a re-send reproduces.

    The LSN alone is not one: every row of a multi-row WAL record (COPY) carries the
    record's LSN, and two identical rows of one COPY are one document here, so their
    counts would collide. Debezium's transaction.total_order numbers the transaction's
    events (the same on a re-send); without it (snapshot reads) the loop's ordinal
    among the events tying on their partition tells them apart.
    """
    if event.tx_order:
        return f"{event.lsn}_{event.tx_order}"
    if event.tie:
        return f"{event.lsn}_p{event.tie}"
    return str(event.lsn)


def keyless_count(doc: dict[str, Any]) -> int:
    """How many copies of a keyless row a document stands for."""
    ops = doc.get("_ops") or {}
    return sum(int(v) for v in ops.values())

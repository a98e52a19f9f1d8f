"""The consumer's re-send guard when source positions tie, the names of keyless row
changes, and the re-key of a collection whose table's key changed."""

from __future__ import annotations

from typing import Any

import pytest

from event_processor.consumer.envelope import ChangeEvent
from event_processor.consumer.loop import admit
from event_processor.consumer.projection import (
    doc_id,
    keyless_count,
    project,
    row_hash_id,
)
from event_processor.consumer.rekey import rekeyed
from event_processor.consumer.writer import NO_MARK, fold

pytestmark = pytest.mark.unit


def _event(
    lsn: int, op: str = "c", tx_order: int = 0, row: dict[str, Any] | None = None,
    key: dict[str, Any] | None = None, table: str = "t",
) -> ChangeEvent:  # fmt: skip
    order = tx_order if tx_order else (1 if op == "c" else 0)
    return ChangeEvent(
        table=table, op=op, key=key, before=None, after=row or {"v": lsn}, tx_id=7,
        lsn=lsn, position=(100, lsn, order), source_ts_us=1, debezium_ts_us=2,
        tx_order=tx_order,
    )  # fmt: skip


def test_rows_of_one_wal_record_are_all_admitted() -> None:
    """A COPY's rows share their record's LSN: none of them is a re-send."""
    mark = NO_MARK
    admitted = 0
    for offset in range(5):
        nxt = admit(mark, _event(500), offset, partition=0)
        assert nxt is not None, f"row {offset} of the record was skipped"
        mark = nxt
        admitted += 1
    assert admitted == 5 and mark.ties == 5


def test_an_older_position_is_a_resend_and_a_newer_one_starts_a_new_run() -> None:
    mark = admit(NO_MARK, _event(500), 0, 0)
    assert mark is not None
    assert admit(mark, _event(499), 1, 0) is None
    newer = admit(mark, _event(501), 2, 0)
    assert newer is not None and newer.ties == 1


def test_transaction_order_makes_streamed_positions_unique() -> None:
    """With transaction.total_order, a re-send of the same transaction sorts below."""
    mark = NO_MARK
    for order in (1, 2, 3):
        nxt = admit(mark, _event(500, tx_order=order), order, 0)
        assert nxt is not None
        mark = nxt
    assert admit(mark, _event(500, tx_order=2), 9, 0) is None  # re-sent at a new offset


def test_tied_keyless_rows_get_distinct_change_names() -> None:
    """Two identical rows of one COPY are one document counted twice, and a replay
    from the stored mark (ties restored) names them the same way again."""
    mark = NO_MARK
    events = [_event(500, row={"v": 1}) for _ in range(2)]
    for offset, e in enumerate(events):
        nxt = admit(mark, e, offset, 0)
        assert nxt is not None
        mark = nxt
    writes = [w for e in events for w in project(e)]
    folded = fold(writes)["t"]
    assert len(folded) == 1
    doc = next(iter(folded.values())).insertable()
    assert doc is not None and keyless_count(doc) == 2
    # The same two rows with transaction order: names from the order, not the tie.
    ordered = [_event(600, tx_order=i, row={"v": 1}) for i in (1, 2)]
    doc2 = next(iter(fold([w for e in ordered for w in project(e)])["t"].values())).insertable()
    assert doc2 is not None and keyless_count(doc2) == 2


def test_a_keyless_update_to_the_same_content_keeps_one_copy() -> None:
    e = _event(700, op="u", tx_order=1, row={"v": 1})
    e.before = {"v": 1}
    folded = fold(project(e))["t"][row_hash_id({"v": 1})]
    assert sum(folded.sets[p] for p in folded.sets if p.startswith("_ops.")) == 0


def test_rekey_to_a_new_key_names_each_row_once() -> None:
    keyless = [
        {"_id": row_hash_id({"id": 1, "v": 5}), "id": 1, "v": 5, "_ops": {"a1": 1}},
        {"_id": row_hash_id({"id": 2, "v": 6}), "id": 2, "v": 6, "_ops": {"a2": 1}},
        {"_id": row_hash_id({"id": 3, "v": 7}), "id": 3, "v": 7, "_ops": {"a3": 1, "d4": -1}},
    ]
    docs = rekeyed(keyless, ("id",), "9")
    assert {d["_id"] for d in docs} == {doc_id([1]), doc_id([2])}  # the deleted row is gone
    assert all("_ops" not in d for d in docs)


def test_rekey_to_no_key_counts_each_row_once() -> None:
    keyed = [{"_id": "1", "id": 1, "v": 5, "_lsn": 10}, {"_id": "2", "id": 2, "v": 5, "_lsn": 11}]
    docs = rekeyed(keyed, (), "9")
    assert {d["_id"] for d in docs} == {
        row_hash_id({"id": 1, "v": 5}),
        row_hash_id({"id": 2, "v": 5}),
    }
    assert all(keyless_count(d) == 1 for d in docs)

"""The MongoDB sink: folds a batch to at most one write per document, then bulk-writes.

Offsets are committed by the loop only after `write_batch` returned, i.e. after MongoDB
acknowledged every write (at-least-once delivery). Writes are idempotent (replace, $set,
$unset, delete by _id), and per-partition source positions recorded in the read model let
the loop skip replayed or duplicated older events.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from bson.errors import InvalidDocument
from pymongo import DeleteOne, MongoClient, ReplaceOne, UpdateOne
from pymongo.database import Database
from pymongo.errors import (
    AutoReconnect,
    BulkWriteError,
    ConnectionFailure,
    DuplicateKeyError,
    NetworkTimeout,
    OperationFailure,
    ServerSelectionTimeoutError,
)
from tenacity import retry, retry_if_exception, stop_never, wait_exponential

from event_processor.consumer.projection import POSITIONS_COLLECTION, Projected, Write

log = logging.getLogger(__name__)

DUPLICATE_KEY = 11000
TRANSIENT = (AutoReconnect, ConnectionFailure, NetworkTimeout, ServerSelectionTimeoutError)
# What a store says when it refuses one document (not when it is unavailable): a bad
# value or key (FerretDB: nested arrays, "$"-prefixed keys), a document pymongo cannot
# encode (OverflowError: an integer beyond 64 bits), or a reply pymongo cannot read
# (FerretDB 1.24 answers an update of a refused document without "nModified":
# KeyError). Retried per document, then dead-lettered.
REFUSED = (OperationFailure, InvalidDocument, KeyError, OverflowError)
# Server codes that mean "try again later", never "this document is bad". 1 is
# InternalError: FerretDB's answer when its own PostgreSQL is unreachable; a document that
# caused it would stall the consumer (visible as lag), which beats dead-lettering good
# changes while the store is sick.
RETRYABLE_CODES = frozenset({1, 6, 7, 89, 91, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436})
MongoOp = ReplaceOne[Any] | UpdateOne | DeleteOne
Refused = dict[tuple[str, str], str]  # (collection, _id) -> why the store refused it


@dataclass(frozen=True, slots=True)
class Mark:
    """How far the read model has applied one Kafka partition."""

    offset: int
    position: tuple[int, int, int]  # Debezium source position (ChangeEvent.position)
    # How many events at exactly ``position`` this partition has applied: positions
    # tie (a COPY's rows share their WAL record's LSN), so the count tells the next
    # tying event its ordinal after a restart.
    ties: int = 1


NO_MARK = Mark(-1, (-1, -1, -1), 0)


@dataclass(slots=True)
class Folded:
    """The net effect of several writes to one document within a batch."""

    kind: str = "none"  # none | update | delete | replace
    doc: dict[str, Any] | None = None
    sets: dict[str, Any] = field(default_factory=dict)
    unsets: set[str] = field(default_factory=set)
    upsert: bool = False
    creates: bool | None = None  # the batch's first write to this document created it

    def add(self, w: Write) -> None:
        if self.creates is None:
            self.creates = w.creates
        if w.kind == "delete":
            self.kind, self.doc, self.sets, self.unsets = "delete", None, {}, set()
        elif w.kind == "replace":
            self.kind, self.doc, self.sets, self.unsets = "replace", dict(w.doc or {}), {}, set()
        elif self.kind in ("none", "update"):
            self.kind = "update"
            self.upsert = self.upsert or w.upsert
            for path in w.unsets:
                self.sets.pop(path, None)
                self.unsets.add(path)
            for path, value in w.sets.items():
                self.unsets.discard(path)
                self.sets[path] = value
        elif self.kind == "delete":
            # Deleted earlier in the batch: an upserting update recreates a fresh document.
            if w.upsert and w.sets:
                self.kind, self.doc = "replace", {}
                _apply_paths(self.doc, w.sets, ())
        else:  # replace: apply onto the document we are about to write
            assert self.doc is not None
            _apply_paths(self.doc, w.sets, w.unsets)

    def insertable(self) -> dict[str, Any] | None:
        """The whole new document, when this batch created it (else None)."""
        if not self.creates:
            return None
        if self.kind == "replace":
            return dict(self.doc or {})
        if self.kind == "update" and self.upsert:
            doc: dict[str, Any] = {}
            _apply_paths(doc, self.sets, ())
            return doc
        return None

    def operation(self, doc_id: str) -> MongoOp | None:
        if self.kind == "delete":
            return DeleteOne({"_id": doc_id})
        if self.kind == "replace":
            return ReplaceOne({"_id": doc_id}, self.doc or {}, upsert=True)
        if self.kind == "update" and (self.sets or self.unsets):
            update: dict[str, Any] = {}
            if self.sets:
                update["$set"] = self.sets
            if self.unsets:
                update["$unset"] = {p: "" for p in sorted(self.unsets)}
            return UpdateOne({"_id": doc_id}, update, upsert=self.upsert)
        return None


def _apply_paths(doc: dict[str, Any], sets: dict[str, Any], unsets: Iterable[str]) -> None:
    for path, value in sets.items():
        *parents, leaf = path.split(".")
        node = doc
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    for path in unsets:
        *parents, leaf = path.split(".")
        node = doc
        for p in parents:
            nxt = node.get(p)
            if not isinstance(nxt, dict):
                break
            node = nxt
        else:
            node.pop(leaf, None)


def fold(projected: Iterable[Projected]) -> dict[str, dict[str, Folded]]:
    """collection -> _id -> net write, preserving the events' order per document."""
    out: dict[str, dict[str, Folded]] = {}
    for p in projected:
        out.setdefault(p.collection, {}).setdefault(p.id, Folded()).add(p.write)
    return out


def position_ops(positions: Mapping[str, Mark]) -> list[ReplaceOne[Any]]:
    """Writes of per-partition marks to ``_ep_positions`` (the one stored format)."""
    # LSNs are unsigned 64-bit: stored as text so no backend truncates them.
    return [
        ReplaceOne(
            {"_id": key},
            {
                "offset": m.offset,
                "seq": str(m.position[0]),
                "lsn": str(m.position[1]),
                "rank": m.position[2],
                "ties": m.ties,
            },
            upsert=True,
        )
        for key, m in positions.items()
    ]


def chunked(ops: list[Any], step: int) -> list[list[Any]]:
    """Commands of at most ``step`` statements (see MongoSink.write on FerretDB's pool)."""
    return [ops[i : i + step] for i in range(0, len(ops), step)]


class MongoSink:
    """Bulk writes to the read model with retries on transient failures."""

    def __init__(
        self,
        uri: str,
        database: str,
        on_retry: Callable[[str], None] | None = None,
        max_ops_per_command: int = 16,
        write_concurrency: int = 2,
    ) -> None:
        self.max_ops_per_command = max_ops_per_command
        self.write_concurrency = write_concurrency
        self._pool = ThreadPoolExecutor(write_concurrency, thread_name_prefix="mongo-write")
        self.client: MongoClient[dict[str, Any]] = MongoClient(
            uri, serverSelectionTimeoutMS=5000, connectTimeoutMS=3000, socketTimeoutMS=30000
        )
        self.db: Database[dict[str, Any]] = self.client[database]
        self._on_retry = on_retry

    def retrying(self, what: str, fn: Callable[[], Any]) -> Any:
        """Run ``fn``, retrying forever while the store is unavailable.

        The first try runs bare: building tenacity's retrier costs ~0.09 ms of CPU per
        call on a 2-vCPU box (a tenth of a one-statement write command), and almost
        every command succeeds the first time. Only a transient failure starts the
        retry loop, which logs it and backs off as before.
        """
        try:
            return fn()
        except Exception as exc:
            if not _transient(exc):
                raise
            first = exc
        self._report_unavailable(what, first)
        time.sleep(0.1)

        def before_sleep(state: Any) -> None:
            self._report_unavailable(what, state.outcome.exception())

        wrapped = retry(
            retry=retry_if_exception(_transient),
            wait=wait_exponential(multiplier=0.1, max=5),
            stop=stop_never,
            before_sleep=before_sleep,
            reraise=True,
        )(fn)
        return wrapped()

    def _report_unavailable(self, what: str, exc: BaseException | None) -> None:
        msg = f"MongoDB unavailable during {what} ({exc!r}); retrying"
        log.warning(msg)
        if self._on_retry:
            self._on_retry(msg)

    def write(self, folded: dict[str, dict[str, Folded]]) -> Refused:
        """Apply the folded writes; returns the documents the store refused, with why.

        Commands run on ``write_concurrency`` connections (two by default: FerretDB
        runs a command's statements one after the other, so a single connection caps
        the update rate at one store round trip per statement; see settings). A
        document appears once per batch, so
        concurrent commands never race on one document.

        Unavailability is retried forever. A command the store refuses for another
        reason is retried one document at a time (every write is idempotent): the
        documents refused again are returned, to be dead-lettered, and the rest applied.
        """
        refused: Refused = {}
        inserting: list[tuple[str, dict[str, Folded], dict[str, dict[str, Any]], Future[Any]]] = []
        jobs: list[Future[Refused]] = []
        for collection, docs in folded.items():
            coll = self.db[collection]
            inserts = {i: d for i, f in docs.items() if (d := f.insertable()) is not None}
            if inserts:
                future = self._pool.submit(self._insert_new, coll, inserts)
                inserting.append((collection, docs, inserts, future))
            ops = [
                (doc_id, op)
                for doc_id, f in docs.items()
                if doc_id not in inserts and (op := f.operation(doc_id)) is not None
            ]
            jobs += self._submit_ops(collection, ops)
        for collection, docs, _inserts, future in inserting:
            failed, bad = future.result()
            refused.update({(collection, doc_id): why for doc_id, why in bad.items()})
            # Already there (a replay, a reused key): fall back to the update path.
            ops = [
                (doc_id, op)
                for doc_id in failed
                if (op := docs[doc_id].operation(doc_id)) is not None
            ]
            jobs += self._submit_ops(collection, ops)
        for job in jobs:
            refused.update(job.result())  # an exception (not a refusal) propagates
        return refused

    def _submit_ops(self, collection: str, ops: list[tuple[str, MongoOp]]) -> list[Future[Refused]]:
        # FerretDB 1.24 keeps one PostgreSQL connection per update statement open
        # until the whole command ends (a deferred close inside its loop); a command
        # with more statements than its pool has connections never finishes. Below that
        # cap, spread a small batch over every connection: FerretDB runs a command's
        # statements one after another (~0.7 ms each), so 8 updates as one command take
        # ~5.5 ms and as four commands of two ~1.5 ms.
        step = min(self.max_ops_per_command, -(-len(ops) // self.write_concurrency))
        return [
            self._pool.submit(self._write_chunk, collection, chunk)
            for chunk in chunked(ops, max(1, step))
        ]

    def _write_chunk(self, collection: str, chunk: list[tuple[str, MongoOp]]) -> Refused:
        coll = self.db[collection]
        write = functools.partial(coll.bulk_write, [op for _, op in chunk], ordered=False)
        try:
            self.retrying(f"bulk write to {collection}", write)
            return {}
        except REFUSED as exc:
            log.warning("MongoDB refused a command to %s (%s); retrying per document",
                        collection, _why(exc))  # fmt: skip
        refused: Refused = {}
        for doc_id, op in chunk:
            one = functools.partial(coll.bulk_write, [op], ordered=True)
            try:
                self.retrying(f"write of {collection}/{doc_id}", one)
            except REFUSED as exc:
                refused[(collection, doc_id)] = _why(exc)
        return refused

    def _insert_new(
        self, coll: Any, docs: dict[str, dict[str, Any]]
    ) -> tuple[set[str], dict[str, str]]:
        """Insert documents the batch created (one batched command on FerretDB, where an
        update costs a query and a write each). Returns the ids that already existed and
        the ids the store refused (with why)."""
        batch = [{"_id": doc_id, **doc} for doc_id, doc in docs.items()]
        try:
            write = functools.partial(coll.insert_many, batch, ordered=False)
            self.retrying(f"insert into {coll.name}", write)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if any(e.get("code") != DUPLICATE_KEY for e in errors):
                return self._insert_each(coll, batch)
            return {batch[e["index"]]["_id"] for e in errors}, {}
        except REFUSED:
            return self._insert_each(coll, batch)
        return set(), {}

    def _insert_each(
        self, coll: Any, batch: list[dict[str, Any]]
    ) -> tuple[set[str], dict[str, str]]:
        """One insert per document (idempotent: one already there is a duplicate key)."""
        existing: set[str] = set()
        refused: dict[str, str] = {}
        for doc in batch:
            try:
                self.retrying(f"insert into {coll.name}", functools.partial(coll.insert_one, doc))
            except DuplicateKeyError:
                existing.add(doc["_id"])
            except REFUSED as exc:
                refused[doc["_id"]] = _why(exc)
        return existing, refused

    def load_positions(self, keys: list[str]) -> dict[str, Mark]:
        coll = self.db[POSITIONS_COLLECTION]
        out: dict[str, Mark] = {}
        for key in keys:  # by exact _id: the fast path on FerretDB
            doc: dict[str, Any] | None = self.retrying(
                "position read", functools.partial(coll.find_one, {"_id": key})
            )
            if doc:
                position = (int(doc["seq"]), int(doc["lsn"]), int(doc.get("rank", 0)))
                out[key] = Mark(int(doc["offset"]), position, int(doc.get("ties", 1)))
        return out

    def save_positions(self, positions: dict[str, Mark]) -> None:
        # One command per partition, all at once: on FerretDB each upsert is a query and
        # a write, so a single command of several would serialize them after the batch.
        coll = self.db[POSITIONS_COLLECTION]
        jobs = [
            self._pool.submit(
                self.retrying, "position write", functools.partial(coll.bulk_write, [op])
            )
            for op in position_ops(positions)
        ]
        for job in jobs:
            job.result()

    def warm_up(self) -> None:
        """Open one connection per writer thread now (pymongo opens them lazily): the
        first concurrent batch otherwise pays the handshakes, seen as a slower first
        second in short runs. A store that is not reachable yet is not an error here."""
        barrier = threading.Barrier(self.write_concurrency, timeout=10)

        def ping() -> None:
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait()  # all at once, so each needs a connection of its own
            self.db.command("ping")

        jobs = [self._pool.submit(ping) for _ in range(self.write_concurrency)]
        for job in jobs:
            with contextlib.suppress(Exception):
                job.result()

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self.client.close()


def _transient(exc: BaseException) -> bool:
    """The store is unavailable (retry forever), as opposed to refusing a document."""
    if isinstance(exc, TRANSIENT):
        return True
    if isinstance(exc, BulkWriteError):
        errors = exc.details.get("writeErrors", [])
        return bool(errors) and all(e.get("code") in RETRYABLE_CODES for e in errors)
    if isinstance(exc, OperationFailure):
        return exc.code in RETRYABLE_CODES or exc.has_error_label("RetryableWriteError")
    return False


def _why(exc: BaseException) -> str:
    """A refusal in one line: the store's message, else the exception."""
    errmsg, code = None, None
    if isinstance(exc, BulkWriteError) and exc.details.get("writeErrors"):
        first = exc.details["writeErrors"][0]
        errmsg, code = first.get("errmsg"), first.get("code")
    elif isinstance(exc, OperationFailure):
        errmsg, code = (exc.details or {}).get("errmsg", str(exc)), exc.code
    if errmsg is None:
        return f"MongoDB refused the document: {exc!r}"
    return f"MongoDB refused the document: {errmsg} (code {code})"

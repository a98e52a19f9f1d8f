"""The verifier's result: findings, per-table counts, drain status and timings."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from event_processor.verify.diff import MISSING, show

# Finding kinds (stable strings for the JSON report).
MISSING_DOC = "missing"  # a row without its document (or embedded entry)
EXTRA_DOC = "extra"  # a document without its row: a delete that did not propagate
FIELD = "field"  # a column's value differs
REFERENCE = "reference"  # a reference to a document that does not exist
DUPLICATE = "duplicate"  # one row represented more than once
ORPHAN_COLLECTION = "orphan_collection"  # a non-empty collection without a table
DRAIN = "drain"  # the pipeline did not drain within the timeout
ERROR = "error"  # the verifier could not read a side


@dataclass(slots=True)
class Finding:
    kind: str
    collection: str
    key: str | None
    message: str
    field: str | None = None
    postgres: Any = None
    mongo: Any = None

    def line(self) -> str:
        where = self.collection if self.key is None else f"{self.collection}/{self.key}"
        return f"{where}: {self.message}" if where else self.message

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.kind,
            "collection": self.collection,
            "key": self.key,
            "message": self.message,
            "line": self.line(),
        }
        if self.field is not None:
            out["field"] = self.field
            out["postgres"] = _jsonable(self.postgres)
            out["mongo"] = _jsonable(self.mongo)
        return out


def _jsonable(value: Any) -> Any:
    if value is MISSING:
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return show(value, width=200)


@dataclass(slots=True)
class TableResult:
    """One PostgreSQL table and where it lives in the read model."""

    table: str
    collection: str
    shape: str  # document | embedded | generic | keyless | none
    postgres_rows: int = 0
    mongo_rows: int = 0  # documents, embedded entries, or summed keyless copies
    missing: int = 0
    extra: int = 0
    mismatched: int = 0
    inexact_columns: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            self.missing == 0
            and self.extra == 0
            and self.mismatched == 0
            and self.postgres_rows == self.mongo_rows
        )

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ok"] = self.ok
        return out


@dataclass(slots=True)
class DrainStatus:
    drained: bool = False
    detail: str = ""
    group: str = ""
    lag: int | None = None
    target_lsn: str | None = None
    sent_lsn: str | None = None
    partitions: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class VerifyReport:
    """What ``run_verify`` found. ``ok`` only when drained and nothing differs."""

    drain: DrainStatus = field(default_factory=DrainStatus)
    tables: list[TableResult] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)  # the first ``max_findings``
    finding_counts: dict[str, int] = field(default_factory=dict)  # all, by kind
    timings: dict[str, float] = field(default_factory=dict)
    attempts: int = 0
    started_at: str = ""
    database: str = ""
    postgres: str = ""
    skipped: dict[str, str] = field(default_factory=dict)  # table -> why not compared

    @property
    def total_findings(self) -> int:
        return sum(self.finding_counts.values())

    @property
    def ok(self) -> bool:
        return self.drain.drained and self.total_findings == 0

    @property
    def rows(self) -> int:
        return sum(t.postgres_rows for t in self.tables)

    def summary_lines(self, max_lines: int = 20) -> list[str]:
        t = self.timings
        status = "OK" if self.ok else "FAILED"
        head = (
            f"verify {status}: {len(self.tables)} tables, {self.rows:,} rows, "
            f"{self.total_findings} problem(s); drain {t.get('drain_s', 0):.1f} s, "
            f"compare {t.get('compare_s', 0):.1f} s, total {t.get('total_s', 0):.1f} s"
        )
        lines = [head]
        d = self.drain
        if not d.drained:
            lines.append(f"  pipeline not drained: {d.detail}")
        width = max([len(x.table) for x in self.tables] + [5])
        for tr in self.tables:
            mark = "ok" if tr.ok else "MISMATCH"
            where = tr.collection if tr.shape != "embedded" else f"{tr.collection} (embedded)"
            extra = []
            if tr.missing:
                extra.append(f"{tr.missing} missing")
            if tr.extra:
                extra.append(f"{tr.extra} extra")
            if tr.mismatched:
                extra.append(f"{tr.mismatched} differing")
            if tr.inexact_columns:
                extra.append("compared as text: " + ", ".join(tr.inexact_columns))
            tail = f" ({'; '.join(extra)})" if extra else ""
            lines.append(
                f"  {tr.table:<{width}}  postgres {tr.postgres_rows:>8,}  mongo {tr.mongo_rows:>8,}"
                f"  -> {where}: {mark}{tail}"
            )
        for table, reason in self.skipped.items():
            lines.append(f"  {table:<{width}}  skipped: {reason}")
        if self.findings:
            by_kind = ", ".join(f"{k} {n}" for k, n in sorted(self.finding_counts.items()))
            lines.append(f"  problems by kind: {by_kind}")
            shown = self.findings[:max_lines]
            lines.append(f"  first {len(shown)} of {self.total_findings}:")
            lines.extend("    " + f.line() for f in shown)
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "started_at": self.started_at,
            "database": self.database,
            "postgres": self.postgres,
            "attempts": self.attempts,
            "drain": self.drain.to_dict(),
            "rows": self.rows,
            "tables": [t.to_dict() for t in self.tables],
            "skipped": dict(self.skipped),
            "finding_counts": dict(self.finding_counts),
            "total_findings": self.total_findings,
            "findings": [f.to_dict() for f in self.findings],
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
        }

    def write_json(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n")


class FindingSink:
    """Collects findings: keeps the first ``limit`` in full, counts all of them."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.kept: list[Finding] = []
        self.counts: Counter[str] = Counter()
        self.signature: set[str] = set()

    def add(self, finding: Finding) -> None:
        self.counts[finding.kind] += 1
        if len(self.kept) < self.limit:
            self.kept.append(finding)
        if len(self.signature) < 10_000:
            self.signature.add(finding.line())

    def __len__(self) -> int:
        return sum(self.counts.values())

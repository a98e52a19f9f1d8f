"""Integrity checks: PostgreSQL (the system of record) against the MongoDB read model.

``run_verify(settings, timeout_s, json_path)`` waits for the pipeline to drain, then
compares every table of schema ``public`` with its documents (counts, every column with
its type, deletes, references, duplicates) and returns a ``VerifyReport``.
"""

from event_processor.verify.report import DrainStatus, Finding, TableResult, VerifyReport
from event_processor.verify.run import run_verify

__all__ = ["DrainStatus", "Finding", "TableResult", "VerifyReport", "run_verify"]

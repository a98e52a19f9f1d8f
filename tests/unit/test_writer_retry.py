"""MongoSink.retrying: a bare first try, then the tenacity loop only on unavailability."""

from __future__ import annotations

from typing import Any

import pytest
from pymongo.errors import AutoReconnect, OperationFailure

from event_processor.consumer.writer import MongoSink

pytestmark = pytest.mark.unit


def _sink(seen: list[str]) -> MongoSink:
    # No server is contacted: MongoClient connects lazily and retrying() takes any callable.
    sink = MongoSink("mongodb://127.0.0.1:1/?directConnection=true", "db", on_retry=seen.append)
    return sink


def test_a_write_that_succeeds_first_is_called_once_and_not_reported() -> None:
    seen: list[str] = []
    calls: list[int] = []
    sink = _sink(seen)
    assert sink.retrying("x", lambda: calls.append(1) or "done") == "done"
    assert calls == [1] and seen == []
    sink.close()


def test_unavailability_is_retried_until_the_store_answers(monkeypatch: Any) -> None:
    monkeypatch.setattr("time.sleep", lambda _s: None)
    seen: list[str] = []
    sink = _sink(seen)
    attempts = iter([AutoReconnect("down"), AutoReconnect("down"), AutoReconnect("down"), "ok"])

    def write() -> str:
        result = next(attempts)
        if isinstance(result, Exception):
            raise result
        return result

    assert sink.retrying("bulk write to t", write) == "ok"
    assert len(seen) == 3 and all("bulk write to t" in m for m in seen), seen
    sink.close()


def test_a_refusal_is_raised_at_once_not_retried() -> None:
    seen: list[str] = []
    calls: list[int] = []
    sink = _sink(seen)

    def refused() -> None:
        calls.append(1)
        raise OperationFailure("bad document", code=2)

    with pytest.raises(OperationFailure):
        sink.retrying("x", refused)
    assert calls == [1] and seen == []
    sink.close()

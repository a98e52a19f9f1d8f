"""Dead-letter topic: events we cannot apply go there with the reason; processing goes on."""

from __future__ import annotations

import json
import time
from typing import Any

from kafka import KafkaProducer

from event_processor.consumer.timings import TopicTail


class DeadLetters:
    def __init__(self, producer: KafkaProducer, topic: str) -> None:
        self.producer = producer
        self.topic = topic
        self.pending = 0

    def send(self, message: Any, reason: str, consumer_id: str) -> None:
        headers = [
            ("ep.reason", reason.encode()[:1000]),
            ("ep.source.topic", str(message.topic).encode()),
            ("ep.source.partition", str(message.partition).encode()),
            ("ep.source.offset", str(message.offset).encode()),
            ("ep.consumer", consumer_id.encode()),
        ]
        self.producer.send(self.topic, key=message.key, value=message.value, headers=headers)
        self.pending += 1

    def flush(self) -> None:
        """Make dead letters durable before the source offsets are committed."""
        if self.pending:
            self.producer.flush()
            self.pending = 0


def describe(reason: str, message: Any) -> str:
    return json.dumps(
        {
            "reason": reason,
            "topic": message.topic,
            "partition": message.partition,
            "offset": message.offset,
        }
    )


class DeadLetterReader(TopicTail):
    """The dead letters written after it was created (tests, the load harness)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(bootstrap, topic)
        self.seek(self.mark_end())

    def read(self, want: int, timeout_s: float = 20) -> list[Any]:
        """Dead letters until ``want`` arrived or the timeout passed."""
        got: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while len(got) < want and time.monotonic() < deadline:
            got.extend(self.messages(200))
        return got

    def until_end(self, consumer_id: str | None = None, timeout_s: float = 10) -> list[Any]:
        """Every dead letter up to the topic's current end (of one consumer, if given)."""
        ends = self.mark_end()
        got: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(self.consumer.position(tp) >= end for tp, end in ends.items()):
                break
            got.extend(self.messages(200))
        if consumer_id is None:
            return got
        return [m for m in got if header(m, "ep.consumer") == consumer_id]


def header(message: Any, name: str) -> str | None:
    """One header of a dead letter, as text (``ep.reason``, ``ep.source.topic``, ...)."""
    for key, value in message.headers or ():
        if key == name:
            return bytes(value).decode(errors="replace")
    return None

"""Dead-letter topic: events we cannot apply go there with the reason; processing goes on."""

from __future__ import annotations

import json
from typing import Any

from kafka import KafkaProducer


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

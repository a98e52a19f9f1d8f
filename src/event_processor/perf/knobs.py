"""Tuning knobs a sweep can set: their names, where they act and how to parse their values.

A knob is named as Debezium / Kafka Connect / our consumer name it (``poll.interval.ms``,
``linger.ms``, ``consumer.max.poll.records``) or by its settings field
(``poll_interval_ms``). Connector knobs are applied by PUTting the connector's config;
consumer knobs reach the harness's consumer process as ``EP_<FIELD>`` environment
variables. Bad input is a one-line ConfigError naming the knob and the fix.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from event_processor.errors import ConfigError

COMPONENT = "sweep"
CONNECTOR = "connector"
CONSUMER = "consumer"


@dataclass(frozen=True, slots=True)
class Knob:
    name: str  # the canonical (Debezium / Connect / consumer) name
    field: str  # the Settings field it sets
    target: str  # CONNECTOR or CONSUMER
    minimum: int
    aliases: tuple[str, ...] = ()

    @property
    def env(self) -> str:
        return f"EP_{self.field.upper()}"


KNOBS: tuple[Knob, ...] = (
    Knob("poll.interval.ms", "poll_interval_ms", CONNECTOR, 1),
    Knob("max.batch.size", "max_batch_size", CONNECTOR, 1),
    Knob("max.queue.size", "max_queue_size", CONNECTOR, 2),
    Knob("producer.override.linger.ms", "producer_linger_ms", CONNECTOR, 0, ("linger.ms",)),
    Knob(
        "consumer.max.poll.records", "consumer_max_poll_records", CONSUMER, 1, ("max.poll.records",)
    ),
    Knob("mongo.ops.per.command", "mongo_ops_per_command", CONSUMER, 1),
    Knob("mongo.write.concurrency", "mongo_write_concurrency", CONSUMER, 1),
)

_BY_NAME: dict[str, Knob] = {alias: k for k in KNOBS for alias in (k.name, k.field, *k.aliases)}


def knob_names() -> str:
    return ", ".join(k.name for k in KNOBS)


def lookup(name: str) -> Knob:
    """The knob called ``name`` (any of its spellings, case-insensitive)."""
    knob = _BY_NAME.get(name.strip().lower())
    if knob is None:
        raise ConfigError(COMPONENT, f"unknown knob {name!r}", f"use one of: {knob_names()}")
    return knob


def parse_knob(text: str) -> tuple[Knob, list[int]]:
    """``NAME=v1,v2,...`` -> (knob, values in the given order, duplicates dropped)."""
    name, sep, raw = text.partition("=")
    if not sep or not name.strip():
        raise ConfigError(COMPONENT, f"--knob {text!r} is not NAME=v1,v2,...",
                          "e.g. --knob poll.interval.ms=1,500")  # fmt: skip
    knob = lookup(name)
    values: list[int] = []
    for item in raw.split(","):
        item = item.strip()
        try:
            value = int(item)
        except ValueError:
            raise ConfigError(
                COMPONENT, f"{knob.name}: {item!r} is not a whole number",
                f"give integers, e.g. --knob {knob.name}=1,500",
            ) from None  # fmt: skip
        if value < knob.minimum:
            raise ConfigError(COMPONENT, f"{knob.name}: {value} is below its minimum "
                              f"{knob.minimum}", f"use values >= {knob.minimum}")  # fmt: skip
        if value not in values:
            values.append(value)
    return knob, values


def parse_knobs(texts: Sequence[str]) -> list[tuple[Knob, list[int]]]:
    """Every ``--knob`` option; a knob given twice is an error."""
    if not texts:
        raise ConfigError(COMPONENT, "no knob to sweep", "add --knob NAME=v1,v2 "
                          f"(knobs: {knob_names()})")  # fmt: skip
    parsed = [parse_knob(t) for t in texts]
    seen: set[str] = set()
    for knob, _ in parsed:
        if knob.name in seen:
            raise ConfigError(COMPONENT, f"knob {knob.name} given twice",
                              "list all its values in one --knob")  # fmt: skip
        seen.add(knob.name)
    return parsed


def grid(parsed: Iterable[tuple[Knob, list[int]]]) -> list[dict[str, int]]:
    """The cartesian product of the knobs' values: one {knob name: value} per setting,
    the first knob varying slowest."""
    items = list(parsed)
    names = [k.name for k, _ in items]
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(
        *(values for _, values in items))]  # fmt: skip


def label(setting: Mapping[str, int]) -> str:
    return " ".join(f"{name}={value}" for name, value in setting.items())


def field_updates(setting: Mapping[str, int]) -> dict[str, int]:
    """{settings field: value} of one setting."""
    return {lookup(name).field: value for name, value in setting.items()}


def check_setting(setting: Mapping[str, int], base: Mapping[str, int]) -> None:
    """Combinations Debezium rejects, caught before anything is changed."""
    merged = {**base, **field_updates(setting)}
    batch, queue = merged.get("max_batch_size"), merged.get("max_queue_size")
    if batch is not None and queue is not None and queue <= batch:
        raise ConfigError(COMPONENT, f"{label(setting)}: max.queue.size ({queue}) must be "
                          f"larger than max.batch.size ({batch})",
                          "sweep values that keep max.queue.size > max.batch.size")  # fmt: skip


def touches(setting: Mapping[str, int], target: str) -> bool:
    return any(lookup(name).target == target for name in setting)

"""``source.sequence`` is read through orjson when it has Debezium's shape (two decimal
strings); every sequence must still give what the standard parser's rule gives."""

from __future__ import annotations

import json
from typing import Any

import pytest

from event_processor.consumer.envelope import _position

pytestmark = pytest.mark.unit


def _standard(sequence: Any, lsn: int) -> tuple[int, int] | str:
    """The rule as it was, with the standard parser only (an error by its type's name)."""
    if not isinstance(sequence, str):
        return (0, lsn)
    try:
        parts = json.loads(sequence)
        first = int(parts[0]) if parts and parts[0] is not None else 0
        second = int(parts[1]) if len(parts) > 1 and parts[1] is not None else lsn
        return (first, second)
    except (ValueError, TypeError, IndexError, json.JSONDecodeError):
        return (0, lsn)
    except Exception as exc:
        return type(exc).__name__


@pytest.mark.parametrize(
    "sequence",
    [
        '["90","100"]', '[null,"100"]', '["90",null]', '["90"]', "[]", "null", '"90"', "x",
        None, 90, '["18446744073709551615","18446744073709551617"]', "[90,100]",
        "[18446744073709551617,100]", "[1.5,2]", '[NaN,"1"]', '["\\ud800","1"]',
        '["a","b"]', '["1","b"]', '[" 1","2 "]', '["1_0","2"]', '["-5","+7"]',
        '["1","2","3"]', '[["1"],"2"]', '[true,"3"]', '["0x1","2"]', '{"a":1}',
    ],
)  # fmt: skip
def test_every_sequence_gives_what_the_standard_parser_gives(sequence: Any) -> None:
    try:
        got: tuple[int, int] | str = _position(sequence, 7)
    except Exception as exc:
        got = type(exc).__name__
    assert got == _standard(sequence, 7)

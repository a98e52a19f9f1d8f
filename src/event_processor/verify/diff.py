"""Type-strict comparison of read-model values, and readable descriptions of differences.

Pure functions: ``same`` decides equality (``1`` is not ``1.0`` is not ``'1'`` is not
``True``), ``differences`` lists where two documents differ (dotted paths, first few
only), ``canonical`` gives a hashable, type-faithful form used to match keyless rows,
``show`` renders a value for a report line.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from event_processor.verify.convert import Float32, f32_round


class _Missing:
    """Marks a field that one side does not have."""

    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "(absent)"


MISSING: Any = _Missing()


def kind(value: Any) -> str:
    """The read-model type of a value (int64 and int32 are both ``int``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, (float, Float32)):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "binary"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, (list, tuple)):
        return "array"
    if value is MISSING:
        return "absent"
    return type(value).__name__


def same(expected: Any, actual: Any) -> bool:
    """Equal in value and in read-model type; floats compare NaN == NaN."""
    te = type(expected)
    if te is str or te is int or expected is None:
        if te is int:  # bson's Int64 is an int subclass; bool is not an int here
            return isinstance(actual, int) and not isinstance(actual, bool) and actual == expected
        return type(actual) is te and actual == expected
    if te is bool:
        return type(actual) is bool and actual == expected
    if te is float:
        if type(actual) is not float:
            return False
        return actual == expected or (math.isnan(actual) and math.isnan(expected))
    if te is Float32:
        return bool(expected.matches(actual))
    if te is dict:
        if not isinstance(actual, dict) or len(actual) != len(expected):
            return False
        return all(k in actual and same(v, actual[k]) for k, v in expected.items())
    if te is list:
        if not isinstance(actual, list) or len(actual) != len(expected):
            return False
        return all(same(e, a) for e, a in zip(expected, actual, strict=True))
    if te is bytes:
        return isinstance(actual, bytes) and bytes(actual) == expected
    if isinstance(expected, int) and not isinstance(expected, bool):
        return same(int(expected), actual)
    return bool(type(actual) is te and actual == expected)


def differences(
    expected: Any, actual: Any, path: str = "", limit: int = 5
) -> list[tuple[str, Any, Any]]:
    """Where two values differ: [(dotted path, expected, actual)], at most ``limit``."""
    out: list[tuple[str, Any, Any]] = []
    for item in _walk(expected, actual, path):
        out.append(item)
        if len(out) >= limit:
            break
    return out


def _walk(expected: Any, actual: Any, path: str) -> Iterator[tuple[str, Any, Any]]:
    if isinstance(expected, dict) and isinstance(actual, dict):
        for k, v in expected.items():
            sub = f"{path}.{k}" if path else str(k)
            if k not in actual:
                yield sub, v, MISSING
            elif not same(v, actual[k]):
                yield from _walk(v, actual[k], sub)
        for k, v in actual.items():
            if k not in expected:
                yield (f"{path}.{k}" if path else str(k)), MISSING, v
        return
    if (
        isinstance(expected, list)
        and isinstance(actual, list)
        and len(expected) == len(actual)
        and len(expected) > 0
    ):
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            if not same(e, a):
                yield from _walk(e, a, f"{path}[{i}]")
        return
    if not same(expected, actual):
        yield path, expected, actual


def document_differences(
    expected: dict[str, Any], actual: dict[str, Any], limit: int = 5
) -> list[tuple[str, Any, Any]]:
    """Differences of a document's data fields; fields starting with ``_`` that the
    expectation lacks are metadata (``_id``, ``_lsn``, ``_ops``) and are ignored."""
    out: list[tuple[str, Any, Any]] = []
    for k, v in expected.items():
        if k not in actual:
            out.append((k, v, MISSING))
        elif not same(v, actual[k]):
            out.extend(differences(v, actual[k], k, limit))
        if len(out) >= limit:
            return out[:limit]
    for k, v in actual.items():
        if k not in expected and not k.startswith("_"):
            out.append((k, MISSING, v))
            if len(out) >= limit:
                break
    return out[:limit]


def documents_equal(expected: dict[str, Any], actual: dict[str, Any]) -> bool:
    """Fast check behind ``document_differences`` (same metadata rule)."""
    for k, v in expected.items():
        if k not in actual or not same(v, actual[k]):
            return False
    if len(actual) != len(expected):
        return all(k in expected or k.startswith("_") for k in actual)
    return True


def canonical(value: Any, float32: bool = False) -> Any:
    """A hashable, type-faithful form of a value (dict key order does not matter)."""
    if value is None:
        return None
    t = type(value)
    if t is str:
        return ("s", value)
    if t is bool:
        return ("b", value)
    if t is Float32:
        return ("f32", value.rounded())
    if t is float:
        if float32:
            return ("f32", f32_round(value))
        return ("f", "nan" if math.isnan(value) else value)
    if isinstance(value, int):
        return ("i", int(value))
    if isinstance(value, dict):
        return ("o", tuple(sorted((str(k), canonical(v, float32)) for k, v in value.items())))
    if isinstance(value, (list, tuple)):
        return ("a", tuple(canonical(v, float32) for v in value))
    if isinstance(value, (bytes, bytearray, memoryview)):
        return ("y", bytes(value))
    return ("?", repr(value))


def show(value: Any, width: int = 60) -> str:
    """A short rendering for report lines: repr, elided in the middle when long."""
    if value is MISSING:
        return "(absent)"
    if value is None:
        return "null"
    if isinstance(value, (bytes, bytearray, memoryview)):
        text = "b'" + bytes(value).hex() + "'"
    else:
        text = repr(value)
    if len(text) > width:
        keep = (width - 3) // 2
        text = text[:keep] + "..." + text[-keep:]
    return text


def show_pair(expected: Any, actual: Any) -> tuple[str, str]:
    """Both sides rendered; with their types when the renderings alone look alike."""
    e, a = show(expected), show(actual)
    ke, ka = kind(expected), kind(actual)
    if ke != ka and MISSING not in (expected, actual) and None not in (expected, actual):
        e, a = f"{e} ({ke})", f"{a} ({ka})"
    return e, a


@dataclass(frozen=True, slots=True)
class FieldDiff:
    path: str
    postgres: Any
    mongo: Any

    def describe(self) -> str:
        e, a = show_pair(self.postgres, self.mongo)
        return f"field {self.path}: postgres {e} != mongo {a}"

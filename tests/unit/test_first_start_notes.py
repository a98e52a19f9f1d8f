"""`stack up` says what a first start downloads or builds, and only then."""

from __future__ import annotations

from pathlib import Path

import pytest

from event_processor.settings import Settings
from event_processor.stack import ferretdb, jvm
from event_processor.stack.manager import first_start_notes

pytestmark = pytest.mark.unit


def test_a_cold_cache_is_announced_with_what_happens(tmp_path: Path) -> None:
    notes = dict(first_start_notes(Settings(cache_dir=tmp_path, state_dir=tmp_path / "s")))
    assert "Maven" in notes["kafka"] and "4.3.0" in notes["kafka"]
    assert "Go builds FerretDB" in notes["ferretdb"]


def test_a_warm_cache_says_nothing(tmp_path: Path) -> None:
    settings = Settings(cache_dir=tmp_path, state_dir=tmp_path / "s")
    (jvm.jar_cache(settings)).mkdir(parents=True)
    (jvm.jar_cache(settings) / ".complete").touch()
    binary = ferretdb.binary_path(settings)
    binary.parent.mkdir(parents=True)
    binary.touch()
    assert first_start_notes(settings) == []


def test_external_services_are_never_built(tmp_path: Path) -> None:
    settings = Settings(
        cache_dir=tmp_path,
        state_dir=tmp_path / "s",
        kafka_bootstrap="127.0.0.1:1",
        connect_url="http://127.0.0.1:2",
        mongo_uri="mongodb://127.0.0.1:3",
    )
    assert first_start_notes(settings) == []

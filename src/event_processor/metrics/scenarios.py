"""Scenarios and their SLOs, loaded from ``scenarios.toml`` at the project root.

The file has a ``[defaults]`` table (with a ``[defaults.slo]`` sub-table) and one
``[scenario.<name>]`` table per scenario; a scenario replaces only what it sets, SLOs one
metric at a time. Anything unknown is an error naming the valid choices, so a typo can
never turn into a silently skipped setting or gate.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from event_processor.errors import ConfigError
from event_processor.metrics.slo import SloError, SloTargets, merge_targets, validate_targets

SCENARIOS_FILE = "scenarios.toml"

_TOP_KEYS = ("defaults", "scenario")
# key -> (type, required in a scenario after defaults were applied)
_FIELDS: dict[str, tuple[type, bool]] = {
    "description": (str, False),
    "events": (int, True),
    "rate": (float, True),
    "warmup_events": (int, False),
    "delivery_timeout_s": (float, True),
    "seed": (int, True),
    "slo": (dict, False),
}


class ScenarioError(ConfigError):
    """A bad scenarios file or an unknown scenario name, as one line."""

    def __init__(self, problem: str, fix: str | None = None) -> None:
        super().__init__("scenarios", problem, fix)


@dataclass(slots=True, frozen=True)
class Scenario:
    """One load scenario: how much to send, how fast, and what it must achieve."""

    name: str
    events: int
    rate: float  # business events per second, offered open-loop
    seed: int
    delivery_timeout_s: float  # how long to wait after the last send for the last ack
    warmup_events: int = 0  # first events left out of the figures
    description: str = ""
    slos: SloTargets = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        """How long the open-loop schedule takes to send every event."""
        return self.events / self.rate

    @property
    def measured_events(self) -> int:
        return self.events - self.warmup_events

    def with_slos(self, overrides: Mapping[str, float]) -> Scenario:
        """A copy with some SLO targets replaced (e.g. from the command line)."""
        return replace(self, slos=merge_targets(self.slos, overrides))


def default_path() -> Path:
    from event_processor.settings import PROJECT_ROOT

    return PROJECT_ROOT / SCENARIOS_FILE


def _check_keys(where: str, table: Mapping[str, Any], valid: Iterable[str]) -> None:
    valid = tuple(valid)
    for key in table:
        if key not in valid:
            raise ScenarioError(f"{where}: unknown key {key!r}", f"use one of {', '.join(valid)}")


def _typed(where: str, key: str, value: Any) -> Any:
    kind, _ = _FIELDS[key]
    # bool is an int subclass: "events = true" is a typo, not 1.
    ok = isinstance(value, kind) and not isinstance(value, bool)
    if kind is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok:
        raise ScenarioError(f"{where}.{key}: expected {kind.__name__}, got {value!r}")
    return float(value) if kind is float else value


def _table(where: str, raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ScenarioError(f"{where}: expected a table, got {raw!r}")
    _check_keys(where, raw, _FIELDS)
    values = {key: _typed(where, key, value) for key, value in raw.items()}
    if "slo" in values:
        try:
            values["slo"] = validate_targets(values["slo"])
        except SloError as exc:
            raise ScenarioError(f"{where}.slo: {exc.problem}", exc.fix) from None
    return values


def _build(name: str, defaults: Mapping[str, Any], own: Mapping[str, Any]) -> Scenario:
    where = f"scenario.{name}"
    values = {**defaults, **own}
    values["slo"] = merge_targets(defaults.get("slo", {}), own.get("slo", {}))
    missing = [k for k, (_, required) in _FIELDS.items() if required and k not in values]
    if missing:
        raise ScenarioError(f"{where}: missing {', '.join(missing)}")
    scenario = Scenario(
        name=name,
        events=values["events"],
        rate=values["rate"],
        seed=values["seed"],
        delivery_timeout_s=values["delivery_timeout_s"],
        warmup_events=values.get("warmup_events", 0),
        description=values.get("description", ""),
        slos=values["slo"],
    )
    _check_ranges(where, scenario)
    return scenario


def _check_ranges(where: str, s: Scenario) -> None:
    if s.events < 1:
        raise ScenarioError(f"{where}.events: must be at least 1, got {s.events}")
    if s.rate <= 0:
        raise ScenarioError(f"{where}.rate: must be above 0, got {s.rate:g}")
    if s.delivery_timeout_s <= 0:
        raise ScenarioError(f"{where}.delivery_timeout_s: must be above 0")
    if not 0 <= s.warmup_events < s.events:
        raise ScenarioError(
            f"{where}.warmup_events: must be in 0..{s.events - 1}, got {s.warmup_events}"
        )


def parse_scenarios(data: Mapping[str, Any]) -> dict[str, Scenario]:
    """Scenarios from an already-parsed TOML document, in file order."""
    _check_keys("scenarios file", data, _TOP_KEYS)
    defaults = _table("defaults", data.get("defaults", {}))
    tables = data.get("scenario", {})
    if not isinstance(tables, dict) or not tables:
        raise ScenarioError("no [scenario.<name>] tables found")
    return {
        name: _build(name, defaults, _table(f"scenario.{name}", raw))
        for name, raw in tables.items()
    }


def load_scenarios(path: Path | None = None) -> dict[str, Scenario]:
    """All scenarios of ``path`` (default: the project's scenarios.toml), in file order."""
    path = path or default_path()
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ScenarioError(f"{path} not found", "create it or pass its path") from None
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path}: {exc}") from None
    return parse_scenarios(data)


def select(scenarios: Mapping[str, Scenario], name: str) -> Scenario:
    """The named scenario; an unknown name is an error listing the known ones."""
    try:
        return scenarios[name]
    except KeyError:
        known = ", ".join(scenarios)
        raise ScenarioError(f"unknown scenario {name!r}", f"use one of {known}") from None


def get_scenario(name: str, path: Path | None = None) -> Scenario:
    return select(load_scenarios(path), name)


def default_slos(path: Path | None = None) -> dict[str, float]:
    """The ``[defaults.slo]`` targets of the scenarios file (for custom runs)."""
    path = path or default_path()
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError):
        return {}
    raw = data.get("defaults", {}).get("slo", {})
    return validate_targets(raw) if isinstance(raw, dict) else {}

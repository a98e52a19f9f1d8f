"""Bad configuration and command-line input: one clear line, non-zero exit, no traceback,
nothing started half-way. Credentials never leak; every service listens on loopback."""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from event_processor.settings import PROJECT_ROOT, Settings
from event_processor.stack import manager, process

pytestmark = pytest.mark.fault

SECRET = "s3cr3t-Pa55"


def _cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "event_processor.cli", *args],
        capture_output=True, text=True, timeout=timeout, cwd=PROJECT_ROOT,
        env={**os.environ, **(env or {})},
    )  # fmt: skip


def _one_clean_line(result: subprocess.CompletedProcess[str], *words: str) -> None:
    """Non-zero exit, no traceback, and the error is one line (progress lines aside)."""
    err = result.stderr.strip()
    assert result.returncode != 0, result
    assert "Traceback" not in err and "Traceback" not in result.stdout
    errors = [line for line in err.splitlines() if line.startswith("event-processor")]
    assert len(errors) == 1, err
    for word in words:
        assert word in errors[0], err


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["stack", "up", "--bogus"], ["unrecognized arguments", "--help"]),
        (["stack", "sideways"], ["invalid choice", "--help"]),
        (["load", "--scenario", "nope"], ["nope", "warmup"]),
        (["load", "--scenario", "warmup", "--slo", "p98=3ms"], ["p98", "p99"]),
        (["demo", "--scenario", "nope"], ["nope", "warmup"]),
    ],
)
def test_wrong_command_line_input(args: list[str], words: list[str]) -> None:
    _one_clean_line(_cli(*args), *words)


def test_unknown_slo_name_is_a_pytest_usage_error() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-m", "stress", "--collect-only", "-q",
         "--slo", "p98=3ms", "tests/perf"],
        capture_output=True, text=True, timeout=120, cwd=PROJECT_ROOT,
    )  # fmt: skip
    assert result.returncode != 0
    assert "p98" in result.stderr + result.stdout


@pytest.mark.parametrize(
    ("env", "component"),
    [
        ({"EP_PG_DSN": "this is not a dsn"}, "postgres"),
        ({"EP_PG_DSN": "postgresql://postgres@127.0.0.1:1/shop"}, "postgres"),
        ({"EP_MONGO_URI": "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=500"}, "mongo"),
        ({"EP_PG_PORT": "not-a-port"}, "EP_PG_PORT"),
    ],
)
def test_bad_or_unreachable_endpoint(
    ep_stack: Settings, env: dict[str, str], component: str
) -> None:
    before = {s: process.read_pid(ep_stack.state_dir, s) for s in manager.SERVICES}
    result = _cli("stack", "up", env=env)
    _one_clean_line(result, component, "fix:")
    after = {s: process.read_pid(ep_stack.state_dir, s) for s in manager.SERVICES}
    assert before == after, "nothing may be started or restarted by a failed `stack up`"


def test_taken_port_starts_nothing(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        state = tmp_path / "state"
        result = _cli("stack", "up", env={"EP_STATE_DIR": str(state), "EP_PG_PORT": str(port)})
    _one_clean_line(result, "postgres", str(port), "EP_PG_PORT")
    pids = list((state / "pids").glob("*.json")) if (state / "pids").exists() else []
    assert pids == [], f"a failed start left processes behind: {pids}"


def test_credentials_are_never_printed_or_written(ep_stack: Settings, tmp_path: Path) -> None:
    dsn = ep_stack.postgres_dsn().replace("postgres@", f"postgres:{SECRET}@")
    env = {"EP_PG_DSN": dsn}
    status = _cli("stack", "status", "--json", env=env)
    assert SECRET not in status.stdout + status.stderr
    assert json.loads(status.stdout)["postgres"]["dsn"].count("***") == 1
    report = tmp_path / "verify.json"
    verify = _cli("verify", "--timeout", "30", "--json", str(report), env=env)
    assert SECRET not in verify.stdout + verify.stderr
    assert SECRET not in report.read_text()


def _listening(pid: int) -> list[Any]:
    import psutil

    procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    out = []
    for p in procs:
        try:
            out += [c.laddr for c in p.net_connections(kind="inet") if c.status == "LISTEN"]
        except psutil.Error:
            continue
    return out


def test_every_local_service_listens_on_loopback_only(ep_stack: Settings) -> None:
    checked = 0
    for service in manager.SERVICES:
        record = process.read_pid(ep_stack.state_dir, service)
        if not process.is_ours_alive(record):
            continue
        assert record is not None
        for addr in _listening(record.pid):
            ip = ipaddress.ip_address(addr.ip)
            if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
                ip = ip.ipv4_mapped
            assert ip.is_loopback, f"{service} listens on {addr.ip}:{addr.port}"
            checked += 1
    assert checked >= 6, f"expected the stack's listeners, saw {checked}"

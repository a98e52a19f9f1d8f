"""Shared process plumbing for the local stack: pid files, port checks, readiness waits.

Every service is started by us, its PID recorded under the state folder, and stopped
by that PID only (never by name). A PID is trusted only while /proc shows the same
command line we started, so a recycled PID is never signalled.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from event_processor.errors import StackError


@dataclass(frozen=True)
class PidRecord:
    pid: int
    marker: str  # a string that must appear in /proc/<pid>/cmdline (our state path)
    log: str


def pid_file(state_dir: Path, service: str) -> Path:
    return state_dir / "pids" / f"{service}.json"


def read_pid(state_dir: Path, service: str) -> PidRecord | None:
    path = pid_file(state_dir, service)
    try:
        data = json.loads(path.read_text())
        return PidRecord(int(data["pid"]), str(data["marker"]), str(data["log"]))
    except (OSError, ValueError, KeyError):
        return None


def write_pid(state_dir: Path, service: str, record: PidRecord) -> None:
    path = pid_file(state_dir, service)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"pid": record.pid, "marker": record.marker, "log": record.log}))


def already_running(state_dir: Path, service: str) -> str | None:
    """What `stack up` says of a service of ours that is already running, else None."""
    record = read_pid(state_dir, service)
    if record is not None and is_ours_alive(record):
        return f"already running (pid {record.pid})"
    return None


def is_ours_alive(record: PidRecord | None) -> bool:
    """True when the PID is alive and still runs the command we started."""
    if record is None:
        return False
    try:
        cmdline = Path(f"/proc/{record.pid}/cmdline").read_bytes().replace(b"\0", b" ")
        stat = Path(f"/proc/{record.pid}/stat").read_text()
    except OSError:
        return False
    if stat.split(") ", 1)[-1].startswith(("Z", "X")):  # a zombie is gone
        return False
    # An empty cmdline is a process between fork and exec (or exiting): still ours. A
    # recycled PID shows another program's non-empty cmdline.
    return not cmdline.strip() or record.marker.encode() in cmdline


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.3) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


def ensure_port_free(component: str, port: int, env_var: str, grace_s: float = 10) -> None:
    # A killed JVM's leader thread is a zombie before its other threads have closed
    # their sockets: give a port we may just have freed a few seconds.
    deadline = time.monotonic() + grace_s
    while port_open(port) and time.monotonic() < deadline:
        time.sleep(0.2)
    if port_open(port):
        raise StackError(
            component,
            f"port 127.0.0.1:{port} is already in use by another process",
            f"stop that process or choose another port with {env_var}",
        )


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:])


def spawn(
    state_dir: Path,
    service: str,
    argv: Sequence[str],
    log: Path,
    marker: str,
    env: dict[str, str] | None = None,
    user: str | None = None,
    cwd: Path | None = None,
) -> PidRecord:
    """Start a detached service process with its output in ``log``; record its PID."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # survives the CLI; we stop it by PID
            env={**os.environ, **(env or {})},
            user=user,
            cwd=cwd,
        )
    record = PidRecord(proc.pid, marker, str(log))
    write_pid(state_dir, service, record)
    return record


def wait_ready(
    component: str,
    check: Callable[[], bool],
    timeout_s: float,
    record: PidRecord | None,
    log: Path,
    interval_s: float = 0.2,
) -> float:
    """Poll ``check`` (which speaks the service's protocol) until true; returns seconds."""
    start = time.monotonic()
    while True:
        try:
            if check():
                return time.monotonic() - start
        except Exception:
            pass
        # Exited for real, not a cmdline caught mid-exec (seen empty once in CI).
        if record is not None and _gone(record.pid):
            raise StackError(
                component,
                f"the process exited during start-up; last lines of {log}:\n{log_tail(log)}",
                f"read {log}",
            )
        if time.monotonic() - start > timeout_s:
            raise StackError(
                component,
                f"not ready after {timeout_s:.0f} s; last lines of {log}:\n{log_tail(log)}",
                f"read {log}",
            )
        time.sleep(interval_s)


def stop_pid(record: PidRecord | None, sig: int = signal.SIGTERM, timeout_s: float = 30) -> bool:
    """Signal our process and wait for it to exit; SIGKILL after the timeout."""
    if record is None or not is_ours_alive(record):
        return False
    os.kill(record.pid, sig)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if _gone(record.pid):
            return True
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(record.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while not _gone(record.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return True


def _gone(pid: int) -> bool:
    """Exited, sockets closed: no /proc entry, or only a zombie waiting for its parent.

    A dying JVM loses its cmdline before it releases its ports, so "not ours any more"
    is not enough before starting a replacement on the same port.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.split(") ", 1)[-1].startswith(("Z", "X"))


def run_checked(
    component: str,
    argv: Sequence[str],
    log: Path,
    fix: str,
    *,
    env: dict[str, str] | None = None,
    user: str | None = None,
    cwd: Path | None = None,
) -> None:
    """Run a provisioning step to completion, its output appended to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        rc = subprocess.call(
            list(argv), stdout=out, stderr=subprocess.STDOUT, env=env, user=user, cwd=cwd
        )
    if rc != 0:
        raise StackError(
            component,
            f"`{' '.join(argv[:3])} ...` failed (exit {rc}); last lines of {log}:\n{log_tail(log)}",
            fix,
        )

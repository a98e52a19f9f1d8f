"""What a run costs: CPU seconds per process group of the stack and the harness, host
utilisation and steal, resident memory; read from /proc through psutil.

Groups are found from the stack's PID files (PostgreSQL's backends and its walsender
apart, FerretDB's own PostgreSQL with all its backends) plus processes and threads the
caller names (the consumer process; the harness's generator, collector and dashboard
threads). CPU is user + system time, summed over the window between ``start`` and
``stop``; a process born inside the window counts from its birth.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from event_processor.stack import process

# Stack services as named in the state folder's PID files -> the group they count in.
SERVICE_GROUPS = {
    "postgres": "source postgres",
    "kafka": "kafka",
    "connect": "connect (debezium)",
    "ferretdb": "ferretdb",
    "ferretdb-pg": "ferretdb's postgres",
}
WALSENDER = "source walsender"


@dataclass(slots=True)
class GroupCost:
    cpu_s: float = 0.0
    rss_mb: float = 0.0
    processes: int = 0


@dataclass(slots=True)
class Cost:
    window_s: float
    cores: int
    groups: dict[str, GroupCost] = field(default_factory=dict)
    host_busy: float = 0.0  # share of all cores busy over the window, 0..1
    host_steal: float = 0.0  # share of all cores stolen by the hypervisor, 0..1
    # CPU seconds of processes outside every group (by process name), and of the local
    # JVMs' JIT compiler threads (part of the kafka and connect groups): the two things
    # that made gated runs slow in CI without showing in the pipeline's own figures.
    outside: dict[str, float] = field(default_factory=dict)
    jit_cpu_s: float | None = None

    @property
    def total_cpu_s(self) -> float:
        return sum(g.cpu_s for g in self.groups.values())

    def to_json(self, row_changes: int) -> dict[str, Any]:
        """The report's ``cost`` section: CPU seconds per 1,000 row changes per group."""
        per = 1000.0 / row_changes if row_changes else 0.0
        outside_s = sum(self.outside.values())
        top = sorted(self.outside.items(), key=lambda kv: -kv[1])[:OUTSIDE_TOP]
        return {
            "window_s": round(self.window_s, 3),
            "cores": self.cores,
            "row_changes": row_changes,
            "host_busy_pct": round(100 * self.host_busy, 1),
            "host_steal_pct": round(100 * self.host_steal, 2),
            "cpu_s_per_1000_row_changes": round(self.total_cpu_s * per, 4),
            "groups": {
                name: {
                    "cpu_s": round(g.cpu_s, 3),
                    "cpu_s_per_1000_row_changes": round(g.cpu_s * per, 4),
                    "share_of_a_core_pct": round(100 * g.cpu_s / self.window_s, 1)
                    if self.window_s
                    else 0.0,
                    "rss_mb": round(g.rss_mb, 1),
                    "processes": g.processes,
                }
                for name, g in sorted(self.groups.items(), key=lambda kv: -kv[1].cpu_s)
            },
            "outside_pipeline": {
                "cpu_s": round(outside_s, 3),
                "share_of_a_core_pct": round(100 * outside_s / self.window_s, 1)
                if self.window_s
                else 0.0,
                "top": {name: round(cpu, 3) for name, cpu in top if cpu > 0},
            },
            "jvm_jit_cpu_s": None if self.jit_cpu_s is None else round(self.jit_cpu_s, 3),
        }


# How many of the busiest processes outside the pipeline a cost section names.
OUTSIDE_TOP = 5


def all_process_cpu() -> dict[tuple[int, float], tuple[str, float]]:
    """CPU seconds so far of every process on the host, by (pid, start time)."""
    out: dict[tuple[int, float], tuple[str, float]] = {}
    for p in psutil.process_iter(["name", "cpu_times", "create_time"]):
        t = p.info["cpu_times"]
        if t is None or p.info["create_time"] is None:
            continue  # gone, or not readable
        out[(p.pid, p.info["create_time"])] = (p.info["name"] or "?", t.user + t.system)
    return out


def outside_cpu(
    before: dict[tuple[int, float], tuple[str, float]],
    after: dict[tuple[int, float], tuple[str, float]],
    members: set[int],
) -> dict[str, float]:
    """CPU seconds each process name used between two snapshots, for processes that are
    no member of a group (a process born in between counts from its birth; one that
    ended in between is not seen)."""
    used: dict[str, float] = {}
    for key, (name, cpu) in after.items():
        if key[0] in members:
            continue
        spent = cpu - before.get(key, (name, 0.0))[1]
        if spent > 0:
            used[name] = used.get(name, 0.0) + spent
    return used


ThreadCpu = dict[int, int]  # thread id -> CPU nanoseconds so far


def thread_cpu_ns(pid: int) -> ThreadCpu | None:
    """CPU nanoseconds of each live thread of ``pid``, from the scheduler's own account
    (``/proc/<pid>/task/<tid>/schedstat``): exact where ``/proc/<pid>/stat`` counts 10 ms
    ticks, a third of what a sink spends on 1,000 rows. None when the process is gone or
    the kernel keeps no schedstat."""
    tasks = Path(f"/proc/{pid}/task")
    out: ThreadCpu = {}
    try:
        entries = list(tasks.iterdir())
    except OSError:
        return None
    for task in entries:
        try:
            out[int(task.name)] = int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # the thread ended meanwhile
    return out or None


def cpu_between_s(before: ThreadCpu, after: ThreadCpu) -> float:
    """CPU seconds the threads used between two readings; a thread born in between counts
    from its birth, one that ended in between is not seen (a sink's pools live on)."""
    return sum(ns - before.get(tid, 0) for tid, ns in after.items()) / 1e9


def _cpu(p: psutil.Process) -> float:
    t = p.cpu_times()
    return float(t.user + t.system)


class CostMeter:
    """Samples the named processes and threads while a run lasts.

    A background thread samples every ``interval_s``, so processes and threads that
    start and end inside the window (the generator's connections and threads) still
    count: each is charged its last seen CPU less what it had at the window's start
    (nothing, when born inside it).
    """

    def __init__(
        self,
        state_dir: Path | None,
        processes: dict[str, int] | None = None,
        threads: dict[str, str] | None = None,
        interval_s: float = 1.0,
    ) -> None:
        # state_dir None: an external stack, nothing of it runs here to measure.
        self.state_dir = state_dir
        self.processes = dict(processes or {})  # group -> pid (without its children)
        # Thread-name prefix -> group, for threads of this process (the harness).
        self.threads = dict(threads or {})
        self.interval_s = interval_s
        self._first: dict[tuple[str, int, float], float] = {}
        self._last: dict[tuple[str, int, float], tuple[float, float]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sampler: threading.Thread | None = None
        self._t0 = 0.0
        self._host0: Any = None
        self._procs: dict[int, psutil.Process] = {}
        self._walsenders: dict[tuple[int, float], bool] = {}
        self._all0: dict[tuple[int, float], tuple[str, float]] = {}
        self._jit0: JitReading | None = None

    def _members(self) -> list[tuple[str, psutil.Process]]:
        out: list[tuple[str, psutil.Process]] = []
        if self.state_dir is not None:
            # One scan of /proc per sample for every service's descendants (psutil's
            # children() scans it once per call): 67 ms of CPU per sample was 6 % of a core.
            children: dict[int, list[int]] = {}
            for p in psutil.process_iter(["ppid"]):
                children.setdefault(p.info["ppid"] or 0, []).append(p.pid)
            for service, group in SERVICE_GROUPS.items():
                record = process.read_pid(self.state_dir, service)
                if record is None or not process.is_ours_alive(record):
                    continue
                pids, todo = [], [record.pid]
                while todo:
                    pid = todo.pop()
                    pids.append(pid)
                    todo.extend(children.get(pid, ()))
                for pid in pids:
                    p = self._process(pid)
                    if p is None:
                        continue
                    name = group
                    if group == SERVICE_GROUPS["postgres"] and self._is_walsender(p):
                        name = WALSENDER
                    out.append((name, p))
        for group, pid in self.processes.items():
            if (p := self._process(pid)) is not None:
                out.append((group, p))
        return out

    def _process(self, pid: int) -> psutil.Process | None:
        """The same psutil.Process across samples (its identity is read once)."""
        p = self._procs.get(pid)
        if p is None:
            try:
                p = self._procs[pid] = psutil.Process(pid)
            except psutil.Error:
                return None
        return p

    def _is_walsender(self, p: psutil.Process) -> bool:
        key = (p.pid, p.create_time())
        if key not in self._walsenders:
            try:
                self._walsenders[key] = "walsender" in " ".join(p.cmdline())
            except psutil.Error:
                return False
        return self._walsenders[key]

    def _sample(self, first: bool = False, memory: bool = True) -> None:
        """CPU of every member now; resident memory too unless ``memory`` is False (the
        periodic samples in between keep the last figure: RSS is reported at the end)."""
        seen: dict[tuple[str, int, float], tuple[float, float]] = {}
        for group, p in self._members():
            try:
                key = (group, p.pid, p.create_time())
                if memory:
                    with p.oneshot():
                        seen[key] = (_cpu(p), p.memory_info().rss / 2**20)
                else:
                    seen[key] = (_cpu(p), self._last.get(key, (0.0, 0.0))[1])
            except psutil.Error:
                self._procs.pop(p.pid, None)
                continue
        by_native = {t.native_id: t.name for t in threading.enumerate() if t.native_id}
        if self.threads:
            try:
                me = psutil.Process(os.getpid())
                for t in me.threads():
                    name = by_native.get(t.id, "")
                    for prefix, group in self.threads.items():
                        if name.startswith(prefix):
                            seen[(group, t.id, 0.0)] = (t.user_time + t.system_time, 0.0)
            except psutil.Error:
                pass
        with self._lock:
            for key, value in seen.items():
                if first:
                    self._first[key] = value[0]
                self._last[key] = value

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample(memory=False)

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._host0 = psutil.cpu_times()
        self._all0 = all_process_cpu()
        self._jit0 = jit_reading(self.state_dir)
        self._sample(first=True)
        self._stop.clear()
        self._sampler = threading.Thread(target=self._run, name="ep-cost-sampler", daemon=True)
        self._sampler.start()

    def stop(self) -> Cost:
        self._stop.set()
        if self._sampler is not None:
            self._sampler.join(5)
        self._sample()
        all1 = all_process_cpu()
        jit1 = jit_reading(self.state_dir)
        host1 = psutil.cpu_times()
        window = max(1e-6, time.monotonic() - self._t0)
        cost = Cost(window_s=window, cores=psutil.cpu_count() or 1)
        threads_cpu = 0.0
        with self._lock:
            for key, (cpu, rss) in self._last.items():
                g = cost.groups.setdefault(key[0], GroupCost())
                used = max(0.0, cpu - self._first.get(key, 0.0))
                g.cpu_s += used
                g.rss_mb += rss
                g.processes += 1
                if key[2] == 0.0:  # a thread of this process
                    threads_cpu += used
        # This process's own group counts its threads once, in their thread groups.
        own = next((g for g, pid in self.processes.items() if pid == os.getpid()), None)
        if own is not None and own in cost.groups:
            cost.groups[own].cpu_s = max(0.0, cost.groups[own].cpu_s - threads_cpu)
        members = {key[1] for key in self._last if key[2] != 0.0} | {os.getpid()}
        cost.outside = outside_cpu(self._all0, all1, members)
        if self._jit0 is not None and jit1 is not None:
            cost.jit_cpu_s = max(0.0, jit1.compiler_s - self._jit0.compiler_s)
        if self._host0 is not None:
            total = sum(host1) - sum(self._host0)
            idle = (host1.idle + getattr(host1, "iowait", 0.0)) - (
                self._host0.idle + getattr(self._host0, "iowait", 0.0)
            )
            steal = getattr(host1, "steal", 0.0) - getattr(self._host0, "steal", 0.0)
            if total > 0:
                cost.host_busy = max(0.0, min(1.0, 1 - idle / total))
                cost.host_steal = max(0.0, steal / total)
        return cost


# The stack's JVMs, and the name HotSpot gives its JIT compiler threads ("C2 CompilerThre",
# the kernel keeps 15 characters of "C2 CompilerThread0").
JVM_SERVICES = ("kafka", "connect")
JIT_THREAD_PREFIXES = ("C1 CompilerThre", "C2 CompilerThre")


@dataclass(frozen=True, slots=True)
class JitReading:
    """CPU seconds so far of the local JVMs, all threads and the JIT compiler threads."""

    total_s: float
    compiler_s: float

    def share_since(self, earlier: JitReading) -> float:
        """The compiler threads' share of the JVMs' CPU between two readings, 0..1."""
        used = self.total_s - earlier.total_s
        return max(0.0, self.compiler_s - earlier.compiler_s) / used if used > 0 else 0.0


def jit_reading(state_dir: Path | None) -> JitReading | None:
    """Read /proc/<pid>/task of the stack's JVMs; None when none of them runs here.

    A JVM compiles its hot paths only after they have run often enough, so its
    compiler threads stay busy for minutes of load after a start: time the pipeline's
    work then waits behind.
    """
    if state_dir is None:
        return None
    tick = os.sysconf("SC_CLK_TCK")
    total = compiler = 0
    found = False
    for service in JVM_SERVICES:
        record = process.read_pid(state_dir, service)
        if not process.is_ours_alive(record):
            continue
        assert record is not None
        found = True
        tasks = Path(f"/proc/{record.pid}/task")
        try:
            # The process's own counters keep the time of threads that have ended.
            total += proc_stat_ticks(Path(f"/proc/{record.pid}/stat").read_text())
            tids = os.listdir(tasks)
        except OSError:
            continue
        for tid in tids:
            try:
                if (tasks / tid / "comm").read_text().startswith(JIT_THREAD_PREFIXES):
                    compiler += proc_stat_ticks((tasks / tid / "stat").read_text())
            except OSError:
                continue  # the thread ended meanwhile
    return JitReading(total / tick, compiler / tick) if found else None


def proc_stat_ticks(stat: str) -> int:
    """utime + stime of a /proc stat line (fields 14 and 15; the name may hold spaces)."""
    fields = stat.rsplit(") ", 1)[1].split()
    return int(fields[11]) + int(fields[12])

"""PostgreSQL 15 from Debian's packages: own data directory, logical decoding, loopback."""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import signal
import subprocess
from pathlib import Path

import psycopg2

from event_processor.errors import StackError
from event_processor.settings import Settings
from event_processor.stack import process

PG_BIN = Path("/usr/lib/postgresql/15/bin")
SERVICE = "postgres"

# Who may connect to a cluster of ours: the superuser ``postgres`` (the stack's own
# clients) without a password, over loopback and the socket in the state folder only;
# every other role with its password (SCRAM), as on a real server, so a role made for
# EP_PG_DSN is refused without it here too. initdb's default trusts every role.
HBA_CONF = """\
# Written by event-processor (stack/postgres.py) at every `stack up`: edits are replaced.
# TYPE  DATABASE     USER      ADDRESS        METHOD
local   all          postgres                 trust
local   replication  postgres                 trust
host    all          postgres  127.0.0.1/32   trust
host    replication  postgres  127.0.0.1/32   trust
local   all          all                      scram-sha-256
local   replication  all                      scram-sha-256
host    all          all       127.0.0.1/32   scram-sha-256
host    replication  all       127.0.0.1/32   scram-sha-256
"""


def _can_connect(port: int, dbname: str = "postgres") -> bool:
    conn = psycopg2.connect(
        host="127.0.0.1", port=port, user="postgres", dbname=dbname, connect_timeout=2
    )
    conn.close()
    return True


def _chown_postgres(path: Path) -> None:
    ids = pwd.getpwnam("postgres")
    os.chown(path, ids.pw_uid, ids.pw_gid)


def ensure_installed(log: Path) -> None:
    """Install the Debian package when its binaries are missing."""
    if (PG_BIN / "postgres").exists():
        return
    if shutil.which("apt-get") is None:
        raise StackError(
            "postgres",
            f"PostgreSQL 15 is not installed ({PG_BIN} missing) and apt-get is unavailable",
            "install PostgreSQL 15 or set EP_PG_DSN to an existing server",
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    fix = "run `apt-get install -y postgresql-15` by hand, or set EP_PG_DSN"
    process.run_checked("postgres", ["apt-get", "update", "-q"], log, fix, env=env)
    process.run_checked(
        "postgres", ["apt-get", "install", "-y", "-q", "postgresql-15"], log, fix, env=env
    )


def cluster_dir(settings: Settings, service: str) -> Path:
    """Where a cluster of ours lives: in the state folder when the `postgres` user can
    reach it, else (a checkout under a private folder, e.g. mode 0700) in a folder of
    /var/lib named after the state folder, so two checkouts never share one."""
    base = settings.state_dir / service
    base.mkdir(parents=True, exist_ok=True)
    _chown_postgres(base)
    reachable = (
        subprocess.run(
            ["runuser", "-u", "postgres", "--", "test", "-w", str(base)], check=False
        ).returncode
        == 0
    )
    if reachable:
        return base
    digest = hashlib.sha256(str(settings.state_dir.resolve()).encode()).hexdigest()[:12]
    outside = Path("/var/lib/event-processor") / digest / service
    outside.parent.mkdir(parents=True, exist_ok=True)
    (base / "LOCATION").write_text(f"{outside}\n")  # for people looking for the data
    return outside


def start_instance(
    settings: Settings,
    service: str,
    port: int,
    port_env: str,
    database: str,
    extra: list[str],
) -> str:
    """Start (initialising on first use) a PostgreSQL cluster of ours on 127.0.0.1."""
    if running := process.already_running(settings.state_dir, service):
        # A cluster started before HBA_CONF existed trusts every role: reload it with it.
        if ensure_hba(cluster_dir(settings, service) / "data"):
            _reload_conf(port)
        return running
    process.ensure_port_free(service, port, port_env)
    ensure_installed(settings.state_dir / "provision.log")
    base = cluster_dir(settings, service)
    data, run, log = base / "data", base / "run", base / f"{service}.log"
    for d in (base, run):
        d.mkdir(parents=True, exist_ok=True)
        _chown_postgres(d)
    log.touch()
    _chown_postgres(log)
    if not (data / "PG_VERSION").exists():
        initdb = [str(PG_BIN / "initdb"), "-D", str(data), "--auth=trust", "-U", "postgres"]
        process.run_checked(
            service, [*initdb, "-E", "UTF8"], log, f"remove {data} and retry", user="postgres"
        )
    ensure_hba(data)
    argv = [
        str(PG_BIN / "postgres"),
        "-D", str(data),
        "-p", str(port),
        "-c", "listen_addresses=127.0.0.1",
        "-c", f"unix_socket_directories={run}",
        *[a for kv in extra for a in ("-c", kv)],
    ]  # fmt: skip
    record = process.spawn(settings.state_dir, service, argv, log, str(data), user="postgres")
    process.wait_ready(service, lambda: _can_connect(port), 60, record, log)
    _ensure_database(port, database)
    return f"started (pid {record.pid})"


def ensure_hba(data: Path) -> bool:
    """Make HBA_CONF the cluster's pg_hba.conf; True when the file changed."""
    path = data / "pg_hba.conf"
    try:
        if path.read_text() == HBA_CONF:
            return False
    except OSError:
        pass
    path.write_text(HBA_CONF)
    path.chmod(0o600)
    _chown_postgres(path)
    return True


def _reload_conf(port: int) -> None:
    conn = psycopg2.connect(
        host="127.0.0.1", port=port, user="postgres", dbname="postgres", connect_timeout=5
    )
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT pg_reload_conf()")
    finally:
        conn.close()


def start(settings: Settings) -> str:
    """The source database: logical decoding on, for Debezium."""
    return start_instance(
        settings,
        SERVICE,
        settings.pg_port,
        "EP_PG_PORT",
        settings.pg_database,
        [
            "wal_level=logical",
            "max_wal_senders=10",
            "max_replication_slots=10",
            "shared_buffers=256MB",
            "max_connections=100",
        ],
    )


def _ensure_database(port: int, database: str) -> None:
    conn = psycopg2.connect(host="127.0.0.1", port=port, user="postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
        if cur.fetchone() is None:
            cur.execute(f'CREATE DATABASE "{database}"')
    conn.close()


def stop(settings: Settings) -> bool:
    # SIGINT is PostgreSQL's "fast" shutdown: clean, without waiting for clients.
    return process.stop_pid(process.read_pid(settings.state_dir, SERVICE), signal.SIGINT)


def health(dsn: str) -> tuple[bool, str]:
    try:
        conn = psycopg2.connect(dsn, connect_timeout=3)
        with conn.cursor() as cur:
            cur.execute("SHOW wal_level")
            row = cur.fetchone()
        conn.close()
    except psycopg2.Error as exc:
        return False, str(exc).strip().splitlines()[0]
    level = row[0] if row else "?"
    if level != "logical":
        return False, f"wal_level is {level}, CDC needs logical"
    return True, "ready"


def publish_via_partition_root(settings: Settings) -> str | None:
    """Make an existing publication of the connector publish partitions' changes under
    their parent's name (Debezium's ``publish.via.partition.root`` only applies when it
    creates the publication). Returns a warning when that was not possible."""
    publication = f"{settings.slot_name}_pub"
    try:
        conn = psycopg2.connect(settings.postgres_dsn(), connect_timeout=5,
                                application_name="ep-stack")  # fmt: skip
    except psycopg2.Error as exc:
        return f"cannot check publication {publication}: {str(exc).strip()}"
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT pubviaroot FROM pg_publication WHERE pubname = %s", (publication,))
            row = cur.fetchone()
            if row is None or row[0]:
                return None
            cur.execute(
                f'ALTER PUBLICATION "{publication}" SET (publish_via_partition_root = true)'
            )
        return None
    except psycopg2.Error as exc:
        return (f"publication {publication} publishes partitions under their own names "
                f"({str(exc).strip()}); a partitioned table lands as one collection per "
                "partition")  # fmt: skip
    finally:
        conn.close()

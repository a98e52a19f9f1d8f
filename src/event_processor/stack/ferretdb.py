"""FerretDB 1.x (MongoDB wire protocol, SQLite backend), built from the Go module proxy."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
from importlib import resources
from pathlib import Path

from pymongo import MongoClient
from pymongo.errors import PyMongoError

from event_processor.errors import StackError
from event_processor.settings import Settings
from event_processor.stack import postgres, process

SERVICE = "ferretdb"
STORE_SERVICE = "ferretdb-pg"
STORE_DATABASE = "ferretdb"
WRAPPER = resources.files("event_processor.stack") / "resources" / "ferretdb"
WRAPPER_FILES = ("main.go", "go.mod", "go.sum")


def binary_path(settings: Settings) -> Path:
    digest = hashlib.sha256(b"".join((WRAPPER / f).read_bytes() for f in WRAPPER_FILES))
    name = f"{settings.ferretdb_version}_{digest.hexdigest()[:8]}"
    return settings.cache_dir / "ferretdb" / name / "ferretdb-embedded"


def ensure_binary(settings: Settings, log: Path) -> Path:
    """Build the wrapper module once (cached by version and source digest)."""
    binary = binary_path(settings)
    if binary.exists():
        return binary
    go = shutil.which("go") or (
        "/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None
    )
    if go is None:
        raise StackError("ferretdb", "Go is not installed", "install Go, or set EP_MONGO_URI")
    build = binary.parent / "src"
    build.mkdir(parents=True, exist_ok=True)
    for f in WRAPPER_FILES:
        (build / f).write_bytes((WRAPPER / f).read_bytes())
    process.run_checked(
        "ferretdb",
        [go, "build", "-trimpath", "-o", str(binary), "."],
        log,
        "check that the Go module proxy is reachable, then retry",
        cwd=build,
        env={**os.environ, "CGO_ENABLED": "0"},
    )
    return binary


def _ready(uri: str) -> bool:
    client: MongoClient[dict[str, object]] = MongoClient(uri, serverSelectionTimeoutMS=2000)
    try:
        client.admin.command("ping")
    finally:
        client.close()
    return True


def start(settings: Settings, log_provision: Path) -> str:
    base = settings.state_dir / "ferretdb"
    if running := process.already_running(settings.state_dir, SERVICE):
        return running
    process.ensure_port_free("ferretdb", settings.mongo_port, "EP_MONGO_PORT")
    binary = ensure_binary(settings, log_provision)
    start_store(settings)
    tune_store(settings)
    base.mkdir(parents=True, exist_ok=True)
    log = base / "ferretdb.log"
    store_url = (
        f"postgres://postgres@127.0.0.1:{settings.store_pg_port}/{STORE_DATABASE}"
        "?pool_max_conns=200"
    )
    argv = [str(binary), f"--listen=127.0.0.1:{settings.mongo_port}", "--handler=postgresql",
            f"--postgresql-url={store_url}"]  # fmt: skip
    record = process.spawn(settings.state_dir, SERVICE, argv, log, store_url)
    process.wait_ready("ferretdb", lambda: _ready(settings.mongodb_uri()), 60, record, log)
    return f"started (pid {record.pid})"


def start_store(settings: Settings) -> str:
    """FerretDB's storage: its own PostgreSQL cluster, so the read model's writes never
    share the source database's WAL (which Debezium decodes).

    synchronous_commit=off acknowledges a write once it is in the WAL buffer, flushed
    within ~200 ms: the same promise as MongoDB's default write concern (w:1, no j).
    FerretDB's SQLite backend was tried first and deadlocked under concurrent clients.
    """
    return postgres.start_instance(
        settings,
        STORE_SERVICE,
        settings.store_pg_port,
        "EP_STORE_PG_PORT",
        STORE_DATABASE,
        [
            "synchronous_commit=off",
            "shared_buffers=256MB",
            "max_connections=300",
            # FerretDB sends parameterised `_jsonb->$1 @> $2`: only a custom plan can
            # match it to the containment index below.
            "plan_cache_mode=force_custom_plan",
        ],
    )


# FerretDB 1.24 filters {_id: "x"} as `_jsonb->'_id' @> '"x"'`, which its own btree
# index on _id cannot serve: every update scanned the whole collection (372 updates/s
# at 11k documents, measured). A GIN index on the same expression serves `@>` (958/s).
# The event trigger adds it to every table FerretDB creates for a collection.
STORE_TUNING_SQL = """
CREATE OR REPLACE FUNCTION public.ep_index_id_for_containment() RETURNS event_trigger
LANGUAGE plpgsql AS $$
DECLARE obj record;
BEGIN
  FOR obj IN SELECT * FROM pg_event_trigger_ddl_commands() WHERE command_tag = 'CREATE TABLE'
  LOOP
    IF EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = obj.objid AND attname = '_jsonb') THEN
      EXECUTE format('CREATE INDEX ON %s USING gin ((_jsonb -> ''_id'') jsonb_path_ops)',
                     obj.object_identity);
    END IF;
  END LOOP;
END $$;
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = 'ep_index_id_for_containment')
  THEN
    CREATE EVENT TRIGGER ep_index_id_for_containment ON ddl_command_end
      WHEN TAG IN ('CREATE TABLE') EXECUTE FUNCTION public.ep_index_id_for_containment();
  END IF;
END $$;
"""

# Tables created before the trigger existed get the index too.
MISSING_INDEXES_SQL = """
SELECT format('%I.%I', c.table_schema, c.table_name)
FROM information_schema.columns c
WHERE c.column_name = '_jsonb' AND NOT EXISTS (
  SELECT 1 FROM pg_indexes i
  WHERE i.schemaname = c.table_schema AND i.tablename = c.table_name AND i.indexdef LIKE '%gin%')
"""


def store_dsn(settings: Settings) -> str:
    """The local FerretDB's own PostgreSQL (its storage backend)."""
    return f"postgresql://postgres@127.0.0.1:{settings.store_pg_port}/{STORE_DATABASE}"


def tune_store(settings: Settings) -> None:
    import psycopg2

    conn = psycopg2.connect(store_dsn(settings))
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(STORE_TUNING_SQL)
        cur.execute(MISSING_INDEXES_SQL)
        for (table,) in cur.fetchall():
            cur.execute(f"CREATE INDEX ON {table} USING gin ((_jsonb -> '_id') jsonb_path_ops)")
    conn.close()


def stop(settings: Settings) -> bool:
    stopped = process.stop_pid(process.read_pid(settings.state_dir, SERVICE))
    process.stop_pid(process.read_pid(settings.state_dir, STORE_SERVICE), signal.SIGINT)
    return stopped


def health(uri: str) -> tuple[bool, str]:
    try:
        _ready(uri)
    except PyMongoError as exc:
        # pymongo appends its whole topology description: the first clause says it.
        return False, f"{type(exc).__name__}: {str(exc).split(' (configured timeouts')[0][:160]}"
    return True, "ready"

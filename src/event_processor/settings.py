"""One typed settings object: endpoints, local stack ports, tuning knobs.

Everything is read from the environment (prefix ``EP_``) and from ``.env``. When an
endpoint (``EP_PG_DSN``, ``EP_KAFKA_BOOTSTRAP``, ``EP_CONNECT_URL``, ``EP_MONGO_URI``) is
set, the suite uses that service as it is and starts nothing local for it.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from event_processor.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _default_state_dir() -> Path:
    return Path(os.environ.get("EP_STATE_DIR", PROJECT_ROOT / ".stack"))


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache"))
    return Path(base) / "event-processor"


class Settings(BaseSettings):
    """All configuration of the pipeline, the stack and the suite."""

    model_config = SettingsConfigDict(
        env_prefix="EP_", env_file=".env", extra="ignore", validate_default=True
    )

    # External endpoints: set one and that service is not started locally.
    pg_dsn: SecretStr | None = None
    kafka_bootstrap: str | None = None
    connect_url: str | None = None
    mongo_uri: SecretStr | None = None

    # Local stack: where state lives, what it listens on (always 127.0.0.1).
    state_dir: Path = Field(default_factory=_default_state_dir)
    cache_dir: Path = Field(default_factory=_default_cache_dir)
    pg_port: int = Field(default=55432, ge=1024, le=65535)
    kafka_port: int = Field(default=59092, ge=1024, le=65535)
    kafka_controller_port: int = Field(default=59093, ge=1024, le=65535)
    connect_port: int = Field(default=58083, ge=1024, le=65535)
    # `event-processor race`: a Connect worker of its own for the sink connectors, so
    # each sink's CPU is its own process's (the stack's worker runs Debezium's source).
    race_connect_port: int = Field(default=58084, ge=1024, le=65535)
    race_connect_heap: str = "512m"
    mongo_port: int = Field(default=57017, ge=1024, le=65535)
    # FerretDB's own PostgreSQL (its storage backend), apart from the source database.
    store_pg_port: int = Field(default=55433, ge=1024, le=65535)
    metrics_port: int = Field(default=59400, ge=0, le=65535)
    pg_database: str = "shop"
    # The read model's database; a database named in EP_MONGO_URI's path is used unless
    # this is set explicitly (see _database_from_uri).
    mongo_database: str = "read_model"

    # Versions of what the local stack runs (cache keys).
    kafka_version: str = "4.3.0"
    debezium_version: str = "3.6.1.Final"
    ferretdb_version: str = "v1.24.2"
    kafka_heap: str = "384m"
    connect_heap: str = "512m"

    # CDC topology.
    topic_prefix: str = "ep"
    connector_name: str = "ep-postgres-source"
    slot_name: str = "ep_slot"
    # Schemas captured (comma-separated); empty: every schema but PostgreSQL's own.
    # A table outside ``public`` lands in the collection ``schema.table``.
    capture_schemas: str = ""
    # One partition per change topic: a table's changes then reach the consumer in
    # commit order, which TRUNCATE, key changes and keyless tables (no key to route
    # by) need to land exactly. One consumer process writes every partition anyway.
    topic_partitions: int = Field(default=1, ge=1, le=64)

    # Debezium / Connect producer tuning (measured: see README "Tuning").
    poll_interval_ms: int = Field(default=10, ge=1)
    max_batch_size: int = Field(default=2048, ge=1)
    max_queue_size: int = Field(default=8192, ge=2)
    producer_linger_ms: int = Field(default=0, ge=0)
    offset_flush_interval_ms: int = Field(default=1000, ge=100)

    # Consumer tuning.
    consumer_group: str = "ep-read-model"
    consumer_max_poll_records: int = Field(default=2000, ge=1)
    # How long the broker may hold a fetch for fetch_min_bytes to arrive. With the
    # default fetch_min_bytes=1 it answers as soon as any change is there, so the wait
    # only bounds how often an idle consumer asks; a larger fetch_min_bytes trades up to
    # this wait for fewer, fuller batches (at 200 events/s, 1 MiB and 5 ms cut the
    # consumer's CPU per row change from 1.38 to 1.11 ms but raised e2e p50 from 26 to
    # 34-51 ms on a 2-vCPU box, so it is not the default).
    consumer_fetch_max_wait_ms: int = Field(default=100, ge=0)
    consumer_fetch_min_bytes: int = Field(default=1, ge=1)
    # Write statements per MongoDB command (see consumer/writer.py: FerretDB's pool).
    mongo_ops_per_command: int = Field(default=16, ge=1)
    # How often applied positions are saved to _ep_positions (and offsets committed):
    # a replay after a crash re-applies at most this much (idempotently).
    position_save_interval_ms: int = Field(default=100, ge=0)
    # Commands in flight at once. FerretDB runs a command's statements one after the
    # other (an update is a query, a write and a transaction in its PostgreSQL), so one
    # connection serialises every update. On a 2-vCPU box with slower cores, extreme
    # (500 events/s offered), interleaved runs: one connection applied 1,000-1,007 row
    # changes/s at e2e p50 865-1,395 ms, two 1,045-1,047/s at 198-254 ms (whole box
    # 1.71-1.82 against 1.71-1.72 ms CPU per row change; the consumer +0.05). Four were
    # no better than two.
    mongo_write_concurrency: int = Field(default=2, ge=1)
    # Debezium MongoDB sink of `event-processor race`: documents per ordered bulk write.
    # FerretDB holds one PostgreSQL connection per statement of a write command until the
    # command ends (pool 200): the sink's default of 500 can stall it (see README "Race").
    race_sink_batch_size: int = Field(default=100, ge=1, le=200)
    # `event-processor load --sink external`: a pipeline that is not ours, measured from
    # the outside (race.external). The benchmark table its workload writes (created when
    # missing: id bigint primary key, payload text), where the user's pipeline puts its
    # rows (default: the database of EP_MONGO_URI, a collection named as the table), how
    # a row's _id looks there ("auto" tries "42", 42 and {"id": 42}), and the change
    # topic that gives each row's commit time (default <prefix>.<schema>.<table>).
    external_table: str = Field(default="public.ep_blackbox", pattern=r"^\w+\.\w+$")
    external_database: str | None = None
    external_collection: str | None = None
    external_id: Literal["auto", "string", "number", "key-document"] = "auto"
    external_topic: str | None = None
    # A change event whose Kafka value is bigger is dead-lettered, not applied (the
    # broker's own default limit is about 1 MB, so this guard matters on topics allowed more).
    max_event_bytes: int = Field(default=1024 * 1024, ge=1024)
    dlq_topic: str = "ep.dlq"
    timings_topic: str = "ep.timings"

    @model_validator(mode="after")
    def _database_from_uri(self) -> Settings:
        """``EP_MONGO_URI=mongodb://host/shop_rm`` puts the read model in ``shop_rm``, as
        MongoDB drivers read a connection string; an explicit EP_MONGO_DATABASE wins."""
        if self.mongo_uri is not None and "mongo_database" not in self.model_fields_set:
            named = uri_database(self.mongo_uri.get_secret_value())
            if named:
                self.mongo_database = named
        return self

    @property
    def captured_schemas(self) -> list[str]:
        """``capture_schemas`` as a list (empty: every schema but PostgreSQL's own)."""
        return [x.strip() for x in self.capture_schemas.split(",") if x.strip()]

    @property
    def pg_external(self) -> bool:
        return self.pg_dsn is not None

    @property
    def kafka_external(self) -> bool:
        return self.kafka_bootstrap is not None

    @property
    def connect_external(self) -> bool:
        return self.connect_url is not None

    @property
    def mongo_external(self) -> bool:
        return self.mongo_uri is not None

    def postgres_dsn(self) -> str:
        if self.pg_dsn is not None:
            return self.pg_dsn.get_secret_value()
        return f"postgresql://postgres@127.0.0.1:{self.pg_port}/{self.pg_database}"

    def kafka_servers(self) -> str:
        return self.kafka_bootstrap or f"127.0.0.1:{self.kafka_port}"

    def connect_endpoint(self) -> str:
        return (self.connect_url or f"http://127.0.0.1:{self.connect_port}").rstrip("/")

    def mongodb_uri(self) -> str:
        if self.mongo_uri is not None:
            return self.mongo_uri.get_secret_value()
        return f"mongodb://127.0.0.1:{self.mongo_port}/?directConnection=true"

    def change_topic_pattern(self) -> str:
        """Regex of the Debezium change topics the consumer subscribes to:
        ``<prefix>.<schema>.<table>`` of every captured schema and ``<prefix>.aggregate.*``
        (never ``<prefix>.dlq`` or ``<prefix>.timings``, which have no third part)."""
        prefix = self.topic_prefix.replace(".", r"\.")
        return rf"^{prefix}\.[^.]+\..+"


def uri_database(uri: str) -> str | None:
    """The database a MongoDB connection string names in its path
    (``mongodb://user:pw@host1,host2/<database>?options``), None when it names none."""
    return unquote(urlsplit(uri).path.lstrip("/")) or None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings; a bad value is a one-line ConfigError."""
    try:
        return Settings()
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        raise ConfigError(
            "settings",
            f"EP_{field.upper()}: {err['msg']}",
            f"correct or unset EP_{field.upper()}",
        ) from None

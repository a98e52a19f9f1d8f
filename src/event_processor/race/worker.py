"""The race's own Kafka Connect worker, for the sink connectors it races.

The stack's worker runs Debezium's source connector; a sink connector beside it would
share its JVM, and no per-process CPU figure could tell the two apart. The race starts a
second distributed worker (cluster ``ep-race-connect``, its own storage topics, port
``EP_RACE_CONNECT_PORT``) from the same jar cache, runs one sink at a time on it and
stops it at the end. Against a user's Connect cluster (``EP_CONNECT_URL``) the peers run
there instead, and their CPU is not measured (the worker is not ours to watch).
"""

from __future__ import annotations

from event_processor.settings import Settings
from event_processor.stack import connect, process

SERVICE = "race-connect"
CLUSTER = "ep-race-connect"


def worker_settings(settings: Settings) -> Settings:
    """``settings`` whose Connect endpoint is the race worker (for the connect helpers)."""
    if settings.connect_external:
        return settings
    return settings.model_copy(
        update={"connect_url": f"http://127.0.0.1:{settings.race_connect_port}"}
    )


def start(settings: Settings) -> int | None:
    """Start the worker (or find it running); its PID, None on a user's Connect."""
    if settings.connect_external:
        return None
    record = process.read_pid(settings.state_dir, SERVICE)
    if process.is_ours_alive(record) and record is not None:
        return record.pid
    process.ensure_port_free("race connect worker", settings.race_connect_port,
                             "EP_RACE_CONNECT_PORT")  # fmt: skip
    record = connect.start_worker(settings, SERVICE, CLUSTER, settings.race_connect_port,
                                  settings.race_connect_heap,
                                  settings.state_dir / "provision.log")  # fmt: skip
    return record.pid


def stop(settings: Settings) -> bool:
    """Stop the worker; its cluster's group, empty then, is deleted with it."""
    from event_processor.testing import delete_group

    stopped = process.stop_pid(process.read_pid(settings.state_dir, SERVICE), timeout_s=60)
    if stopped:
        delete_group(settings, CLUSTER)
    return stopped

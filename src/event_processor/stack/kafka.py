"""Apache Kafka 4.x, one node in KRaft combined mode, from the Maven-resolved jars."""

from __future__ import annotations

import base64
import uuid
from pathlib import Path

from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from event_processor.settings import Settings
from event_processor.stack import jvm, process

SERVICE = "kafka"


def _dir(settings: Settings) -> Path:
    return settings.state_dir / "kafka"


def server_properties(settings: Settings) -> str:
    base = _dir(settings)
    p, c = settings.kafka_port, settings.kafka_controller_port
    return "\n".join(
        [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.bootstrap.servers=127.0.0.1:{c}",
            f"listeners=PLAINTEXT://127.0.0.1:{p},CONTROLLER://127.0.0.1:{c}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{p},CONTROLLER://127.0.0.1:{c}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            f"log.dirs={base / 'data'}",
            f"num.partitions={settings.topic_partitions}",
            "default.replication.factor=1",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=3",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            # The first consumer join would otherwise wait 3 s for more members.
            "group.initial.rebalance.delay.ms=0",
            # T2 is the broker's append time, not the producer's create time.
            "log.message.timestamp.type=LogAppendTime",
            "auto.create.topics.enable=true",
            # Two cores: a few threads are plenty and leave CPU to the pipeline.
            "num.network.threads=2",
            "num.io.threads=4",
            "log.retention.hours=24",
            "",
        ]
    )


def _new_cluster_id() -> str:
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()


def _ready(bootstrap: str) -> bool:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
    try:
        admin.list_topics()
    finally:
        admin.close()
    return True


def start(settings: Settings, log_provision: Path) -> str:
    base = _dir(settings)
    if running := process.already_running(settings.state_dir, SERVICE):
        return running
    process.ensure_port_free("kafka", settings.kafka_port, "EP_KAFKA_PORT")
    process.ensure_port_free("kafka", settings.kafka_controller_port, "EP_KAFKA_CONTROLLER_PORT")
    jvm.ensure_jars(settings, log_provision)
    base.mkdir(parents=True, exist_ok=True)
    props = base / "server.properties"
    props.write_text(server_properties(settings))
    log4j = jvm.write_log4j(base / "log4j2.properties")
    log = base / "kafka.log"
    if not (base / "data" / "meta.properties").exists():
        argv = jvm.java_argv(
            settings, "256m", log4j, "kafka.tools.StorageTool",
            "format", "--standalone", "-t", _new_cluster_id(), "-c", str(props),
        )  # fmt: skip
        process.run_checked("kafka", argv, log, f"remove {base / 'data'} and retry")
    argv = jvm.java_argv(settings, settings.kafka_heap, log4j, "kafka.Kafka", str(props))
    record = process.spawn(settings.state_dir, SERVICE, argv, log, str(props))
    process.wait_ready("kafka", lambda: _ready(settings.kafka_servers()), 90, record, log)
    return f"started (pid {record.pid})"


def stop(settings: Settings) -> bool:
    return process.stop_pid(process.read_pid(settings.state_dir, SERVICE), timeout_s=60)


def health(bootstrap: str) -> tuple[bool, str]:
    try:
        _ready(bootstrap)
    except (KafkaError, OSError, ValueError) as exc:
        return False, f"{type(exc).__name__}: {exc}"
    return True, "ready"

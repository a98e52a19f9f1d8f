"""The JVM side of the stack: Kafka, Connect and Debezium jars resolved by Maven.

One pinned POM (resources/pom.xml) resolves everything from Maven Central into a cache
folder keyed by the versions, so a second `stack up` (or a fresh clone) reuses it.
"""

from __future__ import annotations

import hashlib
import shutil
from importlib import resources
from pathlib import Path

from event_processor.errors import StackError
from event_processor.settings import Settings
from event_processor.stack import process

RESOURCES = resources.files("event_processor.stack") / "resources"


def require_java() -> str:
    java = shutil.which("java")
    if java is None:
        raise StackError(
            "kafka", "java is not installed", "apt-get install -y openjdk-17-jre-headless"
        )
    return java


def jar_cache(settings: Settings) -> Path:
    pom = (RESOURCES / "pom.xml").read_bytes()
    digest = hashlib.sha256(pom).hexdigest()[:8]
    name = f"kafka-{settings.kafka_version}_debezium-{settings.debezium_version}_{digest}"
    return settings.cache_dir / "jvm" / name


def ensure_jars(settings: Settings, log: Path) -> Path:
    """Resolve the jars and connector plug-ins once; returns the cache folder."""
    cache = jar_cache(settings)
    if (cache / ".complete").exists():
        return cache
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError("kafka", "Maven (mvn) is not installed", "apt-get install -y maven")
    require_java()
    cache.mkdir(parents=True, exist_ok=True)
    pom = cache / "pom.xml"
    pom.write_bytes((RESOURCES / "pom.xml").read_bytes())
    props = [
        f"-Dkafka.version={settings.kafka_version}",
        f"-Ddebezium.version={settings.debezium_version}",
    ]
    fix = "check that Maven Central is reachable, then retry `event-processor stack up`"
    shutil.rmtree(cache / "lib", ignore_errors=True)
    shutil.rmtree(cache / "plugins", ignore_errors=True)
    process.run_checked(
        "maven",
        [mvn, "-B", "-q", "-f", str(pom), *props, "dependency:copy-dependencies",
         "-DincludeScope=runtime", f"-DoutputDirectory={cache / 'lib'}"],
        log, fix,
    )  # fmt: skip
    process.run_checked(
        "maven",
        [mvn, "-B", "-q", "-f", str(pom), *props, "dependency:unpack@connector-plugins",
         f"-DoutputDirectory={cache / 'plugins'}"],
        log, fix,
    )  # fmt: skip
    process.run_checked(
        "maven",
        [mvn, "-B", "-q", "-f", str(pom), *props, "dependency:copy@sink-plugins",
         f"-DoutputDirectory={cache / 'plugins' / 'mongo-kafka-connect'}"],
        log, fix,
    )  # fmt: skip
    (cache / ".complete").write_text("ok\n")
    return cache


def java_argv(settings: Settings, heap: str, log4j: Path, main_class: str, *args: str) -> list[str]:
    cache = jar_cache(settings)
    return [
        require_java(),
        f"-Xms{heap}",
        f"-Xmx{heap}",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-XX:+ExitOnOutOfMemoryError",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={log4j}",
        "-cp",
        f"{cache / 'lib'}/*",
        main_class,
        *args,
    ]


def write_log4j(path: Path, level: str = "INFO") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "status = warn\n"
        "appender.console.type = Console\n"
        "appender.console.name = STDOUT\n"
        "appender.console.layout.type = PatternLayout\n"
        "appender.console.layout.pattern = [%d] %p %m (%c)%n\n"
        f"rootLogger.level = {level}\n"
        "rootLogger.appenderRef.stdout.ref = STDOUT\n"
        "logger.kafka.name = org.apache.kafka\n"
        "logger.kafka.level = WARN\n"
        "logger.kafkaserver.name = kafka\n"
        "logger.kafkaserver.level = WARN\n"
        "logger.reflections.name = org.reflections\n"
        "logger.reflections.level = ERROR\n"
    )
    return path

"""event-processor: a PostgreSQL -> Debezium -> Kafka -> Python -> MongoDB CDC pipeline
and the performance and integrity suite that measures it."""

__version__ = "0.1.0"

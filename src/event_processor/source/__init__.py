"""The source side: PostgreSQL schema, Faker workload model, open-loop load generator."""

from event_processor.source.generator import GeneratorError, run_load, seed_catalogue
from event_processor.source.schema import DOMAIN_TABLES, apply_schema, truncate_all
from event_processor.source.workload import EVENT_KINDS, PlannedEvent, WorkloadModel

__all__ = [
    "DOMAIN_TABLES",
    "EVENT_KINDS",
    "GeneratorError",
    "PlannedEvent",
    "WorkloadModel",
    "apply_schema",
    "run_load",
    "seed_catalogue",
    "truncate_all",
]

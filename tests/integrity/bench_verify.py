"""Measure how long ``run_verify`` takes for N rows (not collected by pytest).

    EP_... .venv/bin/python tests/integrity/bench_verify.py --reset 10000 100000

For each N: a generic table filled by ONE ``generate_series`` INSERT, captured by
Debezium, applied to the read model with the consumer's own decode/projection code
(``integrity_helpers.load_read_model_offline``), then ``run_verify`` twice; the second
(warm) run is reported. Like the integrity fixtures it RESETS the stack it points at:
every table of schema public is truncated and the read model dropped (hence --reset).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import psycopg2
from integrity_helpers import load_read_model_offline
from kafka import KafkaAdminClient
from pymongo import MongoClient
from test_verify_speed import BENCH_COLUMNS, BENCH_FILL

from event_processor.settings import get_settings
from event_processor.source.schema import apply_schema, truncate_all
from event_processor.verify import run_verify
from event_processor.verify.baseline import reset_read_model


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rows", type=int, nargs="+")
    parser.add_argument("--reset", action="store_true", help="required: the stack is reset")
    parser.add_argument("--json", type=Path, help="write the measurements here")
    args = parser.parse_args()
    if not args.reset:
        parser.error("this truncates every table and drops the read model: pass --reset")
    settings = get_settings()
    results = []
    for rows in args.rows:
        conn = psycopg2.connect(settings.postgres_dsn())
        conn.autocommit = True
        table = f"itest_bench_{uuid.uuid4().hex[:6]}"
        try:
            apply_schema(conn)
            truncate_all(conn)
            reset_read_model(settings)
            with conn.cursor() as cur:
                cur.execute(f"CREATE TABLE public.{table} ({BENCH_COLUMNS})")
                t = time.monotonic()
                cur.execute(BENCH_FILL.format(t=table), (rows,))
                fill_s = time.monotonic() - t
            t = time.monotonic()
            load_read_model_offline(settings, table, rows, timeout_s=1800)
            load_s = time.monotonic() - t
            runs = [run_verify(settings, 300, None) for _ in range(2)]
            for r in runs:
                assert r.ok, "\n".join(r.summary_lines())
            warm = runs[-1].timings
            result = {
                "rows": rows,
                "fill_s": round(fill_s, 2),
                "capture_and_load_s": round(load_s, 2),
                "cold_total_s": round(runs[0].timings["total_s"], 2),
                **{k: round(v, 2) for k, v in warm.items()},
            }
            results.append(result)
            print(json.dumps(result), flush=True)
        finally:
            with conn.cursor() as cur:
                cur.execute(f"DROP TABLE IF EXISTS public.{table}")
            conn.close()
            admin = KafkaAdminClient(bootstrap_servers=settings.kafka_servers())
            topic = f"{settings.topic_prefix}.public.{table}"
            if topic in admin.list_topics():
                admin.delete_topics([topic], raise_errors=False)
            admin.close()
            client: MongoClient[dict[str, object]] = MongoClient(settings.mongodb_uri())
            client[settings.mongo_database].drop_collection(table)
            client.close()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

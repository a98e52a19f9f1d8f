"""Every column type of the domain and of generic tables, values at their edges."""

from __future__ import annotations

from typing import Any

import pytest

from event_processor.settings import Settings
from tests.integrity.integrity_helpers import assert_verified

pytestmark = pytest.mark.integrity

TYPE_ZOO = """
    id int PRIMARY KEY,
    small int2, big int8, n_unc numeric, n_s numeric(20,8), mon money, r real, d float8,
    flag bool, label text, vc varchar(10), ch char(4),
    ts0 timestamp(0), ts3 timestamp(3), ts6 timestamp,
    tz0 timestamptz(0), tz3 timestamptz(3), tz6 timestamptz,
    dt date, t0 time(0), t6 time, ttz timetz, iv interval,
    j json, jb jsonb, u uuid, blob bytea, mood {mood},
    inet_ inet, cidr_ cidr, mac macaddr, bit1 bit(1), bits bit(10), vbits varbit,
    pt point, rng int4range, xm xml, tsv tsvector, oid_ oid,
    ta text[], ia int[], na numeric[], fa float8[], ra real[], ba bool[], da date[],
    tza timestamptz[], tsa timestamp[], ua uuid[], ja jsonb[], ma {mood}[]
"""

ROW_EDGES = """
INSERT INTO {t} VALUES (1,
    -32768, 9223372036854775807, 0.00000001, 12345678901.12345678, 1234.56, 1.1754944e-38,
    0.1, true, 'zoë 東京 🚀 "q" \\ back', 'ten chars!', 'ab',
    '2024-02-29 23:59:59', '2024-02-29 23:59:59.999', '1969-12-31 23:59:59.999999',
    '2024-02-29 23:59:59.4+05:30', '2024-02-29 23:59:59.9991+05:30',
    '2024-02-29 23:59:59.999999+05:30',
    '1999-12-31', '13:14:15', '23:59:59.999999', '10:15:00.5-01:30',
    '1 year 2 mons -3 days 04:05:06.78',
    '{{"b": 1, "a": [1.50, 2, null, true], "s": "x\\u00e9"}}',
    '{{"nested": {{"list": [1, "two", null], "empty": {{}}}}, "n": 1.5, "big": 9007199254740993}}',
    'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', '\\x00ff10', 'happy',
    '192.168.0.1/24', '10.0.0.0/8', '08:00:2b:01:02:03', B'1', B'1010101010', B'101',
    '(1.5,-2)', '[1,5)', '<a>1</a>', 'hello world', 42,
    '{{a,NULL,"c d",""}}', '{{1,2,-3}}', '{{1.50,NULL,-3}}', '{{1.5,-0.25}}',
    '{{0.1,3.4028235e38}}',
    '{{t,f,NULL}}', '{{2024-01-01,1900-02-28}}', '{{"2024-01-02 03:04:05.123456+00"}}',
    '{{"2024-01-02 03:04:05.5"}}', '{{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}}',
    ARRAY['{{"x": 1}}'::jsonb, '{{"y": [1, {{"z": []}}]}}'::jsonb], '{{sad,happy}}')
"""

ROW_SPECIALS = """
INSERT INTO {t} (id, small, big, n_unc, n_s, r, d, label, vc, ch, tz6, ts6, dt, t6, ttz, iv,
                 j, jb, blob, bits, ta, ia, fa, ra, ja)
VALUES (3, 0, -9223372036854775808, 'NaN', -0.00000001, 'Infinity', '-Infinity', '', '', '',
        '1900-01-01 00:00:00+00', '0001-01-01 00:00:00', '0001-01-01', '00:00:00', '00:00:00+14',
        '-1 year -1 mons -1 sec', '[]', '{{}}', '', B'0000000000', '{{}}', '{{}}', '{{NaN}}',
        '{{-0.0}}', '{{}}')
"""


def test_every_column_type_round_trips(
    ep_stack: Settings,
    pg_conn: Any,
    clean_state: Any,
    scratch_tables: Any,
    start_consumer: Any,
) -> None:
    with pg_conn.cursor() as cur:
        mood = "itest_mood"
        cur.execute(f"DROP TYPE IF EXISTS {mood}")
        cur.execute(f"CREATE TYPE {mood} AS ENUM ('sad', 'happy')")
    zoo = scratch_tables("zoo", TYPE_ZOO.format(mood=mood))
    # Primary key in another order than the columns, of several types; a numeric key.
    composite = scratch_tables("composite",
                               "a int, b text, c date, v text, PRIMARY KEY (c, a, b)")  # fmt: skip
    numkey = scratch_tables("numkey", "id numeric(10,2) PRIMARY KEY, v text")
    # No primary key: one document per distinct content, counted copies.
    keyless = scratch_tables("keyless", "note text, n int, r real, tags text[]")
    start_consumer("types")
    with pg_conn.cursor() as cur:
        cur.execute(f"ALTER TABLE {keyless} REPLICA IDENTITY FULL")
        cur.execute(ROW_EDGES.format(t=zoo))
        cur.execute(f"INSERT INTO {zoo} (id) VALUES (2)")  # every other column NULL
        cur.execute(ROW_SPECIALS.format(t=zoo))
        cur.execute(f"INSERT INTO {zoo} (id, label) VALUES (4, 'to be deleted')")
        cur.execute(f"UPDATE {zoo} SET label = 'changed', n_s = -0.00000001, jb = jb || "
                    "'{\"added\": [1]}', ta = ta || 'more'::text, tz6 = tz6 + interval "
                    "'1 microsecond' WHERE id = 1")  # fmt: skip
        cur.execute(f"UPDATE {zoo} SET mood = 'sad', r = 2.5, d = 1e308 WHERE id = 2")
        cur.execute(f"DELETE FROM {zoo} WHERE id = 4")

        cur.execute(f"INSERT INTO {composite} VALUES (1, 'x', '2024-01-01', 'one'), "
                    "(2, 'y z', '2024-01-02', 'two'), (3, 'w', '2024-01-03', 'three')")  # fmt: skip
        cur.execute(f"UPDATE {composite} SET v = 'uno' WHERE a = 1")
        cur.execute(f"DELETE FROM {composite} WHERE a = 3")

        cur.execute(f"INSERT INTO {numkey} VALUES (1.50, 'a'), (-2.00, 'b'), (3, 'c')")
        cur.execute(f"UPDATE {numkey} SET v = 'B' WHERE id = -2")

        cur.execute(f"INSERT INTO {keyless} VALUES ('dup', 1, 0.1, '{{a}}'), "
                    "('dup', 1, 0.1, '{a}'), ('dup', 1, 0.1, '{a}'), ('single', 2, NULL, NULL), "
                    "(NULL, NULL, NULL, NULL), ('gone', 3, 1.5, '{}')")  # fmt: skip
        cur.execute(f"UPDATE {keyless} SET n = 10 WHERE ctid = "
                    f"(SELECT ctid FROM {keyless} WHERE note = 'dup' LIMIT 1)")  # fmt: skip
        cur.execute(f"DELETE FROM {keyless} WHERE note = 'gone'")
        cur.execute(f"INSERT INTO {keyless} VALUES ('gone', 3, 1.5, '{{}}')")  # back again

    with pg_conn.cursor() as cur:
        # The domain tables, with values at their edges, NULLs and updates.
        cur.execute(
            "INSERT INTO customers (id, email, full_name, phone, address, tier, is_active, "
            "created_at, updated_at) OVERRIDING SYSTEM VALUE VALUES "
            "(1, 'zoë@例え.jp', 'Zoë 🚀 O''Brien', NULL, NULL, 'platinum', false, "
            " '2024-02-29 23:59:59.999999+05:30', '1970-01-01 00:00:00+00'), "
            "(2, 'b@x.org', '', '+1', '{\"city\": \"Zürich\", \"geo\": [47.37, 8.54], "
            ' "flags": {"a": true, "b": null}, "n": 12345678901234}\', \'bronze\', true, '
            " '1900-01-01 00:00:00+00', now())"
        )
        cur.execute(
            "INSERT INTO products (id, sku, name, price, tags, attributes, in_stock, created_at) "
            "OVERRIDING SYSTEM VALUE VALUES "
            "(1, 'S-1', 'Zero', 0.00, '{}', NULL, false, '2024-01-01 00:00:00.000001+00'), "
            "(2, 'S-2', 'Max ☕', 9999999999.99, '{\"a b\",NULL,ü}', "
            ' \'{"w": 0.1, "big": 9007199254740993, "l": [1, {"m": []}]}\', true, now())'
        )
        cur.execute(
            "INSERT INTO orders (id, customer_id, status, total, currency, notes, placed_at) "
            "OVERRIDING SYSTEM VALUE VALUES (1, 1, 'placed', -1.50, 'EU', '', "
            "'2024-12-31 23:59:59.5-12:00'), (2, 2, 'delivered', 0, 'USD', NULL, now())"
        )
        cur.execute(
            "INSERT INTO order_items (id, order_id, product_id, quantity, unit_price) "
            "OVERRIDING SYSTEM VALUE VALUES (1, 1, 1, 2147483647, 0.01), (2, 1, 2, 1, 9.99), "
            "(3, 2, 2, 3, 1.00)"
        )
        cur.execute(
            "INSERT INTO payments (id, order_id, amount, method, captured_at, reference) "
            "OVERRIDING SYSTEM VALUE VALUES (1, 1, 123456789012.34, 'card', "
            "'2024-06-30 12:00:00+00', 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11')"
        )
        cur.execute("UPDATE customers SET phone = '+44 20', address = '{\"moved\": true}' "
                    "WHERE id = 1")  # fmt: skip
        cur.execute("UPDATE products SET tags = '{}', attributes = '{}' WHERE id = 2")
        cur.execute("UPDATE order_items SET quantity = 7, unit_price = 123.45 WHERE id = 2")
        cur.execute("DELETE FROM order_items WHERE id = 3")
    assert_verified(ep_stack)


TOAST_FILL = """
INSERT INTO {t} SELECT 1, 0, string_agg(md5(g::text || random()::text), ''),
    jsonb_build_object('blob', string_agg(md5(random()::text), '')),
    ARRAY[string_agg(md5(random()::text), '')], decode(string_agg(md5(random()::text), ''), 'hex')
FROM generate_series(1, 400) AS g
"""


def test_values_stored_out_of_line_survive_updates_of_other_columns(
    ep_stack: Settings, pg_conn: Any, clean_state: Any, scratch_tables: Any, start_consumer: Any
) -> None:
    # Big incompressible values: PostgreSQL stores them out of line (TOAST), and an
    # UPDATE that does not touch them does not write them to the WAL again.
    toast = scratch_tables("toast", "id int PRIMARY KEY, small int, big text, doc jsonb, "
                           "arr text[], b bytea")  # fmt: skip
    start_consumer("toast")
    with pg_conn.cursor() as cur:
        cur.execute(TOAST_FILL.format(t=toast))
        cur.execute(f"UPDATE {toast} SET small = 1 WHERE id = 1")
    assert_verified(ep_stack)


def test_primary_key_update_moves_the_document(
    ep_stack: Settings, pg_conn: Any, clean_state: Any, scratch_tables: Any, start_consumer: Any
) -> None:
    moved = scratch_tables("moved", "id int PRIMARY KEY, v text")
    start_consumer("pk-move")
    with pg_conn.cursor() as cur:
        cur.execute(f"INSERT INTO {moved} SELECT g, 'v' || g FROM generate_series(1, 6) AS g")
        # Six keys over three partitions: some old and new keys share a partition.
        cur.execute(f"UPDATE {moved} SET id = id + 100")
    assert_verified(ep_stack)

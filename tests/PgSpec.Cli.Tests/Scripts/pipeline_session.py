"""Queries in psycopg 3's pipeline mode: several statements sent before any answer is read.

Usage: pipeline_session.py CONNINFO

Whatever libpq psycopg loads is used (LD_LIBRARY_PATH and PSYCOPG_IMPL=python choose libpq 18,
whose CONNINFO may then ask for max_protocol_version=3.2). Prints one line per result, then
"done"; exit code 3 means the environment is wrong (no psycopg), with the reason on stderr.
"""

import sys

try:
    import psycopg
except ImportError as e:
    print(f"psycopg 3 is not importable by {sys.executable}: {e} "
          "(Debian: apt-get install -y python3-psycopg)", file=sys.stderr)
    sys.exit(3)

with psycopg.connect(sys.argv[1], autocommit=True) as conn:
    print(f"libpq {psycopg.pq.version() // 10000}")

    # One pipeline: Parse/Bind/Describe/Execute of each statement, one Sync at its end.
    with conn.pipeline():
        conn.execute("CREATE TEMP TABLE p (id int PRIMARY KEY, v text)")
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO p VALUES (%s, %s)", [(i, f"v{i}") for i in range(1, 6)])
        rows = conn.execute("SELECT id, v FROM p WHERE id >= %s ORDER BY id", (3,))
        count = conn.execute("SELECT count(*), %s::text, %s::int FROM p", ("text", None))
        # A named prepared statement (psycopg names it _pg3_N).
        named = conn.execute("SELECT v FROM p WHERE id = %s", (2,), prepare=True)
        again = conn.execute("SELECT v FROM p WHERE id = %s", (4,), prepare=True)
    print("rows", rows.fetchall())
    print("count", count.fetchone())
    print("named", named.fetchone(), again.fetchone())

    # An error inside a pipeline: what follows it in the same batch is skipped by the server.
    try:
        with conn.pipeline():
            conn.execute("SELECT 1 / %s", (0,))
            conn.execute("SELECT 'skipped'")
    except psycopg.errors.DivisionByZero as e:
        print("error", e.sqlstate)

print("done")

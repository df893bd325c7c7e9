"""psycopg 3 against pgspec serve: pipeline mode, binary parameters and results, COPY both ways,
transactions, an error's SQLSTATE.

Usage: serve_psycopg.py CONNINFO TABLE. Prints one JSON object.
"""

import json
import sys

import psycopg

conninfo, table = sys.argv[1:3]
out = {}
with psycopg.connect(conninfo) as conn:
    out["ssl"] = conn.pgconn.ssl_in_use
    conn.execute(f"CREATE TABLE {table} (id int8, name text, data bytea, score float8, flag bool)")
    conn.commit()

    # Pipeline mode: the statements go out together, their results come back in order.
    with conn.pipeline():
        conn.execute(f"INSERT INTO {table} VALUES (%s, %s, %s, %s, %s)", (1, "one", b"\x00\x01", 1.5, True))
        conn.execute(f"INSERT INTO {table} VALUES (%s, %s, %s, %s, %s)", (2, "two", None, None, False))
        counted = conn.execute(f"SELECT count(*) FROM {table}")
        # %b: the values go in binary format.
        conn.execute(f"INSERT INTO {table} VALUES (%b, %b, %b, %b, %b)", (3, "three", b"", -2.25, None))
    out["pipelineCount"] = counted.fetchone()[0]
    conn.commit()

    # binary=True: the results come in binary format.
    cur = conn.cursor()
    cur.execute(f"SELECT id, name, data, score, flag FROM {table} WHERE id >= %b ORDER BY id", (1,), binary=True)
    out["binaryFormats"] = [cur.pgresult.fformat(i) for i in range(cur.pgresult.nfields)]
    out["binary"] = [[r[0], r[1], None if r[2] is None else bytes(r[2]).hex(), r[3], r[4]] for r in cur.fetchall()]

    with cur.copy(f"COPY {table} (id, name) FROM STDIN") as copy:
        copy.write_row((4, "four\ttab"))
        copy.write_row((5, None))
    conn.commit()

    with conn.transaction():
        conn.execute(f"INSERT INTO {table} (id, name) VALUES (6, 'committed')")
    try:
        with conn.transaction():
            conn.execute(f"INSERT INTO {table} (id, name) VALUES (7, 'rolled back')")
            raise RuntimeError("roll back")
    except RuntimeError:
        pass

    try:
        conn.execute("SELECT * FROM no_such_table")
    except psycopg.Error as e:
        out["error"] = e.sqlstate
    conn.rollback()

    with cur.copy(f"COPY (SELECT id, name FROM {table} ORDER BY id) TO STDOUT") as copy:
        copy.set_types(["int8", "text"])
        out["copyOut"] = [list(row) for row in copy.rows()]
print(json.dumps(out))

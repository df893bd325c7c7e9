"""A short session through libpq 18, traced by libpq's own PQtrace in regress mode.

Usage: libpq_session.py HOST PORT USER PASSWORD full|login TRACE_FILE

"full" runs queries of every kind; "login" only logs in, runs one query and leaves (for the
authentication exchanges). An empty PASSWORD sends none.

Run with PSYCOPG_IMPL=python and LD_LIBRARY_PATH pointing at libpq 18. Exit code 3 means the
environment is wrong (no psycopg, wrong libpq), with the reason on stderr.
"""

import ctypes
import select
import sys

try:
    import psycopg
    from psycopg import pq
except ImportError as e:
    print(f"psycopg 3 is not importable by {sys.executable}: {e} "
          "(Debian: apt-get install -y python3-psycopg)", file=sys.stderr)
    sys.exit(3)

if pq.__impl__ != "python":
    print(f"psycopg uses its '{pq.__impl__}' implementation; set PSYCOPG_IMPL=python", file=sys.stderr)
    sys.exit(3)
if not 180000 <= pq.version() < 190000:
    print(f"psycopg loaded libpq {pq.version()}, not libpq 18; check LD_LIBRARY_PATH", file=sys.stderr)
    sys.exit(3)

host, port, user, password, mode, trace_path = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]

trace_file = open(trace_path, "w")

# Trace from the very first packet: start the connection by hand, trace, then poll.
conninfo = (f"host={host} port={port} user={user} dbname=postgres sslmode=disable gssencmode=disable "
            f"application_name=pgspec")
if password:
    conninfo += f" password={password}"
pgconn = pq.PGconn.connect_start(conninfo.encode())
pgconn.trace(trace_file.fileno())
pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
while True:
    status = pgconn.connect_poll()
    if status == pq.PollingStatus.OK:
        break
    if status == pq.PollingStatus.FAILED:
        print("connection failed: " + pgconn.error_message.decode(errors="replace"), file=sys.stderr)
        sys.exit(1)
    if status == pq.PollingStatus.READING:
        select.select([pgconn.socket], [], [])
    else:
        select.select([], [pgconn.socket], [])

conn = psycopg.Connection(pgconn)
conn.autocommit = True
cur = conn.cursor()

# Simple queries, a notice, an error.
cur.execute("SELECT 1 AS a, 'x' AS b")
cur.fetchall()
if mode == "login":
    conn.close()
    ctypes.CDLL(None).fflush(None)
    trace_file.close()
    sys.exit(0)

cur.execute("DO $$ BEGIN RAISE NOTICE 'x'; END $$")
try:
    cur.execute("SELECT 1/0")
except psycopg.errors.DivisionByZero:
    pass

# The extended query protocol, with parameters and a NULL.
cur.execute("SELECT %s::int + 1, %s::text, %s::text", (41, "hello", None))
cur.fetchall()

# COPY both ways.
with cur.copy("COPY (SELECT g, 'r' || g FROM generate_series(1, 3) g) TO STDOUT") as copy:
    for _ in copy:
        pass
cur.execute("CREATE TEMP TABLE t (a int, b text)")
with cur.copy("COPY t FROM STDIN") as copy:
    copy.write_row((1, "one"))
    copy.write_row((2, None))

# LISTEN/NOTIFY: the notification arrives with the NOTIFY's own response.
cur.execute("LISTEN ch")
cur.execute("NOTIFY ch, 'payload'")

conn.close()
# libpq wrote through a C stdio stream of its own: flush it before the process ends.
ctypes.CDLL(None).fflush(None)
trace_file.close()

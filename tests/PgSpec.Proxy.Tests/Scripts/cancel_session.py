"""Runs a long query through a connection and cancels it from another thread.

Usage: cancel_session.py CONNINFO. Prints "cancelled" when the server cancelled the query.
"""

import sys
import threading
import time

import psycopg

conn = psycopg.connect(sys.argv[1], autocommit=True)
pid = conn.info.backend_pid


def cancel_when_running():
    # Wait until the query runs on the server (its backend is active on it), then cancel it: a
    # cancel that arrives before the query has started is lost.
    probe = psycopg.connect(sys.argv[1], autocommit=True)
    deadline = time.monotonic() + 60
    while True:
        running = probe.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = %s AND query = 'SELECT pg_sleep(60)' AND state = 'active'",
            (pid,),
        ).fetchone()[0]
        if running:
            conn.cancel()
            break
        if time.monotonic() > deadline:
            print("the query never showed as running on backend %d" % pid, file=sys.stderr)
            break
        time.sleep(0.02)
    probe.close()


thread = threading.Thread(target=cancel_when_running)
thread.start()
try:
    conn.execute("SELECT pg_sleep(60)")
    print("not cancelled")
except psycopg.errors.QueryCanceled:
    print("cancelled")
thread.join()
conn.close()

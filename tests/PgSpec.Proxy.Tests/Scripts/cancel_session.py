"""Runs a long query through a connection and cancels it from another thread.

Usage: cancel_session.py CONNINFO. Prints "cancelled" when the server cancelled the query.
"""

import sys
import threading
import time

import psycopg

conn = psycopg.connect(sys.argv[1], autocommit=True)


def cancel_when_running():
    # Wait until the query is running on the server, then cancel it.
    probe = psycopg.connect(sys.argv[1], autocommit=True)
    for _ in range(600):
        running = probe.execute("SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(60)' AND state = 'active'").fetchone()[0]
        if running:
            conn.cancel()
            break
        time.sleep(0.05)
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

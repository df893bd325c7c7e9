"""Connects with a libpq connection string, runs one query and prints its first value.

Usage: query.py CONNINFO SQL
"""

import sys

import psycopg

with psycopg.connect(sys.argv[1], autocommit=True) as conn:
    print(conn.execute(sys.argv[2]).fetchone()[0])

"""libpq 18 (ctypes) against pgspec serve: protocol 3.2, its long cancel key, and a cancelled query.

Usage: serve_libpq18_cancel.py LIBPQ_DIR CONNINFO SERVER_TRACE legacy|blocking

Runs SELECT pg_sleep(60), waits until the server's --trace file shows the query arrived, and
cancels it with PQcancel (legacy) or PQcancelBlocking (blocking; encrypted when the connection
is). Prints one JSON object: the protocol version, the backend's process id, what the cancel
returned, and the SQLSTATE each result of the cancelled query ended with.
"""

import ctypes
import json
import os
import sys
import time

libdir, conninfo, server_trace, how = sys.argv[1:5]
pq = ctypes.CDLL(os.path.join(libdir, "libpq.so.5"))

pq.PQconnectdb.restype = ctypes.c_void_p
pq.PQconnectdb.argtypes = [ctypes.c_char_p]
for name in ("PQstatus", "PQprotocolVersion", "PQfullProtocolVersion", "PQbackendPID", "PQsendQuery", "PQresultStatus", "PQsslInUse"):
    getattr(pq, name).restype = ctypes.c_int
pq.PQstatus.argtypes = [ctypes.c_void_p]
pq.PQprotocolVersion.argtypes = [ctypes.c_void_p]
pq.PQfullProtocolVersion.argtypes = [ctypes.c_void_p]
pq.PQbackendPID.argtypes = [ctypes.c_void_p]
pq.PQsslInUse.argtypes = [ctypes.c_void_p]
pq.PQerrorMessage.restype = ctypes.c_char_p
pq.PQerrorMessage.argtypes = [ctypes.c_void_p]
pq.PQsendQuery.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
pq.PQgetResult.restype = ctypes.c_void_p
pq.PQgetResult.argtypes = [ctypes.c_void_p]
pq.PQresultStatus.argtypes = [ctypes.c_void_p]
pq.PQresultErrorField.restype = ctypes.c_char_p
pq.PQresultErrorField.argtypes = [ctypes.c_void_p, ctypes.c_int]
pq.PQclear.argtypes = [ctypes.c_void_p]
pq.PQfinish.argtypes = [ctypes.c_void_p]
pq.PQgetCancel.restype = ctypes.c_void_p
pq.PQgetCancel.argtypes = [ctypes.c_void_p]
pq.PQcancel.restype = ctypes.c_int
pq.PQcancel.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
pq.PQfreeCancel.argtypes = [ctypes.c_void_p]
pq.PQcancelCreate.restype = ctypes.c_void_p
pq.PQcancelCreate.argtypes = [ctypes.c_void_p]
pq.PQcancelBlocking.restype = ctypes.c_int
pq.PQcancelBlocking.argtypes = [ctypes.c_void_p]
pq.PQcancelErrorMessage.restype = ctypes.c_char_p
pq.PQcancelErrorMessage.argtypes = [ctypes.c_void_p]
pq.PQcancelFinish.argtypes = [ctypes.c_void_p]

CONNECTION_OK = 0
PGRES_FATAL_ERROR = 7
PG_DIAG_SQLSTATE = ord("C")

conn = pq.PQconnectdb(conninfo.encode())
if pq.PQstatus(conn) != CONNECTION_OK:
    sys.exit("connection failed: " + pq.PQerrorMessage(conn).decode())

out = {
    "protocol": pq.PQprotocolVersion(conn),
    "fullProtocol": pq.PQfullProtocolVersion(conn),
    "pid": pq.PQbackendPID(conn),
    "ssl": pq.PQsslInUse(conn),
}

if not pq.PQsendQuery(conn, b"SELECT pg_sleep(60)"):
    sys.exit("PQsendQuery failed: " + pq.PQerrorMessage(conn).decode())

# The query runs once the server has received it: its trace shows the Query message of this backend.
wanted = "%d\tF\t" % out["pid"]
deadline = time.monotonic() + 60
while True:
    with open(server_trace, encoding="utf-8", errors="replace") as f:
        if any(line.startswith(wanted) and "Query" in line and "pg_sleep(60)" in line for line in f):
            break
    if time.monotonic() > deadline:
        sys.exit("the server's trace never showed the query")
    time.sleep(0.02)

started = time.monotonic()
if how == "legacy":
    cancel = pq.PQgetCancel(conn)
    error = ctypes.create_string_buffer(256)
    out["cancelSent"] = pq.PQcancel(cancel, error, len(error))
    out["cancelError"] = error.value.decode()
    pq.PQfreeCancel(cancel)
else:
    cancel = pq.PQcancelCreate(conn)
    out["cancelSent"] = pq.PQcancelBlocking(cancel)
    out["cancelError"] = pq.PQcancelErrorMessage(cancel).decode()
    pq.PQcancelFinish(cancel)

states = []
while True:
    res = pq.PQgetResult(conn)
    if not res:
        break
    status = pq.PQresultStatus(res)
    state = pq.PQresultErrorField(res, PG_DIAG_SQLSTATE)
    states.append(state.decode() if state else "status %d" % status)
    pq.PQclear(res)
out["results"] = states
out["secondsAfterCancel"] = round(time.monotonic() - started, 1)

pq.PQfinish(conn)
print(json.dumps(out))

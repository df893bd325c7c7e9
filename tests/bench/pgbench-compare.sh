#!/usr/bin/env bash
# Compares `pgbench -S` throughput against one PostgreSQL server: directly, through
# `pgspec proxy` (no trace) and through pgbouncer (session pooling), in one run.
#
# Usage: tests/bench/pgbench-compare.sh
# Environment: DURATION (seconds per run, 30), CLIENTS (8), THREADS (2), SCALE (10),
#   PGBIN (the PostgreSQL bin folder; default: the newest /usr/lib/postgresql/*/bin),
#   PGSPEC_DLL (a built pgspec.dll; default: built here in Release).
# Needs: PostgreSQL server binaries, pgbench, pgbouncer (Debian: postgresql, pgbouncer), dotnet.
# As root, the server and pgbouncer run as the user postgres.
set -euo pipefail

DURATION=${DURATION:-30}
CLIENTS=${CLIENTS:-8}
THREADS=${THREADS:-2}
SCALE=${SCALE:-10}
PGBIN=${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)}
repo=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
base=$((20000 + RANDOM % 20000))
pg_port=$base
proxy_port=$((base + 1))
bouncer_port=$((base + 2))
proxy_pid=""

as_postgres() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

cleanup() {
    [ -n "$proxy_pid" ] && kill -TERM "$proxy_pid" 2>/dev/null && wait "$proxy_pid" 2>/dev/null || true
    [ -f "$work/pgbouncer.pid" ] && kill -TERM "$(cat "$work/pgbouncer.pid")" 2>/dev/null || true
    as_postgres "$PGBIN/pg_ctl" -D "$work/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

wait_port() {
    for _ in $(seq 1 200); do
        if (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "nothing listens on port $1" >&2
    return 1
}

if [ "$(id -u)" = 0 ]; then chown postgres "$work"; fi

echo "server: $("$PGBIN/postgres" --version)" >&2
as_postgres "$PGBIN/initdb" -D "$work/data" -U postgres --auth=trust --no-sync -E UTF8 --locale=C >/dev/null
as_postgres "$PGBIN/pg_ctl" -D "$work/data" -l "$work/postgres.log" -w \
    -o "-p $pg_port -k $work -c listen_addresses=127.0.0.1 -c max_connections=100 -c fsync=off" start >/dev/null
"$PGBIN/pgbench" -i -q -s "$SCALE" -h 127.0.0.1 -p "$pg_port" -U postgres postgres >/dev/null 2>&1

if [ -z "${PGSPEC_DLL:-}" ]; then
    dotnet build "$repo/src/PgSpec.Cli/PgSpec.Cli.csproj" -c Release -o "$work/pgspec" -nologo -v quiet >/dev/null
    PGSPEC_DLL="$work/pgspec/pgspec.dll"
fi
dotnet "$PGSPEC_DLL" proxy --listen "127.0.0.1:$proxy_port" --upstream "127.0.0.1:$pg_port" --quiet 2>"$work/proxy.log" &
proxy_pid=$!

cat > "$work/pgbouncer.ini" <<INI
[databases]
postgres = host=127.0.0.1 port=$pg_port dbname=postgres
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $bouncer_port
unix_socket_dir =
auth_type = trust
auth_file = $work/userlist.txt
pool_mode = session
max_client_conn = 200
default_pool_size = 50
logfile = $work/pgbouncer.log
pidfile = $work/pgbouncer.pid
INI
echo '"postgres" ""' > "$work/userlist.txt"
if [ "$(id -u)" = 0 ]; then chown postgres "$work/pgbouncer.ini" "$work/userlist.txt"; fi
as_postgres pgbouncer -d "$work/pgbouncer.ini"

wait_port "$proxy_port"
wait_port "$bouncer_port"

tps() {
    "$PGBIN/pgbench" -n -S -c "$CLIENTS" -j "$THREADS" -T "$1" -h 127.0.0.1 -p "$2" -U postgres postgres 2>/dev/null \
        | awk '/^tps = / { print $3; exit }'
}

# Warm up all three (the proxy's JIT, the server's caches), then measure.
for port in "$pg_port" "$proxy_port" "$bouncer_port"; do tps 3 "$port" >/dev/null; done
direct=$(tps "$DURATION" "$pg_port")
proxy=$(tps "$DURATION" "$proxy_port")
bouncer=$(tps "$DURATION" "$bouncer_port")

echo "pgbench -S -c $CLIENTS -j $THREADS -T $DURATION, scale $SCALE, $(nproc) CPUs"
awk -v d="$direct" -v p="$proxy" -v b="$bouncer" 'BEGIN {
    printf "%-22s %12s %10s\n", "path", "tps", "vs direct"
    printf "%-22s %12.0f %10.2f\n", "direct", d, 1
    printf "%-22s %12.0f %10.2f\n", "pgspec proxy", p, p / d
    printf "%-22s %12.0f %10.2f\n", "pgbouncer (session)", b, b / d
    printf "pgspec proxy / pgbouncer: %.2f\n", p / b
}'

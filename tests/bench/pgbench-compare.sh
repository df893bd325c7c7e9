#!/usr/bin/env bash
# Compares `pgbench -S` throughput against one PostgreSQL server: directly, through
# `pgspec proxy` (no trace) and through pgbouncer (session pooling), in one run.
#
# Also prints the CPU time the proxy and pgbouncer spend per transaction (user + system, from
# /proc), which depends less on what else the machine runs than throughput does.
#
# Usage: tests/bench/pgbench-compare.sh
# Environment: DURATION (seconds per run, 30), ROUNDS (1; the three runs repeated in turn and
#   averaged), CLIENTS (8), THREADS (2), SCALE (10),
#   PGBIN (the PostgreSQL bin folder; default: the newest /usr/lib/postgresql/*/bin),
#   PGSPEC_DLL (a built pgspec.dll; default: built here in Release).
# Needs: PostgreSQL server binaries, pgbench, pgbouncer (Debian: postgresql, pgbouncer), dotnet.
# As root, the server and pgbouncer run as the user postgres.
set -euo pipefail

DURATION=${DURATION:-30}
CLIENTS=${CLIENTS:-8}
THREADS=${THREADS:-2}
SCALE=${SCALE:-10}
# shellcheck source=tests/bench/lib.sh
. "$(dirname "$0")/lib.sh"
proxy_port=$((base + 1))
bouncer_port=$((base + 2))

start_server "$SCALE"
PGSPEC_DLL=$(pgspec_dll)
dotnet "$PGSPEC_DLL" proxy --listen "127.0.0.1:$proxy_port" --upstream "127.0.0.1:$pg_port" --quiet 2>"$work/proxy.log" &
proxy_pid=$!
on_exit 'kill -TERM $proxy_pid 2>/dev/null && wait $proxy_pid 2>/dev/null'

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
on_exit '[ -f "$work/pgbouncer.pid" ] && kill -TERM "$(cat "$work/pgbouncer.pid")"'

wait_port "$proxy_port"
wait_port "$bouncer_port"

ROUNDS=${ROUNDS:-1}
tick_us=$((1000000 / $(getconf CLK_TCK)))

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# run PORT SECONDS [PID]: prints "tps transactions cpu_us" (the CPU time PID used during the run).
run() {
    local before=0 after=0 out
    [ -n "${3:-}" ] && before=$(cpu_ticks "$3")
    out=$("$PGBIN/pgbench" -n -S -c "$CLIENTS" -j "$THREADS" -T "$2" -h 127.0.0.1 -p "$1" -U postgres postgres 2>/dev/null)
    [ -n "${3:-}" ] && after=$(cpu_ticks "$3")
    echo "$out" | awk -v cpu=$(((after - before) * tick_us)) '
        /^tps = / { tps = $3 }
        /number of transactions actually processed/ { split($NF, t, "/"); tx = t[1] }
        END { print tps, tx, cpu }'
}

bouncer_pid=$(cat "$work/pgbouncer.pid")

# Warm up all three (the proxy's JIT, the server's caches), then measure, ROUNDS times in turn.
for port in "$pg_port" "$proxy_port" "$bouncer_port"; do run "$port" 3 >/dev/null; done
: > "$work/results"
for _ in $(seq 1 "$ROUNDS"); do
    echo "direct $(run "$pg_port" "$DURATION")" >> "$work/results"
    echo "proxy $(run "$proxy_port" "$DURATION" "$proxy_pid")" >> "$work/results"
    echo "bouncer $(run "$bouncer_port" "$DURATION" "$bouncer_pid")" >> "$work/results"
done

echo "pgbench -S -c $CLIENTS -j $THREADS -T $DURATION, scale $SCALE, $(nproc) CPUs, $ROUNDS round(s)"
awk '
    { tps[$1] += $2; tx[$1] += $3; cpu[$1] += $4; n[$1]++ }
    END {
        d = tps["direct"] / n["direct"]; p = tps["proxy"] / n["proxy"]; b = tps["bouncer"] / n["bouncer"]
        printf "%-22s %12s %10s %22s\n", "path", "tps", "vs direct", "its CPU per transaction"
        printf "%-22s %12.0f %10.2f %22s\n", "direct", d, 1, "-"
        printf "%-22s %12.0f %10.2f %19.1f us\n", "pgspec proxy", p, p / d, cpu["proxy"] / tx["proxy"]
        printf "%-22s %12.0f %10.2f %19.1f us\n", "pgbouncer (session)", b, b / d, cpu["bouncer"] / tx["bouncer"]
        printf "pgspec proxy / pgbouncer: %.2f\n", p / b
    }' "$work/results"

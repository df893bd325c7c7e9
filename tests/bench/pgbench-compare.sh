#!/usr/bin/env bash
# Compares `pgbench -S` throughput against one PostgreSQL server: directly, through
# `pgspec proxy` (no trace) and through pgbouncer (session pooling), in one run.
#
# Each round runs the three for DURATION seconds each, in an order that rotates from round to
# round. Printed per run: tps, the CPU time the proxy or pgbouncer used per transaction (user +
# system, from /proc), its context switches per transaction, and how much of the machine's time
# was stolen by other guests and how much was idle. Then, per path: the best and the median tps
# over the rounds with their ratios to direct, and the lowest and the median CPU per transaction.
# On a shared virtual machine other guests take CPU time in bursts: a round with much steal says
# more about the neighbours than about the paths. The best round shows what each path does when
# the machine lets it; the median shows the spread.
#
# Fairness: the server (pg_ctl), pgbouncer (-d) and pgspec proxy (setsid) each run in a session
# of their own, as services do. With the kernel's autogroup scheduling (on by default on many
# distributions) CPU time is shared out between sessions first, so a proxy left in pgbench's
# session would share pgbench's part instead of having its own, as pgbouncer does.
#
# Usage: tests/bench/pgbench-compare.sh
# Environment: DURATION (seconds per run, 30), ROUNDS (3), CLIENTS (8), THREADS (2), SCALE (10),
#   UPSTREAM (tcp or unix: how both proxies reach the server; tcp),
#   PROXY_ARGS (more arguments for pgspec proxy, e.g. "--socket-engine dotnet"),
#   PGBIN (the PostgreSQL bin folder; default: the newest /usr/lib/postgresql/*/bin),
#   PGSPEC_DLL (a built pgspec.dll; default: built here in Release).
# Needs: PostgreSQL server binaries, pgbench, pgbouncer (Debian: postgresql, pgbouncer), dotnet,
#   python3. As root, the server and pgbouncer run as the user postgres.
set -euo pipefail

DURATION=${DURATION:-30}
ROUNDS=${ROUNDS:-3}
CLIENTS=${CLIENTS:-8}
THREADS=${THREADS:-2}
SCALE=${SCALE:-10}
UPSTREAM=${UPSTREAM:-tcp}
PROXY_ARGS=${PROXY_ARGS:-}
# shellcheck source=tests/bench/lib.sh
. "$(dirname "$0")/lib.sh"
proxy_port=$((base + 1))
bouncer_port=$((base + 2))

case "$UPSTREAM" in
    tcp) proxy_upstream="127.0.0.1:$pg_port"; bouncer_host=127.0.0.1 ;;
    unix) proxy_upstream="$work/.s.PGSQL.$pg_port"; bouncer_host=$work ;;
    *) echo "UPSTREAM is tcp or unix, not '$UPSTREAM'" >&2; exit 2 ;;
esac

start_server "$SCALE"
PGSPEC_DLL=$(pgspec_dll)
# shellcheck disable=SC2086 # PROXY_ARGS is a list of arguments
setsid dotnet "$PGSPEC_DLL" proxy --listen "127.0.0.1:$proxy_port" --upstream "$proxy_upstream" --quiet $PROXY_ARGS \
    2>"$work/proxy.log" </dev/null &
proxy_pid=$!
on_exit 'kill -TERM $proxy_pid 2>/dev/null && wait $proxy_pid 2>/dev/null'

cat > "$work/pgbouncer.ini" <<INI
[databases]
postgres = host=$bouncer_host port=$pg_port dbname=postgres
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
bouncer_pid=$(cat "$work/pgbouncer.pid")
tick_us=$((1000000 / $(getconf CLK_TCK)))

# cpu_ticks PID: user + system time of a process (its name has no spaces: dotnet, pgbouncer).
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
# switches PID: voluntary + involuntary context switches of all its threads.
switches() { cat /proc/"$1"/task/*/status 2>/dev/null | awk '/^(non)?voluntary_ctxt_switches/ { n += $2 } END { print n + 0 }'; }

# run NAME PORT SECONDS [PID]: appends "name tps transactions cpu_us switches steal% idle%" to results.
run() {
    local before=0 after=0 sw_before=0 sw_after=0 out m1 m2
    if [ -n "${4:-}" ]; then before=$(cpu_ticks "$4"); sw_before=$(switches "$4"); fi
    m1=$(machine)
    out=$("$PGBIN/pgbench" -n -S -c "$CLIENTS" -j "$THREADS" -T "$3" -h 127.0.0.1 -p "$2" -U postgres postgres 2>&1) \
        || { echo "pgbench through $1 failed:" >&2; echo "$out" >&2; exit 1; }
    m2=$(machine)
    if [ -n "${4:-}" ]; then after=$(cpu_ticks "$4"); sw_after=$(switches "$4"); fi
    echo "$out" | awk -v name="$1" -v cpu=$(((after - before) * tick_us)) -v sw=$((sw_after - sw_before)) -v m1="$m1" -v m2="$m2" '
        /^tps = / { tps = $3 }
        /number of transactions actually processed/ { split($NF, t, "/"); tx = t[1] }
        END {
            split(m1, a, " "); split(m2, b, " "); total = b[1] - a[1]
            printf "%s %.0f %d %d %d %.1f %.1f\n", name, tps, tx, cpu, sw, 100 * (b[2] - a[2]) / total, 100 * (b[3] - a[3]) / total
        }' >> "$work/results"
}

# Warm up all three (the proxy's JIT, the server's caches), then measure.
for port in "$pg_port" "$proxy_port" "$bouncer_port"; do
    "$PGBIN/pgbench" -n -S -c "$CLIENTS" -j "$THREADS" -T 5 -h 127.0.0.1 -p "$port" -U postgres postgres >/dev/null 2>&1
done
: > "$work/results"
paths=("direct $pg_port" "proxy $proxy_port $proxy_pid" "bouncer $bouncer_port $bouncer_pid")
for round in $(seq 1 "$ROUNDS"); do
    for i in 0 1 2; do
        # shellcheck disable=SC2086 # NAME PORT [PID]
        set -- ${paths[$(((round - 1 + i) % 3))]}
        run "$1" "$2" "$DURATION" "${3:-}"
        echo "round $round: $(tail -n 1 "$work/results")" >&2
    done
done

echo "pgbench -S -c $CLIENTS -j $THREADS -T $DURATION, scale $SCALE, $ROUNDS round(s), $(nproc) CPUs, upstream over $UPSTREAM; $("$PGBIN/postgres" --version); $(pgbouncer --version 2>/dev/null | head -n 1)"
python3 - "$work/results" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    name, tps, tx, cpu, sw, steal, idle = line.split()
    runs.setdefault(name, []).append((float(tps), int(tx), int(cpu), int(sw), float(steal), float(idle)))
labels = {"direct": "direct", "proxy": "pgspec proxy", "bouncer": "pgbouncer (session)"}
print("per run: tps / CPU per transaction / context switches per transaction / steal / idle")
for name in ("direct", "proxy", "bouncer"):
    cells = []
    for tps, tx, cpu, sw, steal, idle in runs[name]:
        own = f" {cpu / tx:.1f} us {sw / tx:.2f} cs" if name != "direct" else ""
        cells.append(f"{tps:.0f}{own} st {steal:.0f}% id {idle:.0f}%")
    print(f"  {labels[name]:<20} " + " | ".join(cells))
best = {n: max(r[0] for r in runs[n]) for n in runs}
median = {n: statistics.median(r[0] for r in runs[n]) for n in runs}
print()
print(f"{'path':<22}{'best tps':>10}{'vs direct':>11}{'median tps':>12}{'vs direct':>11}{'CPU/tx low':>12}{'median':>9}")
for name in ("direct", "proxy", "bouncer"):
    cpu = [r[2] / r[1] for r in runs[name]]
    cpu_cells = f"{min(cpu):>9.1f} us{statistics.median(cpu):>6.1f} us" if name != "direct" else f"{'-':>12}{'-':>9}"
    print(f"{labels[name]:<22}{best[name]:>10.0f}{best[name] / best['direct']:>11.2f}{median[name]:>12.0f}{median[name] / median['direct']:>11.2f}{cpu_cells}")
print(f"pgspec proxy / pgbouncer: {best['proxy'] / best['bouncer']:.2f} (best rounds), {median['proxy'] / median['bouncer']:.2f} (medians)")
PY

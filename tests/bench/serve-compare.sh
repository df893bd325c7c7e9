#!/usr/bin/env bash
# Compares pgbench throughput on the smallest possible statement, `SELECT 1` (select1.sql),
# against three servers in one run: PostgreSQL itself, a minimal Go server built on
# jackc/pgproto3's Backend (pgproto3-server/, answers every query with the constant row 1), and
# pgspec's server answering the same constant row. With nothing to compute, what is measured is
# the cost of the protocol: reading, decoding, answering and writing, per connection.
#
# Each round runs the three for DURATION seconds each, in an order that rotates from round to
# round. Printed per run: tps (without connection time), the CPU time the server used per
# transaction (user + system from /proc; for PostgreSQL summed over the postmaster and all its
# processes, backends included, and for a command such as `dotnet run` over its children), and
# how much of the machine's time was stolen by other guests, how much was idle and how much went
# to other processes (neither the server nor pgbench). Then, per server: the best and the median
# tps over the rounds with their ratios to PostgreSQL, the lowest and the median CPU per
# transaction, and the ratios pgspec / Go and pgspec / PostgreSQL. On a shared machine other
# guests and other users take CPU time in bursts: a round with much steal or much other work says
# more about the neighbours than about the servers; the best round shows what each does when the
# machine lets it, the median shows the spread.
#
# Answers are checked: before measuring, `psql -c 'SELECT 1'` must print 1 from each server, and
# every pgbench run must end without error, without failed transactions and with transactions.
#
# Fairness: PostgreSQL (pg_ctl), the Go server and pgspec's server (setsid) each run in a session
# of their own, as services do, so that with the kernel's autogroup scheduling none of them
# shares pgbench's part of the CPU.
#
# Usage: tests/bench/serve-compare.sh
# Environment: DURATION (seconds per run, 30), ROUNDS (3), CLIENTS (8), THREADS (2),
#   MODE (pgbench's query mode: simple, extended or prepared; prepared), WARMUP (seconds of pgbench
#   against each server before measuring, 5),
#   PGSPEC_SERVE_CMD (the command line of pgspec's constant-row server, run from the repository's
#     root with `--listen 127.0.0.1:PORT` appended; default:
#     dotnet run --project tests/bench/ConstantRowServer -c Release --),
#   SERVE_TIMEOUT (seconds to wait for that server to listen, build included; 300),
#   PGPROTO3_GOPATH (a GOPATH holding github.com/jackc/pgproto3/v2 and its dependencies;
#     /usr/share/gocode, where Debian's golang-github-jackc-pgproto3-v2-dev puts them),
#   PGBIN (the PostgreSQL bin folder; default: the newest /usr/lib/postgresql/*/bin).
# Needs: PostgreSQL server binaries, pgbench and psql (Debian: postgresql), go and pgproto3 v2
#   (Debian: golang-go, golang-github-jackc-pgproto3-v2-dev; the build is offline), dotnet for
#   the default PGSPEC_SERVE_CMD, python3. As root, PostgreSQL runs as the user postgres.
# Exit status: 0 done, 1 a server or a run failed, 2 something needed is missing.
set -euo pipefail

DURATION=${DURATION:-30}
ROUNDS=${ROUNDS:-3}
CLIENTS=${CLIENTS:-8}
THREADS=${THREADS:-2}
MODE=${MODE:-prepared}
WARMUP=${WARMUP:-5}
SERVE_TIMEOUT=${SERVE_TIMEOUT:-300}
PGPROTO3_GOPATH=${PGPROTO3_GOPATH:-/usr/share/gocode}
default_serve_cmd="dotnet run --project tests/bench/ConstantRowServer -c Release --"
PGSPEC_SERVE_CMD=${PGSPEC_SERVE_CMD:-$default_serve_cmd}
# shellcheck source=tests/bench/lib.sh
. "$(dirname "$0")/lib.sh"
go_port=$((base + 1))
pgspec_port=$((base + 2))
script="$repo/tests/bench/select1.sql"

case "$MODE" in
    simple | extended | prepared) ;;
    *) echo "MODE is simple, extended or prepared, not '$MODE'" >&2; exit 2 ;;
esac

# What is needed, before anything is started.
if [ "$PGSPEC_SERVE_CMD" = "$default_serve_cmd" ] && [ ! -d "$repo/tests/bench/ConstantRowServer" ]; then
    echo "pgspec's constant-row server is missing: tests/bench/ConstantRowServer does not exist." >&2
    echo "Set PGSPEC_SERVE_CMD to a command line that serves the constant row and takes --listen 127.0.0.1:PORT." >&2
    exit 2
fi
read -r serve_program _ <<<"$PGSPEC_SERVE_CMD"
if ! (cd "$repo" && command -v "$serve_program" >/dev/null); then
    echo "PGSPEC_SERVE_CMD cannot be run: '$serve_program' is not a command (from the repository's root)." >&2
    exit 2
fi
if ! command -v go >/dev/null; then
    echo "go is missing (Debian: golang-go); it builds the pgproto3 server." >&2
    exit 2
fi
if [ ! -d "$PGPROTO3_GOPATH/src/github.com/jackc/pgproto3/v2" ]; then
    echo "pgproto3 v2 is not in $PGPROTO3_GOPATH (Debian: golang-github-jackc-pgproto3-v2-dev, or set PGPROTO3_GOPATH)." >&2
    exit 2
fi

# The Go server: built offline in GOPATH mode against the packaged sources.
(cd "$repo/tests/bench/pgproto3-server" &&
    GO111MODULE=off GOFLAGS= GOPATH="$PGPROTO3_GOPATH" GOCACHE="${GOCACHE:-$work/gocache}" \
        go build -o "$work/pgproto3-server" .)

start_server 0
pg_pid=$(head -n 1 "$work/data/postmaster.pid")

setsid "$work/pgproto3-server" -listen "127.0.0.1:$go_port" >"$work/go.log" 2>&1 </dev/null &
go_pid=$!
on_exit 'stop_session $go_pid'

# shellcheck disable=SC2016 # $@ is expanded by the inner shell
(cd "$repo" && exec setsid bash -c 'exec '"$PGSPEC_SERVE_CMD"' "$@"' pgspec-serve --listen "127.0.0.1:$pgspec_port") \
    >"$work/pgspec.log" 2>&1 </dev/null &
pgspec_pid=$!
on_exit 'stop_session $pgspec_pid'

wait_started "pgproto3 server" "$go_port" "$go_pid" 30 "$work/go.log"
wait_started "pgspec's server ($PGSPEC_SERVE_CMD)" "$pgspec_port" "$pgspec_pid" "$SERVE_TIMEOUT" "$work/pgspec.log"

names=(postgres go pgspec)
ports=("$pg_port" "$go_port" "$pgspec_port")
pids=("$pg_pid" "$go_pid" "$pgspec_pid")

# Each server must answer `SELECT 1` with 1.
for i in 0 1 2; do
    answer=$("$PGBIN/psql" -h 127.0.0.1 -p "${ports[$i]}" -U postgres -d postgres -X -A -t -c 'SELECT 1' 2>&1) || true
    if [ "$answer" != 1 ]; then
        echo "${names[$i]} answers SELECT 1 with '$answer', not 1" >&2
        exit 1
    fi
done

tick_us=$((1000000 / $(getconf CLK_TCK)))

# bench NAME PORT SECONDS: runs pgbench and prints its output; fails when it did not run cleanly.
bench() {
    local out failed processed
    out=$("$PGBIN/pgbench" -n -M "$MODE" -f "$script" -c "$CLIENTS" -j "$THREADS" -T "$3" \
        -h 127.0.0.1 -p "$2" -U postgres postgres 2>&1) ||
        { echo "pgbench against $1 failed:" >&2; echo "$out" >&2; return 1; }
    failed=$(echo "$out" | awk '/^number of failed transactions:/ { print $5 }')
    processed=$(echo "$out" | awk '/^number of transactions actually processed:/ { split($NF, t, "/"); print t[1] }')
    if [ "${failed:-0}" != 0 ] || [ "${processed:-0}" = 0 ]; then
        echo "pgbench against $1: ${failed:-?} failed transactions, ${processed:-no} processed:" >&2
        echo "$out" >&2
        return 1
    fi
    echo "$out"
}

# reaped_ticks: the CPU time of this script's exited children (pgbench among them).
reaped_ticks() { sed 's/.*) //' "/proc/$$/stat" | awk '{ print $14 + $15 }'; }

# run I SECONDS: appends "name tps transactions cpu_us steal% idle% others%" to results, where
# others is the share of the machine's time that neither the server nor pgbench used: other
# processes on this machine, which steal (other guests) does not show.
run() {
    local name=${names[$1]} cpu1 cpu2 n1 n2 m1 m2 b1 b2 out
    read -r cpu1 n1 < <(tree_cpu "${pids[$1]}")
    b1=$(reaped_ticks)
    m1=$(machine)
    out=$(bench "$name" "${ports[$1]}" "$2") || exit 1
    m2=$(machine)
    b2=$(reaped_ticks)
    # Wait for the server's processes (PostgreSQL's backends) to end and be reaped, so that
    # their CPU time has moved to the parent.
    for _ in $(seq 1 100); do
        read -r cpu2 n2 < <(tree_cpu "${pids[$1]}")
        [ "$n2" -le "$n1" ] && break
        sleep 0.1
    done
    echo "$out" | awk -v name="$name" -v ticks=$((cpu2 - cpu1)) -v bench=$((b2 - b1)) -v tick_us="$tick_us" \
        -v m1="$m1" -v m2="$m2" '
        /^tps = / { tps = $3 }
        /^number of transactions actually processed/ { split($NF, t, "/"); tx = t[1] }
        END {
            split(m1, a, " "); split(m2, b, " "); total = b[1] - a[1]
            steal = b[2] - a[2]; idle = b[3] - a[3]; others = total - steal - idle - ticks - bench
            if (others < 0) others = 0
            printf "%s %.0f %d %d %.1f %.1f %.1f\n", name, tps, tx, ticks * tick_us, 100 * steal / total, 100 * idle / total, 100 * others / total
        }' >> "$work/results"
}

# Warm up all three (pgspec's JIT, the caches), then measure.
for i in 0 1 2; do
    bench "${names[$i]}" "${ports[$i]}" "$WARMUP" >/dev/null || exit 1
done
: > "$work/results"
for round in $(seq 1 "$ROUNDS"); do
    for k in 0 1 2; do
        run $(((round - 1 + k) % 3)) "$DURATION"
        echo "round $round: $(tail -n 1 "$work/results")" >&2
    done
done

echo "pgbench -M $MODE -f select1.sql -c $CLIENTS -j $THREADS -T $DURATION, $ROUNDS round(s), $(nproc) CPUs; $("$PGBIN/postgres" --version); $(go version); pgspec: $PGSPEC_SERVE_CMD"
python3 - "$work/results" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    name, tps, tx, cpu, steal, idle, others = line.split()
    runs.setdefault(name, []).append((float(tps), int(tx), int(cpu), float(steal), float(idle), float(others)))
order = ("postgres", "go", "pgspec")
labels = {"postgres": "PostgreSQL", "go": "pgproto3 (Go)", "pgspec": "pgspec"}
print("per run: tps / server CPU per transaction / steal (other guests) / idle / others (other processes)")
for name in order:
    cells = [f"{tps:.0f} {cpu / tx:.1f} us st {st:.0f}% id {idle:.0f}% oth {oth:.0f}%" for tps, tx, cpu, st, idle, oth in runs[name]]
    print(f"  {labels[name]:<15} " + " | ".join(cells))
best = {n: max(r[0] for r in runs[n]) for n in runs}
median = {n: statistics.median(r[0] for r in runs[n]) for n in runs}
print()
print(f"{'server':<16}{'best tps':>10}{'vs PG':>8}{'median tps':>12}{'vs PG':>8}{'CPU/tx low':>12}{'median':>10}")
for name in order:
    cpu = [r[2] / r[1] for r in runs[name]]
    print(f"{labels[name]:<16}{best[name]:>10.0f}{best[name] / best['postgres']:>8.2f}{median[name]:>12.0f}"
          f"{median[name] / median['postgres']:>8.2f}{min(cpu):>9.1f} us{statistics.median(cpu):>7.1f} us")
print()
for a, b in (("pgspec", "go"), ("pgspec", "postgres"), ("go", "postgres")):
    print(f"{labels[a]} / {labels[b]}: {best[a] / best[b]:.2f} (best rounds), {median[a] / median[b]:.2f} (medians)")
PY

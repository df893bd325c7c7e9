#!/usr/bin/env bash
# Runs pgbench through `pgspec proxy` for minutes and checks that nothing is lost, altered or
# leaked: the built-in select-only load (-M prepared), a client that connects anew for every
# transaction (-C: connections come and go all the time) and, beside them, a script that checks every
# answer (arithmetic on the values it sent, and 70 to 270 KB values sent back and forth, past
# the proxy's streaming threshold) and fails its client at the first wrong byte. The proxy's
# resident memory is sampled every SAMPLE seconds; at the end, a COPY of pgbench_accounts read
# through the proxy must equal the same COPY read directly.
#
# Usage: tests/bench/proxy-soak.sh
# Environment: DURATION (seconds, 300), CLIENTS (8, for the select-only load), SCALE (10),
#   SAMPLE (5), PGBIN, PGSPEC_DLL (as for pgbench-compare.sh).
# Exit status 0 when both pgbench runs end without errors, the copies agree and the memory of the
# last minute stays within 10% (+ 8 MB) of the first minute's.
set -euo pipefail

DURATION=${DURATION:-300}
CLIENTS=${CLIENTS:-8}
SCALE=${SCALE:-10}
SAMPLE=${SAMPLE:-5}
# shellcheck source=tests/bench/lib.sh
. "$(dirname "$0")/lib.sh"
proxy_port=$((base + 1))

start_server "$SCALE"
PGSPEC_DLL=$(pgspec_dll)
dotnet "$PGSPEC_DLL" proxy --listen "127.0.0.1:$proxy_port" --upstream "127.0.0.1:$pg_port" 2>"$work/proxy.log" &
proxy_pid=$!
on_exit 'kill -TERM $proxy_pid 2>/dev/null && wait $proxy_pid 2>/dev/null'
wait_port "$proxy_port"

cat > "$work/check.sql" <<'SQL'
\set aid random(1, 100000 * :scale)
\set n random(70000, 270000)
SELECT :aid * 2 AS twice, repeat(md5(:aid::text), :n / 32) AS big \gset
SELECT (:twice = 2 * :aid::int AND big_ok)::int AS ok FROM (SELECT :big = repeat(md5(:aid::text), :n / 32) AS big_ok) s \gset
\if :ok = 0
SELECT 'altered answer' :: int;
\endif
SQL

rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$proxy_pid/status"; }

echo "soak: $DURATION s through pgspec proxy ($PGSPEC_DLL)" >&2
"$PGBIN/pgbench" -n -S -M prepared -c "$CLIENTS" -j 2 -T "$DURATION" -h 127.0.0.1 -p "$proxy_port" -U postgres postgres > "$work/select.out" 2>&1 &
select_pid=$!
"$PGBIN/pgbench" -n -M extended -c 2 -j 1 -T "$DURATION" -f "$work/check.sql" -D scale="$SCALE" -h 127.0.0.1 -p "$proxy_port" -U postgres postgres > "$work/check.out" 2>&1 &
check_pid=$!
"$PGBIN/pgbench" -n -S -C -c 2 -j 1 -T "$DURATION" -h 127.0.0.1 -p "$proxy_port" -U postgres postgres > "$work/churn.out" 2>&1 &
churn_pid=$!

: > "$work/rss"
elapsed=0
while kill -0 "$select_pid" 2>/dev/null || kill -0 "$check_pid" 2>/dev/null || kill -0 "$churn_pid" 2>/dev/null; do
    sleep "$SAMPLE"
    elapsed=$((elapsed + SAMPLE))
    echo "$elapsed $(rss_kb)" >> "$work/rss"
done
select_status=0; wait "$select_pid" || select_status=$?
check_status=0; wait "$check_pid" || check_status=$?
churn_status=0; wait "$churn_pid" || churn_status=$?

copy() { "$PGBIN/psql" -X -q -h 127.0.0.1 -p "$1" -U postgres -d postgres -c "COPY (SELECT * FROM pgbench_accounts ORDER BY aid) TO STDOUT" | sha256sum | cut -d' ' -f1; }
direct_copy=$(copy "$pg_port")
proxy_copy=$(copy "$proxy_port")

failed=0
summary() { # FILE STATUS LABEL
    local tps errors
    tps=$(awk '/^tps = / { print $3; exit }' "$1")
    errors=$(grep -cE "aborted|error|ERROR" "$1" || true)
    printf '%-42s exit %s, tps %s, %s error lines\n' "$3" "$2" "${tps:-?}" "$errors"
    if [ "$2" != 0 ] || [ "$errors" != 0 ]; then failed=1; sed 's/^/    /' "$1" | grep -E "aborted|error|ERROR" | head -5; fi
}
summary "$work/select.out" "$select_status" "select-only, -M prepared, $CLIENTS clients"
summary "$work/check.out" "$check_status" "checked answers, -M extended, 2 clients"
summary "$work/churn.out" "$churn_status" "a connection per transaction, 2 clients"

if [ "$direct_copy" = "$proxy_copy" ]; then
    echo "COPY of pgbench_accounts: identical through the proxy ($direct_copy)"
else
    echo "COPY of pgbench_accounts: DIFFERS through the proxy ($proxy_copy vs $direct_copy)"; failed=1
fi

window=$((60 / SAMPLE))
awk -v w="$window" '
    { t[NR] = $1; r[NR] = $2 }
    END {
        for (i = 1; i <= NR; i++) { if (i <= w && r[i] > first) first = r[i]; if (i > NR - w && r[i] > last) last = r[i]; if (r[i] > peak) peak = r[i] }
        printf "proxy resident memory: first minute max %.1f MB, last minute max %.1f MB, peak %.1f MB (%d samples)\n", first / 1024, last / 1024, peak / 1024, NR
        printf "  by minute (MB):"
        for (i = w; i <= NR; i += w) printf " %.1f", r[i] / 1024
        printf "\n"
        exit !(last <= first * 1.10 + 8192)
    }' "$work/rss" || { echo "memory grew"; failed=1; }

echo "proxy notes other than connections closing normally:"
{ grep -v -e "listening on" -e "stopped;" "$work/proxy.log" || echo "(none)"; } | sed 's/^/    /' | head -20
kill -TERM "$proxy_pid"; wait "$proxy_pid" 2>/dev/null || true
echo "proxy summary: $(grep -h "stopped" "$work/proxy.log" | sed 's/^pgspec proxy: //' || true)"
if [ "$failed" = 0 ]; then echo "soak passed"; else echo "soak FAILED"; fi
exit "$failed"

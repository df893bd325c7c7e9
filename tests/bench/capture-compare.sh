#!/usr/bin/env bash
# Compares `pgspec capture` with Wireshark's pgsql dissector (tshark) on the same capture of
# pgbench traffic, in one run: MB/s and packets/s of each, their ratio, and pgspec's peak memory
# on the whole capture and on its first half (memory must not grow with the file).
#
# The capture is made here: a throwaway PostgreSQL server, tcpdump on loopback for its port,
# pgbench (-M prepared, CLIENTS clients) until the file holds SIZE_MB megabytes. Then, ROUNDS
# times in rotating order: `pgspec capture --port P FILE` and
# `tshark -r FILE -d tcp.port==P,pgsql -T fields -e frame.number -e pgsql.type`, both writing to
# /dev/null (what each prints differs: pgspec a trace line per message, tshark the message types
# of each frame; each decodes every message). tshark runs with its own TCP reassembly (the pgsql
# dissector asks for it), as pgspec does. Elapsed time and peak RSS come from /usr/bin/time.
#
# What each does not do: tshark does not validate message bodies beyond its fields and prints
# only the type column; pgspec does not decode link layers beyond what capture needs.
#
# Usage: tests/bench/capture-compare.sh
# Environment: SIZE_MB (size of the capture, 1024), ROUNDS (3), CLIENTS (4), PGSPEC_DLL (a built
#   pgspec.dll; default: a Release build made here), PGBIN (the PostgreSQL bin folder).
# Needs: PostgreSQL server binaries and pgbench, tcpdump, tshark and editcap (Debian: tshark),
#   dotnet, GNU time (/usr/bin/time). Runs as root (tcpdump, PostgreSQL as the user postgres).
# Exit status: 0 done, 1 a run failed, 2 something needed is missing.
set -euo pipefail

SIZE_MB=${SIZE_MB:-1024}
ROUNDS=${ROUNDS:-3}
CLIENTS=${CLIENTS:-4}
# shellcheck source=tests/bench/lib.sh
. "$(dirname "$0")/lib.sh"

for tool in tcpdump tshark editcap capinfos /usr/bin/time dotnet; do
    if ! command -v "$tool" >/dev/null; then
        echo "$tool is missing (Debian: tcpdump, tshark, time, dotnet)." >&2
        exit 2
    fi
done

dll=$(pgspec_dll)
start_server 1
capture="$work/pgbench.pcap"

# tcpdump writes the capture while pgbench runs, until the file is big enough.
tcpdump -i lo -n -Z root -B 65536 -s 262144 -w "$capture" "tcp port $pg_port" 2>"$work/tcpdump.log" &
tcpdump_pid=$!
on_exit "kill -TERM $tcpdump_pid 2>/dev/null"
for _ in $(seq 1 100); do
    grep -q "listening on" "$work/tcpdump.log" && break
    sleep 0.1
done
grep -q "listening on" "$work/tcpdump.log" || { echo "tcpdump did not start: $(cat "$work/tcpdump.log")" >&2; exit 1; }
while [ "$(stat -c %s "$capture" 2>/dev/null || echo 0)" -lt $((SIZE_MB * 1024 * 1024)) ]; do
    "$PGBIN/pgbench" -n -M prepared -c "$CLIENTS" -j 2 -T 5 -h 127.0.0.1 -p "$pg_port" -U postgres postgres >/dev/null 2>&1 ||
        { echo "pgbench failed" >&2; exit 1; }
done
kill -TERM "$tcpdump_pid"
wait "$tcpdump_pid" 2>/dev/null || true
dropped=$(grep -o "[0-9]* packets dropped by kernel" "$work/tcpdump.log" || echo "? packets dropped by kernel")
packets=$(capinfos -c -M "$capture" | awk -F': *' '/Number of packets/ { print $2 }')
bytes=$(stat -c %s "$capture")
editcap -r "$capture" "$work/half.pcap" "1-$((packets / 2))" >/dev/null
echo "capture: $((bytes / 1024 / 1024)) MB, $packets packets of pgbench -M prepared traffic ($dropped)" >&2

# measure NAME FILE: prints "seconds peak_kb" of one run, failing on a non-zero exit.
measure() {
    case "$1" in
        pgspec) /usr/bin/time -o "$work/time" -f "%e %M" dotnet "$dll" capture --port "$pg_port" "$2" >/dev/null 2>"$work/pgspec.err" ||
            { echo "pgspec capture failed: $(cat "$work/pgspec.err")" >&2; return 1; } ;;
        tshark) /usr/bin/time -o "$work/time" -f "%e %M" tshark -r "$2" -d "tcp.port==$pg_port,pgsql" -T fields -e frame.number -e pgsql.type >/dev/null 2>"$work/tshark.err" ||
            { echo "tshark failed: $(cat "$work/tshark.err")" >&2; return 1; } ;;
    esac
    tail -n 1 "$work/time"
}

: > "$work/results"
names=(pgspec tshark)
for round in $(seq 1 "$ROUNDS"); do
    for k in 0 1; do
        name=${names[$(((round - 1 + k) % 2))]}
        read -r seconds peak < <(measure "$name" "$capture")
        echo "$name $seconds $peak" >> "$work/results"
        echo "round $round: $name ${seconds}s, peak ${peak} kB" >&2
    done
done
read -r _ half_peak < <(measure pgspec "$work/half.pcap")
grep -q "PostgreSQL connections" "$work/pgspec.err" || { echo "pgspec printed no summary: $(cat "$work/pgspec.err")" >&2; exit 1; }
echo "pgspec's summary: $(tail -n 1 "$work/pgspec.err")"

python3 - "$work/results" "$bytes" "$packets" "$half_peak" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    name, seconds, peak = line.split()
    runs.setdefault(name, []).append((float(seconds), int(peak)))
size, packets, half_peak = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
print(f"{'tool':<8}{'best MB/s':>11}{'median MB/s':>13}{'best packets/s':>16}{'peak RSS':>11}")
best, median = {}, {}
for name in ("pgspec", "tshark"):
    times = [s for s, _ in runs[name]]
    best[name], median[name] = min(times), statistics.median(times)
    peak = max(p for _, p in runs[name])
    print(f"{name:<8}{size / 2**20 / best[name]:>11.0f}{size / 2**20 / median[name]:>13.0f}{packets / best[name]:>16,.0f}{peak / 1024:>9.0f} MB")
print(f"pgspec / tshark: {best['tshark'] / best['pgspec']:.1f}x (best runs), {median['tshark'] / median['pgspec']:.1f}x (medians)")
print(f"pgspec peak RSS: {half_peak / 1024:.0f} MB on the first half, {max(p for _, p in runs['pgspec']) / 1024:.0f} MB on the whole capture")
PY

#!/usr/bin/env bash
# Fetches the rows of one query from PostgreSQL over loopback with PgSpec.Client's row reader
# (PgRowReader) and with Npgsql's data reader, in text and in binary format, and compares rows per
# second and peak memory. The query returns an int4, a text and a timestamptz per row:
#   SELECT g, g::text, '2024-06-11 12:34:56.789+00'::timestamptz FROM generate_series(1, ROWS) g
# FetchHarness/ is the client (one process per run, so that its peak memory is that run's alone);
# its header says what each client does with every value and what neither checks.
#
# Each round runs every client and format once, in an order that rotates from round to round.
# Printed per run: rows/s (after warm-up queries in the same process), the checksum of the values
# read, the client's CPU time per row (user + system, all its threads: what the client itself
# costs, which rows/s hides when the server is the slower side, as PostgreSQL generating rows is on
# 2 cores), the CPU time per row of the PostgreSQL backend serving the query (from /proc: when it
# is close to the time per row, the server is the slower side and no client can go much faster),
# the bytes the run allocated and the process's peak resident memory. Then per client and
# format the best and the median rows/s and the ratios PgSpec / Npgsql (the target is 1.2 or more
# in both formats). Checksums must agree between the clients for a format, or the script fails.
#
# Usage: tests/bench/fetch-compare.sh
# Environment: ROWS (1000000), ROUNDS (5), WARMUP_SECONDS (3: each process's warm-up queries, so
#   that both clients run the JIT's final code when measured), PGBIN (the PostgreSQL bin folder; default: the newest
#   /usr/lib/postgresql/*/bin).
# Needs: PostgreSQL server binaries, dotnet, python3. As root, PostgreSQL runs as the user postgres.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

ROWS=${ROWS:-1000000}
ROUNDS=${ROUNDS:-5}
WARMUP_SECONDS=${WARMUP_SECONDS:-3}

start_server 0
echo "building the harness" >&2
dotnet build "$repo/tests/bench/FetchHarness/FetchHarness.csproj" -c Release -o "$work/harness" -nologo -v quiet >/dev/null
echo "machine: $(nproc) CPUs, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')" >&2

runs=("pgspec text" "npgsql text" "pgspec binary" "npgsql binary" "pgspec bytes")
printf '%-6s %-15s %12s %9s %11s %22s %14s %12s\n' round run rows/s cpu/row server/row checksum allocated peak_rss
for ((round = 1; round <= ROUNDS; round++)); do
    for ((k = 0; k < ${#runs[@]}; k++)); do
        run=${runs[$(((k + round - 1) % ${#runs[@]}))]}
        # shellcheck disable=SC2086
        line=$(WARMUP_SECONDS=$WARMUP_SECONDS dotnet "$work/harness/FetchHarness.dll" $run 127.0.0.1 "$pg_port" postgres postgres "$ROWS")
        rate=$(sed -n 's/.*rows_per_s=\([0-9]*\).*/\1/p' <<<"$line")
        cpu=$(sed -n 's/.* cpu_ns_per_row=\([0-9]*\).*/\1/p' <<<"$line")
        server=$(sed -n 's/.*server_cpu_ns_per_row=\([0-9]*\).*/\1/p' <<<"$line")
        checksum=$(sed -n 's/.*checksum=\([0-9-]*\).*/\1/p' <<<"$line")
        allocated=$(sed -n 's/.*allocated_bytes=\([0-9]*\).*/\1/p' <<<"$line")
        peak=$(sed -n 's/.*peak_rss_kb=\([0-9]*\).*/\1/p' <<<"$line")
        printf '%-6s %-15s %12s %6s ns %8s ns %22s %11s MB %9s MB\n' "$round" "$run" "$rate" "$cpu" "$server" "$checksum" "$((allocated / 1000000))" "$((peak / 1024))"
        echo "$run|$rate|$checksum|$allocated|$peak|$cpu|$server" >>"$work/results"
    done
done

python3 - "$work/results" "$ROWS" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    name, rate, checksum, allocated, peak, cpu, server = line.strip().split("|")
    runs.setdefault(name, []).append((int(rate), checksum, int(allocated), int(peak), int(cpu), int(server)))
failed = False
for fmt in ("text", "binary"):
    sums = {r[1] for name in (f"pgspec {fmt}", f"npgsql {fmt}") for r in runs[name]}
    if len(sums) != 1:
        print(f"{fmt}: the clients' checksums differ: {sorted(sums)}")
        failed = True
print()
print(f"{'client and format':<16} {'best rows/s':>12} {'median rows/s':>14} {'CPU/row low/med':>16} {'server CPU/row med':>19} {'ns/row med':>11} {'alloc/row':>10} {'peak RSS':>9}")
summary = {}
for name, results in runs.items():
    rates = [r[0] for r in results]
    cpus = [r[4] for r in results]
    summary[name] = (max(rates), statistics.median(rates), min(cpus), statistics.median(cpus))
    alloc = statistics.median(r[2] for r in results) / int(sys.argv[2])
    peak = max(r[3] for r in results) / 1024
    server = statistics.median(r[5] for r in results)
    print(f"{name:<16} {max(rates):>12,} {statistics.median(rates):>14,.0f} {min(cpus):>7} / {statistics.median(cpus):>4.0f} ns {server:>16.0f} ns {1e9 / statistics.median(rates):>8.0f} ns {alloc:>8.1f} B {peak:>6.0f} MB")
print()
for fmt in ("text", "binary"):
    p, n = summary[f"pgspec {fmt}"], summary[f"npgsql {fmt}"]
    print(f"PgSpec / Npgsql, {fmt}: rows/s best {p[0] / n[0]:.2f}, median {p[1] / n[1]:.2f} (target 1.2); "
          f"CPU per row, Npgsql / PgSpec: lowest {n[2] / p[2]:.2f}, median {n[3] / p[3]:.2f}")
sys.exit(1 if failed else 0)
PY

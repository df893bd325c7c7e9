#!/usr/bin/env bash
# Fuzzes one target (or all of them) with AFL++ for a fixed time:
#
#   fuzz/run.sh TARGET SECONDS      e.g. fuzz/run.sh stream-backend-3.2 600
#   fuzz/run.sh all SECONDS         every target, one after the other, SECONDS each
#   fuzz/run.sh list                the targets
#
# Publishes PgSpec.Fuzz twice (one copy whose PgSpec.Protocol, PgSpec.Client and PgSpec.Server
# assemblies SharpFuzz instruments, one left as built to replay inputs on), writes the dictionary
# derived from the specs, seeds afl-fuzz with fuzz/corpus/TARGET and fuzz/regressions/TARGET, runs
# it time-boxed (-V), prints executions, paths, crashes and hangs, replays every crash on the
# uninstrumented build to show the exception, and exits non-zero if any target crashed or hung.
# Findings stay in fuzz/out/findings/TARGET.
#
# Environment: FUZZ_TIMEOUT_MS (afl-fuzz -t, default 2000), FUZZ_NO_BUILD=1 (reuse fuzz/out),
# FUZZ_RESUME=1 (go on from the findings folder instead of the seeds: a long campaign in parts),
# FUZZ_AFL_ARGS (more afl-fuzz options).
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/fuzz/out"
target=${1:-}
seconds=${2:-}

usage() {
    echo "usage: fuzz/run.sh TARGET|all SECONDS   |   fuzz/run.sh list" >&2
    exit 2
}

build() {
    if [ "${FUZZ_NO_BUILD:-0}" = 1 ] && [ -f "$out/instrumented/PgSpec.Fuzz.dll" ] && [ -f "$out/replay/PgSpec.Fuzz.dll" ]; then
        return 0
    fi

    echo "== publishing PgSpec.Fuzz"
    rm -rf "$out/replay" "$out/instrumented"
    dotnet publish "$root/fuzz/PgSpec.Fuzz/PgSpec.Fuzz.csproj" -c Release -o "$out/replay" -p:UseAppHost=false --nologo -v quiet \
        || { echo "dotnet publish failed"; exit 1; }
    cp -r "$out/replay" "$out/instrumented"

    echo "== instrumenting PgSpec.Protocol.dll, PgSpec.Client.dll and PgSpec.Server.dll (the codec and both sessions)"
    (cd "$root" && dotnet tool restore >/dev/null) || { echo "dotnet tool restore failed"; exit 1; }
    local assembly
    for assembly in PgSpec.Protocol PgSpec.Client PgSpec.Server; do
        (cd "$root" && dotnet tool run sharpfuzz "$out/instrumented/$assembly.dll") || { echo "sharpfuzz failed on $assembly.dll"; exit 1; }
    done

    echo "== writing the dictionary"
    dotnet "$out/replay/PgSpec.Fuzz.dll" dictionary "$out/pgspec.dict" || exit 1
}

stat_of() { # FILE KEY
    sed -n "s/^$2 *: *//p" "$1" 2>/dev/null | head -n 1
}

# Fuzzes one target; prints its line of results; returns 1 on a crash or hang.
fuzz_one() {
    local name=$1 secs=$2
    local findings="$out/findings/$name" seeds="$out/seeds/$name"
    rm -rf "$seeds"
    mkdir -p "$seeds"
    local kind file
    for kind in corpus regressions; do
        [ -d "$root/fuzz/$kind/$name" ] || continue
        while IFS= read -r -d '' file; do
            cp "$file" "$seeds/$kind-$(basename "$file")"
        done < <(find "$root/fuzz/$kind/$name" -type f ! -name '*.md' ! -name '.*' -print0)
    done
    if [ -z "$(ls -A "$seeds")" ]; then
        printf '\0\0\0\0\0\0\0\0' > "$seeds/empty"
    fi

    local input=(-i "$seeds")
    if [ "${FUZZ_RESUME:-0}" = 1 ] && [ -d "$findings/default/queue" ]; then
        input=(-i -)
    else
        rm -rf "$findings"
    fi
    mkdir -p "$findings"

    echo "== fuzzing $name for $secs s"
    # shellcheck disable=SC2086
    AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_SKIP_BIN_CHECK=1 AFL_NO_AFFINITY=1 \
    AFL_NO_UI=1 AFL_FORKSRV_INIT_TMOUT=60000 AFL_QUIET=1 \
        afl-fuzz "${input[@]}" -o "$findings" -x "$out/pgspec.dict" -t "${FUZZ_TIMEOUT_MS:-2000}" -m none -V "$secs" \
        ${FUZZ_AFL_ARGS:-} -- dotnet "$out/instrumented/PgSpec.Fuzz.dll" afl "$name" > "$findings/afl.log" 2>&1
    local status=$?

    local stats="$findings/default/fuzzer_stats"
    if [ ! -f "$stats" ]; then
        echo "afl-fuzz did not start for $name (exit $status); the end of its log:"
        tail -n 30 "$findings/afl.log"
        return 1
    fi

    local execs eps paths crashes hangs
    execs=$(stat_of "$stats" execs_done)
    eps=$(stat_of "$stats" execs_per_sec)
    paths=$(stat_of "$stats" corpus_count)
    [ -n "$paths" ] || paths=$(stat_of "$stats" paths_total)
    crashes=$(find "$findings/default/crashes" -type f -name 'id:*' 2>/dev/null | wc -l)
    hangs=$(find "$findings/default/hangs" -type f -name 'id:*' 2>/dev/null | wc -l)
    printf '%-20s execs %-10s execs/s %-8s paths %-6s crashes %-4s hangs %s\n' "$name" "$execs" "$eps" "$paths" "$crashes" "$hangs" | tee -a "$out/summary.txt"

    if [ "${execs:-0}" = 0 ]; then
        echo "  no execution: see $findings/afl.log"
        return 1
    fi

    if [ "$crashes" -gt 0 ]; then
        echo "  crashes, replayed on the uninstrumented build:"
        dotnet "$out/replay/PgSpec.Fuzz.dll" replay "$name" "$findings/default/crashes" | sed 's/^/  /'
        echo "  keep each as a regression once fixed: cp $findings/default/crashes/id:... fuzz/regressions/$name/NAME"
    fi
    if [ "$hangs" -gt 0 ]; then
        echo "  hangs (over ${FUZZ_TIMEOUT_MS:-2000} ms):"
        find "$findings/default/hangs" -type f -name 'id:*' | sed 's/^/    /'
    fi

    [ "$crashes" -eq 0 ] && [ "$hangs" -eq 0 ]
}

[ -n "$target" ] || usage
if [ "$target" = list ]; then
    build
    dotnet "$out/replay/PgSpec.Fuzz.dll" list
    exit 0
fi

case "$seconds" in
    ''|*[!0-9]*) usage ;;
esac

command -v afl-fuzz >/dev/null || { echo "afl-fuzz is not installed (Debian: apt-get install afl++)"; exit 1; }
build
mkdir -p "$out"
: > "$out/summary.txt"

if [ "$target" = all ]; then
    mapfile -t targets < <(dotnet "$out/replay/PgSpec.Fuzz.dll" list | cut -f1)
else
    targets=("$target")
    dotnet "$out/replay/PgSpec.Fuzz.dll" list | cut -f1 | grep -qx "$target" || { echo "no target '$target'"; exit 2; }
fi

failed=0
for name in "${targets[@]}"; do
    fuzz_one "$name" "$seconds" || failed=1
done

echo
echo "== results"
cat "$out/summary.txt"
if [ "$failed" -ne 0 ]; then
    echo "FAILED: a target crashed, hung or did not run"
    exit 1
fi
echo "no crash, no hang"

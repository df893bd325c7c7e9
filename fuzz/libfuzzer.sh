#!/usr/bin/env bash
# Runs one target under libFuzzer, the engine of OSS-Fuzz and ClusterFuzzLite, instead of AFL++:
#
#   LIBFUZZER_DOTNET=/path/to/libfuzzer-dotnet fuzz/libfuzzer.sh TARGET SECONDS
#
# libfuzzer-dotnet is SharpFuzz's libFuzzer driver (github.com/Metalnem/libfuzzer-dotnet): one of
# its release binaries, or built from its single source file with `clang -O2 -fsanitize=fuzzer`
# (Debian: apt-get install clang libclang-rt-14-dev). It starts `dotnet PgSpec.Fuzz.dll` without
# arguments, and PgSpec.Fuzz runs the target that PGSPEC_FUZZ_TARGET names.
#
# Uses the build of run.sh (fuzz/out: the instrumented PgSpec.Protocol, Client and Server assemblies, and the dictionary;
# built here unless FUZZ_NO_BUILD=1), seeds from fuzz/corpus/TARGET and fuzz/regressions/TARGET.
# The queue grows in fuzz/out/libfuzzer/TARGET; a crashing input is written to
# fuzz/out/libfuzzer/TARGET-findings/ and replays with `dotnet fuzz/out/replay/PgSpec.Fuzz.dll
# replay TARGET FILE`. Exits with libFuzzer's status: 0, or non-zero on a crash or timeout.
# Environment: FUZZ_TIMEOUT_S (per input, 2), LIBFUZZER_ARGS (more libFuzzer flags).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/fuzz/out"
target=${1:-}
seconds=${2:-}
if [ -z "$target" ] || [[ ! "$seconds" =~ ^[0-9]+$ ]]; then
    echo "usage: LIBFUZZER_DOTNET=DRIVER fuzz/libfuzzer.sh TARGET SECONDS" >&2
    exit 2
fi

driver=${LIBFUZZER_DOTNET:-$(command -v libfuzzer-dotnet || true)}
if [ -z "$driver" ] || [ ! -x "$driver" ]; then
    echo "no libfuzzer-dotnet driver: set LIBFUZZER_DOTNET (see the top of this script)" >&2
    exit 2
fi

bash "$root/fuzz/run.sh" list | cut -f1 | grep -qx "$target" || { echo "no target '$target'" >&2; exit 2; }

queue="$out/libfuzzer/$target"
findings="$out/libfuzzer/$target-findings"
mkdir -p "$queue" "$findings"
seeds=()
for kind in corpus regressions; do
    [ -d "$root/fuzz/$kind/$target" ] && seeds+=("$root/fuzz/$kind/$target")
done

echo "== libFuzzer: $target for $seconds s"
# shellcheck disable=SC2086
PGSPEC_FUZZ_TARGET=$target "$driver" --target_path=dotnet --target_arg="$out/instrumented/PgSpec.Fuzz.dll" \
    -max_total_time="$seconds" -timeout="${FUZZ_TIMEOUT_S:-2}" -dict="$out/pgspec.dict" \
    -artifact_prefix="$findings/" -print_final_stats=1 ${LIBFUZZER_ARGS:-} "$queue" "${seeds[@]}"

#!/usr/bin/env bash
# CI's fuzzing step: installs AFL++ from Debian if it is missing, fuzzes every target for a fixed
# time each with fuzz/run.sh (about 10 minutes in all with the default), and fails on any crash or
# hang. The replay of the corpus and of the kept findings runs with the tests (tests/PgSpec.Fuzz.Tests).
#
#   bash fuzz/ci.sh [SECONDS_PER_TARGET]      default 45 (or FUZZ_CI_SECONDS)
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
per_target=${1:-${FUZZ_CI_SECONDS:-45}}
start=$(date +%s)

if ! command -v afl-fuzz >/dev/null; then
    echo "== installing afl++"
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -qq && apt-get install -y -qq afl++ >/dev/null; } || { echo "apt-get install afl++ failed"; exit 1; }
fi

"$root/fuzz/run.sh" all "$per_target"
status=$?
echo "fuzzing took $(( $(date +%s) - start )) s"
exit "$status"

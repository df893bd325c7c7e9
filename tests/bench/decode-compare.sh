#!/usr/bin/env bash
# Compares decoding throughput on identical bytes: a 64 MiB stream of DataRow messages (528,416
# messages of 127 bytes, ten non-NULL 8-byte columns: tests/PgSpec.Benchmarks/DataRowStream.cs),
# written once to a file by DecodeHarness and decoded, one way per process, by:
#
#   PgSpec (DecodeHarness/, Release):
#     borrowed  PgMessageReader.TryRead over the whole buffer as one span, validating, then
#               DataRow.View.Read(message) (no second validation), every value touched;
#     sequence  the same through TryRead's ReadOnlySequence overload (one segment);
#     pipe      the same through PgPipeMessageReader over PipeReader.Create(MemoryStream), as
#               PgSpec.Client reads its socket: the stream copied into the pipe's 64 KiB buffers
#               (PIPE_BUFFER) on the reading thread, as a socket read copies what has arrived;
#     pipe-inplace  the same reader over a PipeReader of the stream in place, in segments of
#               PIPE_BUFFER bytes, whose every read gives one segment more: the reader's own cost
#               (a pipe read per segment, messages straddling two segments) without the transport's
#               copy, which the one-span path does not make either;
#     owned     the borrowed path's reader, then each message's owned DataRow
#               (DataRow.View.ToMessage: the values copied with the places the reader's check
#               recorded, one array a row), every value touched;
#     owned-decode  framing reader, then DataRow.TryDecode per body (the owned decode of a body
#               alone: one strict validation), every value touched;
#     owned-floor  the least any owned row costs, nothing checked and no value read: framing, then
#               per body one new array of an owned DataRow's size (the values and an offset for
#               each) with the values copied in, and one object of DataRow's size holding it;
#     frame     framing and naming only, bodies not read;
#     memcpy    the whole buffer copied (Span.CopyTo): the ceiling;
#   jackc/pgproto3 v2 (pgproto3-decode/, Go):
#     whole     the harness frames the in-memory buffer (5-byte header) and calls
#               (*pgproto3.DataRow).Decode on each body, every value touched;
#     frontend  pgproto3.NewFrontend over a ChunkReader over a bytes.Reader, Receive until the end;
#   node-postgres' pg-protocol (pg-protocol-decode/, Node): the buffer given to its Parser in
#     64 KiB slices, as a socket's 'data' events, every field of every dataRow touched (as strings:
#     the Parser only has a text mode);
#   and on a second stream (DecodeHarness --write-varied) of as many messages of the same size,
#   whose ten columns are 4 to 12 bytes long in a layout that changes from each row to the next
#   (text values, whose lengths vary), PgSpec borrowed and pgproto3 whole buffer: there PgSpec's
#   reader cannot check a row from the layout of the row before it, and walks every row.
#
# Every process warms up, then times one pass. Go and Node: whole passes, at least WARMUP of them
# and for WARMUP_SECONDS. DecodeHarness: short passes (the first 8,192 messages) for
# WARMUP_SECONDS, so that the method of a pass is compiled again by .NET's tiered JIT after its
# calls, with the profile of a steady run (a whole pass or two leave it running the loop's
# on-stack-replacement code, compiled early from a partial profile: about a third slower and
# unsteady), then WARMUP whole passes. Each prints MB/s (10^6 bytes a
# second) and, for PgSpec and Go, the bytes allocated per message in that pass (PgSpec: this
# thread's allocations, all threads' for the pipe paths; Go: the heap's TotalAlloc). Every decoder
# prints the messages and values it found and a checksum of what it touched (each value's length
# and first byte; the framing path sums body lengths; pg-protocol's values are strings, summed as
# UTF-16 length and first code unit), compared with what DecodeHarness computed from the rows the
# stream was encoded from: a decoder that read something else fails the run.
#
# ROUNDS rounds run every path once each, in an order that rotates from round to round. Printed:
# every run as it ends, then per path the best and median MB/s and the allocation per message,
# and the ratios the project aims at (with their targets): PgSpec borrowed / pgproto3 whole
# (1.5), PgSpec borrowed / memcpy (0.15), PgSpec owned / pgproto3 whole (1), pipe in place /
# borrowed and pipe / borrowed (0.8), and, without targets, PgSpec borrowed / pg-protocol and PgSpec pipe / pgproto3 Frontend.
# The peers check less than PgSpec does (the harnesses' headers and the output say what): they are
# compared on a valid stream, where the checks cost time but never fire.
#
# Usage: tests/bench/decode-compare.sh
# Environment: ROUNDS (7), WARMUP (whole passes at least before the timed one; 2),
#   WARMUP_SECONDS (seconds of warm-up passes at least; 1),
#   PIPE_BUFFER (the pipe path's StreamPipeReaderOptions.BufferSize, 65536 as PgSpec.Client's;
#     4096 is the default of StreamPipeReaderOptions; also the in-place pipe's segment size),
#   PGPROTO3_GOPATH (a GOPATH holding github.com/jackc/pgproto3/v2 and its dependencies;
#     /usr/share/gocode, where Debian's golang-github-jackc-pgproto3-v2-dev puts them),
#   PG_PROTOCOL (what `npm install` is given; pg-protocol, the newest),
#   PG_PROTOCOL_DIR (a folder whose node_modules holds pg-protocol already: no npm install).
# Needs: dotnet, go and pgproto3 v2 (Debian: golang-go, golang-github-jackc-pgproto3-v2-dev; the
#   build is offline), node, npm and access to its registry (unless PG_PROTOCOL_DIR), python3,
#   about 200 MiB in the temporary folder.
# Exit status: 0 done, 1 a build or a harness failed or a decoder found other messages, values or
#   checksum than the reference, 2 something needed is missing.
set -euo pipefail

ROUNDS=${ROUNDS:-7}
WARMUP=${WARMUP:-2}
WARMUP_SECONDS=${WARMUP_SECONDS:-1}
PIPE_BUFFER=${PIPE_BUFFER:-65536}
PGPROTO3_GOPATH=${PGPROTO3_GOPATH:-/usr/share/gocode}
PG_PROTOCOL=${PG_PROTOCOL:-pg-protocol}
PG_PROTOCOL_DIR=${PG_PROTOCOL_DIR:-}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
bench="$repo/tests/bench"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# What is needed, before anything is built.
missing() { echo "$1" >&2; exit 2; }
command -v dotnet >/dev/null || missing "dotnet is missing; it builds and runs DecodeHarness."
command -v go >/dev/null || missing "go is missing (Debian: golang-go); it builds the pgproto3 harness."
[ -d "$PGPROTO3_GOPATH/src/github.com/jackc/pgproto3/v2" ] ||
    missing "pgproto3 v2 is not in $PGPROTO3_GOPATH (Debian: golang-github-jackc-pgproto3-v2-dev, or set PGPROTO3_GOPATH)."
command -v node >/dev/null || missing "node is missing; it runs the pg-protocol harness."
command -v python3 >/dev/null || missing "python3 is missing; it checks and sums up the runs."
if [ -z "$PG_PROTOCOL_DIR" ]; then
    command -v npm >/dev/null || missing "npm is missing; it installs pg-protocol (or set PG_PROTOCOL_DIR)."
elif [ ! -d "$PG_PROTOCOL_DIR/node_modules/pg-protocol" ]; then
    missing "PG_PROTOCOL_DIR=$PG_PROTOCOL_DIR has no node_modules/pg-protocol."
fi

# build NAME COMMAND...: runs a build, showing its output only when it fails.
build() {
    local name=$1
    shift
    if ! "$@" >"$work/build-$name.log" 2>&1; then
        echo "building $name failed:" >&2
        tail -n 30 "$work/build-$name.log" >&2
        exit 1
    fi
}

build DecodeHarness dotnet build "$bench/DecodeHarness/DecodeHarness.csproj" -c Release -o "$work/decode" -nologo -v quiet
# The Go harness: built offline in GOPATH mode against the packaged sources.
build pgproto3-decode env -C "$bench/pgproto3-decode" GO111MODULE=off GOFLAGS= GOPATH="$PGPROTO3_GOPATH" \
    GOCACHE="${GOCACHE:-$work/gocache}" go build -o "$work/pgproto3-decode" .
if [ -z "$PG_PROTOCOL_DIR" ]; then
    PG_PROTOCOL_DIR="$work/node"
    build pg-protocol npm install --prefix "$PG_PROTOCOL_DIR" --no-audit --no-fund --no-package-lock "$PG_PROTOCOL"
fi
pg_protocol_version=$(node -p "require('$PG_PROTOCOL_DIR/node_modules/pg-protocol/package.json').version")

stream="$work/datarows.bin"
dotnet "$work/decode/DecodeHarness.dll" --write "$stream" >"$work/reference"
varied="$work/varied.bin"
dotnet "$work/decode/DecodeHarness.dll" --write-varied "$varied" >"$work/reference-varied"

names=(borrowed sequence pipe pipe-inplace owned owned-decode owned-floor frame memcpy pgproto3-whole pgproto3-frontend pg-protocol varied-borrowed varied-pgproto3-whole)

# run NAME: one process decoding the stream one way; prints its line.
run() {
    case "$1" in
        varied-pgproto3-whole) "$work/pgproto3-decode" -path whole -warmup "$WARMUP" -warmup-seconds "$WARMUP_SECONDS" "$varied" | sed 's/^path=/path=varied-/' ;;
        varied-borrowed) dotnet "$work/decode/DecodeHarness.dll" --path borrowed --warmup "$WARMUP" --warmup-seconds "$WARMUP_SECONDS" "$varied" | sed 's/^path=/path=varied-/' ;;
        pgproto3-*) "$work/pgproto3-decode" -path "${1#pgproto3-}" -warmup "$WARMUP" -warmup-seconds "$WARMUP_SECONDS" "$stream" ;;
        pg-protocol) NODE_PATH="$PG_PROTOCOL_DIR/node_modules" node "$bench/pg-protocol-decode/decode.js" --warmup "$WARMUP" --warmup-seconds "$WARMUP_SECONDS" "$stream" ;;
        *) dotnet "$work/decode/DecodeHarness.dll" --path "$1" --warmup "$WARMUP" --warmup-seconds "$WARMUP_SECONDS" --pipe-buffer "$PIPE_BUFFER" "$stream" ;;
    esac
}

echo "load average before: $(cut -d ' ' -f 1-3 /proc/loadavg)" >&2
: >"$work/results"
for round in $(seq 1 "$ROUNDS"); do
    for k in "${!names[@]}"; do
        name=${names[$(((round - 1 + k) % ${#names[@]}))]}
        if ! line=$(run "$name" 2>"$work/stderr"); then
            echo "round $round: $name failed:" >&2
            cat "$work/stderr" >&2
            exit 1
        fi
        echo "round=$round $line" >>"$work/results"
        echo "round $round: $line" >&2
    done
done
echo "load average after: $(cut -d ' ' -f 1-3 /proc/loadavg)" >&2

echo
echo "changing layouts: $(sed 's/^reference //' "$work/reference-varied")"
echo "DataRow decode, $(sed 's/^reference //' "$work/reference"); $ROUNDS round(s), warm-up: $WARMUP pass(es) and $WARMUP_SECONDS s at least per process, $(nproc) CPUs"
echo "dotnet $(dotnet --version); $(go version); node $(node --version), pg-protocol $pg_protocol_version; pipe buffer $PIPE_BUFFER bytes"
python3 - "$work/reference" "$work/results" "$work/reference-varied" <<'PY'
import statistics, sys

def read_reference(path):
    reference, checksums = {}, {}
    for word in open(path).read().split()[1:]:
        key, value = word.split("=", 1)
        if key == "checksum":
            kind, number = value.split(":", 1)
            checksums[kind] = number
        else:
            reference[key] = value
    return reference, checksums

fixed = read_reference(sys.argv[1])
varied = read_reference(sys.argv[3])

runs, wrong = {}, []
for line in open(sys.argv[2]):
    words = dict(w.split("=", 1) for w in line.split())
    name = words["path"]
    kind, number = words["checksum"].split(":", 1)
    reference, checksums = varied if name.startswith("varied-") else fixed
    if name == "memcpy":
        if words["checksum"] != "copy:equal":
            wrong.append(f"round {words['round']}: memcpy: {words['checksum']}")
    elif (words["messages"] != reference["messages"] or checksums.get(kind) != number
          or words["values"] != ("-" if name in ("frame", "owned-floor") else reference["values"])):
        wrong.append(f"round {words['round']}: {name} found messages={words['messages']} values={words['values']} checksum={words['checksum']}, "
                     f"not messages={reference['messages']} values={reference['values']} checksum={kind}:{checksums.get(kind)}")
    alloc = None if words["alloc"] == "-" else float(words["alloc"])
    runs.setdefault(name, []).append((float(words["mbps"]), alloc))

labels = {
    "borrowed": "PgSpec borrowed, one segment",
    "sequence": "PgSpec borrowed, one ReadOnlySequence",
    "pipe": "PgSpec borrowed, PgPipeMessageReader",
    "pipe-inplace": "PgSpec PgPipeMessageReader, in place",
    "owned": "PgSpec owned, View.ToMessage",
    "owned-decode": "PgSpec owned, DataRow.TryDecode",
    "owned-floor": "an owned row's memory and copy alone",
    "frame": "PgSpec framing only",
    "memcpy": "memcpy (ceiling)",
    "pgproto3-whole": "pgproto3 v2, whole buffer",
    "pgproto3-frontend": "pgproto3 v2, Frontend",
    "pg-protocol": "pg-protocol (Node), Parser",
    "varied-borrowed": "changing layouts: PgSpec borrowed",
    "varied-pgproto3-whole": "changing layouts: pgproto3 whole buffer",
}
best = {n: max(r[0] for r in runs[n]) for n in runs}
median = {n: statistics.median(r[0] for r in runs[n]) for n in runs}
print()
print(f"{'path':<40}{'best MB/s':>11}{'median MB/s':>13}{'alloc B/msg':>13}")
for name, label in labels.items():
    allocs = [a for _, a in runs[name] if a is not None]
    alloc = f"{statistics.median(allocs):.2f}" if allocs else "-"
    print(f"{label:<40}{best[name]:>11.1f}{median[name]:>13.1f}{alloc:>13}")
print("(alloc: median over the rounds of the timed pass's bytes allocated / messages; PgSpec pipe paths: all threads)")

short = {"borrowed": "PgSpec borrowed", "pipe": "PgSpec pipe", "pipe-inplace": "PgSpec pipe in place", "owned": "PgSpec owned", "owned-decode": "PgSpec TryDecode", "owned-floor": "owned row's memory alone", "memcpy": "memcpy",
         "pgproto3-whole": "pgproto3 whole buffer", "pgproto3-frontend": "pgproto3 Frontend", "pg-protocol": "pg-protocol",
         "varied-borrowed": "changing layouts: PgSpec", "varied-pgproto3-whole": "pgproto3"}
print()
print(f"{'ratio':<42}{'best':>7}{'median':>8}{'target':>9}  median meets it")
for a, b, target in (("borrowed", "pgproto3-whole", 1.5), ("borrowed", "memcpy", 0.15), ("owned", "pgproto3-whole", 1.0), ("owned-decode", "pgproto3-whole", None), ("owned-floor", "pgproto3-whole", None),
                     ("pipe-inplace", "borrowed", 0.8), ("pipe", "borrowed", 0.8), ("borrowed", "pg-protocol", None), ("pipe", "pgproto3-frontend", None),
                     ("varied-borrowed", "varied-pgproto3-whole", None)):
    rb, rm = best[a] / best[b], median[a] / median[b]
    goal, verdict = ("", "") if target is None else (f">= {target:g}", "yes" if rm >= target else "no")
    print(f"{short[a] + ' / ' + short[b]:<42}{rb:>7.2f}{rm:>8.2f}{goal:>9}  {verdict}")

print("""
What the peers do not check that PgSpec's reader and DataRow decode check (valid input here, so
these checks only cost time):
  pgproto3 v2 (2.2.0): DataRow.Decode ignores bytes after the last value; a value length below -1
    panics (slice bounds out of range) instead of being an error; the values slice is sized from
    the column count before the body is checked to hold it. Frontend trusts the length word: below 4
    it panics, and there is no upper limit (ChunkReader allocates what the length says, up to
    4 GiB). The whole-buffer path's framing (type 'D', length >= 4, message inside the buffer) is
    the harness's own: pgproto3 v2 has no framer over a byte slice.
  pg-protocol: no bounds on the length word (below 4 it reads the next message's bytes; no upper
    limit); column count and value lengths are not checked against the message's end (a long value
    is read from the next message, bytes after the last value are skipped); a value length below -1
    gives an empty string and moves the read position backwards; values are decoded as UTF-8
    strings (invalid bytes become U+FFFD), the Parser has no binary mode.
  PgSpec: length word at least 4 and at most DataRow's limit (1 GiB + 2), checked from the header;
    column count x 4 bytes checked against the body before anything is read or allocated; each
    value length -1 or within the body; no byte left after the last value.""")

if wrong:
    print()
    print("decoders disagree with the reference:")
    for w in wrong:
        print("  " + w)
    sys.exit(1)
PY

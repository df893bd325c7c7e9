// Command pgproto3-decode is a benchmark peer of tests/bench/decode-compare.sh: it decodes the
// DataRow stream that DecodeHarness --write wrote (528,416 messages of 127 bytes, ten non-NULL
// 8-byte columns) with github.com/jackc/pgproto3/v2, touching every value, and prints one line in
// the format of DecodeHarness: path, messages, values, checksum (the sum of each value's length
// and first byte), seconds, mbps (10^6 bytes a second) and alloc (bytes the Go heap allocated per
// message in the timed pass, from runtime.MemStats.TotalAlloc).
//
// Paths:
//
//   - whole: the file in memory as one []byte. The harness frames each message itself (type byte
//     'D', Int32 length of at least 4, the message whole in the buffer: pgproto3 v2 has no framer
//     over a byte slice) and calls (*pgproto3.DataRow).Decode on the body, reusing one DataRow as
//     pgproto3's Frontend does; Decode makes each value a sub-slice of the buffer (no copy).
//   - frontend: pgproto3.NewFrontend over pgproto3.NewChunkReader(bytes.NewReader(buffer)), calling
//     Receive until the end, as a client reads a connection: ChunkReader copies the bytes into its
//     8 KiB buffers (a new one whenever a message does not fit in what is left).
//
// What pgproto3 v2 (2.2.0, Debian's golang-github-jackc-pgproto3-v2-dev) does not check that
// PgSpec's reader and DataRow decode do, from data_row.go, frontend.go and chunkreader:
//
//   - DataRow.Decode ignores bytes after the last value (PgSpec: "N bytes left over after the last
//     field");
//   - a value length below -1 is not an error: slicing with it panics (slice bounds out of range)
//     instead of returning one (PgSpec: only -1, NULL, is allowed);
//   - the column count (unsigned, as in PgSpec) sizes the values slice before the body is checked
//     to hold that many columns (PgSpec checks count x 4 bytes against the body first);
//   - Frontend.Receive trusts the length word: below 4 it panics (slice bounds out of range), and
//     there is no upper limit, ChunkReader allocates a buffer as large as the length says (up to
//     4 GiB) and waits for it (PgSpec: at least 4, at most DataRow's limit of 1 GiB + 2 bytes,
//     checked from the header before waiting for the body).
//
// Usage: pgproto3-decode -path whole|frontend [-warmup N] [-warmup-seconds S] FILE
//
// It warms up with at least N passes (2) and S seconds (1), then times one pass.
//
// Build (offline, with Debian's golang-go and golang-github-jackc-pgproto3-v2-dev):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o pgproto3-decode .
package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"time"

	"github.com/jackc/pgproto3/v2"
)

// tally is what a pass found: messages, values and the checksum of what it touched.
type tally struct {
	messages, values, checksum int64
}

// touch adds every value of row to t: its length and first byte.
func (t *tally) touch(row *pgproto3.DataRow) {
	for _, v := range row.Values {
		t.values++
		if v != nil {
			t.checksum += int64(len(v))
			if len(v) > 0 {
				t.checksum += int64(v[0])
			}
		}
	}
	t.messages++
}

// whole frames the messages of buf itself and decodes each body with DataRow.Decode.
func whole(buf []byte) (tally, error) {
	var t tally
	var row pgproto3.DataRow
	off := 0
	for off < len(buf) {
		if len(buf)-off < 5 {
			return t, fmt.Errorf("the stream ends inside a message header at offset %d", off)
		}
		if buf[off] != 'D' {
			return t, fmt.Errorf("expected DataRow at offset %d, read type byte %q", off, buf[off])
		}
		length := int(binary.BigEndian.Uint32(buf[off+1:]))
		if length < 4 || length > len(buf)-off-1 {
			return t, fmt.Errorf("message length %d at offset %d is below 4 or past the end of the stream", length, off)
		}
		if err := row.Decode(buf[off+5 : off+1+length]); err != nil {
			return t, fmt.Errorf("offset %d: %w", off, err)
		}
		t.touch(&row)
		off += 1 + length
	}
	return t, nil
}

// frontend reads buf through pgproto3's Frontend and ChunkReader, as from a connection.
func frontend(buf []byte) (tally, error) {
	var t tally
	source := bytes.NewReader(buf)
	f := pgproto3.NewFrontend(pgproto3.NewChunkReader(source), io.Discard)
	for {
		msg, err := f.Receive()
		if err != nil {
			// The end of the input is ErrUnexpectedEOF, whether or not it came between messages;
			// a stream cut inside a message shows as a message count below the reference's.
			if errors.Is(err, io.ErrUnexpectedEOF) && source.Len() == 0 {
				return t, nil
			}
			return t, err
		}
		row, ok := msg.(*pgproto3.DataRow)
		if !ok {
			return t, fmt.Errorf("expected DataRow, read %T", msg)
		}
		t.touch(row)
	}
}

func allocated() uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.TotalAlloc
}

func main() {
	path := flag.String("path", "", "whole or frontend")
	warmup := flag.Int("warmup", 2, "passes at least before the timed one")
	warmupSeconds := flag.Float64("warmup-seconds", 1, "seconds at least of passes before the timed one")
	flag.Parse()
	if flag.NArg() != 1 || *warmup < 0 || !(*warmupSeconds >= 0) {
		fmt.Fprintln(os.Stderr, "usage: pgproto3-decode -path whole|frontend [-warmup N] [-warmup-seconds S] FILE")
		os.Exit(2)
	}
	var pass func([]byte) (tally, error)
	switch *path {
	case "whole":
		pass = whole
	case "frontend":
		pass = frontend
	default:
		fmt.Fprintf(os.Stderr, "pgproto3-decode: unknown path %q (whole or frontend)\n", *path)
		os.Exit(2)
	}
	buf, err := os.ReadFile(flag.Arg(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, "pgproto3-decode:", err)
		os.Exit(1)
	}
	started := time.Now()
	for i := 0; i < *warmup || time.Since(started).Seconds() < *warmupSeconds; i++ {
		if _, err := pass(buf); err != nil {
			fmt.Fprintln(os.Stderr, "pgproto3-decode:", err)
			os.Exit(1)
		}
	}
	before := allocated()
	start := time.Now()
	t, err := pass(buf)
	elapsed := time.Since(start)
	after := allocated()
	if err != nil {
		fmt.Fprintln(os.Stderr, "pgproto3-decode:", err)
		os.Exit(1)
	}
	alloc := 0.0
	if t.messages > 0 {
		alloc = float64(after-before) / float64(t.messages)
	}
	fmt.Printf("path=pgproto3-%s messages=%d values=%d checksum=values:%d seconds=%.4f mbps=%.1f alloc=%.2f\n",
		*path, t.messages, t.values, t.checksum, elapsed.Seconds(), float64(len(buf))/elapsed.Seconds()/1e6, alloc)
}

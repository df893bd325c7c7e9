// Command pgproto3-server is a benchmark peer, not a database: a minimal PostgreSQL wire-protocol
// server built on the Backend of github.com/jackc/pgproto3/v2 that answers every query, whatever
// its SQL, with one constant row: one int4 column "?column?" holding 1 (what `SELECT 1` gives).
// tests/bench/serve-compare.sh runs pgbench against it, against PostgreSQL and against pgspec's
// server, so that pgspec's throughput can be set beside a small server written the way a Go
// developer would write one with pgproto3.
//
// It speaks protocol 3.0 correctly enough for psql and for pgbench in all three query modes:
//
//   - startup: SSLRequest and GSSENCRequest are refused with 'N' and the startup packet is read
//     again; any user and database are accepted without a password (AuthenticationOk), then
//     ParameterStatus (server_version, client_encoding, server_encoding, DateStyle,
//     integer_datetimes, standard_conforming_strings), BackendKeyData and ReadyForQuery 'I'.
//     A CancelRequest closes its connection (there is never anything to cancel).
//   - simple query: RowDescription, DataRow, CommandComplete "SELECT 1", ReadyForQuery; an empty
//     query string gives EmptyQueryResponse.
//   - extended query: Parse, Bind, Describe (statement: ParameterDescription with the parameter
//     types Parse declared, none for pgbench, then RowDescription; portal: RowDescription in the
//     portal's result format), Execute (DataRow and CommandComplete; PortalSuspended when the row
//     limit is reached first, as PostgreSQL does), Close, Sync, Flush. Bind's result format codes
//     are honoured: text "1" or binary int4 (4 bytes, big-endian). Unknown statement and portal
//     names, duplicate names and result formats other than 0 and 1 (at Execute) give the
//     ErrorResponse PostgreSQL gives, after which messages are skipped until Sync. Portals end at Sync, as they do in
//     PostgreSQL outside a transaction block (this server never opens one: status is always 'I').
//     Bind's parameters are not checked against the statement (the answer does not depend on them).
//
// Writes: Backend.Send in pgproto3 v2.2 encodes each message into a new slice (Encode(nil)) and
// writes it to the connection at once, one write system call per message. A server written for
// throughput does not do that, so this one encodes every message into one buffer per connection
// (Encode(dst) appends) and writes that buffer when the client waits for an answer: at
// ReadyForQuery (after Sync or a simple query), at Flush, and before closing. That is what
// pgproto3's later Backend (pgx v5: Send buffers, Flush writes) does; a bufio.Writer around the
// connection with Send would make the same system calls, plus a copy and an allocation per message.
// Reads go through pgproto3's ChunkReader, which reads the socket in 8 KiB chunks.
//
// Build (offline, with Debian's golang-go and golang-github-jackc-pgproto3-v2-dev):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o pgproto3-server .
//
// or, with network access, in module mode after `go mod init` and `go get github.com/jackc/pgproto3/v2`.
//
// Run: pgproto3-server -listen 127.0.0.1:5433 (also --listen, like pgspec). SIGTERM or SIGINT
// stops it.
package main

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/jackc/pgproto3/v2"
)

const int4OID = 23

// The answer's messages, made once and shared: Encode only reads them.
var (
	rowDescriptions = [2]*pgproto3.RowDescription{rowDescription(pgproto3.TextFormat), rowDescription(pgproto3.BinaryFormat)}
	dataRows        = [2]*pgproto3.DataRow{{Values: [][]byte{[]byte("1")}}, {Values: [][]byte{{0, 0, 0, 1}}}}
	selectOne       = &pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")}
	selectNone      = &pgproto3.CommandComplete{CommandTag: []byte("SELECT 0")}
	nextPid         uint32 // process ids handed out in BackendKeyData
)

func main() {
	listen := flag.String("listen", "127.0.0.1:5433", "address and TCP port to listen on")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "unexpected argument %q\n", flag.Arg(0))
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-stop
		ln.Close()
	}()
	for {
		conn, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			log.Print(err)
			continue
		}
		go serve(conn)
	}
}

// statement is a prepared statement; portal a bound one. Both only need to know whether the SQL
// was empty; the portal also its result format and whether its one row has been sent.
type statement struct {
	empty     bool
	paramOIDs []uint32
}

type portal struct {
	empty  bool
	format int16
	done   bool
}

type session struct {
	conn       net.Conn
	be         *pgproto3.Backend
	out        []byte // messages not yet written
	statements map[string]statement
	portals    map[string]*portal
	skipToSync bool // after an error in the extended protocol, as PostgreSQL does
}

func serve(conn net.Conn) {
	defer conn.Close()
	defer func() {
		// Malformed input must not take the whole server down with it.
		if r := recover(); r != nil {
			log.Printf("%v: %v", conn.RemoteAddr(), r)
		}
	}()
	if tcp, ok := conn.(*net.TCPConn); ok {
		tcp.SetNoDelay(true) // Go's default, said again: answers must not wait for Nagle
	}
	s := &session{
		conn:       conn,
		be:         pgproto3.NewBackend(pgproto3.NewChunkReader(conn), conn),
		out:        make([]byte, 0, 4096),
		statements: map[string]statement{},
		portals:    map[string]*portal{},
	}
	if !s.startup() {
		return
	}
	for {
		msg, err := s.be.Receive()
		if err != nil {
			if !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
				s.fatal("08P01", err.Error())
			}
			return
		}
		if !s.handle(msg) {
			s.flush()
			return
		}
	}
}

// startup answers the startup packet; false when the connection is to be closed.
func (s *session) startup() bool {
	for {
		msg, err := s.be.ReceiveStartupMessage()
		if err != nil {
			s.fatal("08P01", err.Error())
			return false
		}
		switch msg := msg.(type) {
		case *pgproto3.SSLRequest, *pgproto3.GSSEncRequest:
			if _, err := s.conn.Write([]byte{'N'}); err != nil {
				return false
			}
		case *pgproto3.CancelRequest:
			return false
		case *pgproto3.StartupMessage:
			if msg.Parameters["user"] == "" {
				s.fatal("28000", "no PostgreSQL user name specified in startup packet")
				return false
			}
			var key [4]byte
			if _, err := rand.Read(key[:]); err != nil {
				s.fatal("XX000", err.Error())
				return false
			}
			s.send(&pgproto3.AuthenticationOk{})
			for _, p := range [][2]string{
				{"server_version", "15.0"},
				{"client_encoding", "UTF8"},
				{"server_encoding", "UTF8"},
				{"DateStyle", "ISO, MDY"},
				{"integer_datetimes", "on"},
				{"standard_conforming_strings", "on"},
			} {
				s.send(&pgproto3.ParameterStatus{Name: p[0], Value: p[1]})
			}
			s.send(&pgproto3.BackendKeyData{ProcessID: atomic.AddUint32(&nextPid, 1), SecretKey: binary.BigEndian.Uint32(key[:])})
			return s.ready()
		default:
			s.fatal("08P01", fmt.Sprintf("unexpected startup message %T", msg))
			return false
		}
	}
}

// handle answers one message; false when the connection is to be closed.
func (s *session) handle(msg pgproto3.FrontendMessage) bool {
	if s.skipToSync {
		switch msg.(type) {
		case *pgproto3.Sync:
		case *pgproto3.Terminate:
			return false
		default:
			return true
		}
	}
	switch msg := msg.(type) {
	case *pgproto3.Query:
		// A simple query ends the implicit transaction, and with it every portal.
		s.portals = map[string]*portal{}
		if isEmpty(msg.String) {
			s.send(&pgproto3.EmptyQueryResponse{})
		} else {
			s.send(rowDescriptions[pgproto3.TextFormat])
			s.send(dataRows[pgproto3.TextFormat])
			s.send(selectOne)
		}
		return s.ready()
	case *pgproto3.Parse:
		if _, exists := s.statements[msg.Name]; exists && msg.Name != "" {
			return s.fail("42P05", fmt.Sprintf("prepared statement %q already exists", msg.Name))
		}
		s.statements[msg.Name] = statement{empty: isEmpty(msg.Query), paramOIDs: append([]uint32(nil), msg.ParameterOIDs...)}
		s.send(&pgproto3.ParseComplete{})
	case *pgproto3.Bind:
		st, ok := s.statements[msg.PreparedStatement]
		if !ok {
			return s.fail("26000", fmt.Sprintf("prepared statement %q does not exist", msg.PreparedStatement))
		}
		if _, exists := s.portals[msg.DestinationPortal]; exists && msg.DestinationPortal != "" {
			return s.fail("42P03", fmt.Sprintf("portal %q already exists", msg.DestinationPortal))
		}
		format := int16(pgproto3.TextFormat)
		switch len(msg.ResultFormatCodes) {
		case 0:
		case 1:
			format = msg.ResultFormatCodes[0]
		default:
			return s.fail("08P01", fmt.Sprintf("bind message has %d result formats but query has 1 columns", len(msg.ResultFormatCodes)))
		}
		s.portals[msg.DestinationPortal] = &portal{empty: st.empty, format: format}
		s.send(&pgproto3.BindComplete{})
	case *pgproto3.Describe:
		switch msg.ObjectType {
		case 'S':
			st, ok := s.statements[msg.Name]
			if !ok {
				return s.fail("26000", fmt.Sprintf("prepared statement %q does not exist", msg.Name))
			}
			s.send(&pgproto3.ParameterDescription{ParameterOIDs: st.paramOIDs})
			if st.empty {
				s.send(&pgproto3.NoData{})
			} else {
				s.send(rowDescriptions[pgproto3.TextFormat]) // formats are not known before Bind
			}
		case 'P':
			p, ok := s.portals[msg.Name]
			if !ok {
				return s.fail("34000", fmt.Sprintf("portal %q does not exist", msg.Name))
			}
			switch {
			case p.empty:
				s.send(&pgproto3.NoData{})
			case !knownFormat(p.format):
				s.send(rowDescription(p.format)) // as PostgreSQL does; Execute fails
			default:
				s.send(rowDescriptions[p.format])
			}
		default:
			return s.fail("08P01", fmt.Sprintf("invalid DESCRIBE message subtype %d", msg.ObjectType))
		}
	case *pgproto3.Execute:
		p, ok := s.portals[msg.Portal]
		if !ok {
			return s.fail("34000", fmt.Sprintf("portal %q does not exist", msg.Portal))
		}
		switch {
		case p.empty:
			s.send(&pgproto3.EmptyQueryResponse{})
		case p.done:
			s.send(selectNone)
		case !knownFormat(p.format):
			return s.fail("22023", fmt.Sprintf("unsupported format code: %d", p.format))
		default:
			s.send(dataRows[p.format])
			p.done = true
			if msg.MaxRows == 1 {
				// PostgreSQL stops at the limit without looking for a next row.
				s.send(&pgproto3.PortalSuspended{})
			} else {
				s.send(selectOne)
			}
		}
	case *pgproto3.Close:
		switch msg.ObjectType {
		case 'S':
			delete(s.statements, msg.Name)
		case 'P':
			delete(s.portals, msg.Name)
		default:
			return s.fail("08P01", fmt.Sprintf("invalid CLOSE message subtype %d", msg.ObjectType))
		}
		s.send(&pgproto3.CloseComplete{})
	case *pgproto3.Sync:
		s.skipToSync = false
		s.portals = map[string]*portal{}
		return s.ready()
	case *pgproto3.Flush:
		return s.flush()
	case *pgproto3.Terminate:
		return false
	case *pgproto3.CopyData, *pgproto3.CopyDone, *pgproto3.CopyFail:
		// Outside COPY these are ignored, as PostgreSQL does.
	case *pgproto3.FunctionCall:
		s.send(&pgproto3.ErrorResponse{Severity: "ERROR", Code: "0A000", Message: "function calls are not supported"})
		return s.ready()
	default:
		s.fatal("08P01", fmt.Sprintf("unexpected message %T", msg))
		return false
	}
	return true
}

func rowDescription(format int16) *pgproto3.RowDescription {
	return &pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{
		Name: []byte("?column?"), DataTypeOID: int4OID, DataTypeSize: 4, TypeModifier: -1, Format: format,
	}}}
}

func knownFormat(format int16) bool {
	return format == pgproto3.TextFormat || format == pgproto3.BinaryFormat
}

// isEmpty: PostgreSQL answers a query string without a statement with EmptyQueryResponse.
func isEmpty(sql string) bool { return strings.Trim(sql, " \t\r\n;") == "" }

func (s *session) send(msg pgproto3.BackendMessage) { s.out = msg.Encode(s.out) }

func (s *session) flush() bool {
	if len(s.out) == 0 {
		return true
	}
	_, err := s.conn.Write(s.out)
	s.out = s.out[:0]
	return err == nil
}

func (s *session) ready() bool {
	s.send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	return s.flush()
}

// fail reports an error in the extended protocol and skips what follows up to Sync.
func (s *session) fail(code, message string) bool {
	s.send(&pgproto3.ErrorResponse{Severity: "ERROR", Code: code, Message: message})
	s.skipToSync = true
	return true
}

func (s *session) fatal(code, message string) {
	s.send(&pgproto3.ErrorResponse{Severity: "FATAL", Code: code, Message: message})
	s.flush()
}

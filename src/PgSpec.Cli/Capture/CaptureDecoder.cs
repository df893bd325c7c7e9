using System.Buffers;
using System.Net;
using PgSpec.Protocol;

namespace PgSpec.Cli.Capture;

/// <summary>Where <see cref="CaptureDecoder"/> puts what it finds.</summary>
internal interface ICaptureOutput
{
    /// <summary>One whole, validated message of connection <paramref name="connection"/>, completed by a packet captured at <paramref name="time"/>.</summary>
    void Message(long connection, DateTime time, PgReceivedMessage message, DecodeContext context);

    /// <summary>Something that is not a message: a connection seen, a gap, encryption, bytes that break the protocol, an end.</summary>
    void Event(long connection, DateTime time, CaptureEvent kind, string text, long bytes = 0);

    /// <summary>The capture was read to its end (or the live capture stopped): outputs that summarize write now.</summary>
    void Complete()
    {
    }
}

/// <summary>Gives everything to several outputs, in order.</summary>
internal sealed class CaptureOutputs(IReadOnlyList<ICaptureOutput> outputs) : ICaptureOutput
{
    public void Message(long connection, DateTime time, PgReceivedMessage message, DecodeContext context)
    {
        foreach (ICaptureOutput output in outputs)
        {
            output.Message(connection, time, message, context);
        }
    }

    public void Event(long connection, DateTime time, CaptureEvent kind, string text, long bytes = 0)
    {
        foreach (ICaptureOutput output in outputs)
        {
            output.Event(connection, time, kind, text, bytes);
        }
    }

    public void Complete()
    {
        foreach (ICaptureOutput output in outputs)
        {
            output.Complete();
        }
    }
}

/// <summary>What the bytes after a possible message boundary say of it.</summary>
internal enum Proof
{
    /// <summary>They are not whole valid messages from there.</summary>
    Failed,

    /// <summary>Valid so far; more bytes will tell.</summary>
    Waiting,

    /// <summary>A boundary.</summary>
    Proved,
}

/// <summary>What <see cref="ICaptureOutput.Event"/> reports.</summary>
internal enum CaptureEvent
{
    /// <summary>The first packet of a connection (text: client and server).</summary>
    Connection,

    /// <summary>Right after <see cref="Connection"/>: the connection's start was not captured, it is picked up mid-stream.</summary>
    MidStream,

    /// <summary>Bytes lost from the capture (bytes: how many).</summary>
    Gap,

    /// <summary>Decoding resumed at a message boundary after a gap or a mid-stream start (bytes: how many were skipped to find it).</summary>
    Resumed,

    /// <summary>The connection turned to TLS or GSSAPI encryption: nothing more is decoded.</summary>
    Encrypted,

    /// <summary>Bytes that break the protocol: that direction is decoded again only after a boundary is found.</summary>
    Malformed,

    /// <summary>The connection ended (FIN, RST, or the end of the capture).</summary>
    Ended,

    /// <summary>A message larger than the decoder holds was passed over (bytes: its wire length).</summary>
    Skipped,
}

/// <summary>
/// Turns TCP segments of PostgreSQL connections into messages: a connection is a pair of
/// endpoints one of which is a server port; its two directions are reassembled on their own
/// (<see cref="TcpDirection"/>) and decoded with one <see cref="DecodeContext"/>, in the order the
/// capture saw the bytes, so that the context rules are those of <c>pgspec decode</c> and the
/// proxy (startup, the 'p' family, COPY, the protocol version of the startup packet).
/// </summary>
/// <remarks>
/// After a gap, or when the start of a connection was not captured, a direction is decoded again
/// only from a position where the bytes that follow frame and validate as whole messages of that
/// direction up to the end of what has arrived, at least <see cref="ProofMessages"/> of them or
/// ending exactly where a packet ended: a boundary proved by the bytes, never guessed. Memory per
/// connection is what its directions hold out of order plus one incomplete message each.
/// </remarks>
internal sealed class CaptureDecoder
{
    /// <summary>Consecutive whole messages that prove a boundary found by scanning.</summary>
    public const int ProofMessages = 3;

    /// <summary>Starts of a possible message kept waiting for more bytes while looking for a boundary.</summary>
    private const int MaxWaitingStarts = 64;

    /// <summary>The largest message held to be decoded (8 MiB); a larger one is reported and passed over.</summary>
    public const int MaxHeldMessage = 8 << 20;

    /// <summary>Connections that ended whose streams' ends are remembered, the latest ones (see <see cref="_ended"/>).</summary>
    public const int MaxEndedRemembered = 1 << 16;

    /// <summary>How far before the end of a direction of a connection that ended a segment is taken for a late retransmission (16 MiB, more than a TCP window holds).</summary>
    private const uint LateCopyRange = 16 << 20;

    private readonly HashSet<int> _ports;
    private readonly IPEndPoint? _server;
    private readonly ICaptureOutput _output;
    private readonly int _maxHeldBytes;
    private readonly Dictionary<(IPEndPoint Client, IPEndPoint Server), Connection> _connections = new();

    // Where each direction of the connections that ended last began and ended (null: it never
    // started), so that a late retransmission of their bytes starts no connection of its own;
    // the oldest of MaxEndedRemembered are forgotten first.
    private readonly Dictionary<(IPEndPoint Client, IPEndPoint Server), ((uint First, uint Next)? Client, (uint First, uint Next)? Server)> _ended = new();
    private readonly Queue<(IPEndPoint Client, IPEndPoint Server)> _endedOrder = new();
    private readonly long _maxHeldTotal;
    private long _heldTotal;
    private long _nextId;

    /// <summary>
    /// Decodes connections to the given server ports (or only to <paramref name="server"/> when
    /// given); <paramref name="maxHeldBytes"/> bounds what each direction holds out of order, and
    /// <paramref name="maxHeldTotal"/> what all connections hold together (out of order, and of
    /// messages not yet whole): past it, the connections holding most give up (holes become gaps,
    /// messages not yet whole are passed over) until the total is half the bound.
    /// </summary>
    public CaptureDecoder(IEnumerable<int> ports, IPEndPoint? server, ICaptureOutput output, int maxHeldBytes = 1 << 20, long maxHeldTotal = 256L << 20)
    {
        _maxHeldTotal = maxHeldTotal;
        _ports = [.. ports];
        _server = server;
        _output = output;
        _maxHeldBytes = maxHeldBytes;
    }

    /// <summary>Connections seen so far.</summary>
    public long Connections => _nextId;

    /// <summary>Segments that belonged to no PostgreSQL connection (another port).</summary>
    public long Ignored { get; private set; }

    /// <summary>Takes the next captured segment.</summary>
    public void Add(TcpSegment segment)
    {
        bool toServer;
        if (IsServer(segment.Destination))
        {
            toServer = true;
        }
        else if (IsServer(segment.Source))
        {
            toServer = false;
        }
        else
        {
            Ignored++;
            return;
        }

        (IPEndPoint client, IPEndPoint server) = toServer ? (segment.Source, segment.Destination) : (segment.Destination, segment.Source);
        if (_connections.TryGetValue((client, server), out Connection? connection) && !connection.Closed
            && (segment.Flags & (TcpFlags.Syn | TcpFlags.Ack)) == TcpFlags.Syn && connection.HasData)
        {
            // A client's SYN on a pair of endpoints that carried data: the ports were used again
            // for a new connection, and the capture missed the old one's end.
            _heldTotal -= connection.HeldBytes;
            connection.Finish(segment.Timestamp);
            connection = null;
        }

        if (connection is null || connection.Closed)
        {
            if ((segment.Flags & TcpFlags.Syn) == 0 && (segment.Payload.IsEmpty || (segment.Flags & TcpFlags.Rst) != 0 || IsLateCopy(client, server, segment, toServer)))
            {
                // A connection starts with a SYN, or is picked up at data: the last packets of one
                // that ended (a FIN's acknowledgment, a reset, a retransmission of bytes it
                // carried) start nothing.
                return;
            }

            _ended.Remove((client, server));

            connection = new Connection(this, ++_nextId, client, server, midStream: (segment.Flags & TcpFlags.Syn) == 0);
            _connections[(client, server)] = connection;
            _output.Event(connection.Id, segment.Timestamp, CaptureEvent.Connection, connection.Describe());
            if (connection.MidStream)
            {
                _output.Event(connection.Id, segment.Timestamp, CaptureEvent.MidStream, "its start was not captured: picked up mid-stream, decoded from the first message boundary the bytes prove");
            }
        }

        long heldBefore = connection.HeldBytes;
        connection.Add(segment, toServer);
        _heldTotal += connection.HeldBytes - heldBefore;
        if (connection.Closed)
        {
            _heldTotal -= connection.HeldBytes;
            _connections.Remove((client, server));
            Remember(client, server, connection);
        }

        if (_heldTotal > _maxHeldTotal)
        {
            ReleaseHeld(segment.Timestamp);
        }
    }

    /// <summary>Bytes held out of order by all open connections.</summary>
    public long HeldBytes => _heldTotal;

    /// <summary>How many times a place in a stream was examined as a message boundary while resynchronising: linear in the bytes, not quadratic.</summary>
    internal long BoundaryAttempts { get; private set; }

    private void ReleaseHeld(DateTime time)
    {
        foreach (Connection connection in _connections.Values.OrderByDescending(c => c.HeldBytes))
        {
            if (_heldTotal <= _maxHeldTotal / 2)
            {
                break;
            }

            long before = connection.HeldBytes;
            connection.ReleaseHeld(time);
            _heldTotal += connection.HeldBytes - before;
        }
    }

    /// <summary>The capture ended: what the connections hold is decoded, holes reported, and each ends.</summary>
    public void Finish(DateTime time)
    {
        foreach (Connection connection in _connections.Values)
        {
            connection.Finish(time);
        }

        _connections.Clear();
        _heldTotal = 0;
    }

    /// <summary>Notes where the directions of a connection that ended ended.</summary>
    private void Remember(IPEndPoint client, IPEndPoint server, Connection connection)
    {
        if (_ended.Count >= MaxEndedRemembered && _endedOrder.TryDequeue(out var oldest))
        {
            _ended.Remove(oldest);
        }

        if (_ended.TryAdd((client, server), connection.StreamEnds))
        {
            _endedOrder.Enqueue((client, server));
        }
        else
        {
            _ended[(client, server)] = connection.StreamEnds;
        }
    }

    /// <summary>
    /// Whether a segment without SYN on the endpoints of a connection that ended begins within the
    /// last <see cref="LateCopyRange"/> bytes its direction carried: a late retransmission of that
    /// connection's bytes, not the start of another (whose first sequence number, random, falls
    /// there rarely).
    /// </summary>
    private bool IsLateCopy(IPEndPoint client, IPEndPoint server, TcpSegment segment, bool toServer)
    {
        if (!_ended.TryGetValue((client, server), out var ends) || (toServer ? ends.Client : ends.Server) is not var (first, next))
        {
            return false;
        }

        uint behind = next - segment.Sequence;
        return behind > 0 && behind <= Math.Min(next - first, LateCopyRange);
    }

    private bool IsServer(IPEndPoint endpoint)
        => _server is not null ? endpoint.Equals(_server) : _ports.Contains(endpoint.Port);

    /// <summary>One connection: its two directions and their shared context.</summary>
    private sealed class Connection
    {
        private readonly CaptureDecoder _owner;
        private readonly IPEndPoint _client;
        private readonly IPEndPoint _server;
        private readonly bool _midStream;
        private readonly DecodeContext _context;
        private readonly Side _frontend;
        private readonly Side _backend;
        private int _ended;

        public Connection(CaptureDecoder owner, long id, IPEndPoint client, IPEndPoint server, bool midStream)
        {
            _owner = owner;
            Id = id;
            _client = client;
            _server = server;
            _midStream = midStream;

            // A connection picked up in the middle is past its startup: typed messages both ways.
            _context = new DecodeContext { Phase = midStream ? PgSessionPhase.Normal : PgSessionPhase.Startup };
            _frontend = new Side(this, PgDirection.Frontend, midStream);
            _backend = new Side(this, PgDirection.Backend, midStream);
        }

        public long Id { get; }

        /// <summary>Both directions ended (an encrypted connection stays, unread, until then: its later packets are not a new connection).</summary>
        public bool Closed => _ended == 2;

        public bool Encrypted { get; private set; }

        public ICaptureOutput Output => _owner._output;

        public DecodeContext Context => _context;

        public int MaxHeldBytes => _owner._maxHeldBytes;

        /// <summary>Counts one look for a message boundary (see <see cref="CaptureDecoder.BoundaryAttempts"/>).</summary>
        public void CountBoundaryAttempt() => _owner.BoundaryAttempts++;

        public bool MidStream => _midStream;

        public string Describe() => $"{Format(_client)} -> {Format(_server)}";

        public void Add(TcpSegment segment, bool toServer)
        {
            // What the sender acknowledges of the other direction reached it: a hole there was lost
            // by the capture, and is a gap now rather than at the hold bound or the capture's end.
            if ((segment.Flags & TcpFlags.Ack) != 0 && (segment.Flags & TcpFlags.Rst) == 0)
            {
                (toServer ? _backend : _frontend).Tcp.Acknowledged(segment.Acknowledgment, segment.Timestamp);
            }

            (toServer ? _frontend : _backend).Tcp.Add(segment);
            if ((segment.Flags & TcpFlags.Rst) != 0)
            {
                // A reset ends the connection both ways, also when its sender had closed its side
                // already (a client that resets after its FIN the data the server still sends).
                (toServer ? _backend : _frontend).Tcp.Reset(segment.Timestamp);
            }
        }

        /// <summary>What its two directions hold: out of order, and of messages not yet whole.</summary>
        public long HeldBytes => _frontend.Tcp.HeldBytes + _backend.Tcp.HeldBytes + _frontend.PendingBytes + _backend.PendingBytes;

        public void ReleaseHeld(DateTime time)
        {
            _frontend.Tcp.ReleaseHeld(time);
            _backend.Tcp.ReleaseHeld(time);
            _frontend.ReleasePending(time);
            _backend.ReleasePending(time);
        }

        /// <summary>The first and next sequence numbers of each direction's stream (null for one that never started).</summary>
        public ((uint First, uint Next)? Client, (uint First, uint Next)? Server) StreamEnds => (_frontend.Tcp.Sequences, _backend.Tcp.Sequences);

        /// <summary>Some of its bytes reached the decoder (or were reported lost).</summary>
        public bool HasData => _frontend.Tcp.DeliveredBytes + _frontend.Tcp.GapBytes + _backend.Tcp.DeliveredBytes + _backend.Tcp.GapBytes > 0;

        public void Finish(DateTime time)
        {
            _frontend.Tcp.Finish(time);
            _backend.Tcp.Finish(time);
        }

        public void SideEnded(PgDirection direction, TcpEnd how, DateTime time)
        {
            if (Closed)
            {
                // The other direction of a connection that a reset ended.
                return;
            }

            if (++_ended == 2 || how == TcpEnd.Reset)
            {
                _ended = 2;
                string text = how switch
                {
                    TcpEnd.Reset => "reset",
                    TcpEnd.Fin => "closed",
                    _ => "the capture ended",
                };
                Output.Event(Id, time, CaptureEvent.Ended, text);
            }
        }

        public void TurnEncrypted(DateTime time, string how)
        {
            if (!Encrypted)
            {
                Encrypted = true;
                Output.Event(Id, time, CaptureEvent.Encrypted, how);
            }
        }

        private static string Format(IPEndPoint endpoint) => endpoint.ToString();
    }

    /// <summary>One direction: reassembly, then framing and validation of what arrives.</summary>
    private sealed class Side : IReassemblyTarget
    {
        private readonly Connection _connection;
        private readonly PgDirection _direction;
        private PgMessageReader _reader;
        private byte[] _pending = [];
        private int _pendingLength;
        private bool _resync;

        // The offset in this direction's stream of the first byte not yet decoded (gaps counted).
        private long _streamOffset;

        // Bytes still to pass over of a message too large to hold.
        private long _skipping;

        // While looking for a boundary: the starts still waiting for more bytes, and how far the
        // held bytes were examined.
        private readonly List<int> _waitingStarts = [];
        private int _scannedStarts;

        public Side(Connection connection, PgDirection direction, bool midStream)
        {
            _connection = connection;
            _direction = direction;
            _reader = new PgMessageReader(direction, connection.Context);
            _resync = midStream;
            Tcp = new TcpDirection(this, connection.MaxHeldBytes);
        }

        public TcpDirection Tcp { get; }

        public void OnData(ReadOnlySpan<byte> data, DateTime timestamp)
        {
            if (_connection.Encrypted || data.IsEmpty)
            {
                return;
            }

            if (_skipping > 0)
            {
                // The rest of a message too large to hold: passed over.
                int skipped = (int)Math.Min(_skipping, data.Length);
                _skipping -= skipped;
                _streamOffset += skipped;
                data = data[skipped..];
                if (data.IsEmpty)
                {
                    return;
                }
            }

            if (_pendingLength == 0 && !_resync)
            {
                // The usual case: whole messages straight from the segment, no copy.
                int used = Decode(data, timestamp);
                _streamOffset += used;
                if (used == data.Length || _connection.Encrypted)
                {
                    return;
                }

                data = data[used..];
                if (!_resync)
                {
                    Hold(data);
                    SkipIfOversized(timestamp);
                    return;
                }
            }

            Hold(data);
            while (!_connection.Encrypted)
            {
                if (_resync && !TryResync(timestamp))
                {
                    return;
                }

                Drop(Decode(_pending.AsSpan(0, _pendingLength), timestamp));
                if (!_resync)
                {
                    SkipIfOversized(timestamp);
                    return;
                }
            }
        }

        public void OnGap(long missingBytes, DateTime timestamp)
        {
            if (_connection.Encrypted)
            {
                return;
            }

            _connection.Output.Event(_connection.Id, timestamp, CaptureEvent.Gap, $"{missingBytes} bytes of the {Name} stream were not captured", missingBytes);
            Drop(_pendingLength);
            _streamOffset += missingBytes;
            _skipping = 0;
            _waitingStarts.Clear();
            _scannedStarts = 0;
            _resync = true;
        }

        public void OnEnd(TcpEnd how, DateTime timestamp)
        {
            if (!_connection.Encrypted && _pendingLength > 0)
            {
                string text = _resync
                    ? $"the {Name} stream ended before a message boundary was found ({_pendingLength} bytes not decoded)"
                    : $"the {Name} stream ended inside a message ({_pendingLength} bytes of it)";
                _connection.Output.Event(_connection.Id, timestamp, CaptureEvent.Malformed, text, _pendingLength);
            }

            Drop(_pendingLength);
            ReturnBuffer();
            _connection.SideEnded(_direction, how, timestamp);
        }

        private string Name => _direction == PgDirection.Frontend ? "client's" : "server's";

        /// <summary>The memory this direction holds for a message not yet whole (or while looking for a boundary).</summary>
        public long PendingBytes => _pending.Length;

        /// <summary>
        /// Gives up what is held of a message not yet whole (passed over, as a message too large to
        /// hold) or of a search for a boundary (a gap): the capture's memory is needed elsewhere.
        /// </summary>
        public void ReleasePending(DateTime timestamp)
        {
            if (_pendingLength == 0 || _connection.Encrypted)
            {
                ReturnBuffer();
                return;
            }

            if (!_resync && _pendingLength >= 5 && _connection.Context.Phase != PgSessionPhase.Startup && !_connection.Context.ExpectEncryptionAnswer)
            {
                long wire = System.Buffers.Binary.BinaryPrimitives.ReadInt32BigEndian(_pending.AsSpan(1, 4)) + 1L;
                _connection.Output.Event(_connection.Id, timestamp, CaptureEvent.Skipped, $"a {Name} message of type '{PgTraceWriter.FormatByte(_pending[0])}' of {wire} bytes, not yet whole, was passed over: the capture holds too much for all connections", wire);
                _skipping = wire - _pendingLength;
                _reader.Skip(wire);
                _streamOffset += _pendingLength;
                _pendingLength = 0;
                ReturnBuffer();
                return;
            }

            if (_resync)
            {
                _connection.Output.Event(_connection.Id, timestamp, CaptureEvent.Gap, $"{_pendingLength} bytes of the {Name} stream held while looking for a message boundary were dropped: the capture holds too much for all connections", _pendingLength);
                Drop(_pendingLength);
                _waitingStarts.Clear();
                _scannedStarts = 0;
                ReturnBuffer();
            }
        }

        /// <summary>
        /// A typed message longer than <see cref="MaxHeldMessage"/> whose start is held: it is
        /// reported and passed over rather than held whole (the protocol allows DataRows and
        /// CopyData of a gigabyte, and a capture holds thousands of connections).
        /// </summary>
        private void SkipIfOversized(DateTime timestamp)
        {
            if (_pendingLength < 5 || _connection.Context.Phase == PgSessionPhase.Startup || _connection.Context.ExpectEncryptionAnswer)
            {
                return;
            }

            int length = System.Buffers.Binary.BinaryPrimitives.ReadInt32BigEndian(_pending.AsSpan(1, 4));
            if (length <= MaxHeldMessage)
            {
                return;
            }

            long wire = length + 1L;
            byte type = _pending[0];
            _connection.Output.Event(_connection.Id, timestamp, CaptureEvent.Skipped, $"a {Name} message of type '{PgTraceWriter.FormatByte(type)}' of {wire} bytes is larger than capture holds ({MaxHeldMessage} bytes): passed over", wire);
            _skipping = wire - _pendingLength;
            _reader.Skip(wire);
            int held = _pendingLength;
            _pendingLength = 0;
            _streamOffset += held;
            ReturnBuffer();
        }

        /// <summary>Decodes whole messages from the start of <paramref name="bytes"/>; returns the bytes used.</summary>
        private int Decode(ReadOnlySpan<byte> bytes, DateTime timestamp)
        {
            int offset = 0;
            while (offset < bytes.Length)
            {
                ReadOnlySpan<byte> rest = bytes[offset..];
                if (_direction == PgDirection.Frontend && _connection.Context.Phase == PgSessionPhase.Startup && rest[0] == 0x16 && _reader.Position == 0)
                {
                    // A TLS ClientHello where a startup packet belongs: PostgreSQL 17's direct TLS.
                    _connection.TurnEncrypted(timestamp, "direct TLS (the client's first bytes are a TLS handshake): not decoded from here");
                    return bytes.Length;
                }

                PgReadStatus status = _reader.TryRead(rest, out int consumed, out PgReceivedMessage message, out PgDecodeError error);
                if (status == PgReadStatus.Incomplete)
                {
                    break;
                }

                if (status == PgReadStatus.Malformed)
                {
                    _connection.Output.Event(_connection.Id, timestamp, CaptureEvent.Malformed, $"the {Name} bytes break the protocol: {error}; looking for the next message boundary");
                    _resync = true;
                    _waitingStarts.Clear();
                    _scannedStarts = 0;

                    // The bad message's first byte is skipped; the scan starts after it.
                    return offset + 1;
                }

                _connection.Output.Message(_connection.Id, timestamp, message, _connection.Context);
                offset += consumed;
                if (message.FrameKind == PgFrameKind.EncryptionAnswer && message.TypeByte is (int)'S' or (int)'G')
                {
                    _connection.TurnEncrypted(timestamp, message.TypeByte == 'S'
                        ? "the server accepted SSL: TLS from here, not decoded"
                        : "the server accepted GSSAPI encryption: not decoded from here");
                    return bytes.Length;
                }
            }

            return offset;
        }

        /// <summary>Looks for a proved message boundary in what is held; true when decoding can go on from it.</summary>
        private bool TryResync(DateTime timestamp)
        {
            // Each start is examined once when its bytes first arrive: one that fails never
            // succeeds with more bytes after it; one that needs more waits (a few at most) and is
            // examined again. The search is linear in what arrives, not quadratic.
            ReadOnlySpan<byte> held = _pending.AsSpan(0, _pendingLength);
            int found = -1;
            for (int i = 0; i < _waitingStarts.Count && found < 0; i++)
            {
                int start = _waitingStarts[i];
                _connection.CountBoundaryAttempt();
                switch (Proves(held[start..]))
                {
                    case Proof.Proved:
                        found = start;
                        break;
                    case Proof.Failed:
                        _waitingStarts.RemoveAt(i--);
                        break;
                }
            }

            for (int start = _scannedStarts; start < held.Length && found < 0; start++)
            {
                _connection.CountBoundaryAttempt();
                switch (Proves(held[start..]))
                {
                    case Proof.Proved:
                        found = start;
                        break;
                    case Proof.Waiting when _waitingStarts.Count < MaxWaitingStarts:
                        _waitingStarts.Add(start);
                        break;
                }
            }

            _scannedStarts = held.Length;
            if (found >= 0)
            {
                _waitingStarts.Clear();
                _scannedStarts = 0;
                Drop(found);
                _resync = false;
                _connection.Output.Event(_connection.Id, timestamp, CaptureEvent.Resumed, $"the {Name} stream resumes at a message boundary, {found} bytes on", found);

                // The messages that follow keep their offsets in the stream.
                _reader = new PgMessageReader(_direction, _connection.Context);
                _reader.Skip(_streamOffset);
                if (_connection.Context.Phase is PgSessionPhase.Startup or PgSessionPhase.Authentication)
                {
                    _connection.Context.Phase = PgSessionPhase.Normal;
                }

                return true;
            }

            // Nothing proved yet: keep what could still start a message, within the bound.
            if (_pendingLength > _connection.MaxHeldBytes)
            {
                _connection.Output.Event(_connection.Id, timestamp, CaptureEvent.Gap, $"no message boundary found in {_pendingLength} bytes of the {Name} stream: skipped", _pendingLength);
                Drop(_pendingLength);
                _waitingStarts.Clear();
                _scannedStarts = 0;
            }

            return false;
        }

        /// <summary>
        /// Whether the bytes frame and validate as whole typed messages to their end (at least one),
        /// or as <see cref="ProofMessages"/> of them; Waiting when they may still, with more bytes.
        /// </summary>
        private Proof Proves(ReadOnlySpan<byte> bytes)
        {
            // A scratch context: a candidate that fails must not teach the real one anything.
            var scratch = new DecodeContext { Phase = PgSessionPhase.Normal, ProtocolVersion = _connection.Context.ProtocolVersion };
            var reader = new PgMessageReader(_direction, scratch);
            int messages = 0;
            int offset = 0;
            while (offset < bytes.Length)
            {
                PgReadStatus status = reader.TryRead(bytes[offset..], out int consumed, out PgReceivedMessage message, out _);
                if (status == PgReadStatus.Malformed || (status == PgReadStatus.Message && message.IsUnknown))
                {
                    return Proof.Failed;
                }

                if (status == PgReadStatus.Incomplete)
                {
                    // A message too large to hold never proves anything here.
                    ReadOnlySpan<byte> rest = bytes[offset..];
                    if (rest.Length >= 5 && System.Buffers.Binary.BinaryPrimitives.ReadInt32BigEndian(rest[1..]) > MaxHeldMessage)
                    {
                        return messages >= ProofMessages ? Proof.Proved : Proof.Failed;
                    }

                    return messages >= ProofMessages ? Proof.Proved : Proof.Waiting;
                }

                messages++;
                offset += consumed;
                if (messages >= ProofMessages)
                {
                    return Proof.Proved;
                }
            }

            return messages > 0 ? Proof.Proved : Proof.Waiting;
        }

        private void Hold(ReadOnlySpan<byte> data)
        {
            if (_pending.Length - _pendingLength < data.Length)
            {
                long wanted = Math.Max((long)_pendingLength + data.Length, Math.Max(256, 2L * _pending.Length));
                byte[] larger = ArrayPool<byte>.Shared.Rent((int)Math.Min(wanted, Array.MaxLength));
                _pending.AsSpan(0, _pendingLength).CopyTo(larger);
                ReturnBuffer();
                _pending = larger;
            }

            data.CopyTo(_pending.AsSpan(_pendingLength));
            _pendingLength += data.Length;
        }

        private void Drop(int count)
        {
            if (count <= 0)
            {
                return;
            }

            _pending.AsSpan(count, _pendingLength - count).CopyTo(_pending);
            _pendingLength -= count;
            _streamOffset += count;
            if (_pendingLength == 0 && _pending.Length > 64 * 1024)
            {
                ReturnBuffer();
            }
        }

        private void ReturnBuffer()
        {
            if (_pending.Length > 0)
            {
                ArrayPool<byte>.Shared.Return(_pending);
            }

            _pending = [];
        }
    }
}

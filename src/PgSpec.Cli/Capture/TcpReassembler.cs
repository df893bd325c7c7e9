using System.Buffers;

namespace PgSpec.Cli.Capture;

/// <summary>How one direction of a TCP connection ended.</summary>
internal enum TcpEnd
{
    /// <summary>The sender closed its side: every byte before its FIN was reached.</summary>
    Fin,

    /// <summary>A segment with RST was seen: the connection is gone.</summary>
    Reset,

    /// <summary>The capture ended before the connection did.</summary>
    CaptureEnded,
}

/// <summary>
/// Receives one direction of a TCP connection as a byte stream, in order, from a
/// <see cref="TcpDirection"/>.
/// </summary>
internal interface IReassemblyTarget
{
    /// <summary>
    /// The next bytes of the stream. <paramref name="data"/> is only valid during the call: whoever
    /// keeps it copies it.
    /// </summary>
    /// <param name="data">The bytes, never empty.</param>
    /// <param name="timestamp">When the packet that completed them was captured.</param>
    void OnData(ReadOnlySpan<byte> data, DateTime timestamp);

    /// <summary>
    /// The next <paramref name="missingBytes"/> bytes of the stream are lost (never captured, or cut
    /// off by the capture's snap length): the data that follows comes after them.
    /// </summary>
    /// <param name="missingBytes">How many bytes are missing, at least 1.</param>
    /// <param name="timestamp">When the packet that made the loss certain was captured.</param>
    void OnGap(long missingBytes, DateTime timestamp);

    /// <summary>The stream ended: nothing more comes for this direction.</summary>
    /// <param name="how">Why it ended.</param>
    /// <param name="timestamp">When the packet that ended it was captured, or the capture's end.</param>
    void OnEnd(TcpEnd how, DateTime timestamp);
}

/// <summary>
/// Reassembles one direction of one TCP connection from its captured segments: gives its
/// <see cref="IReassemblyTarget"/> the stream's bytes once each and in order, with the holes that
/// cannot be filled reported as gaps.
/// </summary>
/// <remarks>
/// <para>
/// A SYN fixes the initial sequence number: data begins one after it (a SYN's own payload counts
/// from there). Without a SYN the first segment that carries data (or a FIN) fixes the start and
/// <see cref="StartedMidStream"/> is set; a segment before that start, arriving later, is dropped
/// like an old duplicate, since the bytes before the start were never part of the stream given.
/// </para>
/// <para>
/// Sequence numbers are compared in serial-number arithmetic (they wrap around 2^32). Data in
/// order goes to the target straight from the segment, without a copy; data already delivered
/// (retransmissions, duplicates, the overlapping part of a segment) is dropped. Data ahead of a
/// hole is copied into buffers rented from <see cref="ArrayPool{T}.Shared"/> and held, in sequence
/// order, until the hole is filled; where held segments overlap, the first copy of each byte is
/// kept. At most the constructor's <c>maxHeldBytes</c> bytes of data are held: when a segment
/// would need more, the earliest hole is declared lost (<see cref="IReassemblyTarget.OnGap"/> with
/// its exact size) and delivery resumes after it, as many times as needed. A segment more than
/// <see cref="Window"/> bytes behind the next expected byte is an old duplicate and dropped; one
/// more than that far ahead begins after a gap: what is held is delivered (its holes as gaps),
/// then a gap up to the segment.
/// </para>
/// <para>
/// A segment the capture cut short (<see cref="TcpSegment.WireLength"/> larger than its payload)
/// gives its captured bytes, then a gap the size of what was cut off, in its place in the stream.
/// A FIN takes one sequence number after its segment's data and ends the stream (
/// <see cref="TcpEnd.Fin"/>) once every byte before it was delivered; data beyond it is ignored. An
/// RST ends the stream at once (<see cref="TcpEnd.Reset"/>): what is contiguous has already been
/// delivered, what is held is dropped, and an RST's payload (diagnostic text at most) is not
/// stream data. Whatever ends the stream, later segments are ignored and the held buffers are
/// returned to the pool.
/// </para>
/// </remarks>
internal sealed class TcpDirection
{
    /// <summary>
    /// How far from the next expected byte, either way, a segment may lie and still be taken for part
    /// of the stream: 1 GiB.
    /// </summary>
    internal const int Window = 1 << 30;

    private readonly IReassemblyTarget _target;
    private readonly int _maxHeldBytes;

    // Held ranges, sorted by sequence number, never overlapping each other, each beginning after
    // _next; a range without a buffer is bytes the capture cut off (delivered as a gap).
    private readonly List<Held> _held = [];

    private bool _started;
    private uint _first;
    private uint _next;
    private bool _finKnown;
    private uint _finSequence;
    private bool _ended;

    /// <summary>Creates the reassembler of one direction.</summary>
    /// <param name="target">Receives the stream.</param>
    /// <param name="maxHeldBytes">How many bytes of out-of-order data may be held at most (1 MiB by default).</param>
    public TcpDirection(IReassemblyTarget target, int maxHeldBytes = 1 << 20)
    {
        ArgumentNullException.ThrowIfNull(target);
        ArgumentOutOfRangeException.ThrowIfNegative(maxHeldBytes);
        _target = target;
        _maxHeldBytes = maxHeldBytes;
    }

    /// <summary>No SYN was seen before the first data: the stream begins at that segment.</summary>
    public bool StartedMidStream { get; private set; }

    /// <summary>How many bytes of data are held, waiting for a hole before them to be filled.</summary>
    public long HeldBytes { get; private set; }

    /// <summary>How many bytes were given to <see cref="IReassemblyTarget.OnData"/>.</summary>
    public long DeliveredBytes { get; private set; }

    /// <summary>How many bytes were reported lost through <see cref="IReassemblyTarget.OnGap"/>.</summary>
    public long GapBytes { get; private set; }

    /// <summary>The stream ended (<see cref="IReassemblyTarget.OnEnd"/> was called).</summary>
    public bool Ended => _ended;

    /// <summary>
    /// The sequence numbers of the stream's first byte and of the next byte it expects; null
    /// before it started.
    /// </summary>
    public (uint First, uint Next)? Sequences => _started ? (_first, _next) : null;

    /// <summary>Takes the next captured segment of this direction.</summary>
    /// <param name="segment">The segment; its payload is copied if it has to be kept.</param>
    public void Add(TcpSegment segment)
    {
        if (_ended)
        {
            return;
        }

        DateTime timestamp = segment.Timestamp;
        TcpFlags flags = segment.Flags;
        if ((flags & TcpFlags.Rst) != 0)
        {
            End(TcpEnd.Reset, timestamp);
            return;
        }

        uint sequence = segment.Sequence;
        if ((flags & TcpFlags.Syn) != 0)
        {
            sequence++;
            if (!_started)
            {
                _started = true;
                _next = sequence;
                _first = sequence;
            }
        }

        ReadOnlySpan<byte> data = segment.Payload;
        int cutOff = Math.Max(0, segment.WireLength - data.Length);
        bool fin = (flags & TcpFlags.Fin) != 0;
        if (!_started)
        {
            if (data.IsEmpty && cutOff == 0 && !fin)
            {
                return;
            }

            _started = true;
            StartedMidStream = true;
            _next = sequence;
            _first = sequence;
        }

        if (!data.IsEmpty)
        {
            AddRange(sequence, data, data.Length, timestamp);
        }

        if (cutOff > 0 && !_ended)
        {
            AddRange(sequence + (uint)data.Length, default, cutOff, timestamp);
        }

        if (fin && !_ended)
        {
            NoteFin(sequence + (uint)data.Length + (uint)cutOff, timestamp);
        }

        EndIfFinReached(timestamp);
    }

    /// <summary>
    /// The capture ended: delivers what is held (the holes before it as gaps) and ends the stream
    /// with <see cref="TcpEnd.CaptureEnded"/>, or with <see cref="TcpEnd.Fin"/> when a FIN was seen
    /// (a hole before it is a gap). Nothing happens if the stream ended already.
    /// </summary>
    /// <param name="timestamp">When the capture ended.</param>
    public void Finish(DateTime timestamp)
    {
        if (_ended)
        {
            return;
        }

        DeliverAllHeld(timestamp);
        if (_finKnown)
        {
            long hole = Relative(_finSequence);
            if (hole > 0)
            {
                Gap(hole, timestamp);
                _next = _finSequence;
            }

            End(TcpEnd.Fin, timestamp);
        }
        else
        {
            End(TcpEnd.CaptureEnded, timestamp);
        }
    }

    /// <summary>
    /// Gives up waiting for the holes before what is held (the capture's memory is needed
    /// elsewhere): they are gaps now, and what is held is delivered. The stream goes on.
    /// </summary>
    /// <param name="timestamp">When the decision was made (the current packet's time).</param>
    public void ReleaseHeld(DateTime timestamp)
    {
        if (!_ended)
        {
            DeliverAllHeld(timestamp);
            EndIfFinReached(timestamp);
        }
    }

    /// <summary>
    /// The receiver acknowledged this direction's stream up to <paramref name="acknowledgment"/>
    /// (the next byte it expects): the bytes before it that were not captured reached the receiver,
    /// so the capture lost them. The holes before it are gaps at once, and what is held after them
    /// is delivered, instead of waiting for the hold bound or the capture's end. An
    /// acknowledgment of bytes already delivered, before the stream's start or beyond
    /// <see cref="Window"/> changes nothing.
    /// </summary>
    /// <param name="acknowledgment">The other direction's acknowledgment number.</param>
    /// <param name="timestamp">When the acknowledging packet was captured.</param>
    public void Acknowledged(uint acknowledgment, DateTime timestamp)
    {
        if (_ended || !_started)
        {
            return;
        }

        // A FIN takes a sequence number of its own: acknowledging it is not acknowledging data.
        uint upTo = _finKnown && (int)(acknowledgment - _finSequence) > 0 ? _finSequence : acknowledgment;
        while (!_ended)
        {
            long lost = Relative(upTo);
            if (lost <= 0 || lost > Window)
            {
                break;
            }

            if (_held.Count > 0 && Relative(_held[0].Sequence) < lost)
            {
                // A hole before held data: gap, then what is held after it.
                Gap(Relative(_held[0].Sequence), timestamp);
                _next = _held[0].Sequence;
                DeliverContiguousHeld(timestamp);
                continue;
            }

            Gap(lost, timestamp);
            _next = upTo;
            DeliverContiguousHeld(timestamp);
        }

        EndIfFinReached(timestamp);
    }

    /// <summary>
    /// The connection was reset by the other side's RST: the stream ends at once
    /// (<see cref="TcpEnd.Reset"/>), what is held is dropped. Nothing happens if it ended already.
    /// </summary>
    /// <param name="timestamp">When the reset was captured.</param>
    public void Reset(DateTime timestamp)
    {
        if (!_ended)
        {
            End(TcpEnd.Reset, timestamp);
        }
    }

    // One range of the stream: data (bytes given) or bytes the capture cut off (data empty).
    private void AddRange(uint sequence, ReadOnlySpan<byte> data, int length, DateTime timestamp)
    {
        bool cut = data.IsEmpty;
        while (!_ended)
        {
            long start = Relative(sequence);
            if (start < -Window)
            {
                return;
            }

            long end = start + length;
            if (_finKnown)
            {
                end = Math.Min(end, Relative(_finSequence));
            }

            if (end <= 0 || end <= start)
            {
                return;
            }

            if (start > Window)
            {
                // Far ahead: the stream resumes there, after what is held and a gap.
                DeliverAllHeld(timestamp);
                long hole = Relative(sequence);
                if (hole > 0)
                {
                    Gap(hole, timestamp);
                    _next = sequence;
                }

                continue;
            }

            if (start <= 0)
            {
                int count = (int)end;
                if (cut)
                {
                    Gap(count, timestamp);
                }
                else
                {
                    Deliver(data.Slice((int)-start, count), timestamp);
                }

                _next += (uint)count;
                DeliverContiguousHeld(timestamp);
                return;
            }

            int kept = (int)(end - start);
            long needed = cut ? 0 : Hold(sequence, data, kept, commit: false);
            if (HeldBytes + needed <= _maxHeldBytes)
            {
                Hold(sequence, data, kept, commit: true);
                return;
            }

            // Over the bound: the earliest hole is lost, then try again from after it.
            if (_held.Count == 0 || (int)(sequence - _held[0].Sequence) < 0)
            {
                Gap(start, timestamp);
                _next = sequence;
            }
            else
            {
                Gap(Relative(_held[0].Sequence), timestamp);
                _next = _held[0].Sequence;
                DeliverContiguousHeld(timestamp);
            }
        }
    }

    // Counts (commit false) or holds (commit true) the bytes of [sequence, sequence + length) that no
    // held range has yet; returns how many bytes of data that is.
    private long Hold(uint sequence, ReadOnlySpan<byte> data, int length, bool commit)
    {
        long start = Relative(sequence);
        long stop = start + length;

        // The first held range that ends after start (the ranges are sorted and apart, so their ends are too).
        int low = 0;
        int high = _held.Count;
        while (low < high)
        {
            int middle = (low + high) >>> 1;
            if (Relative(_held[middle].Sequence) + _held[middle].Length > start)
            {
                high = middle;
            }
            else
            {
                low = middle + 1;
            }
        }

        long added = 0;
        long position = start;
        int index = low;
        while (position < stop)
        {
            long pieceEnd = stop;
            if (index < _held.Count)
            {
                long heldStart = Relative(_held[index].Sequence);
                if (heldStart <= position)
                {
                    position = Math.Max(position, heldStart + _held[index].Length);
                    index++;
                    continue;
                }

                pieceEnd = Math.Min(stop, heldStart);
            }

            int pieceLength = (int)(pieceEnd - position);
            if (commit)
            {
                byte[]? buffer = null;
                if (!data.IsEmpty)
                {
                    buffer = ArrayPool<byte>.Shared.Rent(pieceLength);
                    data.Slice((int)(position - start), pieceLength).CopyTo(buffer);
                    HeldBytes += pieceLength;
                }

                _held.Insert(index, new Held(_next + (uint)position, pieceLength, buffer));
                index++;
            }

            if (!data.IsEmpty)
            {
                added += pieceLength;
            }

            position = pieceEnd;
        }

        return added;
    }

    // Delivers the held ranges that begin at or before the next expected byte.
    private void DeliverContiguousHeld(DateTime timestamp)
    {
        int done = 0;
        try
        {
            while (done < _held.Count && !_ended)
            {
                Held held = _held[done];
                long start = Relative(held.Sequence);
                if (start > 0)
                {
                    break;
                }

                long end = start + held.Length;
                if (end > 0)
                {
                    int count = (int)end;
                    if (held.Buffer is null)
                    {
                        Gap(count, timestamp);
                    }
                    else
                    {
                        Deliver(held.Buffer.AsSpan((int)-start, count), timestamp);
                    }

                    _next += (uint)count;
                }

                Release(held);
                done++;
            }
        }
        finally
        {
            _held.RemoveRange(0, done);
        }
    }

    // Delivers everything held, each hole before it reported as a gap.
    private void DeliverAllHeld(DateTime timestamp)
    {
        while (_held.Count > 0 && !_ended)
        {
            long hole = Relative(_held[0].Sequence);
            if (hole > 0)
            {
                Gap(hole, timestamp);
                _next = _held[0].Sequence;
            }

            DeliverContiguousHeld(timestamp);
        }
    }

    // The first FIN fixes where the stream ends: held data beyond it is dropped. A FIN behind the
    // next expected byte (bytes were delivered past it) is taken for a stale one and ignored; one
    // far ahead begins after a gap like data would.
    private void NoteFin(uint finSequence, DateTime timestamp)
    {
        long at = Relative(finSequence);
        if (_finKnown || at < 0)
        {
            return;
        }

        if (at > Window)
        {
            DeliverAllHeld(timestamp);
            at = Relative(finSequence);
            if (at < 0)
            {
                return;
            }

            if (at > 0)
            {
                Gap(at, timestamp);
                _next = finSequence;
                at = 0;
            }
        }

        _finKnown = true;
        _finSequence = finSequence;
        for (int i = _held.Count - 1; i >= 0; i--)
        {
            Held held = _held[i];
            long start = Relative(held.Sequence);
            if (start >= at)
            {
                Release(held);
                _held.RemoveAt(i);
            }
            else if (start + held.Length > at)
            {
                int kept = (int)(at - start);
                if (held.Buffer is not null)
                {
                    HeldBytes -= held.Length - kept;
                }

                _held[i] = held with { Length = kept };
            }
            else
            {
                break;
            }
        }
    }

    private void EndIfFinReached(DateTime timestamp)
    {
        if (!_ended && _finKnown && _next == _finSequence)
        {
            End(TcpEnd.Fin, timestamp);
        }
    }

    private void End(TcpEnd how, DateTime timestamp)
    {
        _ended = true;
        foreach (Held held in _held)
        {
            Release(held);
        }

        _held.Clear();
        _target.OnEnd(how, timestamp);
    }

    private void Deliver(ReadOnlySpan<byte> data, DateTime timestamp)
    {
        DeliveredBytes += data.Length;
        _target.OnData(data, timestamp);
    }

    private void Gap(long missingBytes, DateTime timestamp)
    {
        GapBytes += missingBytes;
        _target.OnGap(missingBytes, timestamp);
    }

    private void Release(Held held)
    {
        if (held.Buffer is not null)
        {
            HeldBytes -= held.Length;
            ArrayPool<byte>.Shared.Return(held.Buffer);
        }
    }

    // Where a sequence number lies from the next expected byte, in serial-number arithmetic.
    private long Relative(uint sequence) => (int)(sequence - _next);

    /// <summary>A held range of the stream.</summary>
    /// <param name="Sequence">Its first byte's sequence number.</param>
    /// <param name="Length">How many bytes it covers.</param>
    /// <param name="Buffer">Its data, rented from the pool (its first <paramref name="Length"/> bytes); null when the capture cut these bytes off.</param>
    private readonly record struct Held(uint Sequence, int Length, byte[]? Buffer);
}

using System.Buffers.Binary;

namespace PgSpec.Cli.Replicate;

/// <summary>One pgoutput message kept for a transaction: where it was in the WAL, whose it is, and its bytes.</summary>
/// <param name="WalStart">The WAL position of the message (XLogData's walStart).</param>
/// <param name="Xid">The (sub)transaction the message names (inside a streamed block), or the transaction's own xid.</param>
/// <param name="InStreamedBlock">Whether it came inside a streamed block (its xid field is present).</param>
/// <param name="Data">The message (XLogData's data).</param>
internal readonly record struct BufferedRecord(long WalStart, int Xid, bool InStreamedBlock, ReadOnlyMemory<byte> Data);

/// <summary>
/// A transaction whose messages are held until it commits: an ordinary one (Begin to Commit), a
/// streamed one (its blocks, until Stream Commit or Stream Abort), or a prepared one (until Commit
/// Prepared or Rollback Prepared). Its messages are kept in memory, or, once the memory that all
/// transactions hold passes the limit, in a file of its own (deleted when closed).
/// </summary>
internal sealed class BufferedTransaction : IDisposable
{
    private const int HeaderSize = 8 + 4 + 1 + 4;
    private readonly TransactionBuffers _owner;
    private List<BufferedRecord>? _memory = [];
    private FileStream? _spill;
    private HashSet<int>? _abortedSubtransactions;
    private HashSet<int>? _subtransactions;

    internal BufferedTransaction(TransactionBuffers owner, int xid, long firstLsn, bool streamed)
    {
        _owner = owner;
        Xid = xid;
        FirstLsn = firstLsn;
        Streamed = streamed;
    }

    /// <summary>The top-level transaction's xid.</summary>
    public int Xid { get; }

    /// <summary>The WAL position of its Begin (or its first streamed block).</summary>
    public long FirstLsn { get; }

    /// <summary>Whether it came in streamed blocks.</summary>
    public bool Streamed { get; }

    /// <summary>The origin the server named for it (Origin message), if any.</summary>
    public string? Origin { get; set; }

    /// <summary>The commit LSN on the origin server (Origin message).</summary>
    public long OriginLsn { get; set; }

    /// <summary>The two-phase transaction's GID, once prepared (or from Begin Prepare).</summary>
    public string? Gid { get; set; }

    /// <summary>The LSN of its PREPARE TRANSACTION, once prepared.</summary>
    public long? PrepareLsn { get; set; }

    /// <summary>The end of its PREPARE TRANSACTION record, once prepared.</summary>
    public long? PrepareEndLsn { get; set; }

    /// <summary>When it was prepared.</summary>
    public long? PrepareTime { get; set; }

    /// <summary>The number of messages held.</summary>
    public int Count { get; private set; }

    /// <summary>The bytes held in memory.</summary>
    public long MemoryBytes { get; private set; }

    /// <summary>Whether its messages went to a file.</summary>
    public bool Spilled => _spill is not null;

    /// <summary>Subtransactions that aborted (Stream Abort with a subtransaction's xid): their changes are left out.</summary>
    public IReadOnlySet<int> AbortedSubtransactions => (IReadOnlySet<int>?)_abortedSubtransactions ?? new HashSet<int>();

    /// <summary>The subtransactions whose messages it holds (a streamed transaction's messages name their subtransaction).</summary>
    public IReadOnlySet<int> Subtransactions => (IReadOnlySet<int>?)_subtransactions ?? new HashSet<int>();

    /// <summary>Marks a subtransaction aborted.</summary>
    public void AbortSubtransaction(int subXid) => (_abortedSubtransactions ??= []).Add(subXid);

    /// <summary>Keeps a message (its bytes are referenced, not copied: they belong to a message received whole).</summary>
    public void Add(BufferedRecord record)
    {
        Count++;
        if (record.Xid != Xid)
        {
            (_subtransactions ??= []).Add(record.Xid);
        }

        if (_spill is not null)
        {
            WriteRecord(_spill, record);
            return;
        }

        _memory!.Add(record);
        long size = RecordCost(record);
        MemoryBytes += size;
        _owner.Grew(size);
    }

    /// <summary>The messages, in the order they came. A message's bytes are valid until the next one is read.</summary>
    public IEnumerable<BufferedRecord> Records()
    {
        if (_spill is null)
        {
            foreach (BufferedRecord record in _memory!)
            {
                yield return record;
            }

            yield break;
        }

        _spill.Flush();
        _spill.Position = 0;
        byte[] header = new byte[HeaderSize];
        byte[] data = new byte[4096];
        for (int i = 0; i < Count; i++)
        {
            _spill.ReadExactly(header);
            long walStart = BinaryPrimitives.ReadInt64BigEndian(header);
            int xid = BinaryPrimitives.ReadInt32BigEndian(header.AsSpan(8));
            bool inBlock = header[12] != 0;
            int length = BinaryPrimitives.ReadInt32BigEndian(header.AsSpan(13));
            if (data.Length < length)
            {
                data = new byte[Math.Max(length, data.Length * 2)];
            }

            _spill.ReadExactly(data, 0, length);
            yield return new BufferedRecord(walStart, xid, inBlock, data.AsMemory(0, length));
        }
    }

    /// <summary>Moves the messages held in memory to a file of its own; later ones go there too.</summary>
    internal void Spill(string directory)
    {
        if (_spill is not null)
        {
            return;
        }

        string path = Path.Combine(directory, $"pgspec-replicate-{Environment.ProcessId}-{Xid}-{Guid.NewGuid():N}.spill");
        FileStream spill;
        try
        {
            spill = new FileStream(path, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None, 64 * 1024, FileOptions.DeleteOnClose);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ReplicateException(PgSpecCommandLine.ExitUsage, $"cannot spill transaction {Xid} to {directory} (--spill-dir): {e.Message}");
        }

        try
        {
            foreach (BufferedRecord record in _memory!)
            {
                WriteRecord(spill, record);
            }
        }
        catch (IOException e)
        {
            spill.Dispose();
            throw new ReplicateException(PgSpecCommandLine.ExitUsage, $"cannot spill transaction {Xid} to {directory} (--spill-dir): {e.Message}");
        }

        _spill = spill;
        _memory = null;
        _owner.Shrank(MemoryBytes);
        MemoryBytes = 0;
    }

    private void WriteRecord(FileStream spill, BufferedRecord record)
    {
        Span<byte> header = stackalloc byte[HeaderSize];
        BinaryPrimitives.WriteInt64BigEndian(header, record.WalStart);
        BinaryPrimitives.WriteInt32BigEndian(header[8..], record.Xid);
        header[12] = record.InStreamedBlock ? (byte)1 : (byte)0;
        BinaryPrimitives.WriteInt32BigEndian(header[13..], record.Data.Length);
        try
        {
            spill.Write(header);
            spill.Write(record.Data.Span);
        }
        catch (IOException e)
        {
            throw new ReplicateException(PgSpecCommandLine.ExitUsage, $"cannot spill transaction {Xid} (--spill-dir): {e.Message}");
        }
    }

    /// <summary>What a message costs in memory: its bytes and the bookkeeping.</summary>
    private static long RecordCost(BufferedRecord record) => record.Data.Length + 64;

    /// <summary>Lets go of the messages (and deletes the file).</summary>
    public void Dispose()
    {
        _owner.Closed(this);
        _spill?.Dispose();
        _spill = null;
        _memory = null;
        MemoryBytes = 0;
    }
}

/// <summary>
/// The transactions held until they end, and the bound on the memory they take together: past
/// <see cref="MemoryLimit"/>, the transactions holding most move their messages to files in
/// <see cref="SpillDirectory"/> until the rest fits.
/// </summary>
internal sealed class TransactionBuffers(long memoryLimit, string spillDirectory)
{
    private readonly HashSet<BufferedTransaction> _open = [];

    /// <summary>The most bytes held in memory.</summary>
    public long MemoryLimit { get; } = memoryLimit;

    /// <summary>Where transactions spill to.</summary>
    public string SpillDirectory { get; } = spillDirectory;

    /// <summary>The bytes held in memory now.</summary>
    public long MemoryBytes { get; private set; }

    /// <summary>How many transactions have spilled to a file.</summary>
    public int SpilledTransactions { get; private set; }

    /// <summary>A new transaction to hold.</summary>
    public BufferedTransaction Open(int xid, long firstLsn, bool streamed)
    {
        var transaction = new BufferedTransaction(this, xid, firstLsn, streamed);
        _open.Add(transaction);
        return transaction;
    }

    internal void Grew(long bytes)
    {
        MemoryBytes += bytes;
        while (MemoryBytes > MemoryLimit)
        {
            BufferedTransaction? largest = null;
            foreach (BufferedTransaction transaction in _open)
            {
                if (!transaction.Spilled && (largest is null || transaction.MemoryBytes > largest.MemoryBytes))
                {
                    largest = transaction;
                }
            }

            if (largest is null)
            {
                return;
            }

            largest.Spill(SpillDirectory);
            SpilledTransactions++;
        }
    }

    internal void Shrank(long bytes) => MemoryBytes -= bytes;

    internal void Closed(BufferedTransaction transaction)
    {
        if (_open.Remove(transaction))
        {
            MemoryBytes -= transaction.MemoryBytes;
        }
    }
}

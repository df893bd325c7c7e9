using System.Globalization;
using System.Text;
using PgSpec.Protocol;
using PgSpec.Server;

namespace PgSpec.Server.Tests;

/// <summary>
/// A handler whose statements are commands: "rows N" (N rows of int8 and text), "param" (echoes
/// $1 as text), "fail" (ERROR 22012 when run; "bad" is 42601 at Parse), "sleep" (waits until cancelled), "copy in", "copy out N",
/// "set NAME VALUE", "begin"/"commit"/"rollback", anything else a command tag of its own text.
/// Statements are split at ';'.
/// </summary>
internal sealed class ScriptedHandler : PgSessionHandler
{
    private static readonly PgColumn[] s_rowColumns = [new("n", 20, 8), new("t", 25)];

    private readonly PgBackendSession _session;
    private TransactionStatus _status = TransactionStatus.Idle;

    private long _rowsProduced;

    public ScriptedHandler(PgBackendSession session)
    {
        _session = session;
        lock (Sessions)
        {
            Sessions.Add(session);
        }
    }

    private static PgBackendSession[] SessionsNow()
    {
        lock (Sessions)
        {
            return [.. Sessions];
        }
    }

    /// <summary>The sessions of every ScriptedHandler alive.</summary>
    public static List<PgBackendSession> Sessions { get; } = [];

    public override ValueTask DisposeAsync()
    {
        lock (Sessions)
        {
            Sessions.Remove(_session);
        }

        return base.DisposeAsync();
    }

    public override ValueTask<ReadOnlyMemory<byte>?> FunctionCallAsync(uint functionOid, IReadOnlyList<ReadOnlyMemory<byte>?> arguments, IReadOnlyList<short> argumentFormats, short resultFormat, CancellationToken cancellationToken)
    {
        if (functionOid != 42)
        {
            return base.FunctionCallAsync(functionOid, arguments, argumentFormats, resultFormat, cancellationToken);
        }

        // Function 42 concatenates its text arguments.
        string joined = string.Concat(arguments.Select(a => a is ReadOnlyMemory<byte> bytes ? Encoding.UTF8.GetString(bytes.Span) : ""));
        return ValueTask.FromResult<ReadOnlyMemory<byte>?>(Encoding.UTF8.GetBytes(joined));
    }

    public static List<string> Copied { get; } = [];

    /// <summary>The session this handler serves.</summary>
    public PgBackendSession Session => _session;

    /// <summary>Completed with the statement's token when a "sleep" statement of this session has started waiting.</summary>
    public TaskCompletionSource<CancellationToken> Sleeping { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>How many rows the "rows" statements of this session have produced so far (the session asks for each when it sends it).</summary>
    public long RowsProduced => Interlocked.Read(ref _rowsProduced);

    public override TransactionStatus TransactionStatus => _status;

    /// <summary>Statements prepared and not yet released by the session.</summary>
    public int LiveStatements => Volatile.Read(ref _liveStatements);

    private int _liveStatements;

    /// <summary>The next end of a batch fails as a commit that cannot be made would ("commitfail" arms it).</summary>
    private bool _failCommit;

    public override ValueTask EndBatchAsync(bool success, CancellationToken cancellationToken)
    {
        if (_failCommit)
        {
            _failCommit = false;
            throw new PgErrorException("40001", "could not serialize access due to concurrent update");
        }

        return ValueTask.CompletedTask;
    }

    /// <summary>A statement that counts itself among the live ones until the session releases it.</summary>
    private sealed class Counted : PgStatement
    {
        private readonly ScriptedHandler _handler;
        private int _released;

        public Counted(ScriptedHandler handler, string sql, IReadOnlyList<uint> parameterTypes, IReadOnlyList<PgColumn>? columns)
            : base(sql, parameterTypes, columns)
        {
            _handler = handler;
            Interlocked.Increment(ref handler._liveStatements);
        }

        public override void Release()
        {
            Assert.Equal(0, Interlocked.Exchange(ref _released, 1));
            Interlocked.Decrement(ref _handler._liveStatements);
        }
    }

    public override IReadOnlyList<string> SplitQuery(string query)
        => [.. query.Split(';').Select(s => s.Trim()).Where(s => s.Length > 0)];

    public override ValueTask<PgStatement> PrepareAsync(string sql, IReadOnlyList<uint> parameterTypes, CancellationToken cancellationToken)
    {
        string[] words = sql.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        return ValueTask.FromResult<PgStatement>(words.FirstOrDefault() switch
        {
            "rows" => new Counted(this, sql, [], s_rowColumns),
            "param" => new Counted(this, sql, [25], [new PgColumn("param", 25)]),
            "sleep" => new Counted(this, sql, [], [new PgColumn("pg_sleep", 2278, 4)]),
            "bad" => throw new PgErrorException("42601", "syntax error at or near \"bad\"") { Position = 1 },
            _ => new Counted(this, sql, [], null),
        });
    }

    public override async ValueTask<PgStatementResult> BindAsync(PgStatement statement, PgBindContext bind, CancellationToken cancellationToken)
    {
        string[] words = statement.Sql.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        switch (words[0])
        {
            case "rows":
                int n = int.Parse(words[1], CultureInfo.InvariantCulture);
                return PgStatementResult.Rows(s_rowColumns, Enumerable.Range(1, n).Select(i =>
                {
                    Interlocked.Increment(ref _rowsProduced);
                    return (IReadOnlyList<string?>)[i.ToString(CultureInfo.InvariantCulture), "row " + i];
                }));
            case "param":
                string? value = bind.Parameters[0] is ReadOnlyMemory<byte> bytes ? Encoding.UTF8.GetString(bytes.Span) : null;
                return PgStatementResult.Rows(statement.Columns!, [[value]]);
            case "fail":
                throw new PgErrorException("22012", "division by zero");
            case "sleep":
                Sleeping.TrySetResult(cancellationToken);
                await Task.Delay(Timeout.Infinite, cancellationToken);
                return PgStatementResult.Command("never");
            case "copy" when words[1] == "in":
                return new CopyIn();
            case "copy" when words[1] == "out":
                return new CopyOut(int.Parse(words[2], CultureInfo.InvariantCulture));
            case "set":
                _session.SetParameter(words[1], words[2]);
                return PgStatementResult.Command("SET");
            case "notify":
                // To every session of the same user (tests run side by side), this one included:
                // delivered before ReadyForQuery here, at once to idle ones.
                foreach (PgBackendSession other in SessionsNow().Where(s => s.User == _session.User))
                {
                    other.Notify(words[1], words.Length > 2 ? words[2] : "", _session.ProcessId);
                }

                return PgStatementResult.Command("NOTIFY");
            case "commitfail":
                _failCommit = true;
                return PgStatementResult.Command("COMMITFAIL");
            case "notice":
                _session.SendNotice(new PgErrorException("NOTICE", "00000", "a notice"));
                return PgStatementResult.Command("NOTICE");
            case "begin":
                _status = TransactionStatus.InTransaction;
                return PgStatementResult.Command("BEGIN");
            case "commit" or "rollback":
                _status = TransactionStatus.Idle;
                return PgStatementResult.Command(words[0].ToUpperInvariant());
            default:
                return PgStatementResult.Command(statement.Sql.ToUpperInvariant());
        }
    }

    public override ValueTask OnErrorAsync(PgErrorException error, CancellationToken cancellationToken)
    {
        if (_status == TransactionStatus.InTransaction)
        {
            _status = TransactionStatus.FailedTransaction;
        }

        return ValueTask.CompletedTask;
    }

    private sealed class CopyIn : PgCopyInResult
    {
        private readonly MemoryStream _data = new();

        public override int ColumnCount => 1;

        private string _tag = "";

        public override string CommandTag => _tag;

        public override ValueTask WriteAsync(ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
        {
            _data.Write(data.Span);
            return ValueTask.CompletedTask;
        }

        public override ValueTask CompleteAsync(CancellationToken cancellationToken)
        {
            string[] lines = Encoding.UTF8.GetString(_data.ToArray()).Split('\n', StringSplitOptions.RemoveEmptyEntries);
            lock (Copied)
            {
                Copied.AddRange(lines);
            }

            _tag = "COPY " + lines.Length.ToString(CultureInfo.InvariantCulture);
            return ValueTask.CompletedTask;
        }

        public override ValueTask FailAsync(string message, CancellationToken cancellationToken) => ValueTask.CompletedTask;
    }

    private sealed class CopyOut(int rows) : PgCopyOutResult
    {
        private int _sent;

        public override int ColumnCount => 1;

        public override string CommandTag => "COPY " + _sent.ToString(CultureInfo.InvariantCulture);

        public override ValueTask<ReadOnlyMemory<byte>?> ReadCopyDataAsync(CancellationToken cancellationToken)
        {
            if (_sent == rows)
            {
                return ValueTask.FromResult<ReadOnlyMemory<byte>?>(null);
            }

            _sent++;
            return ValueTask.FromResult<ReadOnlyMemory<byte>?>(Encoding.UTF8.GetBytes("line " + _sent + "\n"));
        }
    }
}

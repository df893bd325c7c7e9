using System.Globalization;
using System.Text;
using PgSpec.Protocol;
using PgSpec.Server;

namespace PgSpec.Server.Tests;

/// <summary>
/// A handler whose statements are commands: "rows N" (N rows of int8 and text), "param" (echoes
/// $1 as text), "fail" (ERROR 42601), "sleep" (waits until cancelled), "copy in", "copy out N",
/// "set NAME VALUE", "begin"/"commit"/"rollback", anything else a command tag of its own text.
/// Statements are split at ';'.
/// </summary>
internal sealed class ScriptedHandler : PgSessionHandler
{
    private static readonly PgColumn[] s_rowColumns = [new("n", 20, 8), new("t", 25)];

    private readonly PgBackendSession _session;
    private TransactionStatus _status = TransactionStatus.Idle;

    private long _rowsProduced;

    public ScriptedHandler(PgBackendSession session) => _session = session;

    public static List<string> Copied { get; } = [];

    /// <summary>The session this handler serves.</summary>
    public PgBackendSession Session => _session;

    /// <summary>Completed with the statement's token when a "sleep" statement of this session has started waiting.</summary>
    public TaskCompletionSource<CancellationToken> Sleeping { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>How many rows the "rows" statements of this session have produced so far (the session asks for each when it sends it).</summary>
    public long RowsProduced => Interlocked.Read(ref _rowsProduced);

    public override TransactionStatus TransactionStatus => _status;

    public override IReadOnlyList<string> SplitQuery(string query)
        => [.. query.Split(';').Select(s => s.Trim()).Where(s => s.Length > 0)];

    public override ValueTask<PgStatement> PrepareAsync(string sql, IReadOnlyList<uint> parameterTypes, CancellationToken cancellationToken)
    {
        string[] words = sql.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        return ValueTask.FromResult(words.FirstOrDefault() switch
        {
            "rows" => new PgStatement(sql, [], s_rowColumns),
            "param" => new PgStatement(sql, [25], [new PgColumn("param", 25)]),
            "sleep" => new PgStatement(sql, [], [new PgColumn("pg_sleep", 2278, 4)]),
            "bad" => throw new PgErrorException("42601", "syntax error at or near \"bad\"") { Position = 1 },
            _ => new PgStatement(sql, [], null),
        });
    }

    public override async ValueTask<PgResult> BindAsync(PgStatement statement, PgBindContext bind, CancellationToken cancellationToken)
    {
        string[] words = statement.Sql.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        switch (words[0])
        {
            case "rows":
                int n = int.Parse(words[1], CultureInfo.InvariantCulture);
                return PgResult.Rows(s_rowColumns, Enumerable.Range(1, n).Select(i =>
                {
                    Interlocked.Increment(ref _rowsProduced);
                    return (IReadOnlyList<string?>)[i.ToString(CultureInfo.InvariantCulture), "row " + i];
                }));
            case "param":
                string? value = bind.Parameters[0] is ReadOnlyMemory<byte> bytes ? Encoding.UTF8.GetString(bytes.Span) : null;
                return PgResult.Rows(statement.Columns!, [[value]]);
            case "fail":
                throw new PgErrorException("22012", "division by zero");
            case "sleep":
                Sleeping.TrySetResult(cancellationToken);
                await Task.Delay(Timeout.Infinite, cancellationToken);
                return PgResult.Command("never");
            case "copy" when words[1] == "in":
                return new CopyIn();
            case "copy" when words[1] == "out":
                return new CopyOut(int.Parse(words[2], CultureInfo.InvariantCulture));
            case "set":
                _session.SetParameter(words[1], words[2]);
                return PgResult.Command("SET");
            case "notice":
                _session.SendNotice(new PgErrorException("NOTICE", "00000", "a notice"));
                return PgResult.Command("NOTICE");
            case "begin":
                _status = TransactionStatus.InTransaction;
                return PgResult.Command("BEGIN");
            case "commit" or "rollback":
                _status = TransactionStatus.Idle;
                return PgResult.Command(words[0].ToUpperInvariant());
            default:
                return PgResult.Command(statement.Sql.ToUpperInvariant());
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

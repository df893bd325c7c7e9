using PgSpec.Protocol;
using PgSpec.Server;

namespace PgSpec.Cli.Serve;

/// <summary>
/// The backend session of <c>pgspec serve</c>: each session's statements go to its own
/// <see cref="SqliteSession"/>; the engine's errors, notices, settings and transaction state become
/// the protocol's ErrorResponse, NoticeResponse, ParameterStatus and ReadyForQuery status.
/// </summary>
internal sealed class SqliteHandler(SqliteEngine engine) : PgSessionHandler
{
    private PgBackendSession? _session;
    private SqliteSession? _sql;

    private SqliteSession Sql => _sql ?? throw new InvalidOperationException("the session has not started");

    public override ValueTask StartAsync(PgBackendSession session, CancellationToken cancellationToken)
    {
        _session = session;
        var parameters = new Dictionary<string, string>(session.StartupParameters, StringComparer.Ordinal) { ["database"] = session.Database };
        try
        {
            _sql = engine.OpenSession(session.User, parameters, session.ProcessId);
        }
        catch (SqlError e)
        {
            throw ToPg(e, fatal: true);
        }

        foreach (KeyValuePair<string, string> parameter in _sql.InitialParameters)
        {
            session.SetParameter(parameter.Key, parameter.Value);
        }

        return ValueTask.CompletedTask;
    }

    public override TransactionStatus TransactionStatus => _sql?.TransactionState switch
    {
        SqlTransactionState.InTransaction => TransactionStatus.InTransaction,
        SqlTransactionState.Failed => TransactionStatus.FailedTransaction,
        _ => TransactionStatus.Idle,
    };

    public override IReadOnlyList<string> SplitQuery(string query)
    {
        IReadOnlyList<string> statements = Sql.Split(query);
        if (statements.Count > 1)
        {
            try
            {
                Sql.CheckSyntax(statements);
            }
            catch (SqlError e)
            {
                throw ToPg(e);
            }
        }

        return statements;
    }

    public override ValueTask<PgStatement> PrepareAsync(string sql, IReadOnlyList<uint> parameterTypes, CancellationToken cancellationToken)
    {
        try
        {
            SqlStatement statement = Sql.Prepare(sql, parameterTypes);
            return ValueTask.FromResult<PgStatement>(new Statement(statement));
        }
        catch (SqlError e)
        {
            throw ToPg(e);
        }
        finally
        {
            Drain();
        }
    }

    public override ValueTask<PgStatementResult> BindAsync(PgStatement statement, PgBindContext bind, CancellationToken cancellationToken)
    {
        SqlStatement sql = ((Statement)statement).Parsed;
        try
        {
            if (sql.IsEmpty)
            {
                return ValueTask.FromResult(PgStatementResult.EmptyQuery);
            }

            SqlCursor cursor = Sql.Open(sql, bind.Parameters, bind.ParameterFormats, cancellationToken);
            switch (sql.Kind)
            {
                case SqlCommandKind.Deallocate:
                    _session!.Deallocate(sql.DeallocateName);
                    break;
                case SqlCommandKind.Discard when sql.Sql.Contains("ALL", StringComparison.OrdinalIgnoreCase):
                    _session!.Deallocate(null);
                    break;
            }

            PgStatementResult result = cursor.IsCopyIn ? new CopyIn(this, cursor)
                : cursor.IsCopyOut ? new CopyOut(this, cursor)
                : new Rows(this, cursor);
            return ValueTask.FromResult(result);
        }
        catch (SqlError e)
        {
            throw ToPg(e);
        }
        finally
        {
            Drain();
        }
    }

    public override ValueTask BeginBatchAsync(CancellationToken cancellationToken)
    {
        Sql.BeginImplicit();
        return ValueTask.CompletedTask;
    }

    public override ValueTask EndBatchAsync(bool success, CancellationToken cancellationToken)
    {
        try
        {
            Sql.EndImplicit(success);
        }
        catch (SqlError e)
        {
            throw ToPg(e);
        }
        finally
        {
            Drain();
        }

        return ValueTask.CompletedTask;
    }

    public override ValueTask OnErrorAsync(PgErrorException error, CancellationToken cancellationToken)
    {
        _sql?.OnError();
        return ValueTask.CompletedTask;
    }

    public override ValueTask DisposeAsync()
    {
        _sql?.Dispose();
        return base.DisposeAsync();
    }

    /// <summary>Notices go out now, among the statement's messages; changed settings before ReadyForQuery.</summary>
    private void Drain()
    {
        if (_sql is null || _session is null)
        {
            return;
        }

        foreach (SqlError notice in _sql.TakeNotices())
        {
            _session.SendNotice(ToPg(notice));
        }

        foreach (KeyValuePair<string, string> changed in _sql.TakeParameterChanges())
        {
            try
            {
                _session.SetParameter(changed.Key, changed.Value);
            }
            catch (ArgumentException e)
            {
                throw new PgErrorException("22023", $"invalid value for parameter \"{changed.Key}\": {e.Message}");
            }
        }
    }

    internal static PgErrorException ToPg(SqlError e, bool fatal = false)
        => new(fatal && e.Severity == "ERROR" ? "FATAL" : e.Severity, e.SqlState, e.Message, e)
        {
            Detail = e.Detail,
            Hint = e.Hint,
            Position = e.Position,
            Where = e.Where,
        };

    private static IReadOnlyList<PgColumn>? Columns(IReadOnlyList<SqlColumn>? columns)
        => columns?.Select(c => new PgColumn(c.Name, c.TypeOid, c.TypeSize, c.TypeModifier)).ToArray();

    /// <summary>
    /// A parsed statement. Its columns are read from the engine only when the client describes it
    /// (that fixes the types of its expression columns for the portals opened from it); until
    /// then a portal's Describe and rows take the types of its first row.
    /// </summary>
    private sealed class Statement(SqlStatement sql) : PgStatement(sql.Sql, sql.ParameterTypes, null)
    {
        private IReadOnlyList<PgColumn>? _columns;
        private bool _described;

        public SqlStatement Parsed { get; } = sql;

        /// <summary>The engine's prepared statement goes with it (a cursor still running on it keeps it until it ends).</summary>
        public override void Release() => Parsed.Dispose();

        public override IReadOnlyList<PgColumn>? Columns
        {
            get
            {
                if (!_described)
                {
                    _columns = Parsed.IsCopyIn || Parsed.IsCopyOut ? null : SqliteHandler.Columns(Parsed.Columns);
                    _described = true;
                }

                return _columns;
            }
        }
    }

    private sealed class Rows(SqliteHandler handler, SqlCursor cursor) : PgStatementResult
    {
        private IReadOnlyList<PgColumn>? _columns;
        private bool _described;

        public override IReadOnlyList<PgColumn>? Columns
        {
            get
            {
                if (!_described)
                {
                    _columns = Run(() => SqliteHandler.Columns(cursor.Columns));
                    _described = true;
                }

                return _columns;
            }
        }

        public override string CommandTag => Run(() => cursor.CommandTag);

        public override ValueTask<bool> ReadAsync(CancellationToken cancellationToken) => ValueTask.FromResult(Run(cursor.Read));

        public override ReadOnlyMemory<byte>? GetValue(int column, short format) => Run(() => cursor.GetValue(column, format));

        public override ValueTask DisposeAsync()
        {
            cursor.Dispose();
            return base.DisposeAsync();
        }

        private T Run<T>(Func<T> step)
        {
            try
            {
                return step();
            }
            catch (SqlError e)
            {
                throw ToPg(e);
            }
            finally
            {
                handler.Drain();
            }
        }
    }

    private sealed class CopyIn(SqliteHandler handler, SqlCursor cursor) : PgCopyInResult
    {
        public override int ColumnCount => cursor.CopyColumnCount;

        public override string CommandTag => cursor.CommandTag;

        public override ValueTask WriteAsync(ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
        {
            Run(() => cursor.WriteCopyData(data.Span));
            return ValueTask.CompletedTask;
        }

        public override ValueTask CompleteAsync(CancellationToken cancellationToken)
        {
            Run(cursor.CompleteCopy);
            return ValueTask.CompletedTask;
        }

        public override ValueTask FailAsync(string message, CancellationToken cancellationToken)
        {
            cursor.FailCopy(message);
            return ValueTask.CompletedTask;
        }

        public override ValueTask DisposeAsync()
        {
            cursor.Dispose();
            return base.DisposeAsync();
        }

        private void Run(Action step)
        {
            try
            {
                step();
            }
            catch (SqlError e)
            {
                throw ToPg(e);
            }
            finally
            {
                handler.Drain();
            }
        }
    }

    private sealed class CopyOut(SqliteHandler handler, SqlCursor cursor) : PgCopyOutResult
    {
        public override int ColumnCount => cursor.CopyColumnCount;

        public override string CommandTag => cursor.CommandTag;

        public override ValueTask<ReadOnlyMemory<byte>?> ReadCopyDataAsync(CancellationToken cancellationToken)
        {
            try
            {
                return ValueTask.FromResult<ReadOnlyMemory<byte>?>(cursor.ReadCopyData(out ReadOnlyMemory<byte> data) ? data : (ReadOnlyMemory<byte>?)null);
            }
            catch (SqlError e)
            {
                throw ToPg(e);
            }
            finally
            {
                handler.Drain();
            }
        }

        public override ValueTask DisposeAsync()
        {
            cursor.Dispose();
            return base.DisposeAsync();
        }
    }
}

using System.Globalization;
using System.Text;
using PgSpec.Client;
using PgSpec.Protocol;

namespace PgSpec.Cli.Tests.ServeConformance;

/// <summary>One of the servers compared: how to connect, and how to see that a statement is running.</summary>
public interface IComparedServer
{
    /// <summary>The name shown above its column.</summary>
    string Name { get; }

    /// <summary>A new session.</summary>
    Task<PgFrontendSession> ConnectAsync(CancellationToken cancellationToken);

    /// <summary>Waits until the session's backend runs <paramref name="sql"/>, a Query that calls pg_sleep, polling, never for a fixed time.</summary>
    Task WaitUntilSleepingAsync(PgFrontendSession session, string sql, CancellationToken cancellationToken);
}

/// <summary>What a step of a script received, each message reduced to what does not depend on the SQL engine.</summary>
public sealed record RecordedStep(string Title, List<string> Lines);

/// <summary>
/// Sends a script's frontend messages to one server and records the backend's answers, step by
/// step. Each message is reduced to the fields that are the protocol's and not the engine's: an
/// ErrorResponse to its severity and SQLSTATE (not its text), a RowDescription to its column
/// count and format codes (not names or types), a DataRow to its column count and which values
/// are NULL, a ParameterDescription to its count (not the types), and so on.
/// </summary>
public sealed class ProtocolScript
{
    /// <summary>How long an answer may take; what does not come by then is recorded as missing.</summary>
    public static readonly TimeSpan AnswerTimeout = TimeSpan.FromSeconds(60);

    private readonly PgFrontendSession _session;
    private readonly IComparedServer _server;
    private readonly List<RecordedStep> _steps = [];
    private RecordedStep? _current;

    private ProtocolScript(PgFrontendSession session, IComparedServer server)
    {
        _session = session;
        _server = server;
    }

    /// <summary>The steps recorded.</summary>
    public IReadOnlyList<RecordedStep> Steps => _steps;

    /// <summary>
    /// Connects to <paramref name="server"/>, runs <paramref name="setup"/> (SQL both servers
    /// accept, not recorded), then the script, and returns what was recorded. A script ends early
    /// when an answer does not come or the connection closes; that is recorded too.
    /// </summary>
    public static async Task<IReadOnlyList<RecordedStep>> RunAsync(IComparedServer server, string setup, Func<ProtocolScript, Task> script)
    {
        using var connecting = new CancellationTokenSource(AnswerTimeout);
        PgFrontendSession session = await server.ConnectAsync(connecting.Token);
        await using (session)
        {
            if (setup.Length > 0)
            {
                await session.QueryAsync(setup, cancellationToken: connecting.Token);
            }

            var run = new ProtocolScript(session, server);
            try
            {
                await script(run);
            }
            catch (ScriptStoppedException)
            {
                // Recorded as the step's last line.
            }

            return run.Steps;
        }
    }

    /// <summary>Starts a step: sends the messages and flushes them.</summary>
    public async Task SendAsync(string title, params IFrontendMessage[] messages)
    {
        _current = new RecordedStep(title, []);
        _steps.Add(_current);
        foreach (IFrontendMessage message in messages)
        {
            _session.Send(message);
        }

        using var timeout = new CancellationTokenSource(AnswerTimeout);
        try
        {
            await _session.FlushAsync(timeout.Token);
        }
        catch (Exception e) when (e is PgConnectionException or OperationCanceledException)
        {
            Record("(sending failed: the connection is closed)");
            throw new ScriptStoppedException();
        }
    }

    /// <summary>
    /// Sends the messages and receives until one ReadyForQuery per Query and Sync among them (when
    /// the server is to skip some, after an error or during COPY, use <see cref="SendAsync"/> and
    /// <see cref="ReadyAsync"/> with the count PostgreSQL answers).
    /// </summary>
    public async Task RoundTripAsync(string title, params IFrontendMessage[] messages)
    {
        await SendAsync(title, messages);
        await ReadyAsync(messages.Count(m => m is Query or Sync));
    }

    /// <summary>Receives until <paramref name="count"/> ReadyForQuery messages.</summary>
    public async Task ReadyAsync(int count = 1)
    {
        for (int seen = 0; seen < count;)
        {
            if (await ReceiveAsync() is ReadyForQuery)
            {
                seen++;
            }
        }
    }

    /// <summary>Receives until a message of type <typeparamref name="T"/>.</summary>
    public async Task UntilAsync<T>()
        where T : IBackendMessage
    {
        while (await ReceiveAsync() is not T)
        {
        }
    }

    /// <summary>Receives until the server closes the connection.</summary>
    public async Task ClosedAsync()
    {
        while (true)
        {
            await ReceiveAsync();
        }
    }

    /// <summary>Waits (polling the server) until the session runs <paramref name="sql"/>, a Query that calls pg_sleep, then sends a CancelRequest.</summary>
    public async Task CancelWhenSleepingAsync(string sql)
    {
        using var timeout = new CancellationTokenSource(AnswerTimeout);
        try
        {
            await _server.WaitUntilSleepingAsync(_session, sql, timeout.Token);
        }
        catch (OperationCanceledException)
        {
            Record($"(the statement was not seen running within {AnswerTimeout.TotalSeconds} s)");
            throw new ScriptStoppedException();
        }

        await _session.CancelAsync(timeout.Token);
    }

    private async Task<IBackendMessage> ReceiveAsync()
    {
        using var timeout = new CancellationTokenSource(AnswerTimeout);
        IBackendMessage message;
        try
        {
            message = await _session.ReceiveAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            Record($"(nothing more within {AnswerTimeout.TotalSeconds} s)");
            throw new ScriptStoppedException();
        }
        catch (PgConnectionException)
        {
            Record("(connection closed)");
            throw new ScriptStoppedException();
        }

        Record(Show(message));
        return message;
    }

    private void Record(string line) => (_current ?? throw new InvalidOperationException("receive before the first send")).Lines.Add(line);

    /// <summary>A message reduced to what does not depend on the SQL engine.</summary>
    public static string Show(IBackendMessage message) => message switch
    {
        // The text, detail, hint, position and source location of an error are the engine's
        // (SQLite words its errors otherwise, and has no file or line of PostgreSQL's source).
        ErrorResponse e => $"ErrorResponse {Field(e.Fields.Select(f => (f.Code, f.Value)), 'S')} {Field(e.Fields.Select(f => (f.Code, f.Value)), 'C')}",
        NoticeResponse n => $"NoticeResponse {Field(n.Fields.Select(f => (f.Code, f.Value)), 'S')} {Field(n.Fields.Select(f => (f.Code, f.Value)), 'C')}",
        CommandComplete c => $"CommandComplete \"{c.CommandTag}\"",

        // Column names, types, type sizes and table OIDs are the engine's: serve knows the type of
        // an expression from a cast or a table's column only (SELECT 1 is int4 in PostgreSQL,
        // text in serve), and its tables have no OIDs.
        RowDescription r => $"RowDescription {r.Fields.Length} columns, formats [{string.Join(",", r.Fields.Select(f => f.FormatCode))}]",

        // Values are the engine's (their types, hence their binary form, may differ); which are NULL is not.
        DataRow d => $"DataRow [{string.Join(", ", d.Columns.Select(c => c is null ? "NULL" : "value"))}]",

        // The types inferred for parameters are the engine's.
        ParameterDescription p => $"ParameterDescription {p.ParameterTypeOids.Length} parameters",
        ReadyForQuery r => $"ReadyForQuery {(char)r.TransactionStatus}",
        CopyInResponse c => $"CopyInResponse {c.OverallFormat}, column formats [{string.Join(",", c.ColumnFormatCodes)}]",
        CopyOutResponse c => $"CopyOutResponse {c.OverallFormat}, column formats [{string.Join(",", c.ColumnFormatCodes)}]",

        // COPY's text format of int8 and text columns is the same in both.
        CopyData d => $"CopyData \"{Escape(d.Data.Span)}\"",

        // The value of a parameter is the session's (application_name) or the engine's (server_version).
        ParameterStatus s => $"ParameterStatus {s.Name}",
        _ => message.Name,
    };

    private static string Field(IEnumerable<(byte Code, string Value)> fields, char code)
        => fields.FirstOrDefault(f => f.Code == code).Value ?? "-";

    private static string Escape(ReadOnlySpan<byte> data)
    {
        var text = new StringBuilder();
        foreach (char c in Encoding.UTF8.GetString(data))
        {
            text.Append(c switch
            {
                '\n' => "\\n",
                '\t' => "\\t",
                '\\' => "\\\\",
                '"' => "\\\"",
                _ when char.IsControl(c) => "\\x" + ((int)c).ToString("x2", CultureInfo.InvariantCulture),
                _ => c.ToString(),
            });
        }

        return text.ToString();
    }

    /// <summary>
    /// The two recordings side by side, step by step, a line marked with <c>!</c> where they
    /// differ; null when they are the same.
    /// </summary>
    public static string? Compare(string leftName, IReadOnlyList<RecordedStep> left, string rightName, IReadOnlyList<RecordedStep> right)
    {
        bool same = left.Count == right.Count
            && left.Zip(right).All(p => p.First.Title == p.Second.Title && p.First.Lines.SequenceEqual(p.Second.Lines, StringComparer.Ordinal));
        return same ? null : SideBySide(leftName, left, rightName, right);
    }

    /// <summary>The two recordings side by side, step by step, a line marked with <c>!</c> where they differ.</summary>
    public static string SideBySide(string leftName, IReadOnlyList<RecordedStep> left, string rightName, IReadOnlyList<RecordedStep> right)
    {
        int width = Math.Max(leftName.Length, left.SelectMany(s => s.Lines).Select(l => l.Length).DefaultIfEmpty(0).Max());
        var table = new StringBuilder();
        table.AppendLine(CultureInfo.InvariantCulture, $"  {leftName.PadRight(width)} | {rightName}");
        table.AppendLine(CultureInfo.InvariantCulture, $"  {new string('-', width)}-+-{new string('-', Math.Max(rightName.Length, 20))}");
        for (int i = 0; i < Math.Max(left.Count, right.Count); i++)
        {
            RecordedStep? l = i < left.Count ? left[i] : null;
            RecordedStep? r = i < right.Count ? right[i] : null;
            string title = l?.Title ?? r!.Title;
            table.AppendLine(CultureInfo.InvariantCulture, $"  -- {title}{(r is not null && l is not null && r.Title != l.Title ? " / " + r.Title : "")}");
            int lines = Math.Max(l?.Lines.Count ?? 0, r?.Lines.Count ?? 0);
            for (int j = 0; j < lines; j++)
            {
                string a = l is not null && j < l.Lines.Count ? l.Lines[j] : "";
                string b = r is not null && j < r.Lines.Count ? r.Lines[j] : "";
                table.AppendLine(CultureInfo.InvariantCulture, $"{(a == b ? ' ' : '!')} {a.PadRight(width)} | {b}");
            }
        }

        return table.ToString();
    }

    private sealed class ScriptStoppedException : Exception
    {
    }
}

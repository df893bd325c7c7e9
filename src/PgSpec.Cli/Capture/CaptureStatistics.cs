using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using PgSpec.Protocol;

namespace PgSpec.Cli.Capture;

/// <summary>
/// Statistics of captured connections, written at the end instead of the message lines: message
/// counts and bytes, errors by SQLSTATE, gaps and other events, per connection and overall, and
/// per normalized query (<see cref="QueryNormalizer"/>) calls, rows, total, mean and p95 time and
/// errors, as a table or one JSON document.
/// </summary>
/// <remarks>
/// <para>
/// A call is a Query (all its statements: one call of its whole text), timed from the Query to the
/// ReadyForQuery that ends it; or an Execute of the extended protocol, whose text is that of the
/// Parse of the statement its portal was bound to. A batch (the messages up to a Sync) with one
/// Execute is timed from its first message to its ReadyForQuery; with several, the batch's time is
/// split at the completion of each Execute (the first from the batch's first message, the last up to
/// the ReadyForQuery). Rows are the last number of a CommandComplete tag (SELECT, INSERT, UPDATE,
/// DELETE, MERGE, COPY, FETCH, MOVE). Executes of statements prepared before the capture started
/// are counted together under a name of their own. An ErrorResponse counts for its SQLSTATE, its connection and
/// the call it ends. Calls whose end was not captured (a gap, the connection's end) are counted as
/// unfinished, apart from the others.
/// </para>
/// <para>
/// Memory is bounded: at most <see cref="MaxQueries"/> distinct normalized queries (later ones are
/// counted together as "other"), at most <see cref="ReservoirSize"/> call times per query for the
/// p95 (a uniform sample once there are more calls: the p95 is then an estimate), per-connection
/// state only while the connection is open (at most <see cref="MaxStatements"/> prepared statements
/// and portals and <see cref="MaxPendingCalls"/> unanswered batches each), and at most
/// <see cref="MaxConnections"/> per-connection summaries (later connections count in the totals only).
/// </para>
/// </remarks>
internal sealed class CaptureStatistics : ICaptureOutput
{
    /// <summary>Distinct normalized queries kept; calls of others count as "other".</summary>
    public const int MaxQueries = 10_000;

    /// <summary>Call times kept per query for its p95.</summary>
    public const int ReservoirSize = 1024;

    /// <summary>Per-connection summaries kept.</summary>
    public const int MaxConnections = 100_000;

    /// <summary>Prepared statements (and, apart, portals) remembered per connection.</summary>
    public const int MaxStatements = 10_000;

    /// <summary>Batches per connection waiting for their ReadyForQuery (pipelining), and Executes per batch.</summary>
    public const int MaxPendingCalls = 1_000;

    private static readonly JsonWriterOptions s_json = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping, Indented = true };

    private static readonly System.Buffers.SearchValues<byte> s_sqlstateCharacters = System.Buffers.SearchValues.Create("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"u8);

    private static readonly string[] s_rowTags = ["SELECT", "INSERT", "UPDATE", "DELETE", "MERGE", "COPY", "FETCH", "MOVE"];

    private readonly Stream _output;
    private readonly bool _json;
    private readonly Dictionary<string, QueryStats> _queries = new(StringComparer.Ordinal);
    private readonly QueryStats _otherQueries = new("(other queries)");
    private readonly QueryStats _unknownStatement = new("(statements prepared before the capture started)");
    private readonly Dictionary<long, Connection> _open = new();
    private readonly List<ConnectionSummary> _summaries = [];
    private readonly Dictionary<(PgDirection Direction, string Name), Counter> _messages = new();
    private readonly SortedDictionary<string, long> _errors = new(StringComparer.Ordinal);
    private readonly SortedDictionary<string, Counter> _events = new(StringComparer.Ordinal);
    private readonly Random _random = new(5432);
    private readonly Counter _frontend = new();
    private readonly Counter _backend = new();
    private long _connections;
    private long _unlistedConnections;
    private long _unfinishedCalls;
    private DateTime _first;
    private DateTime _last;

    /// <summary>Statistics written to <paramref name="output"/> at <see cref="Complete"/>: a table, or JSON when <paramref name="json"/>.</summary>
    public CaptureStatistics(Stream output, bool json)
    {
        _output = output;
        _json = json;
    }

    public void Message(long connection, DateTime time, PgReceivedMessage message, DecodeContext context)
    {
        See(time);
        Connection state = Open(connection, time);
        long bytes = message.FrameKind switch
        {
            PgFrameKind.Typed => message.Length + 1L,
            PgFrameKind.StartupPacket => message.Length,
            _ => 1,
        };

        string name = message.Name;
        if (!_messages.TryGetValue((message.Direction, name), out Counter? counter))
        {
            counter = new Counter();
            _messages[(message.Direction, name)] = counter;
        }

        counter.Add(bytes);
        (message.Direction == PgDirection.Frontend ? _frontend : _backend).Add(bytes);
        ConnectionSummary summary = state.Summary;
        summary.Messages++;
        summary.Last = time;
        if (message.Direction == PgDirection.Frontend)
        {
            summary.FrontendBytes += bytes;
            Frontend(state, time, message, context);
        }
        else
        {
            summary.BackendBytes += bytes;
            Backend(state, time, message, context);
        }
    }

    public void Event(long connection, DateTime time, CaptureEvent kind, string text, long bytes = 0)
    {
        See(time);
        Connection state = Open(connection, time);
        if (kind == CaptureEvent.Connection)
        {
            state.Summary.Endpoints = text;
            return;
        }

        if (kind == CaptureEvent.Ended)
        {
            state.Summary.Ended = text;
            state.Summary.Last = time;
            Unfinished(state);
            _open.Remove(connection);
            return;
        }

        string name = TraceCaptureOutput.Name(kind);
        if (!_events.TryGetValue(name, out Counter? counter))
        {
            counter = new Counter();
            _events[name] = counter;
        }

        counter.Add(bytes);
        if (kind == CaptureEvent.Gap)
        {
            state.Summary.Gaps++;
            state.Summary.GapBytes += bytes;
        }

        if (kind is CaptureEvent.Gap or CaptureEvent.Malformed)
        {
            // Messages were lost: which answer belongs to which call is not known any more.
            Unfinished(state);
        }
    }

    public void Complete()
    {
        foreach (Connection state in _open.Values)
        {
            Unfinished(state);
        }

        _open.Clear();
        if (_json)
        {
            WriteJson();
        }
        else
        {
            byte[] text = Encoding.UTF8.GetBytes(Table());
            _output.Write(text);
        }

        _output.Flush();
    }

    private void See(DateTime time)
    {
        if (_first == default || time < _first)
        {
            _first = time;
        }

        if (time > _last)
        {
            _last = time;
        }
    }

    private Connection Open(long id, DateTime time)
    {
        if (_open.TryGetValue(id, out Connection? state))
        {
            return state;
        }

        _connections++;
        var summary = new ConnectionSummary(id) { First = time, Last = time };
        if (_summaries.Count < MaxConnections)
        {
            _summaries.Add(summary);
        }
        else
        {
            _unlistedConnections++;
        }

        state = new Connection(summary);
        _open[id] = state;
        return state;
    }

    private void Frontend(Connection state, DateTime time, PgReceivedMessage message, DecodeContext context)
    {
        switch (message.FrontendKind)
        {
            case FrontendMessageKind.Query:
                _unfinishedCalls += state.Enqueue(new Batch(time) { Simple = Normalized(Text(PgSpec.Protocol.Query.View.Read(message, context).QueryString)) });
                break;
            case FrontendMessageKind.Parse:
            {
                var parse = Parse.View.Read(message, context);
                QueryStats query = Normalized(Text(parse.QueryString));
                state.Remember(state.Statements, Text(parse.StatementName), query);
                state.OpenBatch(time).LastParse = query;
                break;
            }

            case FrontendMessageKind.Bind:
            {
                var bind = Bind.View.Read(message, context);
                state.Statements.TryGetValue(Text(bind.StatementName), out QueryStats? query);
                state.Remember(state.Portals, Text(bind.PortalName), query ?? _unknownStatement);
                state.OpenBatch(time);
                break;
            }

            case FrontendMessageKind.Execute:
            {
                var execute = Execute.View.Read(message, context);
                state.Portals.TryGetValue(Text(execute.PortalName), out QueryStats? query);
                Batch batch = state.OpenBatch(time);
                if (batch.Executes.Count < MaxPendingCalls)
                {
                    batch.Executes.Add(query ?? _unknownStatement);
                }
                else
                {
                    _unfinishedCalls++;
                }

                break;
            }

            case FrontendMessageKind.Close:
            {
                var close = Close.View.Read(message, context);
                _ = (close.Target == StatementOrPortal.Statement ? state.Statements : state.Portals).Remove(Text(close.Name));
                state.OpenBatch(time);
                break;
            }

            case FrontendMessageKind.Sync:
                _unfinishedCalls += state.Enqueue(state.OpenBatch(time));
                state.Open = null;
                break;
            case FrontendMessageKind.FunctionCall:
            case FrontendMessageKind.StartupMessage:
                // Answered by one ReadyForQuery: not a query call, but it keeps the answers in step.
                _unfinishedCalls += state.Enqueue(new Batch(time));
                break;
            case FrontendMessageKind.Describe:
            case FrontendMessageKind.Flush:
                state.OpenBatch(time);
                break;
            default:
                break;
        }
    }

    private void Backend(Connection state, DateTime time, PgReceivedMessage message, DecodeContext context)
    {
        // Answers belong to the oldest batch not yet answered, or to the open one (after a Flush).
        Batch? batch = state.Pending.Count > 0 ? state.Pending.Peek() : state.Open;
        switch (message.BackendKind)
        {
            case BackendMessageKind.CommandComplete:
            {
                long? rows = Rows(CommandComplete.View.Read(message, context).CommandTag);
                batch?.Completed(this, time, rows, error: false);
                break;
            }

            case BackendMessageKind.EmptyQueryResponse:
            case BackendMessageKind.PortalSuspended:
                batch?.Completed(this, time, null, error: false);
                break;
            case BackendMessageKind.ErrorResponse:
            {
                string sqlstate = "unknown";
                foreach (ErrorResponse.Field.View field in ErrorResponse.View.Read(message, context).Fields)
                {
                    if (field.Code == (byte)'C')
                    {
                        // Five digits or capital letters; anything else (from a broken or hostile server) is not a key of its own.
                        sqlstate = field.Value.Length == 5 && !field.Value.ContainsAnyExcept(s_sqlstateCharacters) ? Text(field.Value) : "invalid";
                    }
                }

                _errors[sqlstate] = _errors.GetValueOrDefault(sqlstate) + 1;
                state.Summary.Errors++;
                batch?.Completed(this, time, null, error: true);
                break;
            }

            case BackendMessageKind.ReadyForQuery:
                if (state.Pending.Count > 0)
                {
                    state.Pending.Dequeue().Finish(this, time);
                }

                break;
            default:
                break;
        }
    }

    /// <summary>The calls of a connection's unanswered batches will not be seen to end.</summary>
    private void Unfinished(Connection state)
    {
        foreach (Batch batch in state.Pending)
        {
            _unfinishedCalls += batch.CallsLeft;
        }

        state.Pending.Clear();
        if (state.Open is { } open)
        {
            _unfinishedCalls += open.CallsLeft;
            state.Open = null;
        }
    }

    private QueryStats Normalized(string text)
    {
        string normalized = QueryNormalizer.Normalize(text);
        if (_queries.TryGetValue(normalized, out QueryStats? query))
        {
            return query;
        }

        if (_queries.Count >= MaxQueries)
        {
            return _otherQueries;
        }

        query = new QueryStats(normalized);
        _queries[normalized] = query;
        return query;
    }

    private void Call(QueryStats query, TimeSpan time, long rows, bool error)
    {
        // Timestamps of a capture can go back (a clock step): such a call took no time.
        time = time < TimeSpan.Zero ? TimeSpan.Zero : time;
        query.Calls++;
        query.Rows += rows;
        query.Total += time;
        if (error)
        {
            query.Errors++;
        }

        // A uniform sample of the call times (reservoir sampling): all of them while they fit.
        double ms = time.TotalMilliseconds;
        if (query.Times.Count < ReservoirSize)
        {
            query.Times.Add(ms);
        }
        else
        {
            long slot = _random.NextInt64(query.Calls);
            if (slot < ReservoirSize)
            {
                query.Times[(int)slot] = ms;
            }
        }
    }

    private static string Text(ReadOnlySpan<byte> bytes) => Encoding.UTF8.GetString(bytes);

    /// <summary>The row count of a CommandComplete tag: its last number, for the commands that report rows.</summary>
    internal static long? Rows(ReadOnlySpan<byte> tag)
    {
        string text = Encoding.ASCII.GetString(tag);
        int space = text.IndexOf(' ', StringComparison.Ordinal);
        if (space < 0 || Array.IndexOf(s_rowTags, text[..space]) < 0)
        {
            return null;
        }

        int last = text.LastIndexOf(' ');
        return long.TryParse(text.AsSpan(last + 1), NumberStyles.None, CultureInfo.InvariantCulture, out long rows) ? rows : null;
    }

    /// <summary>The p95 of the kept call times by nearest rank: the value at rank ceil(0.95 n) in order.</summary>
    internal static double Percentile95(List<double> times)
    {
        if (times.Count == 0)
        {
            return 0;
        }

        double[] sorted = [.. times];
        Array.Sort(sorted);
        int rank = (int)Math.Ceiling(0.95 * sorted.Length);
        return sorted[Math.Max(rank, 1) - 1];
    }

    private List<QueryStats> QueriesByTime()
    {
        // A query only prepared, or whose calls did not end in the capture, is not listed.
        List<QueryStats> queries = [.. _queries.Values.Where(q => q.Calls > 0 || q.Errors > 0).OrderByDescending(q => q.Total).ThenBy(q => q.Text, StringComparer.Ordinal)];
        foreach (QueryStats apart in (QueryStats[])[_unknownStatement, _otherQueries])
        {
            if (apart.Calls > 0 || apart.Errors > 0)
            {
                queries.Add(apart);
            }
        }

        return queries;
    }

    private string Table()
    {
        var text = new StringBuilder();
        CultureInfo invariant = CultureInfo.InvariantCulture;
        text.Append(invariant, $"Capture: {_connections} connections, {Duration(_first, _last)} ms from the first packet to the last\n\n");

        text.Append("Queries (by total time; times in ms)\n");
        text.Append(invariant, $"{"calls",10} {"rows",12} {"total",12} {"mean",10} {"p95",10} {"errors",7}  query\n");
        foreach (QueryStats query in QueriesByTime())
        {
            text.Append(invariant, $"{query.Calls,10} {query.Rows,12} {query.Total.TotalMilliseconds,12:F3} {Mean(query),10:F3} {Percentile95(query.Times),10:F3} {query.Errors,7}  {query.Text}\n");
        }

        if (_queries.Count >= MaxQueries)
        {
            text.Append(invariant, $"(only the first {MaxQueries} distinct queries are kept; the calls of later ones are counted as other queries)\n");
        }

        if (_unfinishedCalls > 0)
        {
            text.Append(invariant, $"{_unfinishedCalls} calls whose end was not captured are not counted\n");
        }

        text.Append("\nMessages\n");
        text.Append(invariant, $"{"count",10} {"bytes",14}  message\n");
        foreach (((PgDirection direction, string name), Counter counter) in _messages.OrderBy(m => m.Key.Direction).ThenByDescending(m => m.Value.Count).ThenBy(m => m.Key.Name, StringComparer.Ordinal))
        {
            text.Append(invariant, $"{counter.Count,10} {counter.Bytes,14}  {(direction == PgDirection.Frontend ? 'F' : 'B')} {name}\n");
        }

        text.Append(invariant, $"{_frontend.Count,10} {_frontend.Bytes,14}  F total\n");
        text.Append(invariant, $"{_backend.Count,10} {_backend.Bytes,14}  B total\n");

        text.Append("\nErrors (by SQLSTATE)\n");
        foreach ((string sqlstate, long count) in _errors)
        {
            text.Append(invariant, $"{count,10}  {sqlstate}\n");
        }

        if (_errors.Count == 0)
        {
            text.Append("         0\n");
        }

        text.Append("\nEvents\n");
        foreach ((string name, Counter counter) in _events)
        {
            text.Append(invariant, $"{counter.Count,10} {name} ({counter.Bytes} bytes)\n");
        }

        if (_events.Count == 0)
        {
            text.Append("         0 (no gaps, resumptions, malformed bytes or encryption)\n");
        }

        text.Append("\nConnections\n");
        text.Append(invariant, $"{"id",8} {"messages",10} {"bytes F",12} {"bytes B",12} {"duration ms",12} {"errors",7} {"gaps",5} {"gap bytes",10}  client -> server (end)\n");
        foreach (ConnectionSummary c in _summaries)
        {
            text.Append(invariant, $"{c.Id,8} {c.Messages,10} {c.FrontendBytes,12} {c.BackendBytes,12} {Duration(c.First, c.Last),12:F3} {c.Errors,7} {c.Gaps,5} {c.GapBytes,10}  {c.Endpoints} ({c.Ended ?? "open"})\n");
        }

        if (_unlistedConnections > 0)
        {
            text.Append(invariant, $"({_unlistedConnections} more connections not listed: only the first {MaxConnections} are)\n");
        }

        return text.ToString();
    }

    private void WriteJson()
    {
        using var json = new Utf8JsonWriter(_output, s_json);
        json.WriteStartObject();
        json.WriteNumber("connections", _connections);
        json.WriteString("start", Time(_first));
        json.WriteString("end", Time(_last));
        json.WriteNumber("duration_ms", Duration(_first, _last));

        json.WriteStartArray("queries");
        foreach (QueryStats query in QueriesByTime())
        {
            json.WriteStartObject();
            json.WriteString("query", query.Text);
            json.WriteBoolean("other", ReferenceEquals(query, _otherQueries));
            json.WriteNumber("calls", query.Calls);
            json.WriteNumber("rows", query.Rows);
            json.WriteNumber("total_ms", Math.Round(query.Total.TotalMilliseconds, 3));
            json.WriteNumber("mean_ms", Math.Round(Mean(query), 3));
            json.WriteNumber("p95_ms", Math.Round(Percentile95(query.Times), 3));
            json.WriteBoolean("p95_sampled", query.Calls > query.Times.Count);
            json.WriteNumber("errors", query.Errors);
            json.WriteEndObject();
        }

        json.WriteEndArray();
        json.WriteBoolean("queries_capped", _queries.Count >= MaxQueries);
        json.WriteNumber("unfinished_calls", _unfinishedCalls);

        json.WriteStartObject("messages");
        WriteCounter(json, "frontend", _frontend);
        WriteCounter(json, "backend", _backend);
        json.WriteStartArray("types");
        foreach (((PgDirection direction, string name), Counter counter) in _messages.OrderBy(m => m.Key.Direction).ThenByDescending(m => m.Value.Count).ThenBy(m => m.Key.Name, StringComparer.Ordinal))
        {
            json.WriteStartObject();
            json.WriteString("direction", direction == PgDirection.Frontend ? "F" : "B");
            json.WriteString("name", name);
            json.WriteNumber("count", counter.Count);
            json.WriteNumber("bytes", counter.Bytes);
            json.WriteEndObject();
        }

        json.WriteEndArray();
        json.WriteEndObject();

        json.WriteStartObject("errors");
        foreach ((string sqlstate, long count) in _errors)
        {
            json.WriteNumber(sqlstate, count);
        }

        json.WriteEndObject();

        json.WriteStartObject("events");
        foreach ((string name, Counter counter) in _events)
        {
            WriteCounter(json, name, counter);
        }

        json.WriteEndObject();

        json.WriteStartArray("connection_list");
        foreach (ConnectionSummary c in _summaries)
        {
            json.WriteStartObject();
            json.WriteNumber("id", c.Id);
            json.WriteString("endpoints", c.Endpoints);
            json.WriteString("start", Time(c.First));
            json.WriteString("end", Time(c.Last));
            json.WriteNumber("duration_ms", Duration(c.First, c.Last));
            json.WriteNumber("messages", c.Messages);
            json.WriteNumber("frontend_bytes", c.FrontendBytes);
            json.WriteNumber("backend_bytes", c.BackendBytes);
            json.WriteNumber("errors", c.Errors);
            json.WriteNumber("gaps", c.Gaps);
            json.WriteNumber("gap_bytes", c.GapBytes);
            if (c.Ended is { } ended)
            {
                json.WriteString("ended", ended);
            }
            else
            {
                json.WriteNull("ended");
            }

            json.WriteEndObject();
        }

        json.WriteEndArray();
        json.WriteNumber("connections_not_listed", _unlistedConnections);
        json.WriteEndObject();
        json.Flush();
        _output.Write("\n"u8);
    }

    private static void WriteCounter(Utf8JsonWriter json, string name, Counter counter)
    {
        json.WriteStartObject(name);
        json.WriteNumber("count", counter.Count);
        json.WriteNumber("bytes", counter.Bytes);
        json.WriteEndObject();
    }

    private static double Mean(QueryStats query) => query.Calls == 0 ? 0 : query.Total.TotalMilliseconds / query.Calls;

    private static double Duration(DateTime first, DateTime last) => Math.Round((last - first).TotalMilliseconds, 3);

    private static string Time(DateTime time) => time.ToLocalTime().ToString("yyyy-MM-dd HH:mm:ss.ffffff", CultureInfo.InvariantCulture);

    /// <summary>A count and its bytes.</summary>
    private sealed class Counter
    {
        public long Count { get; private set; }

        public long Bytes { get; private set; }

        public void Add(long bytes)
        {
            Count++;
            Bytes += bytes;
        }
    }

    /// <summary>What is known of one normalized query.</summary>
    private sealed class QueryStats(string text)
    {
        public string Text { get; } = text;

        public long Calls { get; set; }

        public long Rows { get; set; }

        public TimeSpan Total { get; set; }

        public long Errors { get; set; }

        /// <summary>Call times in ms: all of them up to <see cref="ReservoirSize"/>, then a uniform sample.</summary>
        public List<double> Times { get; } = [];
    }

    /// <summary>What is kept of a connection after it ends.</summary>
    private sealed class ConnectionSummary(long id)
    {
        public long Id { get; } = id;

        public string Endpoints { get; set; } = "";

        public DateTime First { get; set; }

        public DateTime Last { get; set; }

        public long Messages { get; set; }

        public long FrontendBytes { get; set; }

        public long BackendBytes { get; set; }

        public long Errors { get; set; }

        public long Gaps { get; set; }

        public long GapBytes { get; set; }

        public string? Ended { get; set; }
    }

    /// <summary>An open connection: its prepared statements and portals, and its batches waiting for their ReadyForQuery.</summary>
    private sealed class Connection(ConnectionSummary summary)
    {
        public ConnectionSummary Summary { get; } = summary;

        public Dictionary<string, QueryStats> Statements { get; } = new(StringComparer.Ordinal);

        public Dictionary<string, QueryStats> Portals { get; } = new(StringComparer.Ordinal);

        public Queue<Batch> Pending { get; } = new();

        /// <summary>The extended-protocol batch being sent (no Sync yet).</summary>
        public Batch? Open { get; set; }

        public Batch OpenBatch(DateTime time) => Open ??= new Batch(time);

        /// <summary>Adds a batch that waits for its ReadyForQuery; returns the calls of the oldest, given up when too many wait.</summary>
        public long Enqueue(Batch batch)
        {
            long givenUp = 0;
            if (Pending.Count >= MaxPendingCalls)
            {
                // Answers that never come (their direction was not captured): the oldest is given up.
                givenUp = Pending.Dequeue().CallsLeft;
            }

            Pending.Enqueue(batch);
            return givenUp;
        }

        public void Remember(Dictionary<string, QueryStats> names, string name, QueryStats query)
        {
            // The unnamed statement and portal are always replaced; named ones up to the bound.
            if (names.Count < MaxStatements || names.ContainsKey(name) || name.Length == 0)
            {
                names[name] = query;
            }
        }
    }

    /// <summary>A Query, or the extended-protocol messages up to a Sync: what it runs and how far its answers have come.</summary>
    private sealed class Batch(DateTime start)
    {
        private DateTime _split = start;
        private int _done;
        private long _rows;
        private bool _error;

        public DateTime Start { get; } = start;

        /// <summary>The query of a simple-protocol Query.</summary>
        public QueryStats? Simple { get; init; }

        /// <summary>The queries of the Executes, in order.</summary>
        public List<QueryStats> Executes { get; } = [];

        /// <summary>The query of the batch's last Parse: an error before any Execute counts for it.</summary>
        public QueryStats? LastParse { get; set; }

        /// <summary>Calls not yet counted.</summary>
        public long CallsLeft => Simple is not null ? (_done == 0 ? 1 : 0) : Executes.Count - _done;

        /// <summary>A statement's answer ended: a CommandComplete (with its rows), an empty query, a suspended portal or an error.</summary>
        public void Completed(CaptureStatistics owner, DateTime time, long? rows, bool error)
        {
            if (Simple is not null)
            {
                _rows += rows ?? 0;
                _error |= error;
                return;
            }

            if (_done >= Executes.Count)
            {
                // An error of a Parse, Bind or Describe outside any Execute.
                if (error && Executes.Count == 0 && LastParse is { } parsed)
                {
                    parsed.Errors++;
                }

                return;
            }

            if (error)
            {
                // The error ends the batch: the Executes after it are skipped by the server.
                _rows = 0;
                _error = true;
                Executes.RemoveRange(_done + 1, Executes.Count - _done - 1);
                return;
            }

            if (_done < Executes.Count - 1)
            {
                owner.Call(Executes[_done], time - _split, rows ?? 0, error: false);
                _split = time;
                _done++;
            }
            else
            {
                // The last Execute's call runs to the ReadyForQuery.
                _rows = rows ?? 0;
            }
        }

        /// <summary>The ReadyForQuery: the last call ends.</summary>
        public void Finish(CaptureStatistics owner, DateTime time)
        {
            if (Simple is not null)
            {
                owner.Call(Simple, time - Start, _rows, _error);
                _done = 1;
            }
            else if (_done < Executes.Count)
            {
                owner.Call(Executes[_done], time - _split, _rows, _error);
                _done = Executes.Count;
            }
        }
    }
}

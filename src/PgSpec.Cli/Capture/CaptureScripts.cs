using System.Globalization;
using System.Text;
using System.Text.Unicode;
using PgSpec.Cli.Script;
using PgSpec.Protocol;

namespace PgSpec.Cli.Capture;

/// <summary>
/// <c>pgspec capture --to-script DIR</c>: one pgproto script per connection,
/// <c>DIR/connection-N.pgproto</c>, holding what the client sent after its startup, so that
/// <c>pgspec script</c> replays the conversation against another server.
/// </summary>
/// <remarks>
/// <para>
/// Each message becomes the script line that <see cref="ScriptParser"/> reads back as the same
/// bytes (every line is checked that way as it is written); a message the syntax cannot give
/// exactly (a TAB in a string, a value that is not UTF-8, COPY data in the text format with its
/// TABs, a message of an unknown type) becomes the raw <c>'!'</c> line of its bytes, after a
/// comment saying why (pgproto itself has no <c>'!'</c>). Where the client waited for the server,
/// the script waits too: <c>'Y'</c> for each ReadyForQuery that answered a Query, a Sync or a
/// FunctionCall; <c>'z'</c> for each message that answered a Flush when nothing else was pending.
/// During COPY IN the data follows the Query at once, and the <c>'Y'</c> after CopyDone reads the
/// CopyInResponse with the rest.
/// </para>
/// <para>
/// The startup, authentication, SSLRequest, GSSENCRequest and CancelRequest are comments:
/// <c>pgspec script</c> makes its own connection. Gaps, encryption, malformed bytes and a start
/// that was not captured are comments where they happen, and the header's status line (written
/// first, at a fixed width) is rewritten in place to say that the script is incomplete.
/// </para>
/// <para>
/// Lines are buffered per connection and appended to its file (opened and closed for each batch)
/// when its buffer passes <see cref="BatchChars"/>, when all buffers together pass
/// <see cref="TotalChars"/>, and when the connection ends: at most one file is open at a time.
/// </para>
/// </remarks>
internal sealed class CaptureScripts : ICaptureOutput
{
    /// <summary>The characters one connection buffers before they are appended to its file.</summary>
    public const int BatchChars = 64 * 1024;

    /// <summary>The characters all connections buffer together before every buffer is written out.</summary>
    public const int TotalChars = 8 * 1024 * 1024;

    // The status lines are ASCII and of one width: the status is rewritten in place.
    private const string CompleteText = "# status: complete: every message the client sent after its startup was captured and is below";
    private const string IncompleteText = "# status: INCOMPLETE: some of the conversation is missing or not replayable (see comments)";
    private static readonly string CompleteStatus = CompleteText.PadRight(Math.Max(CompleteText.Length, IncompleteText.Length));
    private static readonly string IncompleteStatus = IncompleteText.PadRight(CompleteStatus.Length);

    private static readonly UTF8Encoding Utf8NoBom = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    private readonly string _directory;
    private readonly Dictionary<long, ScriptFile> _scripts = new();
    private long _buffered;
    private bool _failed;

    private CaptureScripts(string directory) => _directory = directory;

    /// <summary>Scripts written (connections ended so far).</summary>
    public int Written { get; private set; }

    /// <summary>Of <see cref="Written"/>, the scripts marked incomplete.</summary>
    public int Incomplete { get; private set; }

    /// <summary>
    /// The output for <paramref name="directory"/>, created if missing (in a directory that
    /// exists: a typo does not make a tree of directories). Refused, with a message for a usage
    /// error, when the name is empty, when it is a file, when the directory that would hold it is
    /// missing, or when it holds a <c>connection-*.pgproto</c> entry already (the scripts of two
    /// captures must not mix, and a directory of that name would stop a script from being
    /// written). Other files in it are left alone.
    /// </summary>
    public static CaptureScripts? Open(string directory, out string? error)
    {
        error = null;
        if (string.IsNullOrWhiteSpace(directory))
        {
            error = "--to-script needs the name of a directory, not an empty one";
            return null;
        }

        try
        {
            string full = Path.TrimEndingDirectorySeparator(Path.GetFullPath(directory));
            string? parent = Path.GetDirectoryName(full);
            if (File.Exists(full))
            {
                error = $"--to-script: '{directory}' is a file, not a directory";
            }
            else if (Directory.Exists(full))
            {
                string? taken = Directory.EnumerateFileSystemEntries(full, "connection-*.pgproto").Select(Path.GetFileName).Order(StringComparer.Ordinal).FirstOrDefault();
                if (taken is not null && Directory.Exists(Path.Combine(full, taken)))
                {
                    error = $"--to-script: '{directory}' holds a directory named {taken}, where a script would be written: give an empty or new directory";
                }
                else if (taken is not null)
                {
                    error = $"--to-script: '{directory}' already holds connection-*.pgproto scripts: give an empty or new directory";
                }
            }
            else if (parent is not null && File.Exists(parent))
            {
                error = $"--to-script: '{parent}' is a file, not a directory to create '{Path.GetFileName(full)}' in";
            }
            else if (parent is not null && !Directory.Exists(parent))
            {
                error = $"--to-script: the directory '{parent}' does not exist (DIR is created only in a directory that exists)";
            }
            else
            {
                Directory.CreateDirectory(full);
            }
        }
        catch (UnauthorizedAccessException)
        {
            error = $"--to-script: cannot use '{directory}': permission denied";
        }
        catch (Exception e) when (e is IOException or ArgumentException or NotSupportedException)
        {
            error = $"--to-script: cannot use '{directory}': {e.Message}";
        }

        return error is null ? new CaptureScripts(directory) : null;
    }

    /// <summary>The file of connection <paramref name="connection"/>.</summary>
    public static string FileName(long connection) => string.Create(CultureInfo.InvariantCulture, $"connection-{connection}.pgproto");

    public void Message(long connection, DateTime time, PgReceivedMessage message, DecodeContext context)
    {
        if (_failed)
        {
            return;
        }

        ScriptFile script = Get(connection, time, null);
        if (message.Direction == PgDirection.Backend)
        {
            script.Answer(message);
        }
        else
        {
            script.Send(message, context);
        }

        Buffered(script);
    }

    public void Event(long connection, DateTime time, CaptureEvent kind, string text, long bytes = 0)
    {
        if (_failed)
        {
            return;
        }

        ScriptFile script = Get(connection, time, kind == CaptureEvent.Connection ? text : null);
        switch (kind)
        {
            case CaptureEvent.MidStream:
                script.Gap("its start was not captured: what the client sent before the first message below is missing");
                break;
            case CaptureEvent.Gap:
                script.Gap("gap: " + text);
                break;
            case CaptureEvent.Resumed:
                script.Comment("resumed: " + text);
                break;
            case CaptureEvent.Encrypted:
                script.Gap("encrypted: " + text + "; nothing after this point is in the script");
                break;
            case CaptureEvent.Malformed:
                script.Gap("malformed: " + text);
                break;
            case CaptureEvent.Ended:
                script.Comment("ended: " + text);
                Close(script);
                return;
        }

        Buffered(script);
    }

    public void Complete()
    {
        foreach (ScriptFile script in _scripts.Values.ToList())
        {
            if (_failed)
            {
                return;
            }

            Close(script);
        }
    }

    private ScriptFile Get(long connection, DateTime time, string? endpoints)
    {
        if (!_scripts.TryGetValue(connection, out ScriptFile? script))
        {
            script = new ScriptFile(connection, Path.Combine(_directory, FileName(connection)), endpoints ?? "(endpoints not seen)", time);
            _scripts[connection] = script;
        }

        return script;
    }

    private void Buffered(ScriptFile script)
    {
        _buffered += script.TakeGrowth();
        if (script.PendingChars >= BatchChars)
        {
            Write(script);
        }

        if (_buffered >= TotalChars)
        {
            foreach (ScriptFile each in _scripts.Values)
            {
                Write(each);
            }
        }
    }

    private void Close(ScriptFile script)
    {
        _buffered += script.TakeGrowth();
        Write(script);
        if (script.Incomplete && script.StatusWritten == CompleteStatus)
        {
            Guard(script, () =>
            {
                using var file = new FileStream(script.Path, FileMode.Open, FileAccess.Write);
                file.Position = script.StatusOffset;
                file.Write(Encoding.ASCII.GetBytes(IncompleteStatus));
            });
        }

        _scripts.Remove(script.Id);
        if (!_failed)
        {
            Written++;
            Incomplete += script.Incomplete ? 1 : 0;
        }
    }

    /// <summary>Appends what the connection buffered to its file (creating it, header first, on the first write).</summary>
    private void Write(ScriptFile script)
    {
        if (_failed || (script.PendingChars == 0 && script.StatusWritten is not null))
        {
            return;
        }

        Guard(script, () =>
        {
            bool first = script.StatusWritten is null;
            using var file = new FileStream(script.Path, first ? FileMode.CreateNew : FileMode.Append, FileAccess.Write);
            using var writer = new StreamWriter(file, Utf8NoBom);
            if (first)
            {
                string title = script.Title();
                script.StatusOffset = Utf8NoBom.GetByteCount(title) + 1;
                script.StatusWritten = script.Incomplete ? IncompleteStatus : CompleteStatus;
                writer.Write(title);
                writer.Write('\n');
                writer.Write(script.StatusWritten);
                writer.Write('\n');
                writer.Write("# replay: pgspec script -f FILE; the startup and authentication are not in the script (pgspec script makes its own connection: -h, -p, -u, -d)\n");
            }

            script.WritePending(writer);
        });
        _buffered -= script.TakeWritten();
    }

    private void Guard(ScriptFile script, Action action)
    {
        try
        {
            action();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // The output cannot go on: nothing more is written, and the command reports why.
            _failed = true;
            throw new CaptureException($"--to-script: cannot write {script.Path}: {e.Message}", e);
        }
    }

    /// <summary>One connection's script: its state, and the lines not yet written.</summary>
    private sealed class ScriptFile(long id, string path, string endpoints, DateTime start)
    {
        private StringBuilder _pending = new();
        private long _reported;

        // ReadyForQuery answers that the client waits for: one per Query, Sync or FunctionCall sent.
        private int _outstanding;

        // The client's last message was a Flush with nothing else pending: what the server answers
        // before the client's next message is what it waited for.
        private bool _afterFlush;
        private int _flushAnswers;
        private bool _startupNoted;
        private bool _authenticationNoted;

        public long Id { get; } = id;

        public string Path { get; } = path;

        public bool Incomplete { get; private set; }

        /// <summary>The status line in the file (null: nothing written yet).</summary>
        public string? StatusWritten { get; set; }

        public long StatusOffset { get; set; }

        public int PendingChars => _pending.Length;

        public string Title() => string.Create(
            CultureInfo.InvariantCulture,
            $"# connection {Id}: {OneLine(endpoints)}, captured {start.ToUniversalTime():yyyy-MM-dd HH:mm:ss.ffffff} UTC");

        /// <summary>Characters buffered since the last call.</summary>
        public long TakeGrowth()
        {
            long growth = _pending.Length - _reported;
            _reported = _pending.Length;
            return growth;
        }

        /// <summary>Characters written by <see cref="WritePending"/> (and no longer buffered).</summary>
        public long TakeWritten()
        {
            long written = _reported;
            _reported = 0;
            return written;
        }

        public void WritePending(TextWriter writer)
        {
            foreach (ReadOnlyMemory<char> chunk in _pending.GetChunks())
            {
                writer.Write(chunk.Span);
            }

            // A huge message leaves a huge buffer: it is let go rather than kept for the connection's life.
            _pending = _pending.Capacity > 4 * BatchChars ? new StringBuilder() : _pending.Clear();
        }

        public void Comment(string text) => _pending.Append("# ").Append(OneLine(text)).Append('\n');

        /// <summary>Something is missing from the script here: a comment, and the script is incomplete.</summary>
        public void Gap(string text)
        {
            Incomplete = true;
            Comment(text);
        }

        /// <summary>A message from the server: the waits it ends.</summary>
        public void Answer(PgReceivedMessage message)
        {
            if (message.FrameKind != PgFrameKind.Typed)
            {
                return;
            }

            if (message.BackendKind == BackendMessageKind.ReadyForQuery && _outstanding > 0)
            {
                _outstanding--;
                _pending.Append("'Y'\n");
            }
            else if (_afterFlush && _outstanding == 0)
            {
                _flushAnswers++;
            }
        }

        /// <summary>A message from the client: its script line, or a comment when it is not replayed.</summary>
        public void Send(PgReceivedMessage message, DecodeContext context)
        {
            if (message.FrameKind != PgFrameKind.Typed)
            {
                Startup(message, context);
                return;
            }

            switch (message.FrontendKind)
            {
                case FrontendMessageKind.PasswordMessage or FrontendMessageKind.SASLInitialResponse or FrontendMessageKind.SASLResponse or FrontendMessageKind.GSSResponse:
                    if (!_authenticationNoted)
                    {
                        _authenticationNoted = true;
                        Comment($"authentication ({message.Name}): not replayed, pgspec script authenticates on its own");
                    }

                    return;
            }

            if (_flushAnswers > 0)
            {
                _pending.Insert(_pending.Length, "'z'\n", _flushAnswers);
            }

            _flushAnswers = 0;
            _afterFlush = false;
            Line(message, context);
            switch (message.FrontendKind)
            {
                case FrontendMessageKind.Query or FrontendMessageKind.Sync or FrontendMessageKind.FunctionCall:
                    _outstanding++;
                    break;
                case FrontendMessageKind.Flush:
                    _afterFlush = _outstanding == 0;
                    break;
            }
        }

        private void Startup(PgReceivedMessage message, DecodeContext context)
        {
            switch (message.FrontendKind)
            {
                case FrontendMessageKind.StartupMessage when !_startupNoted:
                    _startupNoted = true;
                    if (TryOwned(message, context) is StartupMessage startup)
                    {
                        int major = startup.ProtocolVersion >> 16;
                        int minor = startup.ProtocolVersion & 0xFFFF;
                        string parameters = string.Join(", ", startup.Parameters.Select(p => $"{p.Name}={p.Value}"));
                        Comment(string.Create(CultureInfo.InvariantCulture, $"StartupMessage (protocol {major}.{minor}; {parameters}): not replayed, pgspec script makes its own connection"));
                        if (startup.Parameters.Any(p => p.Name == "replication" && p.Value is not ("false" or "off" or "no" or "0")))
                        {
                            Gap("the startup asked for a replication connection: pgspec script makes a normal one, where replication commands fail");
                        }
                    }
                    else
                    {
                        Comment("StartupMessage: not replayed, pgspec script makes its own connection");
                    }

                    break;
                case FrontendMessageKind.StartupMessage:
                    Comment("StartupMessage: not replayed");
                    break;
                case FrontendMessageKind.SSLRequest or FrontendMessageKind.GSSENCRequest:
                    Comment($"{message.Name}: not replayed, pgspec script negotiates its own connection (--sslmode)");
                    break;
                case FrontendMessageKind.CancelRequest:
                    Comment("CancelRequest: a connection of its own that cancels another's query; not replayed (a script cannot send one)");
                    break;
                default:
                    Comment($"{message.Name} (a startup packet): not replayed");
                    break;
            }
        }

        private void Line(PgReceivedMessage message, DecodeContext context)
        {
            byte[] wire = Wire(message);
            string? reason;
            if (message.IsUnknown)
            {
                reason = $"a message of unknown type {Describe(message.TypeByte)}";
            }
            else
            {
                IPgMessage? owned = TryOwned(message, context);
                string? why = "a string that is not UTF-8";
                string? line = owned is null ? null : ScriptLine(owned, out why);
                if (line is not null && RoundTrips(line, wire))
                {
                    _pending.Append(line).Append('\n');
                    return;
                }

                reason = $"a {message.Name} with {why ?? "a value its script line does not give back exactly"}";
            }

            Comment($"{reason}: sent as its raw bytes ('!', which pgproto does not have)");
            _pending.Append("'!'\t\"").Append(Convert.ToHexStringLower(wire)).Append("\"\n");
        }

        private static IPgMessage? TryOwned(PgReceivedMessage message, DecodeContext context)
        {
            try
            {
                return message.ToMessage(context);
            }
            catch (PgException)
            {
                return null;
            }
        }

        private static byte[] Wire(PgReceivedMessage message)
        {
            var bytes = new byte[message.Body.Length + 5];
            bytes[0] = (byte)message.TypeByte;
            System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(1), message.Body.Length + 4);
            message.Body.CopyTo(bytes.AsSpan(5));
            return bytes;
        }

        /// <summary>Whether the line parses back into exactly the message's bytes.</summary>
        private static bool RoundTrips(string line, byte[] wire)
        {
            try
            {
                IReadOnlyList<ScriptStep> steps = ScriptParser.Parse(line, "capture");
                return steps is [SendStep send] && send.Message.ToArray().AsSpan().SequenceEqual(wire);
            }
            catch (Exception e) when (e is ScriptParseException or PgException or ArgumentException)
            {
                return false;
            }
        }

        /// <summary>The script line of a message (null when its fields cannot be written as strings; <paramref name="why"/> says why).</summary>
        internal static string? ScriptLine(IPgMessage message, out string? why)
        {
            var line = new StringBuilder();
            string? problem = null;
            void Text(string value)
            {
                line.Append('\t');
                if (!Quote(line, value))
                {
                    problem ??= "a TAB in a string (the script's fields end at TABs)";
                }
            }

            void Bytes(ReadOnlySpan<byte> value)
            {
                if (Utf8.IsValid(value))
                {
                    Text(Encoding.UTF8.GetString(value));
                }
                else
                {
                    problem ??= "bytes that are not UTF-8 where the script has a string";
                }
            }

            void Number(long value) => line.Append('\t').Append(value.ToString(CultureInfo.InvariantCulture));
            void Codes(IReadOnlyList<short> codes)
            {
                Number(codes.Count);
                foreach (short code in codes)
                {
                    Number(code);
                }
            }

            void Values(IReadOnlyList<ReadOnlyMemory<byte>?> values, IReadOnlyList<short> formats)
            {
                Number(values.Count);
                for (int i = 0; i < values.Count; i++)
                {
                    short format = formats.Count == 0 ? (short)0 : formats.Count == 1 ? formats[0] : i < formats.Count ? formats[i] : (short)0;
                    if (values[i] is not { } value)
                    {
                        Number(-1);
                        continue;
                    }

                    Number(value.Length);
                    if (value.Length == 0)
                    {
                        continue;
                    }

                    if (format != 0)
                    {
                        line.Append("\t\"0x").Append(Convert.ToHexStringLower(value.Span)).Append('"');
                    }
                    else
                    {
                        Bytes(value.Span);
                    }
                }
            }

            switch (message)
            {
                case Query query:
                    line.Append("'Q'");
                    Text(query.QueryString);
                    break;
                case Parse parse:
                    line.Append("'P'");
                    Text(parse.StatementName);
                    Text(parse.QueryString);
                    Number(parse.ParameterTypeOids.Length);
                    foreach (uint oid in parse.ParameterTypeOids)
                    {
                        Number(oid);
                    }

                    break;
                case Bind bind:
                    line.Append("'B'");
                    Text(bind.PortalName);
                    Text(bind.StatementName);
                    Codes(bind.ParameterFormatCodes);
                    Values(bind.Parameters, bind.ParameterFormatCodes);
                    Codes(bind.ResultFormatCodes);
                    break;
                case Execute execute:
                    line.Append("'E'");
                    Text(execute.PortalName);
                    Number(execute.MaxRows);
                    break;
                case Describe describe:
                    line.Append("'D'\t'").Append(describe.Target == StatementOrPortal.Statement ? 'S' : 'P').Append('\'');
                    Text(describe.Name);
                    break;
                case Close close:
                    line.Append("'C'\t'").Append(close.Target == StatementOrPortal.Statement ? 'S' : 'P').Append('\'');
                    Text(close.Name);
                    break;
                case FunctionCall call:
                    line.Append("'F'");
                    Number(call.FunctionOid);
                    Codes(call.ArgumentFormatCodes);
                    Values(call.Arguments, call.ArgumentFormatCodes);
                    Number(call.ResultFormatCode);
                    break;
                case CopyData data:
                    line.Append("'d'");
                    Bytes(data.Data.Span);
                    break;
                case CopyFail fail:
                    line.Append("'f'");
                    Text(fail.ErrorMessage);
                    break;
                case CopyDone:
                    line.Append("'c'");
                    break;
                case Sync:
                    line.Append("'S'");
                    break;
                case Flush:
                    line.Append("'H'");
                    break;
                case Terminate:
                    line.Append("'X'");
                    break;
                default:
                    why = $"a message that has no script line ({message.Name})";
                    return null;
            }

            why = problem;
            return problem is null ? line.ToString() : null;
        }

        /// <summary>A string field: in double quotes, with backslash, quote and newline escaped; false when it holds a TAB (fields are cut at TABs).</summary>
        private static bool Quote(StringBuilder line, string value)
        {
            line.Append('"');
            foreach (char c in value)
            {
                switch (c)
                {
                    case '\t':
                        return false;
                    case '\n':
                        line.Append("\\n");
                        break;
                    case '\\' or '"':
                        line.Append('\\').Append(c);
                        break;
                    default:
                        line.Append(c);
                        break;
                }
            }

            line.Append('"');
            return true;
        }

        /// <summary>Text for a comment line: no line breaks, and no backslash at the end (it would join the next line).</summary>
        private static string OneLine(string text)
        {
            string one = text.Replace("\r", "\\r", StringComparison.Ordinal).Replace("\n", "\\n", StringComparison.Ordinal);
            return one.EndsWith('\\') ? one + " " : one;
        }

        private static string Describe(int type) => type is >= 0x20 and < 0x7F
            ? $"'{(char)type}'"
            : string.Create(CultureInfo.InvariantCulture, $"0x{type:x2}");
    }
}

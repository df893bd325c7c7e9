using System.CommandLine;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Security.Cryptography.X509Certificates;
using PgSpec.Protocol;
using PgSpec.Proxy;

namespace PgSpec.Cli;

/// <summary>Builds the <c>proxy</c> command.</summary>
internal static class ProxyCommand
{
    private const string InlineCompletions = "DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS";

    private const string Description = """
        A logging proxy: clients connect to --listen, and each connection is relayed to the
        server at --upstream. Every message of both directions is decoded and validated by the
        protocol's context rules and forwarded as the bytes received, unchanged (unknown message
        types too). The exceptions: BackendKeyData (clients get a cancel key of the proxy's own,
        and a CancelRequest with it is forwarded to the right server connection with the
        server's key), and SASL offers a client could not complete through the proxy (below).

        Endpoints: HOST:PORT, or the path of a Unix-domain socket (starting with '/' or 'unix:'),
        e.g. --upstream /var/run/postgresql/.s.PGSQL.5432. A Unix socket the proxy listens on is
        guarded by PATH.lock, as PostgreSQL guards its own: a second proxy on the same path is
        refused, a socket left by a process that is gone is replaced, and a file that is not a
        socket is never removed.

        Startup: SSLRequest is answered 'S' and TLS is terminated when --tls-cert/--tls-key are
        given (direct TLS, PostgreSQL 17's sslnegotiation=direct, too), 'N' otherwise;
        GSSENCRequest is answered 'N'. The server is spoken to in plain text, or over TLS with
        --upstream-tls. Cleartext, MD5 and SCRAM-SHA-256 authentication, protocol 3.2 and
        NegotiateProtocolVersion pass through. Until the login completes, the proxy reads a
        client only when the server has asked it for something, and only that answer (a 'p'
        message of at most 65539 bytes): anything else gets PostgreSQL's FATAL 08P01 "expected
        SASL response, got message type 81" before its body is read.

        SCRAM through --upstream-tls: the server then offers SCRAM-SHA-256-PLUS (channel
        binding), which binds the client's TLS channel to the server's certificate and cannot
        work when the client's channel ends at the proxy. Clients without TLS are offered
        SCRAM-SHA-256 alone. A client with TLS to the proxy (libpq's defaults) would answer "y"
        ("I could bind"), which the server takes for a downgrade attack; by default
        (--channel-binding-fallback password) the proxy asks such a client for its password
        over its TLS connection and authenticates to the server with SCRAM-SHA-256-PLUS itself;
        with 'refuse' the client gets FATAL 28000 saying what works (channel_binding=disable).
        When the proxy has the server's own certificate, channel binding passes through as is.
        With --tls-passthrough the proxy terminates nothing: SSLRequest goes to the server, and
        once the server answers 'S' (or a client starts direct TLS) the connection is copied
        unread both ways, so channel binding works; its cancel requests carry the server's own
        keys and are forwarded as they are. Only the startup packets of such connections are traced.

        Robustness: connections are independent. A connection whose client or server breaks the
        protocol is closed (the client gets FATAL 08P01 first) and the others go on. Messages
        longer than the protocol's limits are refused before their bodies are buffered, and
        buffers grow with the bytes that arrive, never with a length merely declared; a buffer
        grown for a large message is given back once it has gone. Without a trace, a DataRow or
        CopyData of --stream-threshold bytes or more is checked and forwarded as it arrives
        rather than held whole; with a trace, messages are held whole (up to the limits), since
        a trace line shows the whole message. --handshake-timeout covers startup and login;
        --idle-timeout applies only while the client is idle between queries (a long query
        runs on); beyond --max-client-connections a client gets FATAL 53300 (up to 256 of them
        are read for it, for 5 s at most; more are closed at once), and the limit of open files
        caps that limit (two descriptors a connection). A connection ended by a timeout or
        shutdown gets a FATAL naming it, where the protocol allows one.

        Signals: SIGINT/SIGTERM stop accepting, give open connections --shutdown-grace seconds,
        close the rest (FATAL 57P01), and print a summary to standard error. SIGHUP reopens the
        trace file by name (log rotation: move the file, then send SIGHUP). SIGUSR1 prints the
        statistics so far; SIGUSR2 is ignored.

        Trace: --trace FILE (or '-' for standard output) prints one line per message in libpq
        18's PQtrace format (F: client to server, B: server to client), or JSON lines with
        --format json (each object names its connection). An existing non-empty FILE is refused
        unless --trace-append. The trace is written by a thread of its own; a trace output that
        fails is reported once and dropped (and counted) until SIGHUP reopens it. Passwords,
        SASL and GSS data are hidden unless --show-secrets. A connection that ends abnormally
        gets a last line "# connection ended: REASON" (in JSON, an object with "event": "ended").
        Notes on standard error carry the time and the client's address.

        Replication: libpq's trace shows a replication stream's CopyData as bytes. With
        --trace-replication, each CopyData of a stream (after START_REPLICATION and its
        CopyBothResponse) gets lines below it: the replication message one TAB deeper (XLogData
        without its data), and for logical replication through pgoutput the pgoutput message two
        TABs deeper (proto_version and streaming as the command asked); a comment line below
        CopyBothResponse says what the stream carries; what does not decode is a comment line in
        place. Physical replication's WAL, and slots of other plugins (test_decoding, wal2json:
        known from CREATE_REPLICATION_SLOT on the connection, or from options that are not
        pgoutput's), are not decoded further. JSON lines always carry them ("replication",
        "pgoutput", "replicationStream"); see `pgspec decode --help`.

        Examples:
          pgspec proxy --listen 127.0.0.1:6432 --upstream 127.0.0.1:5432 --trace -
          pgspec proxy --listen 127.0.0.1:6432 --upstream /run/postgresql/.s.PGSQL.5432 --trace session.trace --regress
          pgspec proxy --listen 0.0.0.0:6432 --upstream db:5432 --tls-cert proxy.crt --tls-key proxy.key --upstream-tls
          pgspec proxy --listen 0.0.0.0:6432 --upstream db:5432 --tls-passthrough
        """;

    private const string Summary = "Relay clients to a PostgreSQL server, checking every message, with an optional PQtrace or JSON trace.";

    public static Command Create(Stream stdout, TextWriter stderr)
    {
        var listen = new Option<string>("--listen") { Description = "Where clients connect: HOST:PORT or a Unix socket path.", HelpName = "HOST:PORT|PATH", Required = true };
        var upstream = new Option<string>("--upstream") { Description = "The PostgreSQL server: HOST:PORT or a Unix socket path.", HelpName = "HOST:PORT|PATH", Required = true };
        var tlsCert = new Option<string?>("--tls-cert") { Description = "PEM certificate for TLS towards clients (needs --tls-key).", HelpName = "FILE" };
        var tlsKey = new Option<string?>("--tls-key") { Description = "PEM private key of --tls-cert.", HelpName = "FILE" };
        var upstreamTls = new Option<bool>("--upstream-tls") { Description = "Speak TLS to the server (its certificate is not verified)." };
        var tlsPassthrough = new Option<bool>("--tls-passthrough") { Description = "Pass clients' TLS through to the server unread (SCRAM-SHA-256-PLUS works; only startup is traced)." };
        var streamThreshold = new Option<int>("--stream-threshold") { Description = "Forward a DataRow or CopyData of this many bytes or more as it arrives (when not tracing).", HelpName = "BYTES", DefaultValueFactory = _ => 64 * 1024 };
        var trace = new Option<string?>("--trace") { Description = "Write a line per message to FILE, or to standard output with '-'.", HelpName = "FILE|-" };
        var format = new Option<string>("--format") { Description = "trace: libpq 18's PQtrace lines. json: one JSON object per message and line.", HelpName = "trace|json", DefaultValueFactory = _ => "trace" };
        format.AcceptOnlyFromAmong("trace", "json");
        var regress = new Option<bool>("--regress") { Description = "libpq's regress mode: OIDs and process ids as NNNN, error/notice lengths as NN, file/line/routine as \"SSSS\", COPY and SASL data as 'BBBB'." };
        var connectionIds = new Option<bool>("--connection-ids") { Description = "Start each trace line with the connection's number and a TAB (JSON objects always carry \"connection\")." };
        var timestamps = new Option<bool>("--timestamps") { Description = "Start each trace line with the local time, as libpq does without PQTRACE_SUPPRESS_TIMESTAMPS." };
        var showSecrets = new Option<bool>("--show-secrets") { Description = "Print passwords and SASL/GSS data instead of hiding them." };
        var handshakeTimeout = new Option<double>("--handshake-timeout") { Description = "Seconds a connection has for its startup and login (TLS, startup packet, authentication).", HelpName = "SECONDS", DefaultValueFactory = _ => 30 };
        var idleTimeout = new Option<double>("--idle-timeout") { Description = "Close a connection whose client has been idle between queries (after ReadyForQuery, sending nothing) for this many seconds, with FATAL 57P05; a running query is never cut. 0: never.", HelpName = "SECONDS", DefaultValueFactory = _ => 0 };
        var shutdownGrace = new Option<double>("--shutdown-grace") { Description = "Seconds open connections may go on after SIGINT/SIGTERM.", HelpName = "SECONDS", DefaultValueFactory = _ => 5 };
        var socketEngine = new Option<string>("--socket-engine") { Description = "epoll: the proxy's own epoll loop (Linux; one receive and one send per message). dotnet: .NET's sockets. auto: epoll on Linux.", HelpName = "auto|epoll|dotnet", DefaultValueFactory = _ => "auto" };
        socketEngine.AcceptOnlyFromAmong("auto", "epoll", "dotnet");
        var ioThreads = new Option<int>("--io-threads") { Description = "Event threads of the epoll engine; 0: one per four processors, at least one.", HelpName = "N", DefaultValueFactory = _ => 0 };
        var quiet = new Option<bool>("--quiet") { Description = "No notes about connections on standard error (the summary is still printed)." };
        var maxClients = new Option<int>("--max-client-connections") { Description = "Serve at most N client connections at once; beyond it a client gets FATAL 53300 \"sorry, too many clients already\" (cancel requests still pass). 0: no limit.", HelpName = "N", DefaultValueFactory = _ => 1000 };
        var bindingFallback = new Option<string>("--channel-binding-fallback") { Description = "When the server offers SCRAM-SHA-256-PLUS (over --upstream-tls) to a client with TLS to the proxy, which cannot carry channel binding through: 'password' asks the client for its password over its TLS connection and authenticates to the server with it (libpq's defaults work; the proxy sees the password); 'refuse' offers SCRAM-SHA-256 only (clients need channel_binding=disable).", HelpName = "password|refuse", DefaultValueFactory = _ => "password" };
        bindingFallback.AcceptOnlyFromAmong("password", "refuse");
        var socketPermissions = new Option<string>("--unix-socket-permissions") { Description = "Permissions of the Unix socket of --listen, in octal; anyone may connect by default, and the server's authentication decides (as PostgreSQL's unix_socket_permissions).", HelpName = "MODE", DefaultValueFactory = _ => "0777" };
        var traceReplication = new Option<bool>("--trace-replication") { Description = "Trace format: below each CopyData of a replication stream, indented lines with the replication message and the pgoutput message it carries (JSON always has them)." };
        var traceAppend = new Option<bool>("--trace-append") { Description = "Append to an existing --trace FILE (without it, an existing non-empty file is refused, not overwritten)." };

        var command = new PgSpecCommand("proxy", Summary, Description)
        {
            listen, upstream, tlsCert, tlsKey, upstreamTls, tlsPassthrough, bindingFallback, streamThreshold, trace, traceAppend, format, regress, connectionIds, timestamps, showSecrets, traceReplication, handshakeTimeout, idleTimeout, shutdownGrace, maxClients, socketPermissions, socketEngine, ioThreads, quiet,
        };

        command.Validators.Add(result =>
        {
            T? Value<T>(Option<T> option) => PgSpecCommandLine.ValueInValidator(result, option);

            if ((Value(tlsCert) is null) != (Value(tlsKey) is null))
            {
                result.AddError("--tls-cert and --tls-key go together.");
            }

            if (Value(tlsPassthrough) && (Value(tlsCert) is not null || Value(upstreamTls)))
            {
                result.AddError("--tls-passthrough excludes --tls-cert/--tls-key and --upstream-tls: the client's TLS session goes to the server as it is.");
            }

            if (result.GetResult(streamThreshold) is { Implicit: false } && Value(streamThreshold) < 5)
            {
                result.AddError("--stream-threshold is at least 5 (a message's header).");
            }

            if (Value(ioThreads) is < 0 or > PgProxy.MaxIoThreads)
            {
                result.AddError($"--io-threads is 0 (one per four processors) to {PgProxy.MaxIoThreads}.");
            }

            if (result.GetResult(socketPermissions) is { Implicit: false } && !TryParseMode(Value(socketPermissions), out _))
            {
                result.AddError("--unix-socket-permissions is an octal mode from 0000 to 0777, such as 0770.");
            }

            if (Value(maxClients) < 0)
            {
                result.AddError("--max-client-connections cannot be negative (0 means no limit).");
            }

            if (Value(trace) is null)
            {
                foreach (Option option in new Option[] { format, regress, connectionIds, timestamps, showSecrets, traceAppend, traceReplication })
                {
                    if (result.GetResult(option) is { Implicit: false })
                    {
                        result.AddError($"{option.Name} applies to the trace: give --trace FILE (or --trace - for standard output).");
                    }
                }
            }
            else if (Value(trace) == "-" && Value(traceAppend))
            {
                result.AddError("--trace-append needs a --trace FILE, not standard output.");
            }

            if (Value(bindingFallback) is { } fallback && result.GetResult(bindingFallback) is { Implicit: false } && (Value(tlsCert) is null || !Value(upstreamTls)))
            {
                result.AddError("--channel-binding-fallback applies when the proxy has its own certificate (--tls-cert) and speaks TLS to the server (--upstream-tls).");
            }

            if (Value(socketEngine) == "epoll" && !OperatingSystem.IsLinux())
            {
                result.AddError("--socket-engine epoll needs Linux.");
            }

            if (Value(regress) && Value(format) == "json")
            {
                result.AddError("--regress applies to --format trace only.");
            }

            if (Value(traceReplication) && Value(format) == "json")
            {
                result.AddError("--trace-replication applies to --format trace only (JSON lines always carry the decoded replication messages).");
            }

            foreach (Option<string> endpoint in new[] { listen, upstream })
            {
                if (Value(endpoint) is { } text && !ProxyEndpoint.TryParse(text, out _, out string error))
                {
                    result.AddError(endpoint.Name + ": " + error);
                }
            }

            ServerOptions.CheckSeconds(result, handshakeTimeout, idleTimeout, shutdownGrace);
        });

        command.SetAction(result =>
        {
            if (!ServerOptions.TryLoadCertificate(result.GetValue(tlsCert), result.GetValue(tlsKey), stderr, out X509Certificate2? certificate))
            {
                return PgSpecCommandLine.ExitUsage;
            }

            bool notes = !result.GetValue(quiet);
            ProxyTraceStream? traceStream = null;
            if (result.GetValue(trace) is { } tracePath)
            {
                // Failures of the trace output are always told (the summary alone would hide them).
                Action<string> traceLog = text => Note(stderr, text);
                if (tracePath == "-")
                {
                    traceStream = new ProxyTraceStream(stdout, traceLog, leaveOpen: true, gapLine: GapLine(result.GetValue(format)));
                }
                else
                {
                    try
                    {
                        (Stream first, Func<Stream> reopen) = TraceFile.Open(tracePath, result.GetValue(traceAppend));
                        traceStream = new ProxyTraceStream(first, reopen, traceLog, GapLine(result.GetValue(format)));
                    }
                    catch (TraceFileException e)
                    {
                        stderr.WriteLine("pgspec: " + e.Message);
                        return PgSpecCommandLine.ExitUsage;
                    }
                }
            }

            bool hide = !result.GetValue(showSecrets);
            IProxyTraceSink? sink = traceStream is null ? null
                : result.GetValue(format) == "json" ? new JsonTraceSink(traceStream, hide, result.GetValue(timestamps))
                : new PqTraceSink(traceStream, new PgTraceOptions { Regress = result.GetValue(regress), Timestamps = result.GetValue(timestamps) }, result.GetValue(connectionIds), !hide) { Replication = result.GetValue(traceReplication) };
            var options = new PgProxyOptions
            {
                Listen = ProxyEndpoint.Parse(result.GetValue(listen)!),
                Upstream = ProxyEndpoint.Parse(result.GetValue(upstream)!),
                TlsCertificate = certificate,
                UpstreamTls = result.GetValue(upstreamTls),
                TlsPassthrough = result.GetValue(tlsPassthrough),
                StreamThreshold = result.GetValue(streamThreshold),
                Trace = sink,
                HandshakeTimeout = TimeSpan.FromSeconds(result.GetValue(handshakeTimeout)),
                IdleTimeout = result.GetValue(idleTimeout) == 0 ? Timeout.InfiniteTimeSpan : TimeSpan.FromSeconds(result.GetValue(idleTimeout)),
                ShutdownGrace = TimeSpan.FromSeconds(result.GetValue(shutdownGrace)),
                SocketEngine = result.GetValue(socketEngine) switch
                {
                    "epoll" => ProxySocketEngine.Epoll,
                    "dotnet" => ProxySocketEngine.DotNet,
                    _ => ProxySocketEngine.Auto,
                },
                IoThreads = result.GetValue(ioThreads),
                MaxClientConnections = result.GetValue(maxClients),
                UnixSocketPermissions = TryParseMode(result.GetValue(socketPermissions), out UnixFileMode mode) ? mode : (UnixFileMode)0x1FF,
                ChannelBindingFallback = result.GetValue(bindingFallback) == "refuse" ? ProxyChannelBindingFallback.Refuse : ProxyChannelBindingFallback.RelayPassword,
                Log = notes ? text => Note(stderr, text) : null,
            };

            return Run(options, traceStream, stderr);
        });

        return command;
    }


    private static int Run(PgProxyOptions options, ProxyTraceStream? trace, TextWriter stderr)
    {
        using var stop = new CancellationTokenSource();
        PgProxy? running = null;
        DateTime stopping = DateTime.MaxValue;
        void OnStop(PosixSignalContext context)
        {
            context.Cancel = true;
            if (!stop.IsCancellationRequested)
            {
                // Connections get the grace; a trace output that holds them back past it is given up.
                stopping = DateTime.UtcNow;
                stop.Cancel();
                _ = Task.Delay(options.ShutdownGrace).ContinueWith(_ => trace?.Abandon(), TaskScheduler.Default);
            }
        }

        void OnHangUp(PosixSignalContext context)
        {
            // Log rotation: the trace file is opened again by name (a new file if it was moved away).
            context.Cancel = true;
            if (trace is not { CanReopen: true })
            {
                Note(stderr, "SIGHUP: no trace file to reopen");
                return;
            }

            try
            {
                trace.Reopen();
                Note(stderr, "SIGHUP: reopened the trace file");
            }
            catch (TraceFileException e)
            {
                Note(stderr, "SIGHUP: " + e.Message + "; the trace goes on to the file that was open");
            }
        }

        void OnStatistics(PosixSignalContext context)
        {
            context.Cancel = true;
            if (running is { } proxy)
            {
                Note(stderr, $"{proxy.ActiveConnections} open; {proxy.Statistics}" + (trace is { DroppedBytes: > 0 and long dropped } ? $"; {dropped} bytes of trace dropped" : ""));
            }
        }

        void OnIgnored(PosixSignalContext context) => context.Cancel = true;

        using PosixSignalRegistration sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, OnStop);
        using PosixSignalRegistration sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnStop);
        using PosixSignalRegistration sighup = PosixSignalRegistration.Create(PosixSignal.SIGHUP, OnHangUp);
        using PosixSignalRegistration? sigusr1 = OperatingSystem.IsLinux() ? PosixSignalRegistration.Create(SigUsr1, OnStatistics) : null;
        using PosixSignalRegistration? sigusr2 = OperatingSystem.IsLinux() ? PosixSignalRegistration.Create(SigUsr2, OnIgnored) : null;
        var proxy = new PgProxy(options);
        if (options.Trace is null && proxy.SocketEngine == ProxySocketEngine.DotNet && Environment.GetEnvironmentVariable(InlineCompletions) is null)
        {
            // Without a trace nothing on the relay path blocks, so .NET's socket continuations may
            // run on its event thread instead of hopping to the thread pool (read when the first
            // socket operation starts; an explicit setting wins).
            Environment.SetEnvironmentVariable(InlineCompletions, "1");
        }

        try
        {
            proxy.Start();
        }
        catch (PgProxyStartException e)
        {
            stderr.WriteLine("pgspec: " + e.Message);
            proxy.DisposeAsync().AsTask().GetAwaiter().GetResult();
            trace?.Abandon();
            trace?.Dispose();
            return PgSpecCommandLine.ExitUsage;
        }

        running = proxy;
        Note(stderr, $"listening on {options.Listen} ({proxy.LocalEndPoint}), forwarding to {options.Upstream}; sockets: {proxy.SocketDescription}; pid {Environment.ProcessId}");
        try
        {
            proxy.RunAsync(stop.Token).GetAwaiter().GetResult();
        }
        finally
        {
            proxy.DisposeAsync().AsTask().GetAwaiter().GetResult();
            string dropped = "";
            if (trace is not null)
            {
                // What the trace has not written by the end of the grace (counted from the signal) is given up.
                DateTime deadline = stopping == DateTime.MaxValue ? DateTime.UtcNow + options.ShutdownGrace : stopping + options.ShutdownGrace;
                TimeSpan left = deadline - DateTime.UtcNow;
                if (!trace.Drain(left > TimeSpan.FromMilliseconds(200) ? left : TimeSpan.FromMilliseconds(200)))
                {
                    trace.Abandon();
                }

                dropped = trace.DroppedBytes > 0 ? $"; {trace.DroppedBytes} bytes of trace dropped" : "";
                trace.Dispose();
            }

            Note(stderr, "stopped; " + proxy.Statistics + dropped);
        }

        return PgSpecCommandLine.ExitOk;
    }

    private static bool TryParseMode(string? text, out UnixFileMode mode)
    {
        mode = default;
        if (string.IsNullOrEmpty(text) || text.Length > 4 || text.Any(c => c is < '0' or > '7'))
        {
            return false;
        }

        mode = (UnixFileMode)Convert.ToInt32(text, 8);
        return true;
    }

    /// <summary>The line that marks dropped trace lines: a comment line in the trace format, an event in JSON.</summary>
    private static ProxyTraceGapLine? GapLine(string? format)
        => format == "json"
            ? static (bytes, reason) => "{\"event\":\"dropped\",\"bytes\":" + bytes.ToString(CultureInfo.InvariantCulture) + ",\"reason\":" + System.Text.Json.JsonSerializer.Serialize(reason) + "}\n"
            : null;

    /// <summary>SIGUSR1 (Linux numbering): the proxy prints its statistics.</summary>
    private const PosixSignal SigUsr1 = (PosixSignal)10;

    /// <summary>SIGUSR2 (Linux numbering): ignored.</summary>
    private const PosixSignal SigUsr2 = (PosixSignal)12;

    private static void Note(TextWriter stderr, string text)
    {
        lock (stderr)
        {
            stderr.WriteLine(DateTime.Now.ToString("yyyy-MM-dd HH:mm:ss.fff", CultureInfo.InvariantCulture) + " pgspec proxy: " + text);
            stderr.Flush();
        }
    }
}

/// <summary>JSON lines for the proxy: the decode command's objects, with the connection number first.</summary>
internal sealed class JsonTraceSink : IProxyTraceSink
{
    private readonly Stream _output;
    private readonly bool _hideSecrets;
    private readonly bool _timestamps;
    private readonly Dictionary<long, JsonOutput> _outputs = new();
    private readonly Lock _lock = new();

    public JsonTraceSink(Stream output, bool hideSecrets, bool timestamps)
    {
        _output = output;
        _hideSecrets = hideSecrets;
        _timestamps = timestamps;
    }

    public void Write(long connectionId, PgReceivedMessage message, DecodeContext context)
    {
        lock (_lock)
        {
            if (!_outputs.TryGetValue(connectionId, out JsonOutput? output))
            {
                // Every JSON object names its connection: the lines of connections interleave.
                output = new JsonOutput(_output, connectionId, _hideSecrets, _timestamps);
                _outputs[connectionId] = output;
            }

            output.Write(message, context);
            _output.Flush();
        }
    }

    public void EndConnection(long connectionId) => EndConnection(connectionId, null);

    /// <summary>An abnormal end is a line of its own: {"connection": N, "event": "ended", "failure": "..."}.</summary>
    public void EndConnection(long connectionId, string? failure)
    {
        lock (_lock)
        {
            if (failure is not null)
            {
                // The line is written in one piece: a trace output that drops, drops it whole.
                var line = new System.Buffers.ArrayBufferWriter<byte>(256);
                using (var writer = new System.Text.Json.Utf8JsonWriter(line))
                {
                    writer.WriteStartObject();
                    writer.WriteNumber("connection", connectionId);
                    if (_timestamps)
                    {
                        writer.WriteString("time", DateTime.Now.ToString("yyyy-MM-dd HH:mm:ss.ffffff", CultureInfo.InvariantCulture));
                    }

                    writer.WriteString("event", "ended");
                    writer.WriteString("failure", failure);
                    writer.WriteEndObject();
                }

                System.Buffers.BuffersExtensions.Write(line, "\n"u8);
                _output.Write(line.WrittenSpan);
            }

            _outputs.Remove(connectionId);
            _output.Flush();
        }
    }
}

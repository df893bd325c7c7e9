using System.Net.Sockets;
using PgSpec.Client;
using PgSpec.Protocol;

namespace PgSpec.Cli.Script;

/// <summary>How to run a script.</summary>
internal sealed record ScriptSettings
{
    /// <summary>Where to connect and how to log in.</summary>
    public required PgConnectOptions Connect { get; init; }

    /// <summary>How long 'Y' waits for each message before it gives up (the bound on every read).</summary>
    public TimeSpan ReadTimeout { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>How long 'y' and 'z' wait for a message before they stop (pgproto: one second).</summary>
    public TimeSpan SilenceTimeout { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>pgproto's -r: a nap after each message read, in microseconds.</summary>
    public int ReadNapMicroseconds { get; init; }

    /// <summary>pgproto's -D: the bytes of every message, sent and received, on standard error.</summary>
    public bool Debug { get; init; }
}

/// <summary>How a run ended: the exit code and, unless it went well, why.</summary>
/// <param name="ExitCode">The exit code.</param>
/// <param name="Error">What went wrong; null when nothing did.</param>
/// <param name="Connected">Whether the script started (connecting and logging in went well).</param>
internal sealed record ScriptOutcome(int ExitCode, string? Error, bool Connected = true)
{
    public static ScriptOutcome Ok { get; } = new(PgSpecCommandLine.ExitOk, null);
}

/// <summary>Connects, then runs a parsed script: sends its messages, reads as its 'Y', 'y' and 'z' say, and writes every message to the output.</summary>
internal static class ScriptRunner
{
    public static async Task<ScriptOutcome> RunAsync(IReadOnlyList<ScriptStep> steps, string file, ScriptSettings settings, Func<PgProtocolVersion, IScriptOutput> makeOutput, TextWriter stderr, CancellationToken cancellationToken)
    {
        var received = new Dictionary<IPgMessage, byte[]>(ReferenceEqualityComparer.Instance);
        object gate = new();
        void Traffic(PgTraffic traffic)
        {
            lock (gate)
            {
                if (traffic.Direction == PgDirection.Backend && traffic.Message is { } message)
                {
                    received[message] = traffic.Raw.ToArray();
                }

                if (settings.Debug)
                {
                    stderr.WriteLine($"{(traffic.Direction == PgDirection.Frontend ? "FE" : "BE")} {traffic.Name} {Convert.ToHexStringLower(traffic.Raw.Span)}");
                }
            }
        }

        PgFrontendSession session;
        try
        {
            session = await PgFrontendSession.ConnectAsync(settings.Connect, Traffic, cancellationToken).ConfigureAwait(false);
        }
        catch (PgServerException e)
        {
            bool login = e.SqlState.StartsWith("28", StringComparison.Ordinal);
            return new ScriptOutcome(
                login ? PgSpecCommandLine.ExitAuthentication : PgSpecCommandLine.ExitConnection,
                $"{(login ? "authentication failed" : "the server refused the connection")}: {e.Fields.Severity} {e.SqlState} {e.Fields.Message}",
                Connected: false);
        }
        catch (PgConnectionException e) when (e.InnerException is TimeoutException)
        {
            // The server (or the way to it) did not answer within --timeout.
            return new ScriptOutcome(PgSpecCommandLine.ExitTimeout, e.Message, Connected: false);
        }
        catch (PgConnectionException e)
        {
            bool login = e.Message.Contains("password", StringComparison.Ordinal) || e.Message.StartsWith("SCRAM", StringComparison.Ordinal) || e.Message.Contains("channel_binding", StringComparison.Ordinal);
            return new ScriptOutcome(login ? PgSpecCommandLine.ExitAuthentication : PgSpecCommandLine.ExitConnection, (login ? "authentication failed: " : "") + e.Message, Connected: false);
        }
        catch (PgProtocolException e)
        {
            return new ScriptOutcome(PgSpecCommandLine.ExitServerViolation, "the server broke the protocol while connecting: " + e.Message, Connected: false);
        }

        IScriptOutput output = makeOutput(session.ProtocolVersion);
        ScriptStep? current = null;
        bool reading = false;
        try
        {
            lock (gate)
            {
                received.Clear();
            }

            foreach (ScriptStep step in steps)
            {
                current = step;
                switch (step)
                {
                    case SendStep send:
                        output.Sent(send, send.Message.ToArray(session.ProtocolVersion));
                        output.Flush();
                        session.Send(send.Message);
                        await session.FlushAsync(cancellationToken).ConfigureAwait(false);
                        break;
                    case RawStep raw:
                        output.SentRaw(raw.Bytes);
                        output.Flush();
                        session.SendRaw(raw.Bytes);
                        await session.FlushAsync(cancellationToken).ConfigureAwait(false);
                        break;
                    case ReadStep read:
                        reading = true;
                        await ReadAsync(session, read.Read, settings, output, received, gate, cancellationToken).ConfigureAwait(false);
                        reading = false;
                        output.Flush();
                        break;
                }
            }

            return ScriptOutcome.Ok;
        }
        catch (PgConnectionException e)
        {
            if (reading)
            {
                output.ConnectionLost(PgprotoReadError(e));
            }

            output.Flush();
            return new ScriptOutcome(PgSpecCommandLine.ExitConnection, $"{file}:{current?.Line}: {e.Message}");
        }
        catch (PgProtocolException e)
        {
            output.Flush();
            return new ScriptOutcome(PgSpecCommandLine.ExitServerViolation, $"{file}:{current?.Line}: the server broke the protocol: {e.Message}");
        }
        catch (TimeoutException e)
        {
            output.Flush();
            return new ScriptOutcome(PgSpecCommandLine.ExitTimeout, $"{file}:{current?.Line}: {e.Message}");
        }
        finally
        {
            // As pgproto does at the end of its script: the connection closes, and nothing the
            // script did not ask for (no Terminate) is sent.
            await session.AbortAsync().ConfigureAwait(false);
        }
    }

    private static async Task ReadAsync(PgFrontendSession session, ScriptRead read, ScriptSettings settings, IScriptOutput output, Dictionary<IPgMessage, byte[]> received, object gate, CancellationToken cancellationToken)
    {
        TimeSpan wait = read == ScriptRead.UntilReady ? settings.ReadTimeout : settings.SilenceTimeout;
        while (true)
        {
            IBackendMessage? message = await session.TryReceiveAsync(wait, cancellationToken).ConfigureAwait(false);
            if (message is null)
            {
                if (read == ScriptRead.UntilReady)
                {
                    throw new TimeoutException($"'Y': no message from the server for {wait.TotalSeconds:0.###} s while waiting for ReadyForQuery (--timeout)");
                }

                return;
            }

            byte[]? raw;
            lock (gate)
            {
                received.Remove(message, out raw);
            }

            output.Received(raw ?? message.ToArray(session.ProtocolVersion));
            if (settings.ReadNapMicroseconds > 0)
            {
                await Task.Delay(TimeSpan.FromMicroseconds(settings.ReadNapMicroseconds), cancellationToken).ConfigureAwait(false);
            }

            if (read == ScriptRead.One || message is ReadyForQuery)
            {
                return;
            }
        }
    }

    /// <summary>What pgproto prints when a read fails: end of file, or the system's error.</summary>
    private static string PgprotoReadError(PgConnectionException e)
    {
        for (Exception? inner = e.InnerException; inner is not null; inner = inner.InnerException)
        {
            if (inner is SocketException socket)
            {
                return "read_it: read(2) returns error " + socket.SocketErrorCode switch
                {
                    SocketError.ConnectionReset => "Connection reset by peer",
                    SocketError.TimedOut => "Connection timed out",
                    _ => socket.Message,
                };
            }
        }

        return "read_it: EOF detected";
    }
}

using System.Text.Json;
using PgSpec.Cli.Tests.RealServer;

namespace PgSpec.Cli.Tests;

/// <summary>
/// The real check: decoding the bytes of a real PostgreSQL session gives, line for line, what
/// libpq 18's own PQtrace printed for that session.
/// </summary>
public class RealSessionTraceTests : IClassFixture<LibpqSessions>
{
    private readonly LibpqSessions _sessions;

    public RealSessionTraceTests(LibpqSessions sessions) => _sessions = sessions;

    public static TheoryData<string> Sessions => new(LibpqSessions.Names);

    [Fact]
    public void LibpqTrace_OfTheFullSession_CoversWhatTheComparisonIsAbout()
    {
        (List<string> frontend, List<string> backend) = SplitByDirection(_sessions[LibpqSessions.Full].LibpqTrace);

        foreach (string name in new[] { "StartupMessage", "Query", "Parse", "Bind", "Describe", "Execute", "Sync", "CopyData", "CopyDone", "Terminate" })
        {
            Assert.Contains(frontend, line => line.Split('\t')[2] == name);
        }

        foreach (string name in new[] { "ParameterStatus", "BackendKeyData", "RowDescription", "DataRow", "CommandComplete", "NoticeResponse", "ErrorResponse", "ParseComplete", "BindComplete", "CopyOutResponse", "CopyInResponse", "CopyData", "CopyDone", "NotificationResponse", "ReadyForQuery" })
        {
            Assert.Contains(backend, line => line.Split('\t')[2] == name);
        }

        Assert.Contains(backend, line => line.StartsWith("B\t", StringComparison.Ordinal) && line.Split('\t')[2] == "DataRow" && line.EndsWith(" -1", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("password", "PasswordMessage")]
    [InlineData("md5", "PasswordMessage")]
    [InlineData("scram-sha-256", "SASLInitialResponse")]
    [InlineData("scram-sha-256", "SASLResponse")]
    public void LibpqTrace_OfALoginWithAPassword_HasTheAnswerMessage(string session, string name)
    {
        (List<string> frontend, _) = SplitByDirection(_sessions[session].LibpqTrace);

        Assert.Contains(frontend, line => line.Split('\t')[2] == name);
    }

    [Theory]
    [MemberData(nameof(Sessions))]
    public void Decode_FrontendBytesWithBackendPeer_PrintsLibpqsFrontendLines(string session)
    {
        (List<string> expected, _) = SplitByDirection(_sessions[session].LibpqTrace);

        CliResult result = Decode(_sessions[session], "frontend");

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Equal(string.Join('\n', expected), string.Join('\n', result.Lines));
    }

    [Theory]
    [MemberData(nameof(Sessions))]
    public void Decode_BackendBytesWithFrontendPeer_PrintsLibpqsBackendLines(string session)
    {
        (_, List<string> expected) = SplitByDirection(_sessions[session].LibpqTrace);

        CliResult result = Decode(_sessions[session], "backend");

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Equal(string.Join('\n', expected), string.Join('\n', result.Lines));
    }

    [Theory]
    [MemberData(nameof(Sessions))]
    public void Decode_BothDirectionsAsJson_GivesOneObjectPerMessageUpToTheLastByte(string session)
    {
        RecordedSession recorded = _sessions[session];
        (List<string> frontendTrace, List<string> backendTrace) = SplitByDirection(recorded.LibpqTrace);

        // libpq traces every message but AuthenticationOk.
        foreach ((string side, List<string> trace, int untraced) in new[] { ("frontend", frontendTrace, 0), ("backend", backendTrace, 1) })
        {
            CliResult result = Decode(recorded, side, "--format", "json");

            Assert.True(result.ExitCode == 0, result.ToString());
            JsonElement[] messages = result.Lines.Select(line => JsonDocument.Parse(line).RootElement).ToArray();
            Assert.Equal(trace.Count(line => !line.StartsWith("mismatched", StringComparison.Ordinal)) + untraced, messages.Length);
            Assert.Equal(0, messages[0].GetProperty("offset").GetInt64());
            long end = messages[^1].GetProperty("offset").GetInt64() + messages[^1].GetProperty("length").GetInt64() + (messages[^1].GetProperty("type").ValueKind == JsonValueKind.Null ? 0 : 1);
            Assert.Equal(side == "frontend" ? recorded.FrontendBytes.Length : recorded.BackendBytes.Length, end);
        }
    }

    [Fact]
    public void Capture_OfTheSessionsConnections_PrintsLibpqsLinesForEachOfThem()
    {
        // tcpdump saw the same connections: decoded from packets, each gives what libpq printed.
        CliResult result = CliRunner.Run(["capture", "--port", _sessions.ServerPort.ToString(System.Globalization.CultureInfo.InvariantCulture), "--regress", "--show-secrets", "--connection-ids", _sessions.CaptureFile]);

        Assert.True(result.ExitCode == 0, result.ToString());
        var connections = new List<(string Id, List<string> Lines, List<string> Notes)>();
        foreach (string line in result.Lines)
        {
            string[] parts = line.Split('\t', 2);
            if (connections.Count == 0 || connections[^1].Id != parts[0])
            {
                Assert.DoesNotContain(connections, c => c.Id == parts[0]);
                connections.Add((parts[0], [], []));
            }

            (parts[1].StartsWith('#') ? connections[^1].Notes : connections[^1].Lines).Add(parts[1]);
        }

        string[] names = [.. LibpqSessions.Names];
        Assert.Equal(names.Length, connections.Count);
        for (int i = 0; i < names.Length; i++)
        {
            (List<string> frontend, List<string> backend) = SplitByDirection(_sessions[names[i]].LibpqTrace);
            (List<string> capturedFrontend, List<string> capturedBackend) = SplitByDirection(string.Join('\n', connections[i].Lines));
            Assert.Equal(frontend, capturedFrontend);
            Assert.Equal(backend, capturedBackend);

            // Seen from its SYN and closed by both sides: no gap, nothing picked up mid-stream.
            Assert.Equal(2, connections[i].Notes.Count);
            Assert.Matches("^# connection [0-9]+ seen: [^,]*$", connections[i].Notes[0]);
            Assert.EndsWith("ended: closed", connections[i].Notes[1], StringComparison.Ordinal);
        }

        Assert.Contains($"{names.Length} PostgreSQL connections", result.Stderr, StringComparison.Ordinal);
    }

    /// <summary>Decodes one side, with its secrets shown: libpq's trace prints passwords, even in regress mode.</summary>
    private static CliResult Decode(RecordedSession session, string side, params string[] options)
    {
        using var dir = new TempDirectory();
        string frontend = dir.Write("frontend.bin", session.FrontendBytes);
        string backend = dir.Write("backend.bin", session.BackendBytes);
        string[] regress = options.Length == 0 ? ["--regress"] : [];
        return side == "frontend"
            ? CliRunner.Run(["decode", "--from", "frontend", "--peer", backend, "--show-secrets", .. regress, .. options, frontend])
            : CliRunner.Run(["decode", "--from", "backend", "--peer", frontend, "--show-secrets", .. regress, .. options, backend]);
    }

    /// <summary>
    /// Splits libpq's interleaved trace by its first column; a "mismatched message length" line
    /// belongs to the message before it.
    /// </summary>
    private static (List<string> Frontend, List<string> Backend) SplitByDirection(string trace)
    {
        var frontend = new List<string>();
        var backend = new List<string>();
        List<string>? current = null;
        foreach (string line in trace.Split('\n'))
        {
            if (line.Length == 0)
            {
                continue;
            }

            if (line.StartsWith("F\t", StringComparison.Ordinal))
            {
                current = frontend;
            }
            else if (line.StartsWith("B\t", StringComparison.Ordinal))
            {
                current = backend;
            }
            else if (!line.StartsWith("mismatched message length: ", StringComparison.Ordinal) || current is null)
            {
                Assert.Fail("libpq's trace has a line that is neither a message nor a length mismatch: " + line);
            }

            current!.Add(line);
        }

        Assert.NotEmpty(frontend);
        Assert.NotEmpty(backend);
        return (frontend, backend);
    }
}

using System.Buffers.Binary;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace PgSpec.Cli.Tests.Script;

/// <summary><c>pgspec script</c> given what a careless or hostile user gives it: each ends with a clear message and its exit code.</summary>
public sealed class ScriptHostileInputTests
{
    private const string Query = "'Q'\t\"SELECT 1\"\n'Y'\n'X'\n";

    private static string Script(TempDirectory directory, string text) => directory.Write("q.data", Encoding.UTF8.GetBytes(text));

    [Fact]
    public void Help_lists_h_for_the_host_only_and_other_commands_keep_theirs()
    {
        CliResult help = CliRunner.Run("script", "--help");
        Assert.True(help.ExitCode == 0, help.ToString());
        string[] options = [.. help.Lines.SkipWhile(l => l != "Options:").Skip(1)];
        Assert.Single(options, l => l.StartsWith("  -h, --host", StringComparison.Ordinal));
        string helpLine = Assert.Single(options, l => l.Contains("--help", StringComparison.Ordinal));
        Assert.StartsWith("  -?, --help ", helpLine, StringComparison.Ordinal);
        Assert.Equal(help.Stdout, CliRunner.Run("script", "-?").Stdout);

        CliResult decode = CliRunner.Run("decode", "--help");
        Assert.Contains("\n  -?, -h, --help ", decode.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public void A_script_that_is_missing_or_a_directory_is_a_usage_error()
    {
        using var directory = new TempDirectory();
        CliResult missing = CliRunner.Run("script", "-f", Path.Combine(directory.Path, "nosuch.data"));
        Assert.True(missing.ExitCode == 2, missing.ToString());
        Assert.Contains("cannot read " + Path.Combine(directory.Path, "nosuch.data"), missing.Stderr, StringComparison.Ordinal);

        CliResult folder = CliRunner.Run("script", "-f", directory.Path);
        Assert.True(folder.ExitCode == 2, folder.ToString());
        Assert.Contains($"cannot read {directory.Path}: it is a directory", folder.Stderr, StringComparison.Ordinal);
        Assert.Equal("", folder.Stdout);
    }

    [Fact]
    public void A_script_over_64_MiB_is_refused_unread()
    {
        // From standard input, which has no length to check first: the reading stops past the limit.
        byte[] script = new byte[(64 * 1024 * 1024) + 1];
        script.AsSpan().Fill((byte)'#');
        CliResult result = CliRunner.Run(script, "script", "-h", "127.0.0.1", "-p", FreePort(), "-f", "-");
        Assert.True(result.ExitCode == 2, result.ToString());
        Assert.Contains("cannot read -: it is larger than 64 MiB", result.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void A_long_line_is_read_and_reported_where_it_breaks()
    {
        using var directory = new TempDirectory();
        string script = Script(directory, "'Q'\t\"SELECT " + new string('x', 5_000_000) + "\n'Y'\n");
        CliResult result = CliRunner.Run("script", "-h", "127.0.0.1", "-p", FreePort(), "-f", script);
        Assert.True(result.ExitCode == 4, result.ToString());
        Assert.Contains($"{script}:1:5000013: the query: the string does not end", result.Stderr, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("-p", "0", "--port: 1 to 65535")]
    [InlineData("-p", "99999", "--port: 1 to 65535")]
    [InlineData("-p", "abc", "--port: 'abc' is not a port (1 to 65535)")]
    [InlineData("--timeout", "-1", "--timeout: a number of seconds above 0")]
    [InlineData("--timeout", "soon", "--timeout: 'soon' is not a number of seconds")]
    [InlineData("-r", "x", "--read-nap: 'x' is not microseconds")]
    [InlineData("--format", "xml", "Argument 'xml' not recognized")]
    public void A_bad_option_value_is_a_usage_error_that_says_what_it_takes(string option, string value, string message)
    {
        using var directory = new TempDirectory();
        CliResult result = CliRunner.Run("script", "-h", "127.0.0.1", option, value, "-f", Script(directory, Query));
        Assert.True(result.ExitCode == 2, result.ToString());
        Assert.Contains(message, result.Stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("System.", result.Stderr, StringComparison.Ordinal);
        Assert.Equal("", result.Stdout);
    }

    [Fact]
    public async Task A_server_that_accepts_and_never_answers_is_a_timeout()
    {
        using var directory = new TempDirectory();
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        Task<Socket> accepted = listener.AcceptSocketAsync();
        CliResult result = CliRunner.Run("script", "-h", "127.0.0.1", "-p", Port(listener), "--sslmode", "disable", "--timeout", "1", "-f", Script(directory, Query));
        using Socket socket = await accepted;
        Assert.True(result.ExitCode == 7, result.ToString());
        Assert.Contains("timed out after 1 s", result.Stderr, StringComparison.Ordinal);
        Assert.Equal("", result.Stdout);
    }

    [Fact]
    public async Task A_server_that_closes_the_connection_mid_script()
    {
        using var directory = new TempDirectory();
        CliResult result = await AgainstFakeServerAsync(Script(directory, Query), answer: null);
        Assert.True(result.ExitCode == 5, result.ToString());
        Assert.Equal("FE=> Query (query=\"SELECT 1\")\nread_it: EOF detected\n", result.Stdout);
        Assert.Contains("q.data:2: the server closed the connection", result.Stderr, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("0102030405060708")]
    [InlineData("447ffffff0")]
    public async Task A_server_that_sends_garbage_breaks_the_protocol(string hex)
    {
        using var directory = new TempDirectory();
        CliResult result = await AgainstFakeServerAsync(Script(directory, Query), Convert.FromHexString(hex));
        Assert.True(result.ExitCode == 3, result.ToString());
        Assert.Equal("FE=> Query (query=\"SELECT 1\")\n", result.Stdout);
        Assert.Contains("q.data:2: the server broke the protocol: ", result.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void A_suite_without_scripts_is_a_usage_error()
    {
        using var directory = new TempDirectory();
        Directory.CreateDirectory(Path.Combine(directory.Path, "tests"));
        CliResult empty = CliRunner.Run("script", "-h", "127.0.0.1", "-p", FreePort(), "--suite", directory.Path);
        Assert.True(empty.ExitCode == 2, empty.ToString());
        Assert.Contains("no scripts (*.data) in " + Path.Combine(directory.Path, "tests"), empty.Stderr, StringComparison.Ordinal);

        CliResult missing = CliRunner.Run("script", "-h", "127.0.0.1", "-p", FreePort(), "--suite", Path.Combine(directory.Path, "nosuch"));
        Assert.True(missing.ExitCode == 2, missing.ToString());
        Assert.Contains("cannot list " + Path.Combine(directory.Path, "nosuch", "tests"), missing.Stderr, StringComparison.Ordinal);
    }

    /// <summary>
    /// Runs <paramref name="script"/> against a server that logs anyone in, reads the first message,
    /// then sends <paramref name="answer"/> and waits for the client to go (null: closes at once).
    /// </summary>
    private static async Task<CliResult> AgainstFakeServerAsync(string script, byte[]? answer)
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        Task server = Task.Run(async () =>
        {
            using Socket socket = await listener.AcceptSocketAsync();
            await ReadMessageAsync(socket, startup: true);
            byte[] login = new byte[9 + 6];
            login[0] = (byte)'R';
            BinaryPrimitives.WriteInt32BigEndian(login.AsSpan(1), 8);
            login[9] = (byte)'Z';
            BinaryPrimitives.WriteInt32BigEndian(login.AsSpan(10), 5);
            login[14] = (byte)'I';
            await socket.SendAsync(login);
            await ReadMessageAsync(socket, startup: false);
            if (answer is not null)
            {
                await socket.SendAsync(answer);

                // Until the client has gone: nothing else comes.
                byte[] rest = new byte[4096];
                while (await socket.ReceiveAsync(rest) > 0)
                {
                }
            }
        });
        CliResult result = CliRunner.Run("script", "-h", "127.0.0.1", "-p", Port(listener), "-u", "u", "-d", "d", "--sslmode", "disable", "--timeout", "30", "-f", script);
        await server.WaitAsync(TimeSpan.FromSeconds(30));
        return result;
    }

    private static async Task ReadMessageAsync(Socket socket, bool startup)
    {
        byte[] header = new byte[startup ? 4 : 5];
        await ReadExactlyAsync(socket, header);
        int length = BinaryPrimitives.ReadInt32BigEndian(header.AsSpan(startup ? 0 : 1));
        await ReadExactlyAsync(socket, new byte[length - 4]);
    }

    private static async Task ReadExactlyAsync(Socket socket, byte[] buffer)
    {
        for (int read = 0; read < buffer.Length;)
        {
            int n = await socket.ReceiveAsync(buffer.AsMemory(read));
            Assert.True(n > 0, "the client closed the connection early");
            read += n;
        }
    }

    private static string Port(TcpListener listener) => ((IPEndPoint)listener.LocalEndpoint).Port.ToString(CultureInfo.InvariantCulture);

    private static string FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return Port(listener);
    }
}

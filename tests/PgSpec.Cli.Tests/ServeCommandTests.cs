using System.Net;
using System.Net.Sockets;

namespace PgSpec.Cli.Tests;

/// <summary>`pgspec serve`'s arguments: every mistake is exit 2 with a message that names the option, before anything listens.</summary>
public class ServeCommandTests
{
    [Theory]
    [InlineData("--auth md5", "--auth md5 needs --user and --password")]
    [InlineData("--auth scram-sha-256 --user app", "--auth scram-sha-256 needs --user and --password")]
    [InlineData("--auth kerberos", "kerberos")]
    [InlineData("--password secret", "--password applies to --auth password, md5 or scram-sha-256")]
    [InlineData("--tls-cert server.crt", "--tls-cert and --tls-key go together")]
    [InlineData("--listen nowhere", "--listen: 'nowhere' is not HOST:PORT")]
    [InlineData("--listen localhost:5432", "--listen takes an IP address")]
    [InlineData("--max-protocol 3.1", "3.1")]
    [InlineData("--max-connections 0", "--max-connections is at least 1")]
    [InlineData("--handshake-timeout 0", "--handshake-timeout is a number of seconds more than 0")]
    [InlineData("--idle-timeout -1", "--idle-timeout is a number of seconds from 0")]
    public void BadArguments_ExitTwo_NamingTheOption(string arguments, string message)
    {
        CliResult result = CliRunner.Run(["serve", .. arguments.Split(' ')]);

        Assert.True(result.ExitCode == 2, result.ToString());
        Assert.Contains(message, result.Stderr, StringComparison.Ordinal);
        Assert.Equal("", result.Stdout);
    }

    [Fact]
    public void ADatabaseInAMissingFolder_ExitsTwo_SayingWhy()
    {
        string missing = Path.Combine(Path.GetTempPath(), "pgspec-no-such-folder-" + Guid.NewGuid().ToString("N"), "app.db");

        CliResult result = CliRunner.Run("serve", "--listen", "127.0.0.1:0", "--db", missing);

        Assert.True(result.ExitCode == 2, result.ToString());
        Assert.Contains("cannot open --db", result.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void APortInUse_ExitsTwo_SayingWhy()
    {
        using var taken = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        taken.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        taken.Listen();
        int port = ((IPEndPoint)taken.LocalEndPoint!).Port;

        CliResult result = CliRunner.Run("serve", "--listen", "127.0.0.1:" + port);

        Assert.True(result.ExitCode == 2, result.ToString());
        Assert.Contains("cannot listen on 127.0.0.1:" + port, result.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void ACertificateThatCannotBeRead_ExitsTwo_SayingWhy()
    {
        string missing = Path.Combine(Path.GetTempPath(), "pgspec-missing-" + Guid.NewGuid().ToString("N"));

        CliResult result = CliRunner.Run("serve", "--listen", "127.0.0.1:0", "--tls-cert", missing + ".crt", "--tls-key", missing + ".key");

        Assert.True(result.ExitCode == 2, result.ToString());
        Assert.Contains("cannot load --tls-cert/--tls-key", result.Stderr, StringComparison.Ordinal);
    }
}

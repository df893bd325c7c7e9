using System.Globalization;
using PgSpec.Cli.Tests.RealServer;
using PgSpec.Servers;

namespace PgSpec.Proxy.Tests;

/// <summary>node-postgres through the proxy prints what it prints directly.</summary>
[Collection(ServerCollection.Name)]
public class NodePgTests
{
    /// <summary>The node-postgres version the tests install (npm, into the user's cache folder).</summary>
    public const string Package = "pg@8.23.1";

    private static readonly Lazy<string> s_moduleDirectory = new(Install, LazyThreadSafetyMode.ExecutionAndPublication);
    private readonly ServerFixture _servers;

    public NodePgTests(ServerFixture servers) => _servers = servers;

    [Theory]
    [InlineData(15, PgAuthMethod.ScramSha256)]
    [InlineData(18, PgAuthMethod.Md5)]
    [InlineData(18, PgAuthMethod.Password)]
    public async Task NodePg_ThroughTheProxy_PrintsWhatItPrintsDirectly(int major, PgAuthMethod method)
    {
        PgServer server = await _servers.Server(major);
        PgRole role = server.Role(method);
        await using var proxy = new ProxyHarness(server);

        ProcessOutput direct = Run(server.Host, server.Port, role);
        ProcessOutput proxied = Run("127.0.0.1", proxy.Port, role);

        Assert.True(direct.ExitCode == 0, direct.ToString());
        Assert.Contains("22012", direct.Stdout);
        Assert.Contains("after the error", direct.Stdout);
        Assert.Contains("[3000003,\"zzend\"]", direct.Stdout); // a 3 MB DataRow
        Assert.Equal(direct.ToString(), proxied.ToString());
        await proxy.WaitIdleAsync();
        Assert.Equal(0, proxy.Proxy.Statistics.Failed);
    }

    private static ProcessOutput Run(string host, int port, PgRole role)
    {
        string script = Path.Combine(AppContext.BaseDirectory, "Scripts", "node_session.js");
        string node = ExternalProcess.FindOnPath("node") ?? throw new InvalidOperationException("node is not on PATH (Debian: apt-get install -y nodejs npm)");
        return ExternalProcess.Run(node, [script, s_moduleDirectory.Value, host, port.ToString(CultureInfo.InvariantCulture), role.Name, role.Password]);
    }

    private static string Install()
    {
        string cache = Environment.GetEnvironmentVariable("XDG_CACHE_HOME") is { Length: > 0 } xdg
            ? xdg
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache");
        string prefix = Path.Combine(cache, "pgspec", "npm", Package.Replace('@', '-'));
        if (Directory.Exists(Path.Combine(prefix, "node_modules", "pg")))
        {
            return prefix;
        }

        string npm = ExternalProcess.FindOnPath("npm") ?? throw new InvalidOperationException($"npm is not on PATH to install {Package} (Debian: apt-get install -y npm)");
        string staging = prefix + ".staging-" + Guid.NewGuid().ToString("N");
        Directory.CreateDirectory(staging);
        try
        {
            ExternalProcess.RunChecked(npm, ["install", "--prefix", staging, "--no-audit", "--no-fund", "--no-save", Package], staging);
            Directory.CreateDirectory(Path.GetDirectoryName(prefix)!);
            if (!Directory.Exists(prefix))
            {
                Directory.Move(staging, prefix);
            }
        }
        catch (IOException) when (Directory.Exists(Path.Combine(prefix, "node_modules", "pg")))
        {
            // Another run installed it first.
        }
        finally
        {
            if (Directory.Exists(staging))
            {
                Directory.Delete(staging, recursive: true);
            }
        }

        return prefix;
    }
}

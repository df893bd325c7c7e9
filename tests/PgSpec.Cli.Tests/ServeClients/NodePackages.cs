using PgSpec.Cli.Tests.RealServer;

namespace PgSpec.Cli.Tests.ServeClients;

/// <summary>
/// The node packages of the client tests (node-postgres, pg-copy-streams, postgres.js), installed
/// once with npm into the user's cache folder (XDG_CACHE_HOME or ~/.cache, under pgspec/npm).
/// </summary>
public static class NodePackages
{
    public static readonly string[] Packages = ["pg@8.23.1", "pg-copy-streams@7.0.0", "postgres@3.4.9"];

    private static readonly Lazy<string> s_prefix = new(Install, LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>The folder whose node_modules holds the packages.</summary>
    public static string Prefix => s_prefix.Value;

    /// <summary>Runs a script of Scripts/ with node: SCRIPT PREFIX ARGUMENTS.</summary>
    public static ProcessOutput Run(string script, params string[] arguments)
    {
        string node = ExternalProcess.FindOnPath("node") ?? throw new InvalidOperationException("node is not on PATH (Debian: apt-get install -y nodejs npm)");
        return ExternalProcess.Run(node, [Path.Combine(AppContext.BaseDirectory, "Scripts", script), Prefix, .. arguments]);
    }

    private static string Install()
    {
        string cache = Environment.GetEnvironmentVariable("XDG_CACHE_HOME") is { Length: > 0 } xdg
            ? xdg
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache");
        string prefix = Path.Combine(cache, "pgspec", "npm", string.Join('+', Packages).Replace('@', '-'));
        if (Installed(prefix))
        {
            return prefix;
        }

        string npm = ExternalProcess.FindOnPath("npm") ?? throw new InvalidOperationException($"npm is not on PATH to install {string.Join(' ', Packages)} (Debian: apt-get install -y npm)");

        // Install beside the target and move it in place, so a concurrent run never sees half of it.
        string staging = prefix + ".staging-" + Guid.NewGuid().ToString("N");
        Directory.CreateDirectory(staging);
        try
        {
            ExternalProcess.RunChecked(npm, ["install", "--prefix", staging, "--no-audit", "--no-fund", "--no-save", .. Packages], staging);
            Directory.CreateDirectory(Path.GetDirectoryName(prefix)!);
            if (!Installed(prefix))
            {
                Directory.Move(staging, prefix);
            }
        }
        catch (IOException) when (Installed(prefix))
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

    private static bool Installed(string prefix)
        => Packages.All(p => Directory.Exists(Path.Combine(prefix, "node_modules", p[..p.LastIndexOf('@')])));
}

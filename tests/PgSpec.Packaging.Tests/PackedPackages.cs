using System.Globalization;
using System.IO.Compression;
using System.Text;
using System.Text.RegularExpressions;
using System.Xml.Linq;
using PgSpec.Cli.Tests.RealServer;
using PgSpec.Servers;

namespace PgSpec.Packaging.Tests;

/// <summary>
/// The packages as a user gets them: every packable project packed into a folder of its own, and
/// consumers that know nothing of this repository (their own folder, their own NuGet cache, the
/// PgSpec packages from the packed folder only) built from the code blocks of the READMEs, with
/// warnings as errors. A throwaway PostgreSQL serves the examples that talk to a server.
/// </summary>
public sealed class PackedPackages : IAsyncLifetime
{
    /// <summary>The projects that make packages, as the repository lists them.</summary>
    public static readonly string[] PackableProjects =
    [
        "src/PgSpec.Protocol/PgSpec.Protocol.csproj",
        "src/PgSpec.Client/PgSpec.Client.csproj",
        "src/PgSpec.Proxy/PgSpec.Proxy.csproj",
        "src/PgSpec.Server/PgSpec.Server.csproj",
        "generators/PgSpec.Generators/PgSpec.Generators.csproj",
        "src/PgSpec.Cli/PgSpec.Cli.csproj",
    ];

    /// <summary>A marked code block: <c>&lt;!-- compiled: PROJECT/FILE --&gt;</c> on the line before the fence.</summary>
    private static readonly Regex s_markedBlock = new(@"<!-- compiled: (?<project>[a-z0-9-]+)/(?<file>[A-Za-z0-9_./-]+) -->\r?\n```[a-z]*\r?\n(?<code>.*?)\r?\n```", RegexOptions.Singleline | RegexOptions.CultureInvariant);

    private PgServer? _server;

    public static string RepositoryRoot { get; } = FindRoot();

    /// <summary>The folder everything here happens in (deleted at the end).</summary>
    public string Work { get; } = Path.Combine(Path.GetTempPath(), "pgspec-packaging-" + Guid.NewGuid().ToString("N")[..12]);

    public string Packages => Path.Combine(Work, "packages");

    public string Version { get; private set; } = "";

    /// <summary>The examples' projects, by name (the folder under <see cref="Work"/>).</summary>
    public Dictionary<string, List<(string File, string Code, string Readme)>> Examples { get; } = new(StringComparer.Ordinal);

    public ProcessOutput? Build { get; private set; }

    public PgServer Server => _server ?? throw new InvalidOperationException("no server");

    public async Task InitializeAsync()
    {
        Directory.CreateDirectory(Packages);
        Version = XDocument.Load(Path.Combine(RepositoryRoot, "Directory.Build.props")).Descendants("Version").Single().Value;
        Task<PgServer> server = new LocalPgServerProvider().StartAsync(new PgServerOptions { MajorVersion = 18 }, CancellationToken.None);

        // The packages, built as a release would build them (the restore of the test build is reused).
        foreach (string project in PackableProjects)
        {
            ExternalProcess.RunChecked("dotnet", ["pack", Path.Combine(RepositoryRoot, project), "-c", "Release", "-o", Packages, "--nologo", "-v", "q", "-p:ContinuousIntegrationBuild=true"], RepositoryRoot);
        }

        WriteConsumerNuGetConfig();
        CollectExamples();
        WriteExampleProjects();
        Build = ExternalProcess.Run("dotnet", ["build", Path.Combine(Work, "examples.slnx"), "--nologo", "-p:TreatWarningsAsErrors=true"], Work, ConsumerEnvironment());
        _server = await server;
    }

    public async Task DisposeAsync()
    {
        if (_server is not null)
        {
            await _server.DisposeAsync();
        }

        try
        {
            Directory.Delete(Work, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    /// <summary>Where the examples' NuGet configuration and cache are: nothing from the machine's cache or this repository.</summary>
    public Dictionary<string, string> ConsumerEnvironment() => new()
    {
        ["NUGET_PACKAGES"] = Path.Combine(Work, "nuget-cache"),
        ["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1",
        ["DOTNET_NOLOGO"] = "1",
    };

    /// <summary>Runs an example's built program.</summary>
    public ProcessOutput RunExample(string project, IReadOnlyDictionary<string, string>? environment = null)
    {
        string dll = Path.Combine(Work, project, "bin", "Debug", "net10.0", ProjectName(project) + ".dll");
        return ExternalProcess.Run("dotnet", [dll], Path.Combine(Work, project), environment);
    }

    /// <summary>The nupkg of a package, opened.</summary>
    public ZipArchive OpenPackage(string id, string extension = "nupkg")
        => ZipFile.OpenRead(Path.Combine(Packages, $"{id}.{Version}.{extension}"));

    /// <summary>The code blocks of the READMEs of the repository and of every package.</summary>
    public static IEnumerable<string> Readmes()
    {
        yield return Path.Combine(RepositoryRoot, "README.md");
        foreach (string project in PackableProjects)
        {
            yield return Path.Combine(RepositoryRoot, Path.GetDirectoryName(project)!, "README.md");
        }
    }

    public static string ProjectName(string project)
        => project == "own-spec" ? "Acme.Pooler" : "Example." + CultureInfo.InvariantCulture.TextInfo.ToTitleCase(project.Replace('-', ' ')).Replace(" ", "", StringComparison.Ordinal);

    private void WriteConsumerNuGetConfig()
    {
        // PgSpec's packages come from the packed folder only (a package of the same name elsewhere cannot stand in).
        File.WriteAllText(Path.Combine(Work, "nuget.config"), """
            <?xml version="1.0" encoding="utf-8"?>
            <configuration>
              <packageSources>
                <clear />
                <add key="packed" value="packages" />
                <add key="nuget.org" value="https://api.nuget.org/v3/index.json" />
              </packageSources>
              <packageSourceMapping>
                <packageSource key="packed">
                  <package pattern="PgSpec.*" />
                  <package pattern="pgspec" />
                </packageSource>
                <packageSource key="nuget.org">
                  <package pattern="*" />
                </packageSource>
              </packageSourceMapping>
            </configuration>
            """);

        // A folder outside the repository: none of its Directory.Build.props or central versions apply.
        File.WriteAllText(Path.Combine(Work, "Directory.Build.props"), "<Project />");
        File.WriteAllText(Path.Combine(Work, "Directory.Build.targets"), "<Project />");
        File.WriteAllText(Path.Combine(Work, "Directory.Packages.props"), "<Project />");
    }

    private void CollectExamples()
    {
        foreach (string readme in Readmes())
        {
            string text = File.ReadAllText(readme);
            foreach (Match match in s_markedBlock.Matches(text))
            {
                string project = match.Groups["project"].Value;
                if (!Examples.TryGetValue(project, out var files))
                {
                    Examples[project] = files = [];
                }

                files.Add((match.Groups["file"].Value, match.Groups["code"].Value + "\n", Path.GetRelativePath(RepositoryRoot, readme)));
            }
        }
    }

    private void WriteExampleProjects()
    {
        var solution = new StringBuilder("<Solution>\n");
        foreach ((string project, var files) in Examples)
        {
            string folder = Path.Combine(Work, project);
            Directory.CreateDirectory(folder);
            foreach ((string file, string code, _) in files)
            {
                string path = Path.Combine(folder, file);
                Directory.CreateDirectory(Path.GetDirectoryName(path)!);

                // README shows the released version; the packages under test carry the repository's.
                File.WriteAllText(path, file.EndsWith(".csproj", StringComparison.Ordinal)
                    ? Regex.Replace(code, @"(Include=""PgSpec\.[A-Za-z]+"" Version="")[^""]*""", "${1}" + Version + "\"")
                    : code);
            }

            string csproj = files.Select(f => f.File).FirstOrDefault(f => f.EndsWith(".csproj", StringComparison.Ordinal)) ?? ProjectName(project) + ".csproj";
            if (!files.Any(f => f.File == csproj))
            {
                // A code block alone: a console app of the user's that references the libraries it may use.
                File.WriteAllText(Path.Combine(folder, csproj), $"""
                    <Project Sdk="Microsoft.NET.Sdk">
                      <PropertyGroup>
                        <OutputType>Exe</OutputType>
                        <TargetFramework>net10.0</TargetFramework>
                        <ImplicitUsings>enable</ImplicitUsings>
                        <Nullable>enable</Nullable>
                        <TreatWarningsAsErrors>true</TreatWarningsAsErrors>
                      </PropertyGroup>
                      <ItemGroup>
                        <PackageReference Include="PgSpec.Protocol" Version="{Version}" />
                        <PackageReference Include="PgSpec.Client" Version="{Version}" />
                        <PackageReference Include="PgSpec.Proxy" Version="{Version}" />
                        <PackageReference Include="PgSpec.Server" Version="{Version}" />
                      </ItemGroup>
                    </Project>
                    """);
            }

            Assert.Equal(ProjectName(project) + ".csproj", csproj);
            solution.Append(CultureInfo.InvariantCulture, $"  <Project Path=\"{project}/{csproj}\" />\n");
        }

        solution.Append("</Solution>\n");
        File.WriteAllText(Path.Combine(Work, "examples.slnx"), solution.ToString());
    }

    private static string FindRoot()
    {
        for (var directory = new DirectoryInfo(AppContext.BaseDirectory); directory is not null; directory = directory.Parent)
        {
            if (File.Exists(Path.Combine(directory.FullName, "PgSpec.sln")))
            {
                return directory.FullName;
            }
        }

        throw new InvalidOperationException("PgSpec.sln was not found above " + AppContext.BaseDirectory);
    }
}

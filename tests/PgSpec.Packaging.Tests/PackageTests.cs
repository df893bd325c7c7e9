using System.Globalization;
using System.IO.Compression;
using System.Text.RegularExpressions;
using System.Xml.Linq;
using PgSpec.Cli.Tests.RealServer;
using PgSpec.Servers;

namespace PgSpec.Packaging.Tests;

/// <summary>The packed packages, consumed as a user consumes them.</summary>
public sealed class PackageTests : IClassFixture<PackedPackages>
{
    private readonly PackedPackages _packed;

    public PackageTests(PackedPackages packed) => _packed = packed;

    [Fact]
    public void TheReadmesExamples_BuildFromThePackedPackagesOnly_WithoutAWarning()
    {
        ProcessOutput build = _packed.Build!;

        Assert.True(build.ExitCode == 0, build.ToString());
        Assert.Matches(@"\b0 Warning\(s\)", build.Stdout);
        Assert.DoesNotContain("warning CS0436", build.Stdout, StringComparison.Ordinal);

        // Every example the test knows of is there, and they came from the package cache of the consumer only.
        Assert.Superset(new HashSet<string>(["codec", "session", "own-spec", "protocol-package", "client-package", "proxy-package"]), _packed.Examples.Keys.ToHashSet());
        Assert.True(Directory.Exists(Path.Combine(_packed.Work, "nuget-cache", "pgspec.protocol", _packed.Version)), "the examples did not restore PgSpec.Protocol into their own cache");
    }

    [Fact]
    public void EveryCSharpBlockOfEveryReadme_IsOneThatIsCompiled()
    {
        // A C# block without the marker would not be compiled, and could drift from the API.
        foreach (string readme in PackedPackages.Readmes())
        {
            string[] lines = File.ReadAllLines(readme);
            for (int i = 0; i < lines.Length; i++)
            {
                if (lines[i].StartsWith("```csharp", StringComparison.Ordinal) || lines[i].StartsWith("```cs", StringComparison.Ordinal))
                {
                    Assert.True(i > 0 && lines[i - 1].StartsWith("<!-- compiled: ", StringComparison.Ordinal), $"{Path.GetRelativePath(PackedPackages.RepositoryRoot, readme)}:{i + 1}: a C# block that no test compiles (mark it <!-- compiled: PROJECT/FILE -->)");
                }
            }
        }
    }

    [Fact]
    public void TheCodecExample_QueriesPostgresql_AndTracesEveryMessage()
    {
        PgServer server = _packed.Server;
        ProcessOutput run = _packed.RunExample("codec", new Dictionary<string, string>
        {
            ["PGHOST"] = server.Host,
            ["PGPORT"] = server.Port.ToString(CultureInfo.InvariantCulture),
            ["PGUSER"] = server.Role(PgAuthMethod.Trust).Name,
        });

        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Equal("hello\nNULL\n", run.Stdout.Replace("\r\n", "\n", StringComparison.Ordinal));
        Assert.True(Regex.IsMatch(run.Stderr, @"\tB\t12\tBackendKeyData\t -?\d+ -?\d+\n"), run.Stderr);
        Assert.Matches(@"\tB\t\d+\tDataRow\t 2 5 'hello' -1\n", run.Stderr);
        Assert.Matches(@"\tB\t5\tReadyForQuery\t I\n", run.Stderr);
        Assert.Contains("# done", run.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void TheSessionExample_LogsInWithScramOverTls_WithProtocol32()
    {
        PgServer server = _packed.Server;
        PgRole scram = server.Role(PgAuthMethod.ScramSha256);
        ProcessOutput run = _packed.RunExample("session", new Dictionary<string, string>
        {
            ["DATABASE_URL"] = $"postgres://{scram.Name}:{scram.Password}@{server.Host}:{server.Port.ToString(CultureInfo.InvariantCulture)}/postgres?sslmode=require",
        });

        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Equal("2 results; 41 + 1 = 42\nSELECT 1000: 500500, 32000 bytes of hashes\n", run.Stdout.Replace("\r\n", "\n", StringComparison.Ordinal));
        Assert.Contains("Backend AuthenticationSASLFinal", run.Stderr, StringComparison.Ordinal);
        Assert.Contains("Frontend CancelRequest", run.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void TheOwnSpecExample_GeneratesItsTypesInItsNamespace_AndTheyRoundTrip()
    {
        ProcessOutput run = _packed.RunExample("own-spec");

        Assert.True(run.ExitCode == 0, run.ToString());
        string[] lines = run.Stdout.Replace("\r\n", "\n", StringComparison.Ordinal).TrimEnd('\n').Split('\n');
        Assert.Equal(3, lines.Length);
        Assert.Contains("Pause", lines[0], StringComparison.Ordinal);
        Assert.Contains("\"main\"", lines[0], StringComparison.Ordinal);
        Assert.Contains("PoolStatus", lines[1], StringComparison.Ordinal);
        Assert.Contains("\"app\"", lines[1], StringComparison.Ordinal);
        Assert.Equal("round trip: equal", lines[2]);

        // The types are the consumer's, in its namespace; no protocol type was generated into it.
        string generated = Path.Combine(_packed.Work, "own-spec", "obj");
        Assert.NotNull(System.Reflection.AssemblyName.GetAssemblyName(Path.Combine(_packed.Work, "own-spec", "bin", "Debug", "net10.0", "Acme.Pooler.dll")));
        Assert.False(Directory.EnumerateFiles(generated, "Query.g.cs", SearchOption.AllDirectories).Any());
    }

    [Fact]
    public void TheProtocolPackageExample_Runs()
    {
        ProcessOutput run = _packed.RunExample("protocol-package");

        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Equal("42\n", run.Stdout.Replace("\r\n", "\n", StringComparison.Ordinal));
    }

    [Fact]
    public void TheServerPackageExample_AnswersAClientThatLogsInWithScram()
    {
        ProcessOutput run = _packed.RunExample("server-package");

        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Equal("hello, world\n", run.Stdout.Replace("\r\n", "\n", StringComparison.Ordinal));
    }

    [Fact]
    public void TheTool_InstalledFromItsPackage_DecodesHex()
    {
        string tools = Path.Combine(_packed.Work, "tools");
        ProcessOutput install = ExternalProcess.Run("dotnet", ["tool", "install", "pgspec", "--tool-path", tools, "--version", _packed.Version, "--configfile", Path.Combine(_packed.Work, "nuget.config")], _packed.Work, _packed.ConsumerEnvironment());
        Assert.True(install.ExitCode == 0, install.ToString());

        string input = Path.Combine(_packed.Work, "ready.hex");
        File.WriteAllText(input, "5a0000000549\n");
        ProcessOutput decode = ExternalProcess.Run(Path.Combine(tools, "pgspec"), ["decode", "--from", "backend", "--hex", input], _packed.Work);
        ProcessOutput version = ExternalProcess.Run(Path.Combine(tools, "pgspec"), ["--version"], _packed.Work);

        Assert.True(decode.ExitCode == 0, decode.ToString());
        Assert.Equal("B\t5\tReadyForQuery\t I\n", decode.Stdout);
        Assert.Equal("pgspec " + _packed.Version, version.Stdout.Trim());

        // What the tool does not carry: the Docker provider and its dependencies.
        using ZipArchive tool = _packed.OpenPackage("pgspec");
        Assert.DoesNotContain(tool.Entries, entry => Regex.IsMatch(entry.Name, "^(Testcontainers|Docker\\.DotNet|BouncyCastle|Renci\\.SshNet|PgSpec\\.Servers\\.Docker)", RegexOptions.IgnoreCase));
        // SQLite's native library for eight platforms (pgspec serve) is most of it.
        Assert.True(new FileInfo(Path.Combine(_packed.Packages, $"pgspec.{_packed.Version}.nupkg")).Length < 8 * 1024 * 1024, "the tool package grew past 8 MB");
    }

    /// <summary>A portable PDB whose every source document is embedded, under the deterministic root /_/ (no path of the build machine).</summary>
    private static void AssertSourcesEmbeddedWithMappedPaths(ZipArchiveEntry pdb)
    {
        var embeddedSource = new Guid("0E8A571B-6926-466E-B4AD-8AB04611F5FE");
        using var image = new MemoryStream();
        using (Stream stream = pdb.Open())
        {
            stream.CopyTo(image);
        }

        image.Position = 0;
        using var provider = System.Reflection.Metadata.MetadataReaderProvider.FromPortablePdbStream(image);
        System.Reflection.Metadata.MetadataReader reader = provider.GetMetadataReader();
        int documents = 0;
        foreach (System.Reflection.Metadata.DocumentHandle handle in reader.Documents)
        {
            string name = reader.GetString(reader.GetDocument(handle).Name);
            if (!name.EndsWith(".cs", StringComparison.Ordinal))
            {
                continue;
            }

            documents++;
            Assert.StartsWith("/_/", name, StringComparison.Ordinal);
            bool embedded = reader.GetCustomDebugInformation(handle)
                .Select(reader.GetCustomDebugInformation)
                .Any(info => reader.GetGuid(info.Kind) == embeddedSource);
            Assert.True(embedded, $"{pdb.FullName}: the source {name} is not embedded");
        }

        Assert.True(documents > 3, $"{pdb.FullName} names {documents} sources");
    }

    [Theory]
    [InlineData("PgSpec.Protocol")]
    [InlineData("PgSpec.Client")]
    [InlineData("PgSpec.Proxy")]
    [InlineData("PgSpec.Server")]
    [InlineData("PgSpec.Generators")]
    [InlineData("pgspec")]
    public void EachPackage_CarriesItsReadmeLicenceAndMetadata(string id)
    {
        using ZipArchive package = _packed.OpenPackage(id);
        XDocument nuspec = XDocument.Load(package.Entries.Single(entry => entry.FullName.EndsWith(".nuspec", StringComparison.Ordinal)).Open());
        XNamespace ns = nuspec.Root!.Name.Namespace;
        XElement metadata = nuspec.Root.Element(ns + "metadata")!;

        Assert.Equal(_packed.Version, metadata.Element(ns + "version")!.Value);
        Assert.Equal("README.md", metadata.Element(ns + "readme")?.Value);
        Assert.Equal("MIT", metadata.Element(ns + "license")?.Value);
        Assert.False(string.IsNullOrWhiteSpace(metadata.Element(ns + "description")?.Value));
        Assert.Contains("postgresql", metadata.Element(ns + "tags")?.Value ?? "", StringComparison.Ordinal);
        Assert.DoesNotContain("OWNER", nuspec.ToString(), StringComparison.Ordinal);
        Assert.Contains(package.Entries, entry => entry.FullName == "README.md");
        Assert.Contains(package.Entries, entry => entry.FullName == "LICENSE");

        if (id == "PgSpec.Generators")
        {
            // The generator runs only where it is asked for, with its build files.
            Assert.Contains(package.Entries, entry => entry.FullName == "analyzers/dotnet/cs/PgSpec.Generators.dll");
            Assert.Contains(package.Entries, entry => entry.FullName == "buildTransitive/PgSpec.Generators.props");
            Assert.Equal("true", metadata.Element(ns + "developmentDependency")?.Value);
        }
        else
        {
            // A library or the tool: no generator rides along, and symbols are published beside it.
            Assert.DoesNotContain(package.Entries, entry => entry.FullName.StartsWith("analyzers/", StringComparison.Ordinal));
            using ZipArchive symbols = _packed.OpenPackage(id, "snupkg");
            ZipArchiveEntry pdb = symbols.Entries.First(entry => entry.FullName.EndsWith(".pdb", StringComparison.Ordinal));
            AssertSourcesEmbeddedWithMappedPaths(pdb);
        }

        if (id == "PgSpec.Proxy")
        {
            // The proxy uses PgSpec.Client's internal SCRAM client: it depends on exactly the Client built with it.
            XElement client = nuspec.Descendants(ns + "dependency").Single(d => (string?)d.Attribute("id") == "PgSpec.Client");
            Assert.Equal($"[{_packed.Version}]", (string?)client.Attribute("version"));
        }

        if (id.StartsWith("PgSpec.", StringComparison.Ordinal) && id != "PgSpec.Generators")
        {
            // The library's XML documentation ships with it.
            Assert.Contains(package.Entries, entry => entry.FullName == $"lib/net10.0/{id}.xml");
        }
    }
}

using PgSpec.Fuzz;
using SharpFuzz;

// Nothing of the codec may run before the fuzzer attaches the coverage map: under afl-fuzz,
// PgSpec.Protocol.dll is instrumented, and its code faults until then.
return args switch
{
    // libfuzzer-dotnet starts "dotnet PgSpec.Fuzz.dll" without arguments; the target comes from the environment.
    [] when Environment.GetEnvironmentVariable("__LIBFUZZER_SHM_ID") is not null => LibFuzzer(Environment.GetEnvironmentVariable("PGSPEC_FUZZ_TARGET") ?? ""),
    ["list"] => List(),
    ["afl", string name] => Afl(name),
    ["replay", string name, .. string[] paths] when paths.Length > 0 => Replay(name, paths),
    ["dictionary", string file] => Dictionary(file),
    ["record-corpus", string dir] => await CorpusRecorder.RunAsync(dir, replace: false),
    ["record-corpus", string dir, "--replace"] => await CorpusRecorder.RunAsync(dir, replace: true),
    _ => Usage(),
};

static int Usage()
{
    Console.Error.WriteLine("""
        usage: PgSpec.Fuzz COMMAND
          list                       the targets, one a line: name and input layout
          afl TARGET                 run TARGET under afl-fuzz (SharpFuzz's out-of-process fork server; input on stdin)
          (no command)               run the target named by PGSPEC_FUZZ_TARGET under libfuzzer-dotnet (OSS-Fuzz, ClusterFuzzLite)
          replay TARGET PATH...      run files, or every file in folders, through TARGET's oracle; exit 1 on a finding
          dictionary FILE            write the AFL++ dictionary derived from the specs
          record-corpus DIR [--replace]
                                     record seed inputs of every target from conformance runs against throwaway
                                     PostgreSQL 15 and 18 servers; seeds already in DIR are kept unless --replace
        """);
    return 2;
}

static FuzzTarget Find(string name)
    => FuzzTargets.Find(name) ?? throw new ArgumentException($"no target '{name}'; targets: {string.Join(", ", FuzzTargets.Names)}");

static int List()
{
    foreach (FuzzTarget target in FuzzTargets.Create())
    {
        Console.WriteLine($"{target.Name}\t{target.Description}");
    }

    return 0;
}

static int Afl(string name)
{
    FuzzTarget target = Find(name);
    Fuzzer.OutOfProcess.Run(stream =>
    {
        using var input = new MemoryStream();
        stream.CopyTo(input);
        target.Run(input.GetBuffer().AsSpan(0, (int)input.Length));
    });
    return 0;
}

static int LibFuzzer(string name)
{
    FuzzTarget target = Find(name);
    Fuzzer.LibFuzzer.Run(span => target.Run(span));
    return 0;
}

static int Replay(string name, string[] paths)
{
    FuzzTarget target = Find(name);
    var files = new List<string>();
    foreach (string path in paths)
    {
        if (Directory.Exists(path))
        {
            files.AddRange(Directory.EnumerateFiles(path, "*", SearchOption.AllDirectories).Where(f => !Path.GetFileName(f).StartsWith('.') && !f.EndsWith(".md", StringComparison.Ordinal)).Order(StringComparer.Ordinal));
        }
        else if (File.Exists(path))
        {
            files.Add(path);
        }
        else
        {
            Console.Error.WriteLine($"no file or folder {path}");
            return 2;
        }
    }

    int findings = 0;
    foreach (string file in files)
    {
        try
        {
            target.Run(File.ReadAllBytes(file));
        }
        catch (FuzzFindingException e)
        {
            findings++;
            Console.WriteLine($"FINDING {file}");
            Console.WriteLine("  " + e.Message);
            if (e.InnerException is { } inner)
            {
                Console.WriteLine("  " + inner.GetType().FullName + ": " + inner.Message);
                Console.WriteLine(inner.StackTrace);
            }
        }
    }

    Console.WriteLine($"{name}: {files.Count} inputs replayed, {findings} findings");
    return findings == 0 ? 0 : 1;
}

static int Dictionary(string file)
{
    string? folder = Path.GetDirectoryName(Path.GetFullPath(file));
    if (folder is not null)
    {
        Directory.CreateDirectory(folder);
    }

    File.WriteAllText(file, FuzzDictionary.Text());
    Console.WriteLine($"{file}: {FuzzDictionary.Entries().Count} entries");
    return 0;
}

using System.Text;
using PgSpec.Cli;

namespace PgSpec.Cli.Tests;

/// <summary>What one in-process run of the command line produced.</summary>
public sealed record CliResult(int ExitCode, string Stdout, string Stderr)
{
    /// <summary>Standard output split into lines (without the final empty one).</summary>
    public string[] Lines => Stdout.Length == 0 ? [] : Stdout.TrimEnd('\n').Split('\n');

    public override string ToString() => $"exit {ExitCode}\n--- stdout\n{Stdout}--- stderr\n{Stderr}";
}

/// <summary>Runs <c>pgspec</c> in-process on in-memory streams.</summary>
public static class CliRunner
{
    public static CliResult Run(byte[] stdin, params string[] args)
    {
        using var input = new MemoryStream(stdin);
        using var output = new MemoryStream();
        using var error = new StringWriter();
        int exit = PgSpecCommandLine.Run(args, input, output, error);
        return new CliResult(exit, Encoding.UTF8.GetString(output.ToArray()), error.ToString());
    }

    public static CliResult Run(params string[] args) => Run([], args);

    /// <summary>The bytes as hex text, in groups and lines, the way a person would paste them.</summary>
    public static byte[] HexText(byte[] bytes)
    {
        var text = new StringBuilder();
        for (int i = 0; i < bytes.Length; i++)
        {
            text.Append(bytes[i].ToString("x2", System.Globalization.CultureInfo.InvariantCulture));
            text.Append(i % 16 == 15 ? "\n" : i % 4 == 3 ? "  " : "");
        }

        return Encoding.ASCII.GetBytes(text.Append('\n').ToString());
    }
}

/// <summary>A file in a fresh temporary folder, deleted with it.</summary>
public sealed class TempDirectory : IDisposable
{
    public TempDirectory()
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "pgspec-cli-tests-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Path);
    }

    public string Path { get; }

    public string Write(string name, byte[] content)
    {
        string file = System.IO.Path.Combine(Path, name);
        File.WriteAllBytes(file, content);
        return file;
    }

    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}

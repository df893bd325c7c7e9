using System.Diagnostics;
using System.Text;

namespace PgSpec.Cli.Tests.RealServer;

/// <summary>What a finished external program printed.</summary>
public sealed record ProcessOutput(int ExitCode, string Stdout, string Stderr)
{
    public override string ToString() => $"exit code {ExitCode}\n--- stdout\n{Stdout}\n--- stderr\n{Stderr}";
}

/// <summary>Runs external programs (server tools, npm, python) with a generous safety limit.</summary>
public static class ExternalProcess
{
    /// <summary>Long enough for an npm download on a slow network; it only stops a hung program.</summary>
    private static readonly TimeSpan s_limit = TimeSpan.FromMinutes(5);

    public static ProcessOutput Run(string fileName, IEnumerable<string> arguments, string? workingDirectory = null, IReadOnlyDictionary<string, string>? environment = null)
    {
        var start = new ProcessStartInfo(fileName)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
            WorkingDirectory = workingDirectory ?? Path.GetTempPath(),
        };
        foreach (string argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        if (environment is not null)
        {
            foreach ((string key, string value) in environment)
            {
                start.Environment[key] = value;
            }
        }

        using var process = new Process { StartInfo = start };
        var stdout = new StringBuilder();
        var stderr = new StringBuilder();
        process.OutputDataReceived += (_, e) =>
        {
            if (e.Data is not null)
            {
                lock (stdout)
                {
                    stdout.AppendLine(e.Data);
                }
            }
        };
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is not null)
            {
                lock (stderr)
                {
                    stderr.AppendLine(e.Data);
                }
            }
        };

        try
        {
            process.Start();
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new InvalidOperationException($"cannot start '{fileName}': {e.Message}", e);
        }

        process.StandardInput.Close();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        if (!process.WaitForExit(s_limit))
        {
            process.Kill(entireProcessTree: true);
            process.WaitForExit();
            throw new InvalidOperationException($"'{fileName} {string.Join(' ', start.ArgumentList)}' did not finish within {s_limit.TotalMinutes} minutes\n{stdout}\n{stderr}");
        }

        process.WaitForExit();
        return new ProcessOutput(process.ExitCode, stdout.ToString(), stderr.ToString());
    }

    /// <summary>Runs the program and throws with everything it printed unless it exits with 0.</summary>
    public static ProcessOutput RunChecked(string fileName, IEnumerable<string> arguments, string? workingDirectory = null, IReadOnlyDictionary<string, string>? environment = null)
    {
        string[] args = arguments.ToArray();
        ProcessOutput output = Run(fileName, args, workingDirectory, environment);
        if (output.ExitCode != 0)
        {
            throw new InvalidOperationException($"'{fileName} {string.Join(' ', args)}' failed: {output}");
        }

        return output;
    }

    /// <summary>The full path of a program on PATH, or null.</summary>
    public static string? FindOnPath(string name)
    {
        foreach (string directory in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries))
        {
            string candidate = Path.Combine(directory, name);
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }

        return null;
    }
}

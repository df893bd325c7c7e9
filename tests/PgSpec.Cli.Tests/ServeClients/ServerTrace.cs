using System.Globalization;

namespace PgSpec.Cli.Tests.ServeClients;

/// <summary>Reads the --trace file of <c>pgspec serve</c> (libpq's PQtrace format, each line led by the session's process id).</summary>
public static class ServerTrace
{
    /// <summary>
    /// Waits (polling, up to two minutes) until the session <paramref name="processId"/> runs the
    /// statement whose text contains <paramref name="marker"/>: its Query message, or the Execute
    /// after its Parse, has reached the server, which traces a message as it starts on it.
    /// </summary>
    public static async Task WaitForQueryAsync(ServeServer server, int processId, string marker)
    {
        string prefix = processId.ToString(CultureInfo.InvariantCulture) + "\tF\t";
        var deadline = DateTime.UtcNow + TimeSpan.FromMinutes(2);
        while (true)
        {
            bool parsed = false;
            foreach (string line in Lines(server.TraceFile).Where(l => l.StartsWith(prefix, StringComparison.Ordinal)))
            {
                string[] fields = line.Split('\t');
                string kind = fields.Length > 3 ? fields[3] : "";
                if (line.Contains(marker, StringComparison.Ordinal))
                {
                    if (kind == "Query")
                    {
                        return;
                    }

                    parsed |= kind == "Parse";
                }
                else if (parsed && kind == "Execute")
                {
                    return;
                }
            }

            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"the server's trace never showed session {processId} running '{marker}'{server.Diagnostics}");
            }

            await Task.Delay(20);
        }
    }

    /// <summary>The lines of the trace of one session.</summary>
    public static IEnumerable<string> Session(ServeServer server, int processId)
    {
        string prefix = processId.ToString(CultureInfo.InvariantCulture) + "\t";
        return Lines(server.TraceFile).Where(l => l.StartsWith(prefix, StringComparison.Ordinal));
    }

    private static List<string> Lines(string file)
    {
        // The server keeps writing: read what is there, sharing the file.
        using var stream = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        using var reader = new StreamReader(stream);
        var lines = new List<string>();
        while (reader.ReadLine() is { } line)
        {
            lines.Add(line);
        }

        return lines;
    }
}

using System.Text.RegularExpressions;

namespace PgSpec.Cli.Tests.Replication;

/// <summary>A message's trace line, with the lines below it (indented, and libpq's mismatch lines), each without the connection id.</summary>
internal sealed record TracedMessage(string Line, List<string> Below)
{
    /// <summary>The message name (the third TAB-separated field).</summary>
    public string Name => Line.Split('\t') is { Length: > 2 } parts ? parts[2] : "";

    /// <summary>The length field.</summary>
    public int Length => int.Parse(Line.Split('\t')[1], System.Globalization.CultureInfo.InvariantCulture);
}

/// <summary>One connection's messages of a trace, by direction and in order, and its comment lines.</summary>
internal sealed class TracedConnection(string id)
{
    public string Id { get; } = id;

    public List<TracedMessage> Frontend { get; } = [];

    public List<TracedMessage> Backend { get; } = [];

    /// <summary>Comment lines at the start of a line (events, notes), not below a message.</summary>
    public List<string> Notes { get; } = [];

    /// <summary>The application_name of its StartupMessage, if any.</summary>
    public string? Application => Frontend.FirstOrDefault(m => m.Name == "StartupMessage") is { } startup
        && Regex.Match(startup.Line, "\"application_name\" \"([^\"]*)\"") is { Success: true } match ? match.Groups[1].Value : null;
}

/// <summary>Reads traces written with connection ids (the proxy's, the capture's) or without (<c>pgspec decode</c>'s: one connection).</summary>
internal static class TraceLines
{
    /// <summary>Groups the lines "ID TAB ..." by connection, in the order connections first appear; a line "ID TAB TAB ..." or a mismatch line goes below the message before it.</summary>
    public static List<TracedConnection> Connections(string text, bool ids = true)
    {
        var connections = new List<TracedConnection>();
        var byId = new Dictionary<string, TracedConnection>();
        var last = new Dictionary<string, TracedMessage>();
        foreach (string line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            string id = "";
            string rest = line;
            if (ids)
            {
                int tab = line.IndexOf('\t', StringComparison.Ordinal);
                if (tab < 0)
                {
                    continue;
                }

                id = line[..tab];
                rest = line[(tab + 1)..];
            }

            if (!byId.TryGetValue(id, out TracedConnection? connection))
            {
                connection = new TracedConnection(id);
                byId[id] = connection;
                connections.Add(connection);
            }

            if (rest.StartsWith('F') || rest.StartsWith('B'))
            {
                var message = new TracedMessage(rest, []);
                (rest[0] == 'F' ? connection.Frontend : connection.Backend).Add(message);
                last[id] = message;
            }
            else if (rest.StartsWith('#'))
            {
                connection.Notes.Add(rest);
            }
            else if (last.TryGetValue(id, out TracedMessage? above))
            {
                above.Below.Add(rest);
            }
        }

        return connections;
    }

    /// <summary>The name of an indented line: "TAB B TAB 18 TAB PrimaryKeepalive TAB ..." gives PrimaryKeepalive; a comment line gives "#".</summary>
    public static string NameBelow(string below)
    {
        string[] parts = below.TrimStart('\t').Split('\t');
        return parts[0].StartsWith('#') ? "#" : parts.Length > 2 ? parts[2] : "";
    }

    /// <summary>The depth of an indented line (its leading TABs).</summary>
    public static int Depth(string below) => below.Length - below.TrimStart('\t').Length;

    /// <summary>The pgoutput messages a connection's server sent, in order: the lines two TABs below its CopyData.</summary>
    public static List<string> PgOutput(TracedConnection connection)
        => [.. connection.Backend.Where(m => m.Name == "CopyData").SelectMany(m => m.Below).Where(b => Depth(b) == 2)];
}

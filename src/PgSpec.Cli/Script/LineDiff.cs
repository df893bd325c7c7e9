using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace PgSpec.Cli.Script;

/// <summary>Comparing a run's output with an expected file, as pgpool's suite compares them.</summary>
internal static partial class LineDiff
{
    /// <summary>Lines longer than this product of line counts are not aligned line by line (memory stays bounded).</summary>
    private const long MaxCells = 16_000_000;

    private const int Context = 3;

    /// <summary>
    /// pgpool's normalization, <c>sed -e 's/L [0-9]*/L xxx/g'</c>: the source line numbers of
    /// ErrorResponse and NoticeResponse differ between server builds.
    /// </summary>
    public static string Normalize(string text) => LineNumber().Replace(text, "L xxx");

    [GeneratedRegex("L [0-9]*", RegexOptions.CultureInvariant)]
    private static partial Regex LineNumber();

    /// <summary>The lines of a text; a final line break ends the last line rather than starting an empty one.</summary>
    public static string[] Lines(string text)
    {
        if (text.Length == 0)
        {
            return [];
        }

        string[] lines = text.Split('\n');
        return text.EndsWith('\n') ? lines[..^1] : lines;
    }

    /// <summary>A unified diff (3 lines of context) from <paramref name="expected"/> to <paramref name="actual"/>; null when they are equal.</summary>
    public static string? Unified(string expected, string actual, string expectedLabel, string actualLabel)
    {
        if (expected == actual)
        {
            return null;
        }

        string[] a = Lines(expected);
        string[] b = Lines(actual);
        List<(char Op, string Line)> edits = Edits(a, b);
        var text = new StringBuilder();
        text.Append("--- ").Append(expectedLabel).Append('\n');
        text.Append("+++ ").Append(actualLabel).Append('\n');
        if (!edits.Any(e => e.Op != ' '))
        {
            // Only the final line break differs.
            text.Append("@@ -").Append(a.Length).Append(" +").Append(b.Length).Append(" @@\n");
            text.Append(expected.EndsWith('\n') ? "\\ the actual output has no line break at its end\n" : "\\ the expected file has no line break at its end\n");
            return text.ToString();
        }

        // Positions of each edit in a and b.
        int[] aAt = new int[edits.Count + 1];
        int[] bAt = new int[edits.Count + 1];
        for (int i = 0; i < edits.Count; i++)
        {
            aAt[i + 1] = aAt[i] + (edits[i].Op == '+' ? 0 : 1);
            bAt[i + 1] = bAt[i] + (edits[i].Op == '-' ? 0 : 1);
        }

        List<int> changes = [.. Enumerable.Range(0, edits.Count).Where(i => edits[i].Op != ' ')];
        int c = 0;
        while (c < changes.Count)
        {
            // Changes closer than twice the context share a hunk.
            int last = c;
            while (last + 1 < changes.Count && changes[last + 1] - changes[last] - 1 <= 2 * Context)
            {
                last++;
            }

            int start = Math.Max(0, changes[c] - Context);
            int end = Math.Min(edits.Count, changes[last] + 1 + Context);
            text.Append("@@ -").Append(Range(aAt[start], aAt[end] - aAt[start])).Append(" +").Append(Range(bAt[start], bAt[end] - bAt[start])).Append(" @@\n");
            for (int i = start; i < end; i++)
            {
                text.Append(edits[i].Op).Append(edits[i].Line).Append('\n');
            }

            c = last + 1;
        }

        return text.ToString();
    }

    private static string Range(int start, int count)
        => count == 1 ? (start + 1).ToString(CultureInfo.InvariantCulture)
            : count == 0 ? $"{start.ToString(CultureInfo.InvariantCulture)},0"
            : $"{(start + 1).ToString(CultureInfo.InvariantCulture)},{count.ToString(CultureInfo.InvariantCulture)}";

    /// <summary>The edit script of a longest common subsequence (common prefix and suffix taken first).</summary>
    private static List<(char Op, string Line)> Edits(string[] a, string[] b)
    {
        int prefix = 0;
        while (prefix < a.Length && prefix < b.Length && a[prefix] == b[prefix])
        {
            prefix++;
        }

        int suffix = 0;
        while (suffix < a.Length - prefix && suffix < b.Length - prefix && a[a.Length - 1 - suffix] == b[b.Length - 1 - suffix])
        {
            suffix++;
        }

        var edits = new List<(char, string)>(a.Length + b.Length);
        for (int i = 0; i < prefix; i++)
        {
            edits.Add((' ', a[i]));
        }

        int n = a.Length - prefix - suffix;
        int m = b.Length - prefix - suffix;
        if ((long)(n + 1) * (m + 1) > MaxCells)
        {
            // Too large to align: everything in between replaced.
            for (int i = 0; i < n; i++)
            {
                edits.Add(('-', a[prefix + i]));
            }

            for (int j = 0; j < m; j++)
            {
                edits.Add(('+', b[prefix + j]));
            }
        }
        else
        {
            // lcs[i, j]: the longest common subsequence of a[prefix+i..] and b[prefix+j..].
            int[,] lcs = new int[n + 1, m + 1];
            for (int i = n - 1; i >= 0; i--)
            {
                for (int j = m - 1; j >= 0; j--)
                {
                    lcs[i, j] = a[prefix + i] == b[prefix + j] ? lcs[i + 1, j + 1] + 1 : Math.Max(lcs[i + 1, j], lcs[i, j + 1]);
                }
            }

            int x = 0;
            int y = 0;
            while (x < n || y < m)
            {
                if (x < n && y < m && a[prefix + x] == b[prefix + y])
                {
                    edits.Add((' ', a[prefix + x]));
                    x++;
                    y++;
                }
                else if (x < n && (y == m || lcs[x + 1, y] >= lcs[x, y + 1]))
                {
                    edits.Add(('-', a[prefix + x]));
                    x++;
                }
                else
                {
                    edits.Add(('+', b[prefix + y]));
                    y++;
                }
            }
        }

        for (int i = a.Length - suffix; i < a.Length; i++)
        {
            edits.Add((' ', a[i]));
        }

        return edits;
    }
}

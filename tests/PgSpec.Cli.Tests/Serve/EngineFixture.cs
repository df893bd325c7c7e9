using System.Text;
using PgSpec.Cli.Serve;

namespace PgSpec.Cli.Tests.Serve;

/// <summary>The result of one statement run as a simple query would run it.</summary>
internal sealed record QueryResult(IReadOnlyList<SqlColumn>? Columns, List<string?[]> Rows, string Tag, List<byte[]?[]> BinaryRows);

/// <summary>An engine over a fresh in-memory database and helpers that drive it as the protocol side does.</summary>
internal sealed class EngineHarness : IDisposable
{
    public EngineHarness(string database = ":memory:")
    {
        Engine = new SqliteEngine(database);
        Session = Open();
    }

    public SqliteEngine Engine { get; }

    public SqliteSession Session { get; }

    public SqliteSession Open(Dictionary<string, string>? startup = null) =>
        Engine.OpenSession("tester", startup ?? new Dictionary<string, string> { ["database"] = "db" });

    /// <summary>Runs a Query message: every statement in one implicit block; throws the first error (after OnError / EndImplicit(false)).</summary>
    public List<QueryResult> Query(string sql, SqliteSession? session = null, bool binary = false)
    {
        var s = session ?? Session;
        var results = new List<QueryResult>();
        s.BeginImplicit();
        try
        {
            foreach (string statementText in s.Split(sql))
            {
                using var statement = s.Prepare(statementText, []);
                using var cursor = s.Open(statement, [], [], CancellationToken.None);
                results.Add(Drain(cursor, binary));
            }
        }
        catch (SqlError)
        {
            s.OnError();
            s.EndImplicit(false);
            throw;
        }
        s.EndImplicit(true);
        return results;
    }

    public static QueryResult Drain(SqlCursor cursor, bool binary = false)
    {
        var columns = cursor.Columns;
        var rows = new List<string?[]>();
        var binaryRows = new List<byte[]?[]>();
        while (cursor.Read())
        {
            int n = columns?.Count ?? 0;
            var row = new string?[n];
            var brow = new byte[]?[n];
            for (int i = 0; i < n; i++)
            {
                var v = cursor.GetValue(i, 0);
                row[i] = v is null ? null : Encoding.UTF8.GetString(v.Value.Span);
                if (binary) brow[i] = cursor.GetValue(i, 1)?.ToArray();
            }
            rows.Add(row);
            binaryRows.Add(brow);
        }
        return new QueryResult(columns, rows, cursor.CommandTag, binaryRows);
    }

    /// <summary>One statement, one row, one column: its text value.</summary>
    public string? Scalar(string sql) => Query(sql)[^1].Rows.Single()[0];

    public static SqlError Error(Action action) => Assert.Throws<SqlError>(action);

    public void Dispose()
    {
        Session.Dispose();
        Engine.Dispose();
    }
}

internal static class Rows
{
    public static void Same(string?[] expected, string?[] actual) =>
        Assert.Equal(string.Join(" | ", expected.Select(x => x ?? "<null>")), string.Join(" | ", actual.Select(x => x ?? "<null>")));
}

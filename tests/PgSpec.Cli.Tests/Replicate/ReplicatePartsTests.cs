using PgSpec.Cli.Replicate;
using PgSpec.Client;

namespace PgSpec.Cli.Tests.Replicate;

/// <summary>The parts of <c>pgspec replicate</c> that need no server: LSNs, times, sizes, connection strings, held transactions.</summary>
public class ReplicatePartsTests
{
    [Theory]
    [InlineData("0/16B3748", 0x16B3748L, "0/016B3748")]
    [InlineData("0/0", 0L, "0/00000000")]
    [InlineData("1A/FFFFFFFF", 0x1AFFFFFFFFL, "1A/FFFFFFFF")]
    [InlineData("ffffffff/ffffffff", -1L, "FFFFFFFF/FFFFFFFF")]
    public void Lsn_ParsesAsPgLsnDoes_AndPrintsAsPostgreSql18(string text, long value, string printed)
    {
        Assert.True(ReplicationValues.TryParseLsn(text, out long lsn));
        Assert.Equal(value, lsn);
        Assert.Equal(printed, ReplicationValues.FormatLsn(lsn));
    }

    [Theory]
    [InlineData("")]
    [InlineData("16B3748")]
    [InlineData("/1")]
    [InlineData("1/")]
    [InlineData("123456789/0")]
    [InlineData("0/x")]
    [InlineData("-1/0")]
    public void Lsn_RefusesWhatIsNotOne(string text) => Assert.False(ReplicationValues.TryParseLsn(text, out _));

    [Fact]
    public void Time_IsIso8601Utc_ToTheMicrosecond()
    {
        Assert.Equal("2000-01-01T00:00:00.000000Z", ReplicationValues.FormatTime(0));
        Assert.Equal("2024-02-29T12:34:56.789012Z", ReplicationValues.FormatTime(((new DateTime(2024, 2, 29, 12, 34, 56, DateTimeKind.Utc) - new DateTime(2000, 1, 1, 0, 0, 0, DateTimeKind.Utc)).Ticks / 10) + 789012));
        Assert.Equal(long.MaxValue.ToString(System.Globalization.CultureInfo.InvariantCulture), ReplicationValues.FormatTime(long.MaxValue));
    }

    [Theory]
    [InlineData("0", 0L)]
    [InlineData("1000", 1000L)]
    [InlineData("64kB", 65536L)]
    [InlineData("64MB", 67108864L)]
    [InlineData(" 2 GB ", 2147483648L)]
    public void Size_TakesBytesOrPostgreSqlUnits(string text, long bytes)
    {
        Assert.True(ReplicationValues.TryParseSize(text, out long parsed));
        Assert.Equal(bytes, parsed);
    }

    [Theory]
    [InlineData("")]
    [InlineData("12 parsecs")]
    [InlineData("-1")]
    [InlineData("99999999999GB")]
    public void Size_RefusesWhatIsNotOne(string text) => Assert.False(ReplicationValues.TryParseSize(text, out _));

    [Fact]
    public void ConnectionString_KeywordsAndUrls_FillTheOptions_TheCommandLineWins()
    {
        var given = new ReplicateCommand.ConnectionChoices(null, null, null, "host=db.example port=6543 dbname='my db' user=rep password='it''s' sslmode=require application_name=cdc", null, null);
        Assert.False(ReplicateCommand.TryConnectOptions(given, TimeSpan.FromSeconds(5), out _, out string? error), "a doubled quote is not an escape in libpq");
        Assert.Contains("connection", error, StringComparison.Ordinal);

        given = given with { Database = @"host=db.example port=6543 dbname='my db' user=rep password='it\'s' sslmode=require application_name=cdc" };
        Assert.True(ReplicateCommand.TryConnectOptions(given, TimeSpan.FromSeconds(5), out PgConnectOptions? options, out error), error);
        Assert.Equal(("db.example", 6543, "my db", "rep", "it's", PgSslMode.Require), (options!.Host, options.Port, options.Database, options.User, options.Password, options.SslMode));
        Assert.Contains(options.Parameters, p => p.Key == "application_name" && p.Value == "cdc");

        Assert.True(ReplicateCommand.TryConnectOptions(given with { Host = "other", Port = 7000, User = "me" }, TimeSpan.FromSeconds(5), out options, out error), error);
        Assert.Equal(("other", 7000, "my db", "me"), (options!.Host, options.Port, options.Database, options.User));

        given = new ReplicateCommand.ConnectionChoices(null, null, null, "postgresql://rep:p%40ss@[::1]:6543/shop?sslmode=disable", null, null);
        Assert.True(ReplicateCommand.TryConnectOptions(given, TimeSpan.FromSeconds(5), out options, out error), error);
        Assert.Equal(("::1", 6543, "shop", "rep", "p@ss", PgSslMode.Disable), (options!.Host, options.Port, options.Database, options.User, options.Password, options.SslMode));

        // A host that is a directory is a Unix socket, without TLS.
        Assert.True(ReplicateCommand.TryConnectOptions(new ReplicateCommand.ConnectionChoices("/run/pg", 5433, "u", "d", "require", null), TimeSpan.FromSeconds(5), out options, out error), error);
        Assert.Equal(("/run/pg/.s.PGSQL.5433", PgSslMode.Disable), (options!.UnixSocketPath, options.SslMode));

        Assert.False(ReplicateCommand.TryConnectOptions(given with { Database = "host=a,b" }, TimeSpan.FromSeconds(5), out _, out error));
        Assert.Contains("several hosts", error, StringComparison.Ordinal);
        Assert.False(ReplicateCommand.TryConnectOptions(given with { Database = "host=a port=99999" }, TimeSpan.FromSeconds(5), out _, out error));
        Assert.Contains("is not a port", error, StringComparison.Ordinal);
    }

    [Fact]
    public void HeldTransactions_SpillPastTheMemoryLimit_AndReadBackInOrder_WithAbortedSubtransactionsKnown()
    {
        using var folder = new TempDirectory();
        var buffers = new TransactionBuffers(1000, folder.Path);
        BufferedTransaction small = buffers.Open(1, 100, streamed: true);
        BufferedTransaction large = buffers.Open(2, 200, streamed: true);
        small.Add(new BufferedRecord(101, 1, true, new byte[10]));
        for (int i = 0; i < 20; i++)
        {
            large.Add(new BufferedRecord(201 + i, i % 2 == 0 ? 2 : 3, true, Enumerable.Repeat((byte)i, 100).ToArray()));
        }

        Assert.True(large.Spilled);
        Assert.False(small.Spilled);
        Assert.True(buffers.MemoryBytes <= 1000, $"{buffers.MemoryBytes} bytes held in memory");
        Assert.Single(Directory.GetFiles(folder.Path));

        large.AbortSubtransaction(3);
        Assert.Equal([3], large.Subtransactions);
        Assert.Equal([3], large.AbortedSubtransactions);
        int n = 0;
        foreach (BufferedRecord record in large.Records())
        {
            Assert.Equal(201 + n, record.WalStart);
            Assert.Equal(n % 2 == 0 ? 2 : 3, record.Xid);
            Assert.True(record.InStreamedBlock);
            Assert.Equal(Enumerable.Repeat((byte)n, 100), record.Data.ToArray());
            n++;
        }

        Assert.Equal(20, n);
        large.Dispose();
        small.Dispose();
        Assert.Empty(Directory.GetFiles(folder.Path));
        Assert.Equal(0, buffers.MemoryBytes);
    }
}

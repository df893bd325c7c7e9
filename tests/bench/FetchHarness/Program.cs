// Fetches the rows of one query from PostgreSQL, with PgSpec.Client's row reader or with Npgsql's
// data reader, and prints rows per second, the client's CPU time per row (user and system, all
// threads), the CPU time per row of the PostgreSQL backend that served the query, a checksum of
// the values read, the bytes allocated and the process's peak memory, all of one timed run from
// the query's sending to its last row. One client and one format per process, so that peak memory
// is that run's alone.
//
//   FetchHarness pgspec|npgsql text|binary|bytes HOST PORT USER DATABASE ROWS
//   (environment: WARMUP_SECONDS, the warm-up below; the server must run on this machine, for its
//   CPU time)
//
// Both clients read every value of every row as a consumer would, in the format asked for:
// - text: every column as a string (Npgsql: AllResultTypesAreUnknown, GetString; PgSpec: GetString);
// - binary: int4 as an int, text as a string, timestamptz as its 64-bit microseconds (Npgsql:
//   GetInt32, GetString, GetFieldValue<DateTime>; PgSpec: the bytes read in place, the string decoded);
// - bytes (PgSpec only): every value's bytes in place, nothing decoded.
// Neither checks the values against the query; both add them to a checksum that the script
// compares between clients (text against text, binary against binary), so that both read the
// same rows. Npgsql converts and checks types that PgSpec hands over as bytes (a timestamptz
// becomes a DateTime); PgSpec validates every message's framing and lengths, as it always does.
using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using Npgsql;
using PgSpec.Client;

if (args.Length != 7)
{
    Console.Error.WriteLine("usage: FetchHarness pgspec|npgsql text|binary|bytes HOST PORT USER DATABASE ROWS");
    return 2;
}

string client = args[0];
string format = args[1];
string host = args[2];
int port = int.Parse(args[3], CultureInfo.InvariantCulture);
string user = args[4];
string database = args[5];
long rows = long.Parse(args[6], CultureInfo.InvariantCulture);
string sql = Query(rows);

Func<string, Measurement, Task<(long Rows, long Checksum)>> fetch = (client, format) switch
{
    ("pgspec", "text" or "binary" or "bytes") => (query, measurement) => PgSpecFetchAsync(host, port, user, database, query, format, measurement),
    ("npgsql", "text" or "binary") => (query, measurement) => NpgsqlFetchAsync(host, port, user, database, query, format, measurement),
    _ => throw new ArgumentException($"unknown client and format: {client} {format}"),
};

// Shorter runs first warm the JIT up, five of them at least and for WARMUP_SECONDS (3) at least:
// .NET's tiered JIT compiles a method again, optimized with the profile of its calls, only after
// it has been called for a while with no new code being compiled, and on 2 processors shared with
// the server this takes some million rows for either client (five runs of 200,000 rows leave most
// of PgSpec's row path and part of Npgsql's in their first, instrumented code). Then one run is
// measured.
double warmUpSeconds = double.TryParse(Environment.GetEnvironmentVariable("WARMUP_SECONDS"), NumberStyles.Float, CultureInfo.InvariantCulture, out double seconds) ? seconds : 3;
var warmUpClock = Stopwatch.StartNew();
for (int warmUp = 0; warmUp < 5 || warmUpClock.Elapsed.TotalSeconds < warmUpSeconds; warmUp++)
{
    await fetch(Query(Math.Min(rows, 200_000)), new Measurement());
}

var measured = new Measurement();
(long read, long checksum) = await fetch(sql, measured);
if (read != rows)
{
    Console.Error.WriteLine($"read {read} rows, not {rows}");
    return 1;
}

Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
    $"rows={read} seconds={measured.Elapsed.TotalSeconds:F3} rows_per_s={read / measured.Elapsed.TotalSeconds:F0} cpu_ns_per_row={measured.ClientCpu.TotalNanoseconds / read:F0} server_cpu_ns_per_row={measured.ServerCpu.TotalNanoseconds / read:F0} checksum={checksum} allocated_bytes={measured.Allocated} peak_rss_kb={PeakResidentKilobytes()}"));
return 0;

// An int4, a text and a timestamptz per row; the timestamp is a constant, so that checksums compare across runs.
static string Query(long rows) => $"SELECT g, g::text, '2024-06-11 12:34:56.789+00'::timestamptz FROM generate_series(1, {rows}) g";

static async Task<(long Rows, long Checksum)> PgSpecFetchAsync(string host, int port, string user, string database, string sql, string format, Measurement measurement)
{
    var options = new PgConnectOptions { Host = host, Port = port, User = user, Database = database, SslMode = PgSslMode.Disable, CommandTimeout = TimeSpan.FromMinutes(5) };
    await using PgFrontendSession session = await PgFrontendSession.ConnectAsync(options);
    short[] resultFormats = format == "binary" ? [1, 0, 1] : [0, 0, 0];
    measurement.Start(session.ProcessId);
    await using PgRowReader reader = await session.ExecuteReaderAsync(sql, resultFormats: resultFormats);
    long checksum = 0;
    while (await reader.ReadAsync())
    {
        switch (format)
        {
            case "binary":
                checksum += BinaryPrimitives.ReadInt32BigEndian(reader.GetBytes(0));
                checksum += reader.GetString(1)!.Length;
                checksum += BinaryPrimitives.ReadInt64BigEndian(reader.GetBytes(2)) & 0xFF;
                break;
            case "text":
                checksum += reader.GetString(0)!.Length + reader.GetString(1)!.Length + reader.GetString(2)!.Length;
                break;
            default:
                foreach (PgSpec.Protocol.PgValue value in reader.Row.Columns)
                {
                    checksum += value.Bytes.Length;
                }

                break;
        }
    }

    measurement.Stop();
    return (reader.RowCount, checksum);
}

static async Task<(long Rows, long Checksum)> NpgsqlFetchAsync(string host, int port, string user, string database, string sql, string format, Measurement measurement)
{
    string connectionString = $"Host={host};Port={port};Username={user};Database={database};SSL Mode=Disable;Pooling=false;Command Timeout=300";
    await using var connection = new NpgsqlConnection(connectionString);
    await connection.OpenAsync();
    measurement.Start(connection.ProcessID);
    await using var command = new NpgsqlCommand(sql, connection) { AllResultTypesAreUnknown = format == "text" };
    await using NpgsqlDataReader reader = await command.ExecuteReaderAsync();
    long rows = 0;
    long checksum = 0;
    while (await reader.ReadAsync())
    {
        rows++;
        if (format == "binary")
        {
            checksum += reader.GetInt32(0);
            checksum += reader.GetString(1).Length;
            DateTime now = reader.GetFieldValue<DateTime>(2);
            checksum += ((now.Ticks - Y2000().Ticks) / 10) & 0xFF;
        }
        else
        {
            checksum += reader.GetString(0).Length + reader.GetString(1).Length + reader.GetString(2).Length;
        }
    }

    measurement.Stop();
    return (rows, checksum);
}

// PostgreSQL's epoch, for timestamps in binary format.
static DateTime Y2000() => new(2000, 1, 1, 0, 0, 0, DateTimeKind.Utc);

static long PeakResidentKilobytes()
{
    foreach (string line in File.ReadLines("/proc/self/status"))
    {
        if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
        {
            return long.Parse(line.AsSpan(6).Trim().TrimEnd("kB").Trim(), CultureInfo.InvariantCulture);
        }
    }

    return -1;
}

/// <summary>
/// What one fetch costs, from the query's sending to its last row: time, the client's CPU (all its
/// threads) and allocations, and the CPU of the PostgreSQL backend that serves it (read from /proc:
/// the server runs on this machine), which says whether the server or the client is the slower side.
/// </summary>
internal sealed class Measurement
{
    private readonly Stopwatch _clock = new();
    private int _serverPid;
    private TimeSpan _clientCpuBefore;
    private TimeSpan _serverCpuBefore;
    private long _allocatedBefore;

    public TimeSpan Elapsed => _clock.Elapsed;

    public TimeSpan ClientCpu { get; private set; }

    public TimeSpan ServerCpu { get; private set; }

    public long Allocated { get; private set; }

    public void Start(int serverPid)
    {
        _serverPid = serverPid;
        _serverCpuBefore = ProcessCpu(serverPid);
        _allocatedBefore = GC.GetTotalAllocatedBytes(precise: true);
        _clientCpuBefore = Process.GetCurrentProcess().TotalProcessorTime;
        _clock.Restart();
    }

    public void Stop()
    {
        _clock.Stop();
        ClientCpu = Process.GetCurrentProcess().TotalProcessorTime - _clientCpuBefore;
        Allocated = GC.GetTotalAllocatedBytes(precise: true) - _allocatedBefore;
        ServerCpu = ProcessCpu(_serverPid) - _serverCpuBefore;
    }

    // The first field of /proc/PID/schedstat: the time the task has run, in nanoseconds (utime and
    // stime of /proc/PID/stat count 10 ms ticks). A backend is one thread: its task is the process.
    private static TimeSpan ProcessCpu(int pid)
    {
        string comm = File.ReadAllText($"/proc/{pid}/comm").Trim();
        if (comm != "postgres")
        {
            throw new InvalidOperationException($"process {pid}, the server's backend by its BackendKeyData, is '{comm}' here, not postgres: the server must run on this machine, in its process namespace, without a pooler");
        }

        string schedstat = File.ReadAllText($"/proc/{pid}/schedstat");
        return TimeSpan.FromTicks(long.Parse(schedstat.AsSpan(0, schedstat.IndexOf(' ')), CultureInfo.InvariantCulture) / 100);
    }
}

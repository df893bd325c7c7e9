using System.Globalization;

namespace PgSpec.Cli.Replicate;

/// <summary>WAL positions, replication timestamps and sizes as <c>pgspec replicate</c> reads and writes them.</summary>
internal static class ReplicationValues
{
    /// <summary>2000-01-01 00:00 UTC, the epoch of the replication protocol's timestamps.</summary>
    private static readonly DateTime s_epoch = new(2000, 1, 1, 0, 0, 0, DateTimeKind.Utc);

    /// <summary>An LSN as PostgreSQL 18 prints it: the high 32 bits, a slash, the low 32 bits in 8 hex digits.</summary>
    public static string FormatLsn(long lsn)
    {
        ulong value = unchecked((ulong)lsn);
        return string.Create(CultureInfo.InvariantCulture, $"{value >> 32:X}/{value & 0xFFFFFFFF:X8}");
    }

    /// <summary>Parses "X/Y" (each up to 8 hex digits), as pg_lsn does.</summary>
    public static bool TryParseLsn(string? text, out long lsn)
    {
        lsn = 0;
        if (text is null)
        {
            return false;
        }

        int slash = text.IndexOf('/', StringComparison.Ordinal);
        if (slash is <= 0 or > 8 || text.Length - slash - 1 is < 1 or > 8
            || !uint.TryParse(text.AsSpan(0, slash), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out uint high)
            || !uint.TryParse(text.AsSpan(slash + 1), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out uint low))
        {
            return false;
        }

        lsn = unchecked((long)(((ulong)high << 32) | low));
        return true;
    }

    /// <summary>Microseconds since 2000-01-01 UTC (the protocol's timestamps) as ISO 8601 in UTC, to the microsecond.</summary>
    public static string FormatTime(long microseconds)
    {
        // Far outside what DateTime holds (infinity, garbage): the number itself.
        const long Limit = 8_000L * 365 * 24 * 3600 * 1_000_000;
        if (microseconds is > Limit or < -Limit)
        {
            return microseconds.ToString(CultureInfo.InvariantCulture);
        }

        return s_epoch.AddTicks(microseconds * 10).ToString("yyyy-MM-dd'T'HH:mm:ss.ffffff'Z'", CultureInfo.InvariantCulture);
    }

    /// <summary>The time now in the protocol's clock: microseconds since 2000-01-01 UTC.</summary>
    public static long Now() => (DateTime.UtcNow - s_epoch).Ticks / 10;

    /// <summary>Parses a size: bytes, or a number with kB, MB, GB (powers of 1024, as PostgreSQL's settings).</summary>
    public static bool TryParseSize(string? text, out long bytes)
    {
        bytes = 0;
        if (string.IsNullOrWhiteSpace(text))
        {
            return false;
        }

        string trimmed = text.Trim();
        int unitStart = trimmed.Length;
        while (unitStart > 0 && char.IsLetter(trimmed[unitStart - 1]))
        {
            unitStart--;
        }

        long multiplier = trimmed[unitStart..].ToUpperInvariant() switch
        {
            "" or "B" => 1,
            "KB" => 1024,
            "MB" => 1024 * 1024,
            "GB" => 1024 * 1024 * 1024,
            _ => 0,
        };
        if (multiplier == 0 || !long.TryParse(trimmed.AsSpan(0, unitStart).Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out long number) || number > long.MaxValue / multiplier)
        {
            return false;
        }

        bytes = number * multiplier;
        return true;
    }
}

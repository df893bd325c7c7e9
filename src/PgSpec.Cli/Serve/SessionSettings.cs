using System.Globalization;

namespace PgSpec.Cli.Serve;

/// <summary>A configuration parameter the engine knows: its canonical name, its default and how a new value is checked.</summary>
internal sealed record ParameterDefinition(string Name, string Default, bool Reported, bool ReadOnly, string Description, Func<string, string>? Normalize = null);

/// <summary>
/// The configuration parameters of a session (SET, SHOW, RESET, current_setting): their values,
/// their transactional changes, and which reported ones changed since they were last sent.
/// </summary>
internal sealed class SessionSettings
{
    private static readonly string[] BooleanOn = ["on", "true", "yes", "1", "t", "y"];
    private static readonly string[] BooleanOff = ["off", "false", "no", "0", "f", "n"];

    private readonly Dictionary<string, ParameterDefinition> definitions = new(StringComparer.OrdinalIgnoreCase);
    private readonly Dictionary<string, string> defaults = new(StringComparer.OrdinalIgnoreCase);
    private Dictionary<string, string> values = new(StringComparer.OrdinalIgnoreCase);
    private readonly Dictionary<string, string> lastReported = new(StringComparer.OrdinalIgnoreCase);
    private Dictionary<string, string>? transactionSnapshot;
    private Dictionary<string, string?>? localRestore;

    public SessionSettings(string serverVersion, string user)
    {
        void Add(string name, string value, bool reported, bool readOnly, string description, Func<string, string>? normalize = null)
        {
            definitions[name] = new ParameterDefinition(name, value, reported, readOnly, description, normalize);
            defaults[name] = value;
        }
        Add("application_name", "", true, false, "Sets the application name to be reported in statistics and logs.", v => v.Length > 63 ? v[..63] : v);
        Add("client_encoding", "UTF8", true, false, "Sets the client's character set encoding.", v => NormalizeEncoding("client_encoding", v));
        Add("DateStyle", "ISO, MDY", true, false, "Sets the display format for date and time values.", NormalizeDateStyle);
        Add("default_transaction_read_only", "off", true, false, "Sets the default read-only status of new transactions.", v => NormalizeBool("default_transaction_read_only", v));
        Add("in_hot_standby", "off", true, true, "Shows whether hot standby is currently active.");
        Add("integer_datetimes", "on", true, true, "Shows whether datetimes are integer based.");
        Add("IntervalStyle", "postgres", true, false, "Sets the display format for interval values.",
            v => NormalizeEnum("IntervalStyle", v, "postgres", "postgres_verbose", "sql_standard", "iso_8601"));
        Add("is_superuser", "on", true, true, "Shows whether the current user is a superuser.");
        Add("scram_iterations", "4096", true, false, "Sets the iteration count for SCRAM secret generation.", v => NormalizeInt("scram_iterations", v, 1, int.MaxValue));
        Add("server_encoding", "UTF8", true, true, "Shows the server (database) character set encoding.");
        Add("server_version", serverVersion, true, true, "Shows the server version.");
        Add("session_authorization", user, true, true, "Sets the session user name.");
        Add("standard_conforming_strings", "on", true, false, "Causes '...' strings to treat backslashes literally.", v =>
            NormalizeBool("standard_conforming_strings", v) == "on"
                ? "on"
                : throw SqlError.Error(SqlStates.FeatureNotSupported, "standard_conforming_strings = off is not supported"));
        Add("TimeZone", "UTC", true, false, "Sets the time zone for displaying and interpreting time stamps.", NormalizeTimeZone);
        Add("search_path", "\"$user\", public", false, false, "Sets the schema search order for names that are not schema-qualified.");
        Add("extra_float_digits", "1", false, false, "Sets the number of digits displayed for floating-point values.", v => NormalizeInt("extra_float_digits", v, -15, 3));
        Add("statement_timeout", "0", false, false, "Sets the maximum allowed duration of any statement.", v => NormalizeDuration("statement_timeout", v));
        Add("lock_timeout", "0", false, false, "Sets the maximum allowed duration of any wait for a lock.", v => NormalizeDuration("lock_timeout", v));
        Add("idle_in_transaction_session_timeout", "0", false, false, "Sets the maximum allowed idle time between queries, when in a transaction.", v => NormalizeDuration("idle_in_transaction_session_timeout", v));
        Add("client_min_messages", "notice", false, false, "Sets the message levels that are sent to the client.",
            v => NormalizeEnum("client_min_messages", v, "debug5", "debug4", "debug3", "debug2", "debug1", "debug", "log", "notice", "warning", "error"));
        Add("bytea_output", "hex", false, false, "Sets the output format for bytea.", v => NormalizeEnum("bytea_output", v, "hex", "escape"));
        Add("default_transaction_isolation", "read committed", false, false, "Sets the transaction isolation level of each new transaction.",
            v => NormalizeEnum("default_transaction_isolation", v, "serializable", "repeatable read", "read committed", "read uncommitted"));
        Add("transaction_isolation", "read committed", false, false, "Sets the current transaction's isolation level.",
            v => NormalizeEnum("transaction_isolation", v, "serializable", "repeatable read", "read committed", "read uncommitted"));
        Add("transaction_read_only", "off", false, false, "Sets the current transaction's read-only status.", v => NormalizeBool("transaction_read_only", v));
        Add("max_identifier_length", "63", false, true, "Shows the maximum identifier length.");
        Add("server_version_num", "160000", false, true, "Shows the server version as an integer.");
        Add("block_size", "8192", false, true, "Shows the size of a disk block.");
        Add("lc_messages", "C", false, false, "Sets the language in which messages are displayed.");
        Add("lc_monetary", "C", false, false, "Sets the locale for formatting monetary amounts.");
        Add("lc_numeric", "C", false, false, "Sets the locale for formatting numbers.");
        Add("lc_time", "C", false, false, "Sets the locale for formatting date and time values.");
        Add("timezone_abbreviations", "Default", false, false, "Selects a file of time zone abbreviations.");
        Add("synchronous_commit", "on", false, false, "Sets the current transaction's synchronization level.");
        Add("jit", "off", false, false, "Allow JIT compilation.", v => NormalizeBool("jit", v));
        Add("row_security", "on", false, false, "Enable row security.", v => NormalizeBool("row_security", v));
        Add("check_function_bodies", "on", false, false, "Check routine bodies during CREATE FUNCTION and CREATE PROCEDURE.", v => NormalizeBool("check_function_bodies", v));
        Add("xmloption", "content", false, false, "Sets whether XML data in implicit parsing and serialization operations is to be considered as documents or content fragments.");
        Add("work_mem", "4MB", false, false, "Sets the maximum memory to be used for query workspaces.");
        Add("maintenance_work_mem", "64MB", false, false, "Sets the maximum memory to be used for maintenance operations.");
        Add("max_connections", "100", false, true, "Sets the maximum number of concurrent connections.");
        Add("password_encryption", "scram-sha-256", false, false, "Chooses the algorithm for encrypting passwords.");
        Add("ssl", "off", false, true, "Enables SSL connections.");
        Add("role", "none", false, false, "Sets the current role.");
        Add("session_replication_role", "origin", false, false, "Sets the session's behavior for triggers and rewrite rules.");
        Add("plan_cache_mode", "auto", false, false, "Controls the planner's selection of custom or generic plan.");
        Add("default_with_oids", "off", false, false, "WITH OIDS is no longer supported; this can only be false.");
        Add("escape_string_warning", "on", false, false, "Warn about backslash escapes in ordinary string literals.", v => NormalizeBool("escape_string_warning", v));
        Add("enable_seqscan", "on", false, false, "Enables the planner's use of sequential-scan plans.", v => NormalizeBool("enable_seqscan", v));
        Add("geqo", "on", false, false, "Enables genetic query optimization.", v => NormalizeBool("geqo", v));
        Add("cursor_tuple_fraction", "0.1", false, false, "Sets the planner's estimate of the fraction of a cursor's rows that will be retrieved.");
        Add("tcp_keepalives_idle", "0", false, false, "Time between issuing TCP keepalives.");
        Add("tcp_keepalives_interval", "0", false, false, "Time between TCP keepalive retransmits.");
        Add("tcp_keepalives_count", "0", false, false, "Maximum number of TCP keepalive retransmits.");
        Add("default_text_search_config", "pg_catalog.simple", false, false, "Sets default text search configuration.");
        values = new Dictionary<string, string>(defaults, StringComparer.OrdinalIgnoreCase);
    }

    /// <summary>The canonical name of a parameter, or null when it is unknown (custom names with a dot are known once set).</summary>
    public string? CanonicalName(string name)
    {
        if (definitions.TryGetValue(name, out var d)) return d.Name;
        if (name.Equals("time zone", StringComparison.OrdinalIgnoreCase)) return "TimeZone";
        if (name.Equals("transaction isolation level", StringComparison.OrdinalIgnoreCase)) return "transaction_isolation";
        if (name.Equals("session authorization", StringComparison.OrdinalIgnoreCase)) return "session_authorization";
        if (values.ContainsKey(name)) return values.Keys.First(k => k.Equals(name, StringComparison.OrdinalIgnoreCase));
        return null;
    }

    public static SqlError Unrecognized(string name) =>
        SqlError.Error(SqlStates.UndefinedObject, $"unrecognized configuration parameter \"{name}\"");

    /// <summary>The value of a parameter (SHOW, current_setting); throws 42704 when unknown.</summary>
    public string Get(string name)
    {
        string canonical = CanonicalName(name) ?? throw Unrecognized(name);
        return values.TryGetValue(canonical, out var v) ? v : "";
    }

    /// <summary>The value, or null when unknown.</summary>
    public string? TryGet(string name) => CanonicalName(name) is { } c && values.TryGetValue(c, out var v) ? v : null;

    /// <summary>All parameters, sorted by name, with descriptions (SHOW ALL).</summary>
    public IEnumerable<(string Name, string Value, string Description)> All() =>
        values.OrderBy(kv => kv.Key, StringComparer.OrdinalIgnoreCase)
              .Select(kv => (kv.Key, kv.Value, definitions.TryGetValue(kv.Key, out var d) ? d.Description : ""));

    /// <summary>
    /// Checks and normalises a value for <paramref name="name"/> without setting it; throws SqlError
    /// (42704 unknown, 55P02 read-only, 22023 invalid).
    /// </summary>
    public (string Name, string Value) Check(string name, string value, bool allowReadOnly = false)
    {
        if (definitions.TryGetValue(name, out var d))
        {
            if (d.ReadOnly && !allowReadOnly) throw SqlError.Error(SqlStates.CantChangeRuntimeParam, $"parameter \"{d.Name}\" cannot be changed");
            return (d.Name, d.Normalize is null ? value : d.Normalize(value));
        }
        string? alias = CanonicalName(name);
        if (alias is not null && alias != name && definitions.ContainsKey(alias)) return Check(alias, value, allowReadOnly);
        if (name.Contains('.', StringComparison.Ordinal)) return (alias ?? name.ToLowerInvariant(), value);
        throw Unrecognized(name);
    }

    /// <summary>Sets a parameter (SET, SET LOCAL inside a transaction); <paramref name="inTransaction"/> makes the change undone by a rollback.</summary>
    public void Set(string name, string value, bool inTransaction, bool local)
    {
        var (canonical, normalized) = Check(name, value);
        Apply(canonical, normalized, inTransaction, local);
    }

    /// <summary>Sets a checked value without transaction bookkeeping (startup parameters).</summary>
    public void SetStartup(string name, string value)
    {
        var (canonical, normalized) = Check(name, value);
        values[canonical] = normalized;
        defaults[canonical] = normalized;
    }

    private void Apply(string canonical, string value, bool inTransaction, bool local)
    {
        if (inTransaction)
        {
            transactionSnapshot ??= new Dictionary<string, string>(values, StringComparer.OrdinalIgnoreCase);
            if (local)
            {
                localRestore ??= new Dictionary<string, string?>(StringComparer.OrdinalIgnoreCase);
                if (!localRestore.ContainsKey(canonical)) localRestore[canonical] = values.TryGetValue(canonical, out var old) ? old : null;
            }
            else
            {
                localRestore?.Remove(canonical);
            }
        }
        values[canonical] = value;
    }

    /// <summary>RESET name: back to the session's default.</summary>
    public void Reset(string name, bool inTransaction)
    {
        string canonical = CanonicalName(name) ?? (name.Contains('.', StringComparison.Ordinal) ? name : throw Unrecognized(name));
        if (definitions.TryGetValue(canonical, out var d) && d.ReadOnly) throw SqlError.Error(SqlStates.CantChangeRuntimeParam, $"parameter \"{d.Name}\" cannot be changed");
        if (defaults.TryGetValue(canonical, out var def)) Apply(canonical, def, inTransaction, false);
        else Apply(canonical, "", inTransaction, false);
    }

    /// <summary>RESET ALL.</summary>
    public void ResetAll(bool inTransaction)
    {
        foreach (var (name, d) in definitions)
            if (!d.ReadOnly && values.TryGetValue(name, out var v) && v != defaults[name]) Apply(name, defaults[name], inTransaction, false);
    }

    /// <summary>The end of a transaction: a commit keeps SET's values and undoes SET LOCAL's, a rollback undoes both.</summary>
    public void EndTransaction(bool committed)
    {
        if (!committed && transactionSnapshot is not null)
        {
            values = transactionSnapshot;
        }
        else if (localRestore is not null)
        {
            foreach (var (name, old) in localRestore)
            {
                if (old is null) values.Remove(name);
                else values[name] = old;
            }
        }
        transactionSnapshot = null;
        localRestore = null;
    }

    /// <summary>The reported parameters with their current values (the ParameterStatus messages after authentication); marks them reported.</summary>
    public List<KeyValuePair<string, string>> InitialReport()
    {
        var list = new List<KeyValuePair<string, string>>();
        foreach (var d in definitions.Values.Where(d => d.Reported))
        {
            list.Add(new(d.Name, values[d.Name]));
            lastReported[d.Name] = values[d.Name];
        }
        return list;
    }

    /// <summary>The reported parameters whose value differs from the one last sent; marks them reported.</summary>
    public List<KeyValuePair<string, string>> TakeChanges()
    {
        var list = new List<KeyValuePair<string, string>>();
        foreach (var d in definitions.Values.Where(d => d.Reported))
        {
            string now = values[d.Name];
            if (!lastReported.TryGetValue(d.Name, out var sent) || sent != now)
            {
                list.Add(new(d.Name, now));
                lastReported[d.Name] = now;
            }
        }
        return list;
    }

    /// <summary>extra_float_digits as a number.</summary>
    public int ExtraFloatDigits => int.TryParse(values["extra_float_digits"], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out int v) ? v : 1;

    public bool ByteaEscape => values["bytea_output"] == "escape";

    /// <summary>statement_timeout in milliseconds (0 = none).</summary>
    public long StatementTimeoutMs => DurationMs(values["statement_timeout"]) ?? 0;

    // ---------------------------------------------------------------- normalisers

    private static SqlError Invalid(string name, string value) =>
        SqlError.Error(SqlStates.InvalidParameterValue, $"invalid value for parameter \"{name}\": \"{value}\"");

    public static string NormalizeEncoding(string name, string value)
    {
        string v = value.Trim().ToUpperInvariant().Replace("-", "", StringComparison.Ordinal).Replace("_", "", StringComparison.Ordinal);
        return v switch
        {
            "UTF8" or "UNICODE" => "UTF8",
            "SQLASCII" => "SQL_ASCII",
            _ => throw Invalid(name, value),
        };
    }

    private static string NormalizeBool(string name, string value)
    {
        string v = value.Trim().ToLowerInvariant();
        if (BooleanOn.Contains(v)) return "on";
        if (BooleanOff.Contains(v)) return "off";
        throw SqlError.Error(SqlStates.InvalidParameterValue, $"parameter \"{name}\" requires a Boolean value");
    }

    private static string NormalizeEnum(string name, string value, params string[] allowed)
    {
        string v = value.Trim().ToLowerInvariant();
        return allowed.Contains(v) ? v : throw Invalid(name, value);
    }

    private static string NormalizeInt(string name, string value, int min, int max)
    {
        if (!int.TryParse(value.Trim(), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out int v))
            throw SqlError.Error(SqlStates.InvalidParameterValue, $"invalid value for parameter \"{name}\": \"{value}\"");
        if (v < min || v > max)
            throw SqlError.Error(SqlStates.InvalidParameterValue, $"{v} is outside the valid range for parameter \"{name}\" ({min} .. {max})");
        return v.ToString(CultureInfo.InvariantCulture);
    }

    private static string NormalizeDuration(string name, string value)
    {
        long ms = DurationMs(value) ?? throw Invalid(name, value);
        if (ms < 0 || ms > int.MaxValue) throw SqlError.Error(SqlStates.InvalidParameterValue, $"{ms} ms is outside the valid range for parameter \"{name}\" (0 .. {int.MaxValue})");
        if (ms == 0) return "0";
        foreach (var (unit, size) in new[] { ("d", 86_400_000L), ("h", 3_600_000L), ("min", 60_000L), ("s", 1000L) })
            if (ms % size == 0) return (ms / size).ToString(CultureInfo.InvariantCulture) + unit;
        return ms.ToString(CultureInfo.InvariantCulture) + "ms";
    }

    private static long? DurationMs(string value)
    {
        string v = value.Trim().ToLowerInvariant();
        int i = 0;
        while (i < v.Length && (char.IsAsciiDigit(v[i]) || v[i] is '.' or '-')) i++;
        if (!double.TryParse(v.AsSpan(0, i), NumberStyles.Float, CultureInfo.InvariantCulture, out double n)) return null;
        double factor = v[i..].Trim() switch
        {
            "" or "ms" => 1,
            "us" => 0.001,
            "s" => 1000,
            "min" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => double.NaN,
        };
        return double.IsNaN(factor) ? null : (long)Math.Round(n * factor);
    }

    private static string NormalizeDateStyle(string value)
    {
        string? style = null, order = null;
        foreach (string part in value.Split([',', ' '], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            switch (part.ToUpperInvariant())
            {
                case "ISO": style = "ISO"; break;
                case "SQL": style = "SQL"; break;
                case "POSTGRES": style = "Postgres"; break;
                case "GERMAN": style = "German"; order ??= "DMY"; break;
                case "DMY" or "EURO" or "EUROPEAN": order = "DMY"; break;
                case "MDY" or "US" or "NONEURO" or "NONEUROPEAN": order = "MDY"; break;
                case "YMD": order = "YMD"; break;
                case "DEFAULT": style = "ISO"; order = "MDY"; break;
                default: throw Invalid("DateStyle", value);
            }
        }
        return $"{style ?? "ISO"}, {order ?? "MDY"}";
    }

    private static string NormalizeTimeZone(string value)
    {
        string v = value.Trim();
        if (v.Length == 0) throw Invalid("TimeZone", value);
        if (v.Equals("utc", StringComparison.OrdinalIgnoreCase) || v.Equals("z", StringComparison.OrdinalIgnoreCase) || v.Equals("zulu", StringComparison.OrdinalIgnoreCase)) return "UTC";
        if (v.Equals("gmt", StringComparison.OrdinalIgnoreCase)) return "GMT";
        if (double.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out double hours) && Math.Abs(hours) <= 24)
        {
            // SET TIME ZONE -5 is a POSIX zone <-05>+05, as PostgreSQL shows it.
            int h = (int)hours;
            string name = (h <= 0 ? "-" : "+") + Math.Abs(h).ToString("D2", CultureInfo.InvariantCulture);
            string posix = (h <= 0 ? "+" : "-") + Math.Abs(h).ToString(CultureInfo.InvariantCulture);
            return h == 0 ? "<+00>+00" : $"<{name}>{posix}";
        }
        if (TimeZoneInfo.TryFindSystemTimeZoneById(v, out var zone)) return zone.Id;
        throw Invalid("TimeZone", value);
    }
}

using System.Buffers.Binary;
using System.Globalization;
using System.Text;

namespace PgSpec.Cli.Serve;

/// <summary>The families of types the engine converts values for.</summary>
internal enum PgTypeKind
{
    Bool,
    Bytea,
    Integer,
    Float,
    Numeric,
    Text,
    Json,
    Jsonb,
    Uuid,
    Date,
    Time,
    Timestamp,
    TimestampTz,
    Void,
}

/// <summary>A PostgreSQL type the engine announces or accepts: its OID, names and how SQLite stores it.</summary>
/// <param name="Oid">The type's OID.</param>
/// <param name="Name">The internal name (int8), which PostgreSQL also gives a column that is only a cast.</param>
/// <param name="SqlName">The name in messages (bigint, double precision, ...).</param>
/// <param name="Size">pg_type.typlen: the size of a fixed-size value, or -1.</param>
/// <param name="SqliteType">The type name of the CAST that stands for a PostgreSQL cast to this type.</param>
/// <param name="Kind">The family, which decides the conversions.</param>
internal sealed record PgType(uint Oid, string Name, string SqlName, short Size, string SqliteType, PgTypeKind Kind)
{
    public const uint BoolOid = 16, ByteaOid = 17, NameOid = 19, Int8Oid = 20, Int2Oid = 21, Int4Oid = 23, TextOid = 25, OidOid = 26,
        JsonOid = 114, Float4Oid = 700, Float8Oid = 701, UnknownOid = 705, BpcharOid = 1042, VarcharOid = 1043, DateOid = 1082,
        TimeOid = 1083, TimestampOid = 1114, TimestampTzOid = 1184, NumericOid = 1700, VoidOid = 2278, UuidOid = 2950, JsonbOid = 3802;

    public static readonly PgType Bool = new(BoolOid, "bool", "boolean", 1, "BOOLEAN", PgTypeKind.Bool);
    public static readonly PgType Bytea = new(ByteaOid, "bytea", "bytea", -1, "BLOB", PgTypeKind.Bytea);
    public static readonly PgType NameType = new(NameOid, "name", "name", 64, "TEXT", PgTypeKind.Text);
    public static readonly PgType Int8 = new(Int8Oid, "int8", "bigint", 8, "INTEGER", PgTypeKind.Integer);
    public static readonly PgType Int2 = new(Int2Oid, "int2", "smallint", 2, "INTEGER", PgTypeKind.Integer);
    public static readonly PgType Int4 = new(Int4Oid, "int4", "integer", 4, "INTEGER", PgTypeKind.Integer);
    public static readonly PgType Text = new(TextOid, "text", "text", -1, "TEXT", PgTypeKind.Text);
    public static readonly PgType Oid_ = new(OidOid, "oid", "oid", 4, "INTEGER", PgTypeKind.Integer);
    public static readonly PgType Json = new(JsonOid, "json", "json", -1, "TEXT", PgTypeKind.Json);
    public static readonly PgType Float4 = new(Float4Oid, "float4", "real", 4, "REAL", PgTypeKind.Float);
    public static readonly PgType Float8 = new(Float8Oid, "float8", "double precision", 8, "REAL", PgTypeKind.Float);
    public static readonly PgType Unknown = new(UnknownOid, "unknown", "unknown", -2, "TEXT", PgTypeKind.Text);
    public static readonly PgType Bpchar = new(BpcharOid, "bpchar", "character", -1, "TEXT", PgTypeKind.Text);
    public static readonly PgType Varchar = new(VarcharOid, "varchar", "character varying", -1, "TEXT", PgTypeKind.Text);
    public static readonly PgType Date = new(DateOid, "date", "date", 4, "TEXT", PgTypeKind.Date);
    public static readonly PgType Time = new(TimeOid, "time", "time without time zone", 8, "TEXT", PgTypeKind.Time);
    public static readonly PgType Timestamp = new(TimestampOid, "timestamp", "timestamp without time zone", 8, "TEXT", PgTypeKind.Timestamp);
    public static readonly PgType TimestampTz = new(TimestampTzOid, "timestamptz", "timestamp with time zone", 8, "TEXT", PgTypeKind.TimestampTz);
    public static readonly PgType Numeric = new(NumericOid, "numeric", "numeric", -1, "NUMERIC", PgTypeKind.Numeric);
    public static readonly PgType Void = new(VoidOid, "void", "void", 4, "", PgTypeKind.Void);
    public static readonly PgType Uuid = new(UuidOid, "uuid", "uuid", 16, "TEXT", PgTypeKind.Uuid);
    public static readonly PgType Jsonb = new(JsonbOid, "jsonb", "jsonb", -1, "TEXT", PgTypeKind.Jsonb);

    private static readonly Dictionary<uint, PgType> ByOid = new[]
    {
        Bool, Bytea, NameType, Int8, Int2, Int4, Text, Oid_, Json, Float4, Float8, Unknown, Bpchar, Varchar, Date, Time, Timestamp,
        TimestampTz, Numeric, Void, Uuid, Jsonb,
    }.ToDictionary(t => t.Oid);

    private static readonly Dictionary<string, PgType> ByName = new(StringComparer.OrdinalIgnoreCase)
    {
        ["bool"] = Bool, ["boolean"] = Bool,
        ["bytea"] = Bytea,
        ["name"] = NameType,
        ["int8"] = Int8, ["bigint"] = Int8,
        ["int2"] = Int2, ["smallint"] = Int2,
        ["int4"] = Int4, ["int"] = Int4, ["integer"] = Int4,
        ["text"] = Text,
        ["oid"] = Oid_,
        ["json"] = Json,
        ["jsonb"] = Jsonb,
        ["float4"] = Float4, ["real"] = Float4,
        ["float8"] = Float8, ["double precision"] = Float8, ["float"] = Float8,
        ["bpchar"] = Bpchar, ["char"] = Bpchar, ["character"] = Bpchar,
        ["varchar"] = Varchar, ["character varying"] = Varchar,
        ["date"] = Date,
        ["time"] = Time, ["time without time zone"] = Time,
        ["timestamp"] = Timestamp, ["timestamp without time zone"] = Timestamp,
        ["timestamptz"] = TimestampTz, ["timestamp with time zone"] = TimestampTz,
        ["numeric"] = Numeric, ["decimal"] = Numeric,
        ["uuid"] = Uuid,
        ["void"] = Void,
        ["unknown"] = Unknown,
    };

    /// <summary>The type of an OID, or null for one the engine does not know.</summary>
    public static PgType? FromOid(uint oid) => ByOid.GetValueOrDefault(oid);

    /// <summary>The type of a name as written in a cast (case-insensitive, words separated by one space), or null.</summary>
    public static PgType? FromName(string name)
    {
        string n = name.StartsWith("pg_catalog.", StringComparison.OrdinalIgnoreCase) ? name["pg_catalog.".Length..] : name;
        return ByName.GetValueOrDefault(n);
    }

    /// <summary>
    /// The type PostgreSQL clients see for a column SQLite declares with <paramref name="declared"/>, or null
    /// when the declaration says nothing the engine maps (the values then decide).
    /// </summary>
    public static PgType? FromDeclaredType(string? declared)
    {
        if (string.IsNullOrWhiteSpace(declared)) return null;
        string d = declared.Trim().ToUpperInvariant();
        int paren = d.IndexOf('(');
        string bare = (paren >= 0 ? d[..paren] : d).Trim();
        switch (bare)
        {
            case "BOOL" or "BOOLEAN": return Bool;
            case "TIMESTAMPTZ" or "TIMESTAMP WITH TIME ZONE": return TimestampTz;
            case "TIMESTAMP" or "TIMESTAMP WITHOUT TIME ZONE" or "DATETIME": return Timestamp;
            case "DATE": return Date;
            case "TIME" or "TIME WITHOUT TIME ZONE": return Time;
            case "UUID": return Uuid;
            case "JSON": return Json;
            case "JSONB": return Jsonb;
            case "NUMERIC" or "DECIMAL": return Numeric;
        }
        // SQLite's affinity rules, in SQLite's order.
        if (d.Contains("INT", StringComparison.Ordinal)) return Int8;
        if (d.Contains("CHAR", StringComparison.Ordinal) || d.Contains("CLOB", StringComparison.Ordinal) || d.Contains("TEXT", StringComparison.Ordinal)) return Text;
        if (d.Contains("BLOB", StringComparison.Ordinal) || d == "BYTEA") return Bytea;
        if (d.Contains("REAL", StringComparison.Ordinal) || d.Contains("FLOA", StringComparison.Ordinal) || d.Contains("DOUB", StringComparison.Ordinal)) return Float8;
        return null;
    }

    /// <summary>The type a value of SQLite's storage class is announced as when nothing else tells.</summary>
    public static PgType FromStorageClass(object? value) => value switch
    {
        long => Int8,
        double => Float8,
        byte[] => Bytea,
        _ => Text,
    };
}

/// <summary>Conversions between wire values (text and binary formats) and SQLite values (long, double, string, byte[], null).</summary>
internal static class PgValues
{
    private static readonly UTF8Encoding StrictUtf8 = new(false, true);
    private static readonly DateTime PgEpoch = new(2000, 1, 1, 0, 0, 0, DateTimeKind.Utc);

    // ---------------------------------------------------------------- input: wire → SQLite

    /// <summary>Decodes a parameter or a COPY field given in text format, as PostgreSQL's input function of <paramref name="type"/> would read it.</summary>
    public static object ParseText(PgType? type, string s)
    {
        switch (type?.Kind)
        {
            case PgTypeKind.Integer: return ParseInteger(type, s);
            case PgTypeKind.Float: return ParseFloat(type, s) is var d && double.IsNaN(d) ? "NaN" : d;
            case PgTypeKind.Bool: return ParseBool(s) ? 1L : 0L;
            case PgTypeKind.Bytea: return ParseByteaText(s);
            case PgTypeKind.Numeric: return NumericToSqlite(ParseNumeric(s));
            case PgTypeKind.Uuid: return FormatUuid(ParseUuid(s));
            case PgTypeKind.Date: return FormatDate(ParseDate(s));
            case PgTypeKind.Timestamp: return FormatTimestamp(ParseTimestamp(s, type), withZone: false, sqliteStyle: true);
            case PgTypeKind.TimestampTz: return FormatTimestamp(ParseTimestamp(s, type), withZone: true, sqliteStyle: true);
            case PgTypeKind.Time: return FormatTime(ParseTime(s));
            default: return s;
        }
    }

    /// <summary>Decodes a text-format wire value: UTF-8, no NUL byte.</summary>
    public static string DecodeUtf8(ReadOnlySpan<byte> bytes)
    {
        int nul = bytes.IndexOf((byte)0);
        if (nul >= 0) throw InvalidByteSequence(bytes[nul..]);
        try
        {
            return StrictUtf8.GetString(bytes);
        }
        catch (DecoderFallbackException e)
        {
            int at = Math.Max(0, e.Index);
            return at < bytes.Length ? throw InvalidByteSequence(bytes[at..]) : throw InvalidByteSequence(bytes);
        }
    }

    private static SqlError InvalidByteSequence(ReadOnlySpan<byte> from)
    {
        var shown = new StringBuilder();
        int n = from.Length == 0 ? 0 : from[0] == 0 ? 1 : from[0] >= 0xF0 ? 4 : from[0] >= 0xE0 ? 3 : from[0] >= 0xC0 ? 2 : 1;
        for (int i = 0; i < Math.Min(n, from.Length); i++) shown.Append(i == 0 ? "" : " ").Append("0x").Append(from[i].ToString("x2", CultureInfo.InvariantCulture));
        return SqlError.Error(SqlStates.CharacterNotInRepertoire, $"invalid byte sequence for encoding \"UTF8\": {shown}");
    }

    /// <summary>Decodes a parameter given in binary format (<paramref name="index"/> is 1-based, for the message).</summary>
    public static object ParseBinary(PgType? type, uint oid, ReadOnlySpan<byte> b, int index)
    {
        SqlError Bad() => SqlError.Error(SqlStates.InvalidBinaryRepresentation, $"incorrect binary data format in bind parameter {index}");
        switch (type?.Kind)
        {
            case null or PgTypeKind.Text or PgTypeKind.Json:
                return DecodeUtf8(b);
            case PgTypeKind.Jsonb:
                if (b.Length < 1 || b[0] != 1) throw Bad();
                return DecodeUtf8(b[1..]);
            case PgTypeKind.Bytea:
                return b.ToArray();
            case PgTypeKind.Bool:
                if (b.Length != 1) throw Bad();
                return b[0] != 0 ? 1L : 0L;
            case PgTypeKind.Integer:
                return (type.Oid, b.Length) switch
                {
                    (PgType.Int2Oid, 2) => (long)BinaryPrimitives.ReadInt16BigEndian(b),
                    (PgType.Int4Oid, 4) => (long)BinaryPrimitives.ReadInt32BigEndian(b),
                    (PgType.OidOid, 4) => (long)BinaryPrimitives.ReadUInt32BigEndian(b),
                    (PgType.Int8Oid, 8) => BinaryPrimitives.ReadInt64BigEndian(b),
                    _ => throw Bad(),
                };
            case PgTypeKind.Float:
                double d = (type.Oid, b.Length) switch
                {
                    (PgType.Float4Oid, 4) => BinaryPrimitives.ReadSingleBigEndian(b),
                    (PgType.Float8Oid, 8) => BinaryPrimitives.ReadDoubleBigEndian(b),
                    _ => throw Bad(),
                };
                return double.IsNaN(d) ? "NaN" : d;
            case PgTypeKind.Numeric:
                return NumericToSqlite(DecodeNumericBinary(b) ?? throw Bad());
            case PgTypeKind.Uuid:
                if (b.Length != 16) throw Bad();
                return FormatUuid(b);
            case PgTypeKind.Date:
                if (b.Length != 4) throw Bad();
                int days = BinaryPrimitives.ReadInt32BigEndian(b);
                return days == int.MaxValue ? "infinity" : days == int.MinValue ? "-infinity" : FormatDate(DateFromDays(days) ?? throw Bad());
            case PgTypeKind.Timestamp or PgTypeKind.TimestampTz:
                if (b.Length != 8) throw Bad();
                long us = BinaryPrimitives.ReadInt64BigEndian(b);
                if (us == long.MaxValue) return "infinity";
                if (us == long.MinValue) return "-infinity";
                return FormatTimestamp(TimestampFromMicros(us) ?? throw Bad(), type.Kind == PgTypeKind.TimestampTz, sqliteStyle: true);
            case PgTypeKind.Time:
                if (b.Length != 8) throw Bad();
                long t = BinaryPrimitives.ReadInt64BigEndian(b);
                if (t < 0 || t > 86_400_000_000L) throw Bad();
                return FormatTime(t);
            default:
                throw SqlError.Error(SqlStates.FeatureNotSupported, $"binary format for parameters of type {type.SqlName} is not supported");
        }
    }

    public static long ParseInteger(PgType type, string s)
    {
        string t = s.Trim();
        bool ok = long.TryParse(t, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long v);
        if (!ok)
        {
            bool digits = t.Length > 0 && t.TrimStart('+', '-').Length == t.Length - (t[0] is '+' or '-' ? 1 : 0) && t.TrimStart('+', '-').All(char.IsAsciiDigit) && t.TrimStart('+', '-').Length > 0;
            if (digits) throw OutOfRange(type, s);
            throw SqlError.Error(SqlStates.InvalidTextRepresentation, $"invalid input syntax for type {type.SqlName}: \"{s}\"");
        }
        if (!FitsInteger(type, v)) throw OutOfRange(type, s);
        return v;
    }

    private static SqlError OutOfRange(PgType type, string s) =>
        SqlError.Error(SqlStates.NumericValueOutOfRange, $"value \"{s}\" is out of range for type {type.SqlName}");

    private static bool FitsInteger(PgType type, long v) => type.Oid switch
    {
        PgType.Int2Oid => v is >= short.MinValue and <= short.MaxValue,
        PgType.Int4Oid => v is >= int.MinValue and <= int.MaxValue,
        PgType.OidOid => v is >= 0 and <= uint.MaxValue,
        _ => true,
    };

    public static double ParseFloat(PgType type, string s)
    {
        string t = s.Trim();
        switch (t.ToLowerInvariant())
        {
            case "nan": return double.NaN;
            case "infinity" or "+infinity" or "inf" or "+inf": return double.PositiveInfinity;
            case "-infinity" or "-inf": return double.NegativeInfinity;
        }
        if (t.Length == 0 || !double.TryParse(t, NumberStyles.Float, CultureInfo.InvariantCulture, out double d) || t.Contains("∞", StringComparison.Ordinal))
            throw SqlError.Error(SqlStates.InvalidTextRepresentation, $"invalid input syntax for type {type.SqlName}: \"{s}\"");
        if (double.IsInfinity(d) || (type.Oid == PgType.Float4Oid && float.IsInfinity((float)d)))
            throw SqlError.Error(SqlStates.NumericValueOutOfRange, $"\"{s}\" is out of range for type {type.SqlName}");
        return type.Oid == PgType.Float4Oid ? (float)d : d;
    }

    public static bool ParseBool(string s)
    {
        string t = s.Trim().ToLowerInvariant();
        if (t.Length > 0)
        {
            if ("true".StartsWith(t, StringComparison.Ordinal) || "yes".StartsWith(t, StringComparison.Ordinal) || t is "on" or "1") return true;
            if ("false".StartsWith(t, StringComparison.Ordinal) || "no".StartsWith(t, StringComparison.Ordinal) || t is "off" or "of" or "0") return false;
        }
        throw SqlError.Error(SqlStates.InvalidTextRepresentation, $"invalid input syntax for type boolean: \"{s}\"");
    }

    public static byte[] ParseByteaText(string s)
    {
        if (s.StartsWith("\\x", StringComparison.Ordinal))
        {
            var result = new List<byte>(s.Length / 2);
            int i = 2;
            while (i < s.Length)
            {
                char c = s[i];
                if (c is ' ' or '\t' or '\n' or '\r') { i++; continue; }
                int hi = HexValue(c);
                if (hi < 0) throw SqlError.Error(SqlStates.InvalidParameterValue, $"invalid hexadecimal digit: \"{c}\"");
                if (i + 1 >= s.Length) throw SqlError.Error(SqlStates.InvalidParameterValue, "invalid hexadecimal data: odd number of digits");
                int lo = HexValue(s[i + 1]);
                if (lo < 0) throw SqlError.Error(SqlStates.InvalidParameterValue, $"invalid hexadecimal digit: \"{s[i + 1]}\"");
                result.Add((byte)(hi * 16 + lo));
                i += 2;
            }
            return [.. result];
        }
        var bytes = new List<byte>(s.Length);
        byte[] utf8 = Encoding.UTF8.GetBytes(s);
        for (int i = 0; i < utf8.Length; i++)
        {
            if (utf8[i] != (byte)'\\') { bytes.Add(utf8[i]); continue; }
            if (i + 1 < utf8.Length && utf8[i + 1] == (byte)'\\') { bytes.Add((byte)'\\'); i++; continue; }
            if (i + 3 < utf8.Length + 0 && IsOctal(utf8[i + 1]) && IsOctal(utf8[i + 2]) && IsOctal(utf8[i + 3]) && utf8[i + 1] <= (byte)'3')
            {
                bytes.Add((byte)((utf8[i + 1] - '0') * 64 + (utf8[i + 2] - '0') * 8 + (utf8[i + 3] - '0')));
                i += 3;
                continue;
            }
            throw SqlError.Error(SqlStates.InvalidTextRepresentation, "invalid input syntax for type bytea");
        }
        return [.. bytes];
    }

    private static bool IsOctal(byte b) => b is >= (byte)'0' and <= (byte)'7';

    public static int HexValue(char c) => c switch
    {
        >= '0' and <= '9' => c - '0',
        >= 'a' and <= 'f' => c - 'a' + 10,
        >= 'A' and <= 'F' => c - 'A' + 10,
        _ => -1,
    };

    /// <summary>Reads PostgreSQL numeric input into a canonical decimal string (no exponent), "NaN", "Infinity" or "-Infinity".</summary>
    public static string ParseNumeric(string s)
    {
        string t = s.Trim();
        switch (t.ToLowerInvariant())
        {
            case "nan": return "NaN";
            case "infinity" or "+infinity" or "inf" or "+inf": return "Infinity";
            case "-infinity" or "-inf": return "-Infinity";
        }
        return CanonicalDecimal(t) ?? throw SqlError.Error(SqlStates.InvalidTextRepresentation, $"invalid input syntax for type numeric: \"{s}\"");
    }

    /// <summary>[+-]digits[.digits][e[+-]digits] → plain decimal string, or null when malformed.</summary>
    private static string? CanonicalDecimal(string t)
    {
        int i = 0;
        bool negative = false;
        if (i < t.Length && t[i] is '+' or '-') negative = t[i++] == '-';
        var intDigits = new StringBuilder();
        var fracDigits = new StringBuilder();
        while (i < t.Length && char.IsAsciiDigit(t[i])) intDigits.Append(t[i++]);
        if (i < t.Length && t[i] == '.')
        {
            i++;
            while (i < t.Length && char.IsAsciiDigit(t[i])) fracDigits.Append(t[i++]);
        }
        if (intDigits.Length == 0 && fracDigits.Length == 0) return null;
        int exponent = 0;
        if (i < t.Length && t[i] is 'e' or 'E')
        {
            i++;
            int start = i;
            if (i < t.Length && t[i] is '+' or '-') i++;
            if (i == t.Length || !char.IsAsciiDigit(t[i])) return null;
            while (i < t.Length && char.IsAsciiDigit(t[i])) i++;
            if (!int.TryParse(t.AsSpan(start, i - start), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out exponent) || Math.Abs(exponent) > 1000) return null;
        }
        if (i != t.Length) return null;
        string digits = intDigits.ToString() + fracDigits;
        int point = intDigits.Length + exponent;
        int scale = Math.Max(0, fracDigits.Length - exponent);
        return FormatFixed(negative, digits, point, scale);
    }

    /// <summary>Digits with the decimal point after <paramref name="point"/> of them, printed with <paramref name="scale"/> fractional digits.</summary>
    private static string FormatFixed(bool negative, string digits, int point, int scale)
    {
        var sb = new StringBuilder();
        string intPart = point <= 0 ? "" : point >= digits.Length ? digits + new string('0', point - digits.Length) : digits[..point];
        intPart = intPart.TrimStart('0');
        if (intPart.Length == 0) intPart = "0";
        string frac = point >= digits.Length ? "" : point < 0 ? new string('0', -point) + digits : digits[point..];
        if (frac.Length < scale) frac += new string('0', scale - frac.Length);
        else if (frac.Length > scale) frac = frac[..scale];
        bool zero = intPart == "0" && frac.All(c => c == '0');
        if (negative && !zero) sb.Append('-');
        sb.Append(intPart);
        if (scale > 0) sb.Append('.').Append(frac);
        return sb.ToString();
    }

    /// <summary>The SQLite value of a canonical numeric: an integer when it is one and fits, else a double (or the text of NaN and infinities).</summary>
    private static object NumericToSqlite(string canonical)
    {
        if (canonical is "NaN" or "Infinity" or "-Infinity") return canonical == "NaN" ? "NaN" : canonical == "Infinity" ? double.PositiveInfinity : double.NegativeInfinity;
        string t = canonical;
        int dot = t.IndexOf('.');
        if (dot >= 0 && t.AsSpan(dot + 1).TrimEnd('0').Length == 0) t = t[..dot];
        if (!t.Contains('.') && long.TryParse(t, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long l)) return l;
        return double.Parse(canonical, NumberStyles.Float, CultureInfo.InvariantCulture);
    }

    public static byte[] ParseUuid(string s)
    {
        string t = s.Trim();
        if (t.StartsWith('{') && t.EndsWith('}')) t = t[1..^1];
        string hex = t.Replace("-", "", StringComparison.Ordinal);
        if (hex.Length != 32 || !hex.All(char.IsAsciiHexDigit))
            throw SqlError.Error(SqlStates.InvalidTextRepresentation, $"invalid input syntax for type uuid: \"{s}\"");
        return Convert.FromHexString(hex);
    }

    public static string FormatUuid(ReadOnlySpan<byte> b)
    {
        string h = Convert.ToHexStringLower(b);
        return $"{h[..8]}-{h[8..12]}-{h[12..16]}-{h[16..20]}-{h[20..]}";
    }

    // ---------------------------------------------------------------- date and time

    private static SqlError BadDateTime(PgType type, string s) =>
        SqlError.Error("22007", $"invalid input syntax for type {type.SqlName}: \"{s}\"");

    /// <summary>A date, or DateTime.MaxValue / MinValue for infinity / -infinity.</summary>
    public static DateTime ParseDate(string s)
    {
        string t = s.Trim();
        if (t.Equals("infinity", StringComparison.OrdinalIgnoreCase)) return DateTime.MaxValue;
        if (t.Equals("-infinity", StringComparison.OrdinalIgnoreCase)) return DateTime.MinValue;
        if (t.Length >= 10 && DateTime.TryParseExact(t[..10], "yyyy-MM-dd", CultureInfo.InvariantCulture, DateTimeStyles.None, out DateTime d)
            && (t.Length == 10 || t[10] is ' ' or 'T'))
            return d;
        throw BadDateTime(PgType.Date, s);
    }

    /// <summary>A timestamp (UTC when a zone was given and converted), or DateTime.MaxValue / MinValue for infinity / -infinity.</summary>
    public static DateTime ParseTimestamp(string s, PgType type)
    {
        string t = s.Trim();
        if (t.Equals("infinity", StringComparison.OrdinalIgnoreCase)) return DateTime.MaxValue;
        if (t.Equals("-infinity", StringComparison.OrdinalIgnoreCase)) return DateTime.MinValue;
        if (t.Length < 10 || !DateTime.TryParseExact(t[..10], "yyyy-MM-dd", CultureInfo.InvariantCulture, DateTimeStyles.None, out DateTime date))
            throw BadDateTime(type, s);
        string rest = t[10..].TrimStart(' ', 'T');
        long micros = 0;
        TimeSpan? offset = null;
        if (rest.Length > 0)
        {
            int zoneAt = rest.IndexOfAny(['+', '-', 'Z', 'z', ' ']);
            string time = zoneAt >= 0 ? rest[..zoneAt] : rest;
            string zone = zoneAt >= 0 ? rest[zoneAt..].Trim() : "";
            micros = time.Length == 0 ? 0 : ParseTimeOfDay(time) ?? throw BadDateTime(type, s);
            if (zone.Length > 0) offset = ParseZone(zone) ?? throw BadDateTime(type, s);
        }
        DateTime value = DateTime.SpecifyKind(date.AddTicks(micros * 10), DateTimeKind.Unspecified);
        if (offset is { } o) value -= o;
        return value;
    }

    private static TimeSpan? ParseZone(string zone)
    {
        if (zone is "Z" or "z" || zone.Equals("UTC", StringComparison.OrdinalIgnoreCase) || zone.Equals("GMT", StringComparison.OrdinalIgnoreCase)) return TimeSpan.Zero;
        if (zone.Length < 2 || zone[0] is not ('+' or '-')) return null;
        int sign = zone[0] == '-' ? -1 : 1;
        string z = zone[1..].Replace(":", "", StringComparison.Ordinal);
        if (!z.All(char.IsAsciiDigit) || z.Length is not (1 or 2 or 4 or 6)) return null;
        int h = int.Parse(z.Length <= 2 ? z : z[..2], CultureInfo.InvariantCulture);
        int m = z.Length >= 4 ? int.Parse(z[2..4], CultureInfo.InvariantCulture) : 0;
        int sec = z.Length == 6 ? int.Parse(z[4..6], CultureInfo.InvariantCulture) : 0;
        return sign * new TimeSpan(h, m, sec);
    }

    /// <summary>HH:MM[:SS[.ffffff]] → microseconds since midnight, or null.</summary>
    private static long? ParseTimeOfDay(string time)
    {
        string[] parts = time.Split(':');
        if (parts.Length is < 2 or > 3) return null;
        if (!int.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out int h) || h > 24) return null;
        if (!int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out int m) || m > 59) return null;
        long micros = 0;
        if (parts.Length == 3)
        {
            string sec = parts[2];
            int dot = sec.IndexOf('.');
            string whole = dot >= 0 ? sec[..dot] : sec;
            if (!int.TryParse(whole, NumberStyles.None, CultureInfo.InvariantCulture, out int s) || s > 60) return null;
            micros = s * 1_000_000L;
            if (dot >= 0)
            {
                string frac = sec[(dot + 1)..];
                if (frac.Length == 0 || !frac.All(char.IsAsciiDigit)) return null;
                string six = frac.Length >= 6 ? frac[..6] : frac.PadRight(6, '0');
                micros += long.Parse(six, CultureInfo.InvariantCulture);
                if (frac.Length > 6 && frac[6] >= '5') micros++;
            }
        }
        long total = (h * 3600L + m * 60L) * 1_000_000L + micros;
        return total > 86_400_000_000L ? null : total;
    }

    public static long ParseTime(string s) => ParseTimeOfDay(s.Trim()) ?? throw BadDateTime(PgType.Time, s);

    public static string FormatDate(DateTime d) =>
        d == DateTime.MaxValue ? "infinity" : d == DateTime.MinValue ? "-infinity" : d.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture);

    /// <summary>Prints a timestamp as PostgreSQL does (ISO), or in the form SQLite's date functions read (<paramref name="sqliteStyle"/>: +00:00).</summary>
    public static string FormatTimestamp(DateTime d, bool withZone, bool sqliteStyle)
    {
        if (d == DateTime.MaxValue) return "infinity";
        if (d == DateTime.MinValue) return "-infinity";
        string s = d.ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture);
        long frac = d.Ticks % TimeSpan.TicksPerSecond / 10;
        if (frac != 0) s += "." + frac.ToString("D6", CultureInfo.InvariantCulture).TrimEnd('0');
        if (withZone) s += sqliteStyle ? "+00:00" : "+00";
        return s;
    }

    public static string FormatTime(long micros)
    {
        long secs = micros / 1_000_000, frac = micros % 1_000_000;
        string s = $"{secs / 3600:D2}:{secs / 60 % 60:D2}:{secs % 60:D2}";
        if (frac != 0) s += "." + frac.ToString("D6", CultureInfo.InvariantCulture).TrimEnd('0');
        return s;
    }

    private static DateTime? DateFromDays(int days)
    {
        try { return PgEpoch.AddDays(days); } catch (ArgumentOutOfRangeException) { return null; }
    }

    private static DateTime? TimestampFromMicros(long us)
    {
        try { return DateTime.SpecifyKind(PgEpoch.AddTicks(checked(us * 10)), DateTimeKind.Unspecified); }
        catch (Exception e) when (e is ArgumentOutOfRangeException or OverflowException) { return null; }
    }

    // ---------------------------------------------------------------- output: SQLite → typed cell

    /// <summary>
    /// Converts a SQLite value to the typed value of a column announced as <paramref name="type"/>:
    /// long (integers), double (floats), bool, string (numeric, date/time, uuid as canonical text),
    /// byte[] (bytea, and text as UTF-8), or null. Throws SqlError when the value cannot be that type.
    /// </summary>
    public static object? ToCell(PgType type, object? value)
    {
        if (type.Kind == PgTypeKind.Void) return Array.Empty<byte>();
        if (value is null) return null;
        switch (type.Kind)
        {
            case PgTypeKind.Integer:
                long l = value switch
                {
                    long v => v,
                    double d => RoundToInteger(type, d),
                    string s => IntegerFromText(type, s),
                    _ => throw SqlError.Error(SqlStates.DatatypeMismatch, $"cannot convert a bytea value to type {type.SqlName}"),
                };
                if (!FitsInteger(type, l)) throw SqlError.Error(SqlStates.NumericValueOutOfRange, $"{type.SqlName} out of range");
                return l;
            case PgTypeKind.Float:
                double f = value switch
                {
                    long v => v,
                    double d => d,
                    string s => ParseFloat(type, s),
                    _ => throw SqlError.Error(SqlStates.DatatypeMismatch, $"cannot convert a bytea value to type {type.SqlName}"),
                };
                return type.Oid == PgType.Float4Oid ? (double)(float)f : f;
            case PgTypeKind.Bool:
                return value switch
                {
                    long v => v != 0,
                    double d => d != 0,
                    string s => ParseBool(s),
                    _ => throw SqlError.Error(SqlStates.DatatypeMismatch, "cannot convert a bytea value to type boolean"),
                };
            case PgTypeKind.Numeric:
                return value switch
                {
                    long v => v.ToString(CultureInfo.InvariantCulture),
                    double d => double.IsNaN(d) ? "NaN" : double.IsPositiveInfinity(d) ? "Infinity" : double.IsNegativeInfinity(d) ? "-Infinity" : DoubleToPlainDecimal(d),
                    string s => ParseNumeric(s),
                    _ => throw SqlError.Error(SqlStates.DatatypeMismatch, "cannot convert a bytea value to type numeric"),
                };
            case PgTypeKind.Bytea:
                return value switch
                {
                    byte[] b => b,
                    string s => Encoding.UTF8.GetBytes(s),
                    _ => Encoding.UTF8.GetBytes(SqliteText(value)),
                };
            case PgTypeKind.Uuid:
                return FormatUuid(value is byte[] { Length: 16 } raw ? raw : ParseUuid(SqliteText(value)));
            case PgTypeKind.Date:
                return FormatDate(value is string ds ? ParseDate(ds) : DateFromSqliteNumber(value, PgType.Date));
            case PgTypeKind.Timestamp or PgTypeKind.TimestampTz:
                DateTime ts = value is string tss ? ParseTimestamp(tss, type) : DateFromSqliteNumber(value, type);
                return FormatTimestamp(ts, type.Kind == PgTypeKind.TimestampTz, sqliteStyle: false);
            case PgTypeKind.Time:
                return FormatTime(ParseTime(SqliteText(value)));
            default:
                return value is byte[] blob ? blob : Encoding.UTF8.GetBytes(SqliteText(value));
        }
    }

    private static DateTime DateFromSqliteNumber(object value, PgType type) => value switch
    {
        long secs when secs is > -62135596800L and < 253402300800L => DateTimeOffset.FromUnixTimeSeconds(secs).UtcDateTime,
        double julian when julian is > 1721425.5 and < 5373484.5 => new DateTime(1, 1, 1).AddDays(julian - 1721425.5),
        _ => throw SqlError.Error("22007", $"invalid input syntax for type {type.SqlName}: \"{SqliteText(value)}\""),
    };

    private static long RoundToInteger(PgType type, double d)
    {
        double r = Math.Round(d, MidpointRounding.ToEven);
        if (double.IsNaN(r) || r < -9.2233720368547758E18 || r >= 9.2233720368547758E18)
            throw SqlError.Error(SqlStates.NumericValueOutOfRange, $"{type.SqlName} out of range");
        return (long)r;
    }

    private static long IntegerFromText(PgType type, string s)
    {
        string t = s.Trim();
        if (long.TryParse(t, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long v)) return v;
        return ParseInteger(type, s);
    }

    /// <summary>SQLite's own text of a value (what CAST(x AS TEXT) gives for integers, PostgreSQL's float text for reals).</summary>
    public static string SqliteText(object value) => value switch
    {
        long l => l.ToString(CultureInfo.InvariantCulture),
        double d => FormatFloat8(d),
        string s => s,
        byte[] b => Encoding.UTF8.GetString(b),
        _ => value.ToString() ?? "",
    };

    // ---------------------------------------------------------------- typed cell → wire

    /// <summary>The text-format wire bytes of a typed cell of <paramref name="type"/>.</summary>
    public static byte[] EncodeText(PgType type, object cell, int extraFloatDigits = 1, bool byteaEscape = false)
    {
        switch (cell)
        {
            case byte[] b when type.Kind == PgTypeKind.Bytea:
                return Encoding.ASCII.GetBytes(byteaEscape ? ByteaEscape(b) : "\\x" + Convert.ToHexStringLower(b));
            case byte[] b:
                return b;
            case long l:
                return Encoding.ASCII.GetBytes(l.ToString(CultureInfo.InvariantCulture));
            case double d:
                return Encoding.ASCII.GetBytes(type.Oid == PgType.Float4Oid ? FormatFloat4((float)d, extraFloatDigits) : FormatFloat8(d, extraFloatDigits));
            case bool v:
                return [v ? (byte)'t' : (byte)'f'];
            case string s:
                return Encoding.UTF8.GetBytes(s);
            default:
                return Encoding.UTF8.GetBytes(cell.ToString() ?? "");
        }
    }

    private static string ByteaEscape(byte[] b)
    {
        var sb = new StringBuilder(b.Length);
        foreach (byte x in b)
        {
            if (x == (byte)'\\') sb.Append("\\\\");
            else if (x is < 0x20 or > 0x7e) sb.Append('\\').Append(Convert.ToString(x, 8).PadLeft(3, '0'));
            else sb.Append((char)x);
        }
        return sb.ToString();
    }

    /// <summary>The binary-format wire bytes of a typed cell of <paramref name="type"/>.</summary>
    public static byte[] EncodeBinary(PgType type, object cell)
    {
        switch (type.Kind)
        {
            case PgTypeKind.Void:
                return [];
            case PgTypeKind.Integer:
            {
                long l = (long)cell;
                switch (type.Oid)
                {
                    case PgType.Int2Oid: { var b = new byte[2]; BinaryPrimitives.WriteInt16BigEndian(b, (short)l); return b; }
                    case PgType.Int4Oid: { var b = new byte[4]; BinaryPrimitives.WriteInt32BigEndian(b, (int)l); return b; }
                    case PgType.OidOid: { var b = new byte[4]; BinaryPrimitives.WriteUInt32BigEndian(b, (uint)l); return b; }
                    default: { var b = new byte[8]; BinaryPrimitives.WriteInt64BigEndian(b, l); return b; }
                }
            }
            case PgTypeKind.Float:
            {
                double d = (double)cell;
                if (type.Oid == PgType.Float4Oid) { var b = new byte[4]; BinaryPrimitives.WriteSingleBigEndian(b, (float)d); return b; }
                var b8 = new byte[8];
                BinaryPrimitives.WriteDoubleBigEndian(b8, d);
                return b8;
            }
            case PgTypeKind.Bool:
                return [(bool)cell ? (byte)1 : (byte)0];
            case PgTypeKind.Numeric:
                return EncodeNumericBinary((string)cell);
            case PgTypeKind.Uuid:
                return ParseUuid((string)cell);
            case PgTypeKind.Jsonb:
            {
                byte[] text = cell as byte[] ?? Encoding.UTF8.GetBytes((string)cell);
                var b = new byte[text.Length + 1];
                b[0] = 1;
                text.CopyTo(b, 1);
                return b;
            }
            case PgTypeKind.Date:
            {
                DateTime d = ParseDate((string)cell);
                int days = d == DateTime.MaxValue ? int.MaxValue : d == DateTime.MinValue ? int.MinValue : (int)(d - PgEpoch.Date).TotalDays;
                var b = new byte[4];
                BinaryPrimitives.WriteInt32BigEndian(b, days);
                return b;
            }
            case PgTypeKind.Timestamp or PgTypeKind.TimestampTz:
            {
                DateTime d = ParseTimestamp((string)cell, type);
                long us = d == DateTime.MaxValue ? long.MaxValue : d == DateTime.MinValue ? long.MinValue : (d.Ticks - PgEpoch.Ticks) / 10;
                var b = new byte[8];
                BinaryPrimitives.WriteInt64BigEndian(b, us);
                return b;
            }
            case PgTypeKind.Time:
            {
                var b = new byte[8];
                BinaryPrimitives.WriteInt64BigEndian(b, ParseTime((string)cell));
                return b;
            }
            default:
                return cell as byte[] ?? Encoding.UTF8.GetBytes(cell.ToString() ?? "");
        }
    }

    // ---------------------------------------------------------------- numeric binary

    public static byte[] EncodeNumericBinary(string canonical)
    {
        var buf = new List<short>();
        short sign = 0, weight = 0, dscale = 0;
        switch (canonical)
        {
            case "NaN": sign = unchecked((short)0xC000); break;
            case "Infinity": sign = unchecked((short)0xD000); break;
            case "-Infinity": sign = unchecked((short)0xF000); break;
            default:
            {
                string t = canonical;
                if (t.StartsWith('-')) { sign = 0x4000; t = t[1..]; }
                int dot = t.IndexOf('.');
                string intPart = (dot >= 0 ? t[..dot] : t).TrimStart('0');
                string frac = dot >= 0 ? t[(dot + 1)..] : "";
                dscale = (short)frac.Length;
                int pad = (4 - intPart.Length % 4) % 4;
                intPart = new string('0', pad) + intPart;
                frac += new string('0', (4 - frac.Length % 4) % 4);
                int intGroups = intPart.Length / 4;
                for (int i = 0; i < intPart.Length; i += 4) buf.Add(short.Parse(intPart.AsSpan(i, 4), CultureInfo.InvariantCulture));
                for (int i = 0; i < frac.Length; i += 4) buf.Add(short.Parse(frac.AsSpan(i, 4), CultureInfo.InvariantCulture));
                weight = (short)(intGroups - 1);
                while (buf.Count > 0 && buf[0] == 0) { buf.RemoveAt(0); weight--; }
                while (buf.Count > 0 && buf[^1] == 0) buf.RemoveAt(buf.Count - 1);
                if (buf.Count == 0) { weight = 0; if (sign == 0x4000) sign = 0; }
                break;
            }
        }
        var b = new byte[8 + 2 * buf.Count];
        BinaryPrimitives.WriteInt16BigEndian(b, (short)buf.Count);
        BinaryPrimitives.WriteInt16BigEndian(b.AsSpan(2), weight);
        BinaryPrimitives.WriteInt16BigEndian(b.AsSpan(4), sign);
        BinaryPrimitives.WriteInt16BigEndian(b.AsSpan(6), dscale);
        for (int i = 0; i < buf.Count; i++) BinaryPrimitives.WriteInt16BigEndian(b.AsSpan(8 + 2 * i), buf[i]);
        return b;
    }

    /// <summary>PostgreSQL's binary numeric → canonical decimal string, or null when malformed.</summary>
    public static string? DecodeNumericBinary(ReadOnlySpan<byte> b)
    {
        if (b.Length < 8) return null;
        int ndigits = BinaryPrimitives.ReadInt16BigEndian(b);
        int weight = BinaryPrimitives.ReadInt16BigEndian(b[2..]);
        ushort sign = BinaryPrimitives.ReadUInt16BigEndian(b[4..]);
        int dscale = BinaryPrimitives.ReadInt16BigEndian(b[6..]);
        if (ndigits < 0 || dscale < 0 || b.Length != 8 + 2 * ndigits) return null;
        switch (sign)
        {
            case 0xC000: return "NaN";
            case 0xD000: return "Infinity";
            case 0xF000: return "-Infinity";
            case 0 or 0x4000: break;
            default: return null;
        }
        var digits = new StringBuilder();
        for (int i = 0; i < ndigits; i++)
        {
            int g = BinaryPrimitives.ReadInt16BigEndian(b[(8 + 2 * i)..]);
            if (g is < 0 or > 9999) return null;
            digits.Append(g.ToString("D4", CultureInfo.InvariantCulture));
        }
        if (ndigits == 0) return FormatFixed(false, "0", 1, dscale);
        return FormatFixed(sign == 0x4000, digits.ToString(), (weight + 1) * 4, dscale);
    }

    // ---------------------------------------------------------------- float text

    /// <summary>Shortest round-trip digits of a finite, non-zero double: value = 0.d1d2... × 10^(exponent+1), i.e. d1 is at 10^exponent.</summary>
    private static (string Digits, int Exponent) ShortestDigits(string roundTrip)
    {
        string s = roundTrip.TrimStart('-');
        int e = s.IndexOfAny(['E', 'e']);
        int exp = e >= 0 ? int.Parse(s.AsSpan(e + 1), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture) : 0;
        string mant = e >= 0 ? s[..e] : s;
        int dot = mant.IndexOf('.');
        string digits = dot >= 0 ? mant.Remove(dot, 1) : mant;
        int pointPos = dot >= 0 ? dot : mant.Length;
        int lead = 0;
        while (lead < digits.Length - 1 && digits[lead] == '0') lead++;
        digits = digits[lead..];
        pointPos -= lead;
        digits = digits.TrimEnd('0');
        if (digits.Length == 0) digits = "0";
        return (digits, pointPos - 1 + exp);
    }

    public static string FormatFloat8(double d, int extraFloatDigits = 1) => FormatFloat(d, d.ToString("R", CultureInfo.InvariantCulture), 15, extraFloatDigits);

    public static string FormatFloat4(float f, int extraFloatDigits = 1) => FormatFloat(f, f.ToString("R", CultureInfo.InvariantCulture), 6, extraFloatDigits);

    private static string FormatFloat(double d, string roundTrip, int digitsOfType, int extraFloatDigits)
    {
        if (double.IsNaN(d)) return "NaN";
        if (double.IsPositiveInfinity(d)) return "Infinity";
        if (double.IsNegativeInfinity(d)) return "-Infinity";
        if (d == 0) return double.IsNegative(d) ? "-0" : "0";
        string digits;
        int exp;
        if (extraFloatDigits > 0)
        {
            (digits, exp) = ShortestDigits(roundTrip);
        }
        else
        {
            // %.{P}g with P = DBL_DIG (FLT_DIG) + extra_float_digits.
            int precision = Math.Max(1, digitsOfType + extraFloatDigits);
            (digits, exp) = ShortestDigits(d.ToString("E" + (precision - 1).ToString(CultureInfo.InvariantCulture), CultureInfo.InvariantCulture));
            digitsOfType = precision;
        }
        var sb = new StringBuilder();
        if (d < 0) sb.Append('-');
        if (exp < -4 || exp >= digitsOfType)
        {
            sb.Append(digits[0]);
            if (digits.Length > 1) sb.Append('.').Append(digits, 1, digits.Length - 1);
            sb.Append('e').Append(exp < 0 ? '-' : '+').Append(Math.Abs(exp).ToString("D2", CultureInfo.InvariantCulture));
        }
        else if (exp < 0)
        {
            sb.Append("0.").Append('0', -exp - 1).Append(digits);
        }
        else if (digits.Length <= exp + 1)
        {
            sb.Append(digits).Append('0', exp + 1 - digits.Length);
        }
        else
        {
            sb.Append(digits, 0, exp + 1).Append('.').Append(digits, exp + 1, digits.Length - exp - 1);
        }
        return sb.ToString();
    }

    /// <summary>A double as numeric prints it: its shortest digits, never an exponent.</summary>
    public static string DoubleToPlainDecimal(double d)
    {
        if (d == 0) return "0";
        (string digits, int exp) = ShortestDigits(d.ToString("R", CultureInfo.InvariantCulture));
        int point = exp + 1;
        int scale = Math.Max(0, digits.Length - point);
        return FormatFixed(d < 0, digits, point, scale);
    }
}

using System.Buffers.Binary;
using System.Globalization;
using System.Text;

namespace PgSpec.Server;

/// <summary>Rows given as text, sent in text format or, for the simple types, in binary.</summary>
internal sealed class TextRowsResult : PgStatementResult
{
    private readonly IReadOnlyList<PgColumn> _columns;
    private readonly IEnumerator<IReadOnlyList<string?>> _rows;
    private IReadOnlyList<string?>? _current;
    private long _count;

    public TextRowsResult(IReadOnlyList<PgColumn> columns, IEnumerable<IReadOnlyList<string?>> rows)
    {
        _columns = columns ?? throw new ArgumentNullException(nameof(columns));
        _rows = (rows ?? throw new ArgumentNullException(nameof(rows))).GetEnumerator();
    }

    public override IReadOnlyList<PgColumn>? Columns => _columns;

    public override string CommandTag => "SELECT " + _count.ToString(CultureInfo.InvariantCulture);

    public override ValueTask<bool> ReadAsync(CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        if (!_rows.MoveNext())
        {
            _current = null;
            return ValueTask.FromResult(false);
        }

        _current = _rows.Current;
        if (_current.Count != _columns.Count)
        {
            throw new PgErrorException("XX000", $"a row has {_current.Count} values, but the result has {_columns.Count} columns");
        }

        _count++;
        return ValueTask.FromResult(true);
    }

    public override ReadOnlyMemory<byte>? GetValue(int column, short format)
    {
        string? text = (_current ?? throw new InvalidOperationException("no current row"))[column];
        return text is null ? (ReadOnlyMemory<byte>?)null : PgTextValues.Encode(text, _columns[column], format);
    }

    public override ValueTask DisposeAsync()
    {
        _rows.Dispose();
        return base.DisposeAsync();
    }
}

/// <summary>A value given as text, in the format a client asked for.</summary>
internal static class PgTextValues
{
    public static byte[] Encode(string text, PgColumn column, short format)
    {
        if (format == 0)
        {
            return Encoding.UTF8.GetBytes(text);
        }

        try
        {
            switch (column.TypeOid)
            {
                case 25 or 1043 or 19 or 1042 or 114 or 705:
                    return Encoding.UTF8.GetBytes(text);
                case 16:
                    return [(byte)(text is "t" or "true" or "1" or "on" or "yes" ? 1 : 0)];
                case 21:
                    byte[] int2 = new byte[2];
                    BinaryPrimitives.WriteInt16BigEndian(int2, short.Parse(text, NumberStyles.Integer, CultureInfo.InvariantCulture));
                    return int2;
                case 23:
                    byte[] int4 = new byte[4];
                    BinaryPrimitives.WriteInt32BigEndian(int4, int.Parse(text, NumberStyles.Integer, CultureInfo.InvariantCulture));
                    return int4;
                case 20:
                    byte[] int8 = new byte[8];
                    BinaryPrimitives.WriteInt64BigEndian(int8, long.Parse(text, NumberStyles.Integer, CultureInfo.InvariantCulture));
                    return int8;
                case 700:
                    byte[] float4 = new byte[4];
                    BinaryPrimitives.WriteSingleBigEndian(float4, float.Parse(text, NumberStyles.Float, CultureInfo.InvariantCulture));
                    return float4;
                case 701:
                    byte[] float8 = new byte[8];
                    BinaryPrimitives.WriteDoubleBigEndian(float8, double.Parse(text, NumberStyles.Float, CultureInfo.InvariantCulture));
                    return float8;
                case 17 when text.StartsWith("\\x", StringComparison.Ordinal):
                    return Convert.FromHexString(text.AsSpan(2));
            }
        }
        catch (FormatException e)
        {
            throw new PgErrorException("22P02", $"invalid input syntax for type {column.TypeOid}: \"{text}\"") { Detail = e.Message };
        }
        catch (OverflowException)
        {
            throw new PgErrorException("22003", $"value \"{text}\" is out of range for type {column.TypeOid}");
        }

        throw new PgErrorException("0A000", $"binary format is not supported for type OID {column.TypeOid} of column \"{column.Name}\"");
    }
}

using System.Buffers.Binary;
using PgSpec.Protocol;

namespace PgSpec.Proxy;

/// <summary>
/// A DataRow or CopyData too large to hold, validated while its bytes pass through: CopyData's body
/// is any bytes; DataRow's is an Int16 column count (unsigned, as PostgreSQL reads it) and that many
/// columns of an Int32 length (-1 for NULL) and that many bytes, ending exactly at the end of the
/// body. The verdict is the one the codec's validator gives the whole body (a property test holds
/// the two together).
/// </summary>
internal sealed class StreamedMessage
{
    private readonly byte[] _word = new byte[4];
    private int _wordFill;
    private bool _countRead;
    private int _columnsLeft;
    private long _valueLeft;

    /// <summary>The message's type byte.</summary>
    public byte Type { get; private set; }

    /// <summary>Body bytes still to come.</summary>
    public long Remaining { get; private set; }

    /// <summary>True while a message is being streamed.</summary>
    public bool Active { get; private set; }

    /// <summary>Whether a message of this type and length is streamed rather than held whole.</summary>
    public static bool Streams(PgDirection direction, byte type, int length, int threshold)
        => length >= threshold && (type == (byte)'d' || (type == (byte)'D' && direction == PgDirection.Backend));

    /// <summary>Starts a message of the given type and length word.</summary>
    public void Begin(byte type, int length)
    {
        Type = type;
        Remaining = length - 4L;
        Active = true;
        _wordFill = 0;
        _countRead = false;
        _columnsLeft = 0;
        _valueLeft = 0;
    }

    /// <summary>Takes the next bytes of the body (at most <see cref="Remaining"/>); returns an error text or null.</summary>
    public string? Feed(ReadOnlySpan<byte> chunk)
    {
        if (chunk.Length > Remaining)
        {
            throw new ArgumentOutOfRangeException(nameof(chunk), "more bytes than the message has");
        }

        Remaining -= chunk.Length;
        if (Type != (byte)'D')
        {
            return null;
        }

        while (!chunk.IsEmpty)
        {
            if (_valueLeft > 0)
            {
                int skip = (int)Math.Min(_valueLeft, chunk.Length);
                _valueLeft -= skip;
                chunk = chunk[skip..];
                continue;
            }

            if (_countRead && _columnsLeft == 0)
            {
                return $"DataRow: {chunk.Length + Remaining} bytes after the last column";
            }

            int need = (_countRead ? 4 : 2) - _wordFill;
            int take = Math.Min(need, chunk.Length);
            chunk[..take].CopyTo(_word.AsSpan(_wordFill));
            _wordFill += take;
            chunk = chunk[take..];
            if (_wordFill < (_countRead ? 4 : 2))
            {
                continue;
            }

            _wordFill = 0;
            if (!_countRead)
            {
                _countRead = true;
                _columnsLeft = BinaryPrimitives.ReadUInt16BigEndian(_word);
                continue;
            }

            int valueLength = BinaryPrimitives.ReadInt32BigEndian(_word);
            if (valueLength < -1)
            {
                return $"DataRow: column length {valueLength} is less than -1";
            }

            _columnsLeft--;
            _valueLeft = Math.Max(valueLength, 0);
        }

        return null;
    }

    /// <summary>Ends the message once <see cref="Remaining"/> is 0; returns an error text or null.</summary>
    public string? End()
    {
        Active = false;
        if (Type != (byte)'D')
        {
            return null;
        }

        if (!_countRead)
        {
            return "DataRow: the body ends inside the column count";
        }

        if (_valueLeft > 0)
        {
            return $"DataRow: the body ends {_valueLeft} bytes inside a column value";
        }

        if (_columnsLeft > 0)
        {
            return $"DataRow: the body ends with {_columnsLeft} of its columns missing";
        }

        return null;
    }
}

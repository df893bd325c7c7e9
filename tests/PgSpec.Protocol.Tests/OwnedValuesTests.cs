using System.Runtime.InteropServices;
using System.Text;
using PgSpec.Protocol;

namespace PgSpec.Protocol.Tests;

/// <summary>
/// An owned message's list of values (<see cref="PgValueArray"/>) is one array: a copy of the
/// values and where each one is, not an array or a Memory per value.
/// </summary>
public class OwnedValuesTests
{
    [Fact]
    public void Messages_without_fields_decode_to_one_shared_instance_equal_to_a_new_one()
    {
        Assert.Same(Sync.Decode([]), Sync.Decode([]));
        Assert.Same(ParseComplete.Decode([]), ParseComplete.Decode([]));
        Assert.Equal(new Sync(), Sync.Decode([]));
        Assert.Equal(new Sync().ToArray(), Sync.Decode([]).ToArray());

        // A body that is not empty is still refused.
        Assert.False(Sync.TryDecode([0], null, out Sync? extra, out PgDecodeError error));
        Assert.Null(extra);
        Assert.NotEqual(default, error);
    }

    [Fact]
    public void DataRow_columns_share_one_copy_of_the_body()
    {
        byte[] wire = new DataRow([(ReadOnlyMemory<byte>?)Encoding.ASCII.GetBytes("alpha"), null, Encoding.ASCII.GetBytes("beta"), ReadOnlyMemory<byte>.Empty]).ToArray();
        byte[] body = wire[5..];
        DataRow row = DataRow.Decode(body);

        Assert.Equal("alpha", Encoding.ASCII.GetString(row.Columns[0]!.Value.Span));
        Assert.Null(row.Columns[1]);
        Assert.Equal("beta", Encoding.ASCII.GetString(row.Columns[2]!.Value.Span));
        Assert.Equal(0, row.Columns[3]!.Value.Length);
        Assert.True(MemoryMarshal.TryGetArray(row.Columns[0]!.Value, out ArraySegment<byte> first));
        Assert.True(MemoryMarshal.TryGetArray(row.Columns[2]!.Value, out ArraySegment<byte> third));
        Assert.Same(first.Array, third.Array);
        Assert.NotSame(body, first.Array);

        // A copy: the message does not change with the buffer it was read from.
        body.AsSpan().Fill(0);
        Assert.Equal("alpha", Encoding.ASCII.GetString(row.Columns[0]!.Value.Span));
    }

    [Fact]
    public void A_list_whose_array_was_changed_through_a_value_reads_nothing_outside_it()
    {
        // The array a value's memory gives is the list's own: values, then an offset for each.
        byte[] wire = new DataRow([(ReadOnlyMemory<byte>?)Encoding.ASCII.GetBytes("alpha"), null, Encoding.ASCII.GetBytes("beta")]).ToArray();
        foreach (Func<byte[], int, (int Index, int At, int Word)> change in new Func<byte[], int, (int, int, int)>[]
        {
            (array, slotsAt) => (0, slotsAt, int.MaxValue),                   // a slot far past the end
            (array, slotsAt) => (2, slotsAt + 8, 2),                          // a slot before the first value
            (array, slotsAt) => (2, slotsAt + 8, array.Length + 1),           // a slot just past the end
            (array, slotsAt) => (0, 0, BitConverter.IsLittleEndian ? System.Buffers.Binary.BinaryPrimitives.ReverseEndianness(array.Length) : array.Length), // a length word past the end
            (array, slotsAt) => (0, 0, BitConverter.IsLittleEndian ? int.MinValue >>> 24 : int.MinValue), // a length word below -1
        })
        {
            DataRow row = DataRow.Decode(wire[5..]);
            Assert.True(MemoryMarshal.TryGetArray(row.Columns[0]!.Value, out ArraySegment<byte> segment));
            byte[] array = segment.Array!;
            int slotsAt = array.Length - (3 * sizeof(int));
            (int index, int at, int word) = change(array, slotsAt);
            MemoryMarshal.Write(array.AsSpan(at), word);

            Assert.Throws<InvalidOperationException>(() => row.Columns[index]);
            Assert.Throws<InvalidOperationException>(() => row.Columns.GetValue(index).IsNull);

            // The values left alone read as before.
            Assert.Null(row.Columns[1]);
            Assert.True(row.Columns.GetValue(1).IsNull);
        }
    }

    [Fact]
    public void Bind_parameters_share_one_copy_of_the_body()
    {
        byte[] wire = new Bind("", "s", [], [(ReadOnlyMemory<byte>?)new byte[] { 1, 2 }, new byte[] { 3 }], []).ToArray();
        Bind bind = Bind.Decode(wire[5..]);
        Assert.Equal(new byte[] { 1, 2 }, bind.Parameters[0]!.Value.ToArray());
        Assert.Equal(new byte[] { 3 }, bind.Parameters[1]!.Value.ToArray());
        Assert.True(MemoryMarshal.TryGetArray(bind.Parameters[0]!.Value, out ArraySegment<byte> first));
        Assert.True(MemoryMarshal.TryGetArray(bind.Parameters[1]!.Value, out ArraySegment<byte> second));
        Assert.Same(first.Array, second.Array);
    }

    private static readonly ReadOnlyMemory<byte>?[] s_values =
        [Encoding.ASCII.GetBytes("alpha"), null, ReadOnlyMemory<byte>.Empty, Encoding.ASCII.GetBytes("a longer value, past eight bytes"), null, new byte[] { 0xFF }];

    [Fact]
    public void A_decoded_list_gives_each_value_the_same_through_every_accessor()
    {
        PgValueArray built = [.. s_values];
        PgValueArray decoded = DataRow.Decode(new DataRow(built).ToArray()[5..]).Columns;

        foreach (PgValueArray list in new[] { built, decoded })
        {
            Assert.Equal(s_values.Length, list.Length);
            Assert.Equal(s_values.Length, ((IReadOnlyCollection<ReadOnlyMemory<byte>?>)list).Count);
            Assert.False(list.IsEmpty);
            int i = 0;
            foreach (ReadOnlyMemory<byte>? value in list)
            {
                ReadOnlyMemory<byte>? expected = s_values[i];
                Assert.Equal(expected is null, value is null);
                Assert.Equal(expected is null, list[i] is null);
                PgValue span = list.GetValue(i);
                Assert.Equal(expected is null, span.IsNull);
                if (expected is { } bytes)
                {
                    Assert.Equal(bytes.ToArray(), value!.Value.ToArray());
                    Assert.Equal(bytes.ToArray(), list[i]!.Value.ToArray());
                    Assert.Equal(bytes.ToArray(), span.Bytes.ToArray());
                }
                else
                {
                    Assert.True(span.Bytes.IsEmpty);
                }

                i++;
            }

            Assert.Equal(s_values.Length, i);
            Assert.Equal(s_values.Select(v => v?.ToArray()), list.ToImmutableArray().Select(v => v?.ToArray()));
            Assert.Equal(s_values.Select(v => v?.ToArray()), list.Select(v => v?.ToArray()));
            Assert.Throws<ArgumentOutOfRangeException>(() => list[-1]);
            Assert.Throws<ArgumentOutOfRangeException>(() => list[s_values.Length]);
            Assert.Throws<ArgumentOutOfRangeException>(() => list.GetValue(s_values.Length));
        }

        Assert.Equal(built, decoded);
        Assert.True(built == decoded);
        Assert.Equal(built.GetHashCode(), decoded.GetHashCode());
        Assert.Equal(built.ToString(), decoded.ToString());
        Assert.Equal(@"['alpha', NULL, '', 'a longer value, past eight bytes', NULL, '\xff']", decoded.ToString());
    }

    [Fact]
    public void Lists_differ_by_any_value_by_NULL_against_empty_and_by_length()
    {
        PgValueArray list = [.. s_values];
        ReadOnlyMemory<byte>?[] nullForEmpty = [.. s_values];
        nullForEmpty[2] = null;
        ReadOnlyMemory<byte>?[] oneByte = [.. s_values];
        oneByte[5] = new byte[] { 0xFE };

        Assert.NotEqual(list, [.. nullForEmpty]);
        Assert.NotEqual(list, [.. oneByte]);
        Assert.NotEqual(list, [.. s_values[..^1]]);
        Assert.True(list != [.. oneByte]);
        PgValueArray withNull = [.. nullForEmpty];
        Assert.NotEqual(list.GetHashCode(), withNull.GetHashCode());
        Assert.NotEqual(new DataRow(list), new DataRow([.. oneByte]));
        Assert.Equal(new DataRow(list), DataRow.Decode(new DataRow(list).ToArray()[5..]));
    }

    [Fact]
    public void The_empty_list_is_the_default_and_every_empty_list()
    {
        PgValueArray empty = default;
        Assert.True(empty.IsEmpty);
        Assert.Equal(0, empty.Length);
        Assert.Empty(empty);
        Assert.Equal(PgValueArray.Empty, empty);
        Assert.Equal(empty, (PgValueArray)System.Collections.Immutable.ImmutableArray<ReadOnlyMemory<byte>?>.Empty);
        Assert.Equal(empty, (PgValueArray)default(System.Collections.Immutable.ImmutableArray<ReadOnlyMemory<byte>?>));
        Assert.Equal("[]", empty.ToString());
        Assert.True(empty.ToImmutableArray().IsEmpty);

        DataRow decoded = DataRow.Decode([0, 0]);
        Assert.True(decoded.Columns.IsEmpty);
        Assert.Equal(new DataRow(default), decoded);
        Assert.Equal(new byte[] { (byte)'D', 0, 0, 0, 6, 0, 0 }, new DataRow(default).ToArray());
    }

    [Fact]
    public void A_list_built_from_an_ImmutableArray_shares_its_values()
    {
        byte[] value = [1, 2, 3];
        var array = System.Collections.Immutable.ImmutableArray.Create<ReadOnlyMemory<byte>?>(value, null);
        PgValueArray list = array;
        Assert.True(MemoryMarshal.TryGetArray(list[0]!.Value, out ArraySegment<byte> segment));
        Assert.Same(value, segment.Array);
        Assert.True(array == list.ToImmutableArray());
    }

    [Fact]
    public void A_decoded_row_is_one_array_and_the_message()
    {
        // 100 columns of 8 bytes: a list with an array or a Memory per value would take several
        // times the body; one array holds the values (with their length words) and 4 bytes of place a value.
        ReadOnlyMemory<byte>?[] values = [.. Enumerable.Range(0, 100).Select(i => (ReadOnlyMemory<byte>?)BitConverter.GetBytes((long)i))];
        byte[] body = new DataRow([.. values]).ToArray()[5..];
        Assert.Equal(2 + (100 * 12), body.Length);
        DataRow.Decode(body);

        long before = GC.GetAllocatedBytesForCurrentThread();
        DataRow row = DataRow.Decode(body);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        long oneArray = 24 + ((body.Length - 2 + 3) & ~3) + (100 * 4);
        Assert.InRange(allocated, oneArray, oneArray + 64);
        Assert.Equal(values.Select(v => v!.Value.ToArray()), row.Columns.Select(v => v!.Value.ToArray()));
    }

    [Theory]
    [InlineData(new byte[] { 0, 1, 0xFF, 0xFF, 0xFF, 0xFE }, "negative length -2")]
    [InlineData(new byte[] { 0, 1, 0, 0, 0, 2, 7 }, "length 2 is more than the 1 bytes that remain")]
    [InlineData(new byte[] { 0, 2, 0, 0, 0, 0, 0, 0, 0 }, "needs")]
    [InlineData(new byte[] { 0, 1, 0xFF, 0xFF, 0xFF, 0xFF, 9 }, "left over")]
    public void A_malformed_list_is_refused_with_the_check_s_error(byte[] body, string reason)
    {
        Assert.False(DataRow.TryDecode(body, null, out DataRow? row, out PgDecodeError error));
        Assert.Null(row);
        Assert.Contains(reason, error.ToString(), StringComparison.Ordinal);
        Assert.False(DataRow.TryValidate(body, null, out PgDecodeError checkError));
        Assert.Equal(checkError, error);
    }

    public static TheoryData<string, string> BindNames => new() { { "", "" }, { "p", "s" }, { "portal_8", "statement_name" } };

    [Theory]
    [MemberData(nameof(BindNames))]
    public void A_list_with_fields_after_it_is_copied_alone_with_its_places(string portal, string statement)
    {
        // Bind's parameters are followed by the result formats: the list is walked, then copied.
        var bind = new Bind(portal, statement, [1, 0], [.. s_values], [1]);
        Bind decoded = Bind.Decode(bind.ToArray()[5..]);
        Assert.Equal(bind, decoded);
        Assert.Equal(bind.Parameters.Select(v => v?.ToArray()), decoded.Parameters.Select(v => v?.ToArray()));
        Assert.Equal(s_values.Length, decoded.Parameters.Length);
        Assert.Null(decoded.Parameters[1]);
        Assert.Equal(0, decoded.Parameters[2]!.Value.Length);
        Assert.Equal(new short[] { 1 }, decoded.ResultFormatCodes);
        AssertPaddingIsZero(decoded.Parameters);
    }

    [Fact]
    public void The_owned_message_of_a_read_message_is_built_from_the_places_the_reader_recorded()
    {
        // Rows of several layouts (the reader's template and its walk) and Binds, read by a
        // validating reader (which records where the values are) and by a framing one (which
        // does not: the owned decode then checks the list itself); every owned message is the one
        // decoded from the body alone.
        var rows = new List<IPgMessage>();
        for (int i = 0; i < 40; i++)
        {
            ReadOnlyMemory<byte>?[] values = [.. s_values];
            values[i % values.Length] = i % 3 == 0 ? (ReadOnlyMemory<byte>?)null : new byte[i % 7];
            rows.Add(new DataRow([.. values]));
            rows.Add(new DataRow([.. values]));
        }

        rows.Add(new DataRow(default));
        rows.Add(new DataRow([.. Enumerable.Range(0, 300).Select(i => (ReadOnlyMemory<byte>?)new byte[i % 5])]));
        byte[] stream = [.. rows.SelectMany(m => ((DataRow)m).ToArray())];

        foreach (bool validate in new[] { true, false })
        {
            var context = new DecodeContext { Phase = PgSessionPhase.Normal };
            var reader = new PgMessageReader(PgDirection.Backend, context) { Validate = validate };
            ReadOnlySpan<byte> rest = stream;
            int n = 0;
            while (reader.TryRead(rest, out int consumed, out PgReceivedMessage message, out PgDecodeError error) == PgReadStatus.Message)
            {
                DataRow expected = DataRow.Decode(message.Body);
                Assert.Equal(rows[n], expected);
                var owned = (DataRow)message.ToMessage(context);
                Assert.Equal(expected, owned);
                Assert.Equal(expected.Columns.ToString(), owned.Columns.ToString());
                Assert.Equal(expected, DataRow.View.Read(message).ToMessage());
                AssertPaddingIsZero(owned.Columns);
                rest = rest[consumed..];
                n++;
            }

            Assert.Equal(rows.Count, n);
            Assert.True(rest.IsEmpty);
        }

        byte[] binds = [.. new Bind("p", "s", [], [.. s_values], [1]).ToArray(), .. new Bind("", "", [1], [null, new byte[] { 9 }], []).ToArray()];
        var frontend = new PgMessageReader(PgDirection.Frontend, new DecodeContext { Phase = PgSessionPhase.Normal });
        ReadOnlySpan<byte> left = binds;
        int count = 0;
        while (frontend.TryRead(left, out int used, out PgReceivedMessage message, out _) == PgReadStatus.Message)
        {
            Assert.Equal(Bind.Decode(message.Body), message.ToMessage());
            Assert.Equal(Bind.Decode(message.Body), Bind.View.Read(message).ToMessage());
            left = left[used..];
            count++;
        }

        Assert.Equal(2, count);
    }

    [Fact]
    public void ReadValueArray_makes_nothing_for_a_count_the_bytes_cannot_hold()
    {
        byte[] body = new byte[10];
        long before = GC.GetAllocatedBytesForCurrentThread();
        var reader = new PgSpanReader(body, "Test", 5);
        bool read = reader.ReadValueArray("len", 20_000_000, nullable: true, out PgValueArray values);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.False(read);
        Assert.True(values.IsEmpty);
        Assert.True(allocated < 4096, $"allocated {allocated} bytes");

        // The walk's own error, as SkipValues gives it.
        var skip = new PgSpanReader(body, "Test", 5);
        Assert.False(skip.SkipValues("len", 20_000_000, nullable: true));
        Assert.Equal(skip.Error, reader.Error);
    }

    [Fact]
    public void Lists_of_values_that_cannot_be_NULL_compare_by_their_bytes()
    {
        var a = System.Collections.Immutable.ImmutableArray.Create<ReadOnlyMemory<byte>>(new byte[] { 1, 2 }, new byte[] { 3 });
        var b = System.Collections.Immutable.ImmutableArray.Create<ReadOnlyMemory<byte>>(new byte[] { 1, 2 }, new byte[] { 3 });
        var c = System.Collections.Immutable.ImmutableArray.Create<ReadOnlyMemory<byte>>(new byte[] { 1, 2 }, new byte[] { 4 });
        Assert.True(PgEquality.Equal(a, b));
        Assert.Equal(PgEquality.Hash(a), PgEquality.Hash(b));
        Assert.False(PgEquality.Equal(a, c));
        Assert.False(PgEquality.Equal(a, a.RemoveAt(1)));
        Assert.True(PgEquality.Equal(default(System.Collections.Immutable.ImmutableArray<ReadOnlyMemory<byte>>), System.Collections.Immutable.ImmutableArray<ReadOnlyMemory<byte>>.Empty));
    }

    /// <summary>The bytes of a decoded list's array past its values and before its places (4 bytes a value) are zeros: nothing of what the array held before shows through it.</summary>
    private static void AssertPaddingIsZero(PgValueArray list)
    {
        int last = -1;
        for (int i = list.Length - 1; i >= 0 && last < 0; i--)
        {
            if (list[i] is { } value && MemoryMarshal.TryGetArray(value, out ArraySegment<byte> segment))
            {
                byte[] data = segment.Array!;
                int end = segment.Offset + segment.Count;
                int slotsAt = data.Length - (list.Length * 4);
                Assert.True(slotsAt >= end && slotsAt % 4 == 0 && slotsAt - end < 4, $"places at {slotsAt}, values end at {end}");
                Assert.All(data[end..slotsAt], b => Assert.Equal(0, b));
                last = i;
            }
        }
    }

    [Fact]
    public void A_NULL_read_in_place_copies_to_null_and_an_empty_value_to_empty()
    {
        // ReadOnlyMemory<byte> converts from a null byte[] to an empty Memory: a NULL must not.
        Assert.Null(PgValue.Null.ToMemory());
        ReadOnlyMemory<byte>? empty = new PgValue(ReadOnlySpan<byte>.Empty).ToMemory();
        Assert.NotNull(empty);
        Assert.Equal(0, empty.Value.Length);
        Assert.Equal(new byte[] { 7 }, new PgValue([7]).ToMemory()!.Value.ToArray());
    }

    [Theory]
    [InlineData("rs", "xy")]
    [InlineData("rs", "longer")]
    [InlineData("rs", "")]
    public void A_message_kept_past_the_next_read_is_owned_with_its_own_values(string first, string second)
    {
        // The reader keeps the places of the last list it checked: a message (or its view) kept
        // past the next read, whose body is still there (the caller's buffer), must not be owned
        // with the places of the next one, however alike the two lists are.
        byte[] stream =
        [
            .. new DataRow([new byte[] { 1 }, new byte[] { 2 }]).ToArray(),
            .. new DataRow([Encoding.ASCII.GetBytes("A\xff"), Encoding.ASCII.GetBytes(first)]).ToArray(),
            .. new DataRow([Encoding.ASCII.GetBytes("A\xff"), second.Length == 0 ? (ReadOnlyMemory<byte>?)null : Encoding.ASCII.GetBytes(second)]).ToArray(),
        ];
        var reader = new PgMessageReader(PgDirection.Backend, new DecodeContext { Phase = PgSessionPhase.Normal });
        ReadOnlySpan<byte> rest = stream;
        Assert.Equal(PgReadStatus.Message, reader.TryRead(rest, out int used, out _, out _));
        rest = rest[used..];
        Assert.Equal(PgReadStatus.Message, reader.TryRead(rest, out used, out PgReceivedMessage kept, out _));
        rest = rest[used..];
        DataRow expected = DataRow.Decode(kept.Body);
        Assert.Equal(PgReadStatus.Message, reader.TryRead(rest, out _, out PgReceivedMessage next, out _));

        Assert.Equal(expected, (DataRow)kept.ToMessage());
        Assert.Equal(expected, DataRow.View.Read(kept).ToMessage());
        Assert.Equal(first, Encoding.ASCII.GetString(((DataRow)kept.ToMessage()).Columns[1]!.Value.Span));
        Assert.Equal(DataRow.Decode(next.Body), (DataRow)next.ToMessage());
    }
}

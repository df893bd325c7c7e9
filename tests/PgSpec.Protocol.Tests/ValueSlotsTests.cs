using System.Buffers;
using System.Collections.Immutable;
using System.IO.Pipelines;
using FsCheck;
using FsCheck.Fluent;
using PgSpec.Protocol.Tests.Support;

namespace PgSpec.Protocol.Tests;

/// <summary>
/// The places of a message's values that a reader records while it checks the body (DataRow's
/// columns, Bind's parameters), and the rows of the same layout it checks from the places of the
/// row before: the views must give exactly what the owned decode gives, and a malformed row must
/// fail exactly as the walk fails.
/// </summary>
public class ValueSlotsTests
{
    private const int MaxTest = 200;

    [Fact]
    public void DataRowStreams_WithRepeatedAndChangingLayouts_ViewsGiveTheOwnedColumns()
    {
        // Rows drawn from a few layouts, so that a row often has the layout of the one before it
        // (checked from the slots) and often not (walked); values of every length, NULLs, no columns.
        Gen<ReadOnlyMemory<byte>?> value = Gen.Frequency(
            (1, Gen.Constant<ReadOnlyMemory<byte>?>(null)),
            (6, Gen.Choose(0, 40).SelectMany(n => Gen.ArrayOf(Gen.Choose(0, 255).Select(b => (byte)b), n)).Select(b => (ReadOnlyMemory<byte>?)b)));
        Gen<int[]> layout = Gen.Choose(0, 14).SelectMany(n => Gen.ArrayOf(Gen.Choose(-1, 12), n));
        Gen<DataRow[]> rows =
            from layouts in Gen.Choose(1, 3).SelectMany(n => Gen.ArrayOf(layout, n))
            from picks in Gen.Choose(1, 30).SelectMany(n => Gen.ArrayOf(Gen.Choose(0, layouts.Length - 1), n))
            from seeds in Gen.ArrayOf(Gen.Choose(0, 255), picks.Length)
            from odd in Gen.ArrayOf(value, picks.Length)
            select picks.Select((p, i) => Row(layouts[p], (byte)seeds[i], odd[i])).ToArray();

        Config config = Config.QuickThrowOnFailure.WithMaxTest(MaxTest).WithQuietOnSuccess(true);
        Check.One(config, Prop.ForAll(rows.ToArbitrary(), (DataRow[] expected) =>
        {
            byte[] stream = [.. expected.SelectMany(r => r.ToArray())];
            AssertSpanReader(stream, expected);
            AssertPipeReader(stream, expected, segmentSize: 64).GetAwaiter().GetResult();
        }));
    }

    [Fact]
    public void MessagesOfRepeatedLayouts_WithBytesChanged_AreReadAsAReaderWithoutMemoryReadsThem()
    {
        // A reader remembers the last list's places and, from the second body of one layout on, the
        // body itself as a template (the bytes outside the values): a later body equal to it there
        // is taken without the check. Streams of DataRows (backend) and Binds (frontend) of a few
        // layouts, each message often with one byte changed anywhere in its body (a length word, the
        // count, a name, a format code, a value's byte): every message must be read exactly as a
        // new reader reads it alone, the same message and values or the same error.
        Gen<byte[]> dataRow = Gen.Choose(0, 6).SelectMany(n => Gen.ArrayOf(Gen.Choose(-1, 9), n))
            .Select(layout => Row(layout, 7, null).ToArray());
        Gen<byte[]> bind =
            from portal in Gen.Elements("", "p", "portal")
            from formats in Gen.Choose(0, 2).SelectMany(n => Gen.ArrayOf(Gen.Choose(0, 1).Select(f => (short)f), n))
            from layout in Gen.Choose(0, 5).SelectMany(n => Gen.ArrayOf(Gen.Choose(-1, 9), n))
            select new Bind(portal, "s", [.. formats], [.. Row(layout, 3, null).Columns], [1]).ToArray();
        Gen<(PgDirection, byte[][])> streams =
            from frontend in Gen.Elements(false, true)
            from layouts in Gen.Choose(1, 3).SelectMany(n => Gen.ArrayOf(frontend ? bind : dataRow, n))
            from count in Gen.Choose(1, 24)
            from picks in Gen.ArrayOf(Gen.Choose(0, layouts.Length - 1), count)
            from changes in Gen.ArrayOf(Gen.Frequency((2, Gen.Constant(-1)), (1, Gen.Choose(0, 1000))), count)
            from bytes in Gen.ArrayOf(Gen.Choose(0, 255), count)
            select (frontend ? PgDirection.Frontend : PgDirection.Backend, picks.Select((p, i) => Changed(layouts[p], changes[i], (byte)bytes[i])).ToArray());

        Config config = Config.QuickThrowOnFailure.WithMaxTest(2 * MaxTest).WithQuietOnSuccess(true);
        Check.One(config, Prop.ForAll(streams.ToArbitrary(), ((PgDirection Direction, byte[][] Messages) stream) =>
        {
            var reader = new PgMessageReader(stream.Direction, new DecodeContext { Phase = PgSessionPhase.Normal });
            foreach (byte[] bytes in stream.Messages)
            {
                var alone = new PgMessageReader(stream.Direction, new DecodeContext { Phase = PgSessionPhase.Normal });
                PgReadStatus expected = alone.TryRead(bytes, out int expectedConsumed, out PgReceivedMessage expectedMessage, out PgDecodeError expectedError);
                long offset = reader.Position;
                PgReadStatus status = reader.TryRead(bytes, out int consumed, out PgReceivedMessage message, out PgDecodeError error);
                Assert.Equal(expected, status);
                Assert.Equal(expectedConsumed, consumed);
                if (status == PgReadStatus.Message)
                {
                    Assert.Equal(ReadValues(expectedMessage), ReadValues(message));
                }
                else
                {
                    Assert.Equal(expectedError.Field, error.Field);
                    Assert.Equal(expectedError.Reason, error.Reason);
                    Assert.Equal(expectedError.Offset + offset, error.Offset);

                    // A malformed message is not consumed: the reader goes on after it as if it
                    // had been skipped, as a proxy that reports and goes on would.
                    reader.Skip(bytes.Length);
                }
            }
        }));

        // One byte of the body set to value (after the type byte and the length word), or none.
        static byte[] Changed(byte[] message, int change, byte value)
        {
            byte[] copy = [.. message];
            if (change >= 0 && copy.Length > 5)
            {
                copy[5 + (change % (copy.Length - 5))] = value;
            }

            return copy;
        }

        static string?[] ReadValues(PgReceivedMessage message) => message.Direction == PgDirection.Backend
            ? Values(DataRow.View.Read(message).Columns)
            : [.. Values(Bind.View.Read(message).Parameters), .. Bind.View.Read(message).ParameterFormatCodes.ToArray().Select(f => f.ToString(System.Globalization.CultureInfo.InvariantCulture)), Bind.View.Read(message).PortalName.Length.ToString(System.Globalization.CultureInfo.InvariantCulture)];
    }

    [Fact]
    public void RowsOfChangingLayouts_ThenOneLayout_ThenABadRow_AreReadAndFailAsTheWalk()
    {
        // After rows whose layouts keep changing (walked, and the last layout looked for in one row
        // of eight only), a long run of one layout (then checked from the template), then a row of
        // that length and count whose first value's length word runs past the body.
        var rows = new List<DataRow>();
        for (int i = 0; i < 40; i++)
        {
            rows.Add(Row([i % 7, 3, (i * 5) % 11, -1], (byte)i, null));
        }

        for (int i = 0; i < 40; i++)
        {
            rows.Add(Row([4, 4, 4, -1], (byte)i, null));
        }

        byte[] stream = [.. rows.SelectMany(r => r.ToArray())];
        AssertSpanReader(stream, [.. rows]);

        byte[] bad = Row([4, 4, 4, -1], 9, null).ToArray();
        bad[10] = 200;
        Assert.False(DataRow.TryValidate(bad.AsSpan(5), null, out PgDecodeError expected));
        var reader = new PgMessageReader(PgDirection.Backend, new DecodeContext { Phase = PgSessionPhase.Normal });
        ReadOnlySpan<byte> rest = [.. stream, .. bad];
        for (int i = 0; i < rows.Count; i++)
        {
            Assert.Equal(PgReadStatus.Message, reader.TryRead(rest, out int consumed, out _, out _));
            rest = rest[consumed..];
        }

        Assert.Equal(PgReadStatus.Malformed, reader.TryRead(rest, out _, out _, out PgDecodeError error));
        Assert.Equal(expected.Reason, error.Reason);
        Assert.Equal(expected.Offset + stream.Length, error.Offset);
    }

    [Fact]
    public void Reader_KeepsNoValueBytes_OfTheBodyItKeepsAsATemplate()
    {
        // Three Binds of one layout (the second and third are checked from the first's places, and
        // the body kept as a template from the second on), then other messages: a parameter's bytes
        // (a password, say) must not stay in the reader's memory after the buffer is reused.
        byte[] secret = "hunter2-secret"u8.ToArray();
        var writer = new ArrayBufferWriter<byte>();
        for (int i = 0; i < 3; i++)
        {
            new Bind("", "login", [], [(ReadOnlyMemory<byte>?)secret], []).Encode(writer);
        }

        for (int i = 0; i < 10; i++)
        {
            new Sync().Encode(writer);
        }

        var reader = new PgMessageReader(PgDirection.Frontend, new DecodeContext { Phase = PgSessionPhase.Normal });
        ReadOnlySpan<byte> rest = writer.WrittenSpan;
        int messages = 0;
        while (reader.TryRead(rest, out int consumed, out _, out _) == PgReadStatus.Message)
        {
            rest = rest[consumed..];
            messages++;
        }

        Assert.Equal(13, messages);
        foreach (System.Reflection.FieldInfo field in typeof(PgMessageReader).GetFields(System.Reflection.BindingFlags.Instance | System.Reflection.BindingFlags.NonPublic))
        {
            if (field.GetValue(reader) is byte[] kept)
            {
                Assert.True(kept.AsSpan().IndexOf(secret) < 0, $"the reader's {field.Name} holds the parameter's bytes");
                Assert.True(kept.AsSpan().IndexOf("login"u8) < 0 || field.Name == "_template", $"{field.Name} holds the body");
            }
        }

        Assert.Contains(typeof(PgMessageReader).GetFields(System.Reflection.BindingFlags.Instance | System.Reflection.BindingFlags.NonPublic), f => f.GetValue(reader) is byte[] { Length: > 0 } kept && kept.AsSpan().IndexOf("login"u8) >= 0);
    }

    [Fact]
    public void BindParameters_ReadThroughTheReader_AreTheOwnedParameters()
    {
        var binds = new[]
        {
            new Bind("p", "s", [1], [(ReadOnlyMemory<byte>?)new byte[] { 1, 2, 3 }, null, new byte[] { 9 }], [0, 1]),
            new Bind("p", "s", [1], [(ReadOnlyMemory<byte>?)new byte[] { 4, 5, 6 }, null, new byte[] { 7 }], [0, 1]),
            new Bind("", "", [], [(ReadOnlyMemory<byte>?)new byte[] { 1 }, new byte[] { 2, 3 }, new byte[0]], []),
        };
        byte[] stream = [.. binds.SelectMany(b => b.ToArray())];
        var reader = new PgMessageReader(PgDirection.Frontend, new DecodeContext { Phase = PgSessionPhase.Normal });
        ReadOnlySpan<byte> rest = stream;
        foreach (Bind expected in binds)
        {
            Assert.Equal(PgReadStatus.Message, reader.TryRead(rest, out int consumed, out PgReceivedMessage message, out PgDecodeError error));
            rest = rest[consumed..];
            Bind.View view = Bind.View.Read(message);
            Assert.Equal(Values(expected.Parameters), Values(view.Parameters));
            Assert.Equal(expected.ResultFormatCodes.ToArray(), view.ResultFormatCodes.ToArray());
            for (int i = 0; i < expected.Parameters.Length; i++)
            {
                Assert.Equal(Value(expected.Parameters[i]), Value(view.Parameters[i]));
            }
        }
    }

    [Theory]
    [InlineData(new byte[] { 5, 6 }, new byte[] { 7, 8 })]
    [InlineData(new byte[] { 5, 6 }, new byte[] { 7, 8, 9, 10, 11 })]
    [InlineData(new byte[] { 5, 6 }, null)]
    [InlineData(new byte[0], new byte[] { 1 })]
    public void A_view_kept_past_the_next_read_reads_its_own_values(byte[]? first, byte[]? second)
    {
        // The reader keeps the places of one list at a time. A view kept past the next read, over
        // bytes that are still there, must read its own values: with the places while the reader
        // has not written over them (rows of one layout), walking its list once it has.
        DataRow[] rows =
        [
            new([new byte[] { 1 }, new byte[] { 2 }, new byte[] { 3 }]),
            new([new byte[] { 0x41, 0xff }, Nullable(first), new byte[] { 4, 4, 4 }]),
            new([new byte[] { 0x41, 0xff }, Nullable(second), new byte[] { 4, 4, 4 }]),
            new([new byte[] { 9, 9, 9, 9, 9, 9 }]),
        ];
        byte[] stream = [.. rows.SelectMany(r => r.ToArray())];
        var reader = new PgMessageReader(PgDirection.Backend, new DecodeContext { Phase = PgSessionPhase.Normal });
        ReadOnlySpan<byte> rest = stream;
        Assert.Equal(PgReadStatus.Message, reader.TryRead(rest, out int used, out _, out _));
        rest = rest[used..];
        Assert.Equal(PgReadStatus.Message, reader.TryRead(rest, out used, out PgReceivedMessage kept, out _));
        rest = rest[used..];
        DataRow.View view = DataRow.View.Read(kept);

        for (int next = 2; next < rows.Length; next++)
        {
            Assert.Equal(PgReadStatus.Message, reader.TryRead(rest, out used, out PgReceivedMessage later, out _));
            rest = rest[used..];
            Assert.Equal(Values(rows[next].Columns), Values(DataRow.View.Read(later).Columns));

            Assert.Equal(Values(rows[1].Columns), Values(view.Columns));
            Assert.Equal(Value(rows[1].Columns[1]), Value(view.Columns[1]));
            Assert.Equal(Value(rows[1].Columns[2]), Value(view.Columns[2]));
            Assert.Equal(rows[1], view.ToMessage());
            Assert.Equal(rows[1], (DataRow)kept.ToMessage());
        }
    }

    [Fact]
    public void Every_row_but_the_first_is_given_with_its_places_whether_walked_checked_by_layout_or_by_template()
    {
        // The places spare the views a walk: a row read by the walk, by the last row's layout or
        // by the template must come with places that are its own (the first row makes room).
        byte[][] layouts = [[1, 2, 3, 4, 5, 6, 7, 8], [9, 9], [1, 2, 3, 4, 5, 6, 7, 8]];
        var rows = new List<DataRow>();
        foreach (byte[] first in layouts)
        {
            for (int i = 0; i < 4; i++)
            {
                rows.Add(new DataRow([first, new byte[] { (byte)i, 1, 2, 3, 4, 5, 6, 7 }]));
            }
        }

        byte[] stream = [.. rows.SelectMany(r => r.ToArray())];
        var reader = new PgMessageReader(PgDirection.Backend, new DecodeContext { Phase = PgSessionPhase.Normal });
        ReadOnlySpan<byte> rest = stream;
        int index = 0;
        while (reader.TryRead(rest, out int used, out PgReceivedMessage message, out _) == PgReadStatus.Message)
        {
            rest = rest[used..];
            Assert.Equal(index > 0, message.ValuePlaces.IsCurrent);
            Assert.Equal(Values(rows[index].Columns), Values(DataRow.View.Read(message).Columns));
            index++;
        }

        Assert.Equal(rows.Count, index);
    }

    [Fact]
    public void A_row_whose_split_body_the_next_read_wrote_over_has_no_places_any_more()
    {
        // A body split across segments is copied into the reader's scratch, which the next split
        // body writes over, here one whose message records no places (ParameterDescription). The
        // row kept from before must not take the places it was read with for the bytes now there.
        byte[] row = new DataRow([(ReadOnlyMemory<byte>?)"ab"u8.ToArray(), "cd"u8.ToArray()]).ToArray();
        byte[] description = [(byte)'t', 0, 0, 0, 14, 0, 2, 0xFF, 0xFF, 0xFF, 0xFE, 0x7F, 0xFF, 0xFF, 0xFF];
        var reader = new PgMessageReader(PgDirection.Backend, new DecodeContext { Phase = PgSessionPhase.Normal });
        Assert.Equal(PgReadStatus.Message, reader.TryRead(row, out _, out _, out _));
        ReadOnlySequence<byte> first = Segments.Split(row, [9]);
        Assert.Equal(PgReadStatus.Message, reader.TryRead(ref first, out PgReceivedMessage kept, out _));
        Assert.Equal(new DataRow([(ReadOnlyMemory<byte>?)"ab"u8.ToArray(), "cd"u8.ToArray()]), (DataRow)kept.ToMessage());

        ReadOnlySequence<byte> second = Segments.Split(description, [9]);
        Assert.Equal(PgReadStatus.Message, reader.TryRead(ref second, out PgReceivedMessage next, out _));
        Assert.Equal(BackendMessageKind.ParameterDescription, next.BackendKind);

        // Its bytes are the description's now: walked, its first length (-2) is refused.
        PgProtocolException? walked = null;
        try
        {
            kept.ToMessage();
        }
        catch (PgProtocolException e)
        {
            walked = e;
        }

        Assert.NotNull(walked);
        Assert.Contains("-2", walked.Message);
    }

    [Fact]
    public void A_bind_view_kept_past_the_next_read_reads_its_own_parameters_and_no_further()
    {
        // Bind's parameters are followed by the result format codes: walking a kept list must
        // stop at its last parameter.
        Bind[] binds =
        [
            new("p", "s", [1], [(ReadOnlyMemory<byte>?)new byte[] { 1, 2, 3 }, null, new byte[] { 9 }], [0, 1]),
            new("p", "s", [1], [(ReadOnlyMemory<byte>?)new byte[] { 1 }, new byte[] { 2, 2 }, null, new byte[] { 3, 3, 3 }], [1, 1, 1]),
        ];
        // The reader makes room for places at its first list (walked): the kept Bind is the second.
        byte[] stream = [.. binds[1].ToArray(), .. binds.SelectMany(b => b.ToArray())];
        var reader = new PgMessageReader(PgDirection.Frontend, new DecodeContext { Phase = PgSessionPhase.Normal });
        ReadOnlySpan<byte> rest = stream;
        Assert.Equal(PgReadStatus.Message, reader.TryRead(rest, out int used, out _, out _));
        rest = rest[used..];
        Assert.Equal(PgReadStatus.Message, reader.TryRead(rest, out used, out PgReceivedMessage kept, out _));
        Bind.View view = Bind.View.Read(kept);
        Assert.Equal(PgReadStatus.Message, reader.TryRead(rest[used..], out _, out PgReceivedMessage next, out _));

        Assert.Equal(Values(binds[1].Parameters), Values(Bind.View.Read(next).Parameters));
        Assert.Equal(Values(binds[0].Parameters), Values(view.Parameters));
        Assert.Equal(3, view.Parameters.Count);
        Assert.Equal(Value(binds[0].Parameters[2]), Value(view.Parameters[2]));
        Assert.Equal(binds[0], view.ToMessage());
    }

    [Fact]
    public void RowOfTheSameLayout_WithBytesLeftOver_FailsAsTheWalkFails()
    {
        byte[] good = Row([8, 8, -1, 3], 1, null).ToArray();

        // The same length words at the same places, then two bytes more: the length word grows by two.
        byte[] longer = [.. Row([8, 8, -1, 3], 2, null).ToArray(), 0xAA, 0xBB];
        longer[4] += 2;
        AssertSecondFailsAsTryValidate(good, longer, "bytes left over");
    }

    [Fact]
    public void RowOfTheSameCount_WhoseFirstLengthOverruns_FailsAsTheWalkFails()
    {
        byte[] good = Row([8, 8, 8], 1, null).ToArray();
        byte[] bad = Row([8, 8, 8], 2, null).ToArray();

        // The first column's length word (after the type byte, the length word and the count) says 200.
        bad[7] = 0;
        bad[8] = 0;
        bad[9] = 0;
        bad[10] = 200;
        AssertSecondFailsAsTryValidate(good, bad, "more than the");
    }

    [Fact]
    public void RowOfTheSameCount_WithANullWhereTheLayoutHadAValue_IsWalkedAndRead()
    {
        DataRow first = Row([2, 2, 2], 1, null);
        DataRow second = new([(ReadOnlyMemory<byte>?)new byte[] { 5, 6 }, null, new byte[] { 7, 8, 9, 10 }]);
        byte[] stream = [.. first.ToArray(), .. second.ToArray()];
        AssertSpanReader(stream, [first, second]);
    }

    [Fact]
    public void Indexer_OutOfRange_Throws_AndWorksWithoutTheReader()
    {
        DataRow row = Row([3, -1, 0, 5], 4, null);
        byte[] body = row.ToArray()[5..];
        DataRow.View view = DataRow.View.Read(body);
        Assert.Equal(Values(row.Columns), Values(view.Columns));
        for (int i = 0; i < row.Columns.Length; i++)
        {
            Assert.Equal(Value(row.Columns[i]), Value(view.Columns[i]));
        }

        Assert.Throws<ArgumentOutOfRangeException>(() => Value(DataRow.View.Read(body).Columns[4]));
        Assert.Throws<ArgumentOutOfRangeException>(() => Value(DataRow.View.Read(body).Columns[-1]));
    }

    [Fact]
    public void Reader_ThroughListsOfEveryLength_AllocatesItsSlotsOnceAndBounded()
    {
        // Binds of 1 to 400 parameters, then again: the slots grow by doubling to their bound
        // (longer lists are walked), so the reader allocates a few kilobytes in all, not per message.
        var writer = new ArrayBufferWriter<byte>();
        for (int pass = 0; pass < 2; pass++)
        {
            for (int n = 1; n <= 400; n++)
            {
                new Bind("", "", [], [.. Enumerable.Repeat((ReadOnlyMemory<byte>?)new byte[] { 1 }, n)], []).Encode(writer);
            }
        }

        byte[] stream = writer.WrittenSpan.ToArray();
        var reader = new PgMessageReader(PgDirection.Frontend, new DecodeContext { Phase = PgSessionPhase.Normal });
        ReadOnlySpan<byte> rest = stream;
        int messages = 0;
        long sum = 0;
        long before = GC.GetAllocatedBytesForCurrentThread();
        while (reader.TryRead(rest, out int consumed, out PgReceivedMessage message, out _) == PgReadStatus.Message)
        {
            rest = rest[consumed..];
            sum += Bind.View.Read(message).Parameters.Count;
            messages++;
        }

        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal(800, messages);
        Assert.Equal(2L * 400 * 401 / 2, sum);
        Assert.InRange(allocated, 1, 5000);
    }

    [Fact]
    public async Task PipeReader_AfterWarmUp_AllocatesNothingPerMessage()
    {
        // Two passes of different lengths through PipeReader.Create over a stream, as a socket is
        // read: what a pass allocates (the pipe, its buffers from the pool) must not grow with the
        // number of messages.
        byte[] small = Stream(2_000);
        byte[] large = Stream(20_000);
        await ReadPipe(small);
        await ReadPipe(large);

        long before = GC.GetAllocatedBytesForCurrentThread();
        long sumSmall = await ReadPipe(small);
        long smallBytes = GC.GetAllocatedBytesForCurrentThread() - before;

        before = GC.GetAllocatedBytesForCurrentThread();
        long sumLarge = await ReadPipe(large);
        long largeBytes = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.Equal(2_000L * 10 * 8, sumSmall);
        Assert.Equal(20_000L * 10 * 8, sumLarge);
        Assert.True(largeBytes - smallBytes < 18_000, $"18,000 messages more allocated {largeBytes - smallBytes} bytes more ({smallBytes} for 2,000 messages, {largeBytes} for 20,000)");

        static byte[] Stream(int rows)
        {
            var writer = new ArrayBufferWriter<byte>();
            for (int i = 0; i < rows; i++)
            {
                Row([8, 8, 8, 8, 8, 8, 8, 8, 8, 8], (byte)i, null).Encode(writer);
            }

            return writer.WrittenSpan.ToArray();
        }
    }

    private static async Task<long> ReadPipe(byte[] stream)
    {
        using var source = new MemoryStream(stream, writable: false);
        // 64 KiB buffers, as PgSpec.Client reads its socket: a Debug build allocates each pipe
        // read's async state machine, a few dozen reads here, far below a byte per message.
        PipeReader pipe = PipeReader.Create(source, new StreamPipeReaderOptions(bufferSize: 65536, minimumReadSize: 16384, leaveOpen: true));
        var reader = new PgPipeMessageReader(pipe, PgDirection.Backend, new DecodeContext { Phase = PgSessionPhase.Normal });
        long sum = 0;
        while (true)
        {
            if (reader.TryRead(out PgReceivedMessage message))
            {
                sum += SumLengths(message);
            }
            else if (await reader.ReadAsync())
            {
                sum += SumLengths(reader.Current);
            }
            else
            {
                break;
            }
        }

        await pipe.CompleteAsync();
        return sum;
    }

    private static long SumLengths(PgReceivedMessage message)
    {
        long sum = 0;
        foreach (PgValue value in DataRow.View.Read(message).Columns)
        {
            sum += value.Bytes.Length;
        }

        return sum;
    }

    private static void AssertSecondFailsAsTryValidate(byte[] good, byte[] bad, string reason)
    {
        Assert.True(DataRow.TryDecode(good.AsSpan(5), null, out _, out _));
        Assert.False(DataRow.TryValidate(bad.AsSpan(5), null, out PgDecodeError expected));
        Assert.Contains(reason, expected.Reason, StringComparison.Ordinal);

        var reader = new PgMessageReader(PgDirection.Backend, new DecodeContext { Phase = PgSessionPhase.Normal });

        // The first row three times, so that the reader has slots of that layout and the row as a
        // template (kept from the second row on) when the bad row comes.
        byte[] stream = [.. good, .. good, .. good, .. bad];
        ReadOnlySpan<byte> rest = stream;
        for (int i = 0; i < 3; i++)
        {
            Assert.Equal(PgReadStatus.Message, reader.TryRead(rest, out int consumed, out _, out _));
            rest = rest[consumed..];
        }

        Assert.Equal(PgReadStatus.Malformed, reader.TryRead(rest, out int none, out _, out PgDecodeError error));
        Assert.Equal(0, none);
        Assert.Equal(expected.Field, error.Field);
        Assert.Equal(expected.Reason, error.Reason);
        Assert.Equal(expected.Offset + (3 * good.Length), error.Offset);
    }

    private static void AssertSpanReader(byte[] stream, DataRow[] expected)
    {
        var reader = new PgMessageReader(PgDirection.Backend, new DecodeContext { Phase = PgSessionPhase.Normal });
        ReadOnlySpan<byte> rest = stream;
        foreach (DataRow row in expected)
        {
            Assert.Equal(PgReadStatus.Message, reader.TryRead(rest, out int consumed, out PgReceivedMessage message, out PgDecodeError error));
            rest = rest[consumed..];
            AssertColumns(row, DataRow.View.Read(message));
        }

        Assert.True(rest.IsEmpty);
    }

    private static async Task AssertPipeReader(byte[] stream, DataRow[] expected, int segmentSize)
    {
        using var source = new MemoryStream(stream, writable: false);
        PipeReader pipe = PipeReader.Create(source, new StreamPipeReaderOptions(bufferSize: segmentSize, minimumReadSize: Math.Min(16, segmentSize), leaveOpen: true));
        var reader = new PgPipeMessageReader(pipe, PgDirection.Backend, new DecodeContext { Phase = PgSessionPhase.Normal });
        int count = 0;
        while (true)
        {
            if (reader.TryRead(out PgReceivedMessage message))
            {
                Assert.True(count < expected.Length, "more messages than were written");
                AssertColumns(expected[count], DataRow.View.Read(message));
            }
            else if (await reader.ReadAsync())
            {
                Assert.True(count < expected.Length, "more messages than were written");
                AssertColumns(expected[count], DataRow.View.Read(reader.Current));
            }
            else
            {
                break;
            }

            count++;
        }

        Assert.Equal(expected.Length, count);
        await pipe.CompleteAsync();
    }

    private static void AssertColumns(DataRow expected, DataRow.View view)
    {
        PgValueList columns = view.Columns;
        Assert.Equal(expected.Columns.Length, columns.Count);
        Assert.Equal(Values(expected.Columns), Values(columns));
        for (int i = columns.Count - 1; i >= 0; i--)
        {
            Assert.Equal(Value(expected.Columns[i]), Value(columns[i]));
        }
    }

    /// <summary>A row of the given layout (-1: NULL, else a length), bytes from <paramref name="seed"/>; <paramref name="extra"/> appended when given.</summary>
    private static DataRow Row(int[] layout, byte seed, ReadOnlyMemory<byte>? extra)
    {
        var columns = ImmutableArray.CreateBuilder<ReadOnlyMemory<byte>?>();
        foreach (int length in layout)
        {
            columns.Add(length < 0 ? (ReadOnlyMemory<byte>?)null : Enumerable.Range(0, length).Select(i => (byte)(seed + i)).ToArray());
        }

        if (extra is not null)
        {
            columns.Add(extra);
        }

        return new DataRow(columns.ToImmutable());
    }

    private static string?[] Values(PgValueArray values) => [.. values.Select(Value)];

    private static string?[] Values(PgValueList values)
    {
        var list = new List<string?>();
        foreach (PgValue value in values)
        {
            list.Add(Value(value));
        }

        return [.. list];
    }

    private static string? Value(ReadOnlyMemory<byte>? value) => value is { } v ? Convert.ToHexString(v.Span) : null;

    private static string? Value(PgValue value) => value.IsNull ? null : Convert.ToHexString(value.Bytes);

    // A null byte[] converts to an empty ReadOnlyMemory<byte>, not to a NULL.
    private static ReadOnlyMemory<byte>? Nullable(byte[]? value) => value is null ? (ReadOnlyMemory<byte>?)null : value;
}

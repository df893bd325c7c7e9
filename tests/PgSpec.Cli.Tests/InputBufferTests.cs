namespace PgSpec.Cli.Tests;

public class InputBufferTests
{
    [Fact]
    public void ReadMore_MessageLargerThanTheBuffer_GrowsToItThenShrinksBackForASmallOne()
    {
        using var input = new InputBuffer(new MemoryStream(new byte[3_000_000]), "test", ownsStream: true);

        Assert.True(input.Ensure(5));
        Assert.Equal(InputBuffer.DefaultSize, input.Capacity);

        Assert.True(input.Ensure(1_000_000));
        Assert.InRange(input.Capacity, 1_000_000, 1_000_000 + 8192);

        // Small messages fill the buffer in its turn; when one is cut short, the buffer is made
        // as small as before to read the rest.
        input.Consume(input.Count);
        Assert.True(input.Ensure(5));
        Assert.InRange(input.Capacity, 1_000_000, 1_000_000 + 8192);
        input.Consume(input.Count - 3);
        Assert.True(input.ReadMore(100));
        Assert.Equal(InputBuffer.DefaultSize, input.Capacity);
        Assert.Equal(InputBuffer.DefaultSize, input.Count);
    }

    [Fact]
    public void ReadMore_ShortReadsOfAPipe_MarkTheInputDrainedAndCallBeforeWait()
    {
        using var pipe = new GatedStream();
        pipe.Release([1, 2, 3]);
        pipe.Release([4]);
        pipe.End();
        int waits = 0;
        using var input = new InputBuffer(pipe, "test", ownsStream: false) { BeforeWait = () => waits++ };

        Assert.True(input.ReadMore(10));
        Assert.True(input.Drained);
        Assert.Equal(0, waits);
        Assert.True(input.ReadMore(10));
        Assert.Equal(1, waits);
        Assert.False(input.ReadMore(10));
        Assert.True(input.Ended);
        Assert.Equal([1, 2, 3, 4], input.Data.ToArray());
    }

    [Fact]
    public void ReadMore_WholeReadsOfAFile_NeverCallBeforeWait()
    {
        using var dir = new TempDirectory();
        string file = dir.Write("stream.bin", new byte[(3 * InputBuffer.DefaultSize) + 17]);
        int waits = 0;
        using var input = InputFiles.Open(file, Stream.Null, hex: false);
        input.BeforeWait = () => waits++;

        long total = 0;
        while (input.ReadMore(input.Count + 1))
        {
            total += input.Count;
            input.Consume(input.Count);
        }

        Assert.Equal((3 * InputBuffer.DefaultSize) + 17, total);
        Assert.Equal(1, waits);
    }
}

using System.Runtime.InteropServices;
using System.Text;
using PgSpec.Protocol;

namespace PgSpec.Protocol.Tests;

/// <summary>An owned message's list of values is slices of one copy of its body, not an array per value.</summary>
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
}

using System.Globalization;
using System.Text;
using PgSpec.Protocol;

namespace PgSpec.Protocol.Tests;

/// <summary>Measuring that a reader allocates nothing per message.</summary>
internal static class Allocations
{
    /// <summary>
    /// Whether what <paramref name="measure"/> allocates for 1000 rows and for 4000 is the same:
    /// the least of five passes each (the runtime allocates on the thread now and then, a tier-up
    /// of the code measured, which says nothing of the reader; a debug build's async state
    /// machines are objects, one per wait, hence the comparison rather than zero).
    /// </summary>
    public static async Task AssertNothingPerMessageAsync(Func<int, Task<long>> measure)
    {
        long thousand = long.MaxValue;
        long fourThousand = long.MaxValue;
        for (int pass = 0; pass < 5; pass++)
        {
            thousand = Math.Min(thousand, await measure(1000));
            fourThousand = Math.Min(fourThousand, await measure(4000));
        }

        Assert.Equal(thousand, fourThousand);
    }

    /// <summary>The bytes of <paramref name="rows"/> DataRows of two columns (a number as text, and NULL).</summary>
    public static byte[] DataRows(int rows)
    {
        var bytes = new List<byte>();
        for (int i = 0; i < rows; i++)
        {
            bytes.AddRange(new DataRow([(ReadOnlyMemory<byte>?)Encoding.ASCII.GetBytes(i.ToString(CultureInfo.InvariantCulture)), null]).ToArray());
        }

        return [.. bytes];
    }
}

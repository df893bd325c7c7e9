namespace PgSpec.Server.Tests;

/// <summary>
/// Waiting for conditions, never for a fixed time: the tests run on busy machines, where how
/// long anything takes is not known. Shared with the proxy's and the integration tests.
/// </summary>
internal static class Wait
{
    /// <summary>No test waits longer than this for anything.</summary>
    public static readonly TimeSpan Limit = TimeSpan.FromSeconds(60);

    /// <summary>A token cancelled after <see cref="Limit"/>.</summary>
    public static CancellationToken Token => new CancellationTokenSource(Limit).Token;

    /// <summary>Polls <paramref name="condition"/> until it holds; fails with <paramref name="what"/> if it does not within the limit.</summary>
    public static Task UntilAsync(Func<bool> condition, string what)
        => UntilAsync(() => Task.FromResult(condition()), what);

    /// <summary>
    /// Polls <paramref name="condition"/> (a query to a server, say) until it holds; fails with
    /// <paramref name="what"/> if it does not within the limit.
    /// </summary>
    public static async Task UntilAsync(Func<Task<bool>> condition, string what)
    {
        DateTime deadline = DateTime.UtcNow + Limit;
        while (!await condition())
        {
            if (DateTime.UtcNow > deadline)
            {
                Assert.Fail($"timed out waiting until {what}");
            }

            await Task.Delay(10);
        }
    }

    /// <summary>
    /// Polls <paramref name="value"/> until it has not changed for <paramref name="polls"/> polls in a
    /// row, and returns it. Steadiness is only a sign (a producer that gets no processor for a while
    /// looks steady too): use it where a value read too early cannot make the test fail, only
    /// exercise less (the callers check bounds that hold at any moment).
    /// </summary>
    public static async Task<long> UntilSteadyAsync(Func<long> value, int polls, TimeSpan interval)
    {
        DateTime deadline = DateTime.UtcNow + Limit;
        long last = value();
        int same = 0;
        while (same < polls)
        {
            if (DateTime.UtcNow > deadline)
            {
                Assert.Fail($"the value kept changing (last {last})");
            }

            await Task.Delay(interval);
            long now = value();
            same = now == last ? same + 1 : 0;
            last = now;
        }

        return last;
    }
}

namespace PgSpec.Fuzz;

/// <summary>The oracle caught the codec doing what no input may make it do.</summary>
public class FuzzFindingException : Exception
{
    /// <summary>Creates the finding.</summary>
    public FuzzFindingException(string message, Exception? inner = null)
        : base(message, inner)
    {
    }
}

/// <summary>A decoder allocated more than its budget for the input.</summary>
public sealed class FuzzAllocationException : FuzzFindingException
{
    /// <summary>Creates the finding.</summary>
    public FuzzAllocationException(string message)
        : base(message)
    {
    }
}

/// <summary>
/// One fuzz target: an entry point of the codec fed bytes from an untrusted peer, with the
/// oracle that judges each run. <see cref="Run"/> returns normally when the codec behaved
/// (accepted the input, or rejected it with its typed protocol error) and throws
/// <see cref="FuzzFindingException"/> otherwise; an unexpected exception from the codec comes
/// back wrapped in one.
/// </summary>
/// <remarks>
/// Nothing of the codec runs before the first <see cref="Run"/>: under afl-fuzz the codec is
/// instrumented, and instrumented code must not run before SharpFuzz attaches the coverage map.
/// </remarks>
public abstract class FuzzTarget
{
    private bool _warm;

    /// <summary>The name used by <c>fuzz/run.sh</c> and for the corpus and regression folders.</summary>
    public abstract string Name { get; }

    /// <summary>What the target feeds, and how its input bytes are laid out.</summary>
    public abstract string Description { get; }

    /// <summary>Runs one input through the oracle.</summary>
    public void Run(ReadOnlySpan<byte> input)
    {
        if (!_warm)
        {
            // First use of the codec: static initialisation and first-call allocations happen
            // here, not in the first measured run.
            _warm = true;
            Guard(Warm);
        }

        try
        {
            Guard(input, Execute);
        }
        catch (FuzzAllocationException)
        {
            // An allocation over budget is measured again once: a lazily initialised static of
            // the runtime, reached for the first time, is not the input's doing.
            Guard(input, Execute);
        }
    }

    /// <summary>Runs the input; throws <see cref="FuzzFindingException"/> on a violation.</summary>
    protected abstract void Execute(ReadOnlySpan<byte> input);

    /// <summary>Touches what the first run would otherwise initialise.</summary>
    protected virtual void Warm()
    {
    }

    private delegate void SpanAction(ReadOnlySpan<byte> input);

    private static void Guard(ReadOnlySpan<byte> input, SpanAction action)
    {
        try
        {
            action(input);
        }
        catch (FuzzFindingException)
        {
            throw;
        }
        catch (Exception e)
        {
            throw new FuzzFindingException($"{e.GetType().FullName} escaped the codec: {e.Message}", e);
        }
    }

    private static void Guard(Action action)
    {
        try
        {
            action();
        }
        catch (Exception e) when (e is not FuzzFindingException)
        {
            throw new FuzzFindingException($"{e.GetType().FullName} escaped the codec while warming up: {e.Message}", e);
        }
    }
}

/// <summary>Every target, by name.</summary>
public static class FuzzTargets
{
    /// <summary>Creates one instance of every target, in the order <c>fuzz/run.sh all</c> runs them.</summary>
    public static IReadOnlyList<FuzzTarget> Create() =>
    [
        new BodyTarget(backend: false),
        new BodyTarget(backend: true),
        new StartupPacketTarget(),
        new StreamTarget(backend: false, protocol32: false),
        new StreamTarget(backend: false, protocol32: true),
        new StreamTarget(backend: true, protocol32: false),
        new StreamTarget(backend: true, protocol32: true),
        new SegmentationTarget(),
        new SessionTarget(),
        new BackendSessionTarget(),
        new ReplicationTarget(),
        new PgOutputTarget(),
    ];

    /// <summary>The names of every target.</summary>
    public static IReadOnlyList<string> Names => Create().Select(t => t.Name).ToArray();

    /// <summary>A new instance of the named target, or null.</summary>
    public static FuzzTarget? Find(string name) => Create().FirstOrDefault(t => t.Name == name);
}

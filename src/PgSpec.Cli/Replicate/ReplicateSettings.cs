using PgSpec.Client;
using PgSpec.Protocol;

namespace PgSpec.Cli.Replicate;

/// <summary>What <c>pgspec replicate</c> was asked to do, checked and resolved (options, environment, defaults).</summary>
internal sealed record ReplicateSettings
{
    /// <summary>How to reach the server (the replication startup parameter is added when connecting).</summary>
    public required PgConnectOptions Connect { get; init; }

    /// <summary>-W: ask for the password before connecting.</summary>
    public bool PromptPassword { get; init; }

    /// <summary>-w: never ask for a password.</summary>
    public bool NeverPrompt { get; init; }

    /// <summary>The replication slot (required for logical replication; optional for physical).</summary>
    public string? Slot { get; init; }

    /// <summary>The publications (logical replication).</summary>
    public IReadOnlyList<string> Publications { get; init; } = [];

    /// <summary>Create the slot first.</summary>
    public bool CreateSlot { get; init; }

    /// <summary>With <see cref="CreateSlot"/>: a slot that exists already is used.</summary>
    public bool IfNotExists { get; init; }

    /// <summary>Drop the slot and stop.</summary>
    public bool DropSlot { get; init; }

    /// <summary>Where to start (0: where the slot is).</summary>
    public long StartLsn { get; init; }

    /// <summary>Where to stop, if anywhere.</summary>
    public long? EndLsn { get; init; }

    /// <summary>The output file; null: standard output.</summary>
    public string? OutputFile { get; init; }

    /// <summary>How often to send a standby status update (zero: only when the server asks, and at the end).</summary>
    public TimeSpan StatusInterval { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>The bound on connecting, on each command, and on the server's silence while streaming (infinite: none).</summary>
    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>pgoutput's proto_version; null: the highest the server has.</summary>
    public int? ProtocolVersion { get; init; }

    /// <summary>pgoutput's streaming option.</summary>
    public PgOutputStreaming Streaming { get; init; }

    /// <summary>pgoutput's two_phase option.</summary>
    public bool TwoPhase { get; init; }

    /// <summary>pgoutput's binary option.</summary>
    public bool Binary { get; init; }

    /// <summary>pgoutput's messages option.</summary>
    public bool Messages { get; init; } = true;

    /// <summary>pgoutput's origin option (any or none); null: the server's default (any).</summary>
    public string? Origin { get; init; }

    /// <summary>The most memory that transactions held until their commit may take before spilling to files.</summary>
    public long BufferMemory { get; init; } = 64L * 1024 * 1024;

    /// <summary>Where transactions spill to.</summary>
    public string SpillDirectory { get; init; } = Path.GetTempPath();

    /// <summary>Physical replication: WAL positions, no decoding.</summary>
    public bool Physical { get; init; }

    /// <summary>Notes on standard error about what the stream does.</summary>
    public bool Verbose { get; init; }
}

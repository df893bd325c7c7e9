namespace PgSpec.Protocol;

/// <summary>
/// The largest length word accepted per type byte and direction, checked before a body is
/// awaited. The defaults are PostgreSQL's own (server side) and libpq's (client side); every
/// limit can be overridden.
/// </summary>
public sealed class PgLimits
{
    private readonly int[] _frontend;
    private readonly int[] _backend;

    private PgLimits(int[] frontend, int[] backend, int startup)
    {
        _frontend = frontend;
        _backend = backend;
        MaxStartupPacketLength = startup;
    }

    /// <summary>The limits of the specs.</summary>
    public static PgLimits Default { get; } = CreateDefault();

    /// <summary>
    /// Limits for a message set of one's own (generated from a spec of one's own): the largest
    /// length word per direction and type byte, and of an untyped startup packet.
    /// </summary>
    public static PgLimits Create(Func<PgDirection, byte, int> maxLength, int maxStartupPacketLength = 10000)
    {
        ArgumentNullException.ThrowIfNull(maxLength);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxStartupPacketLength, 8);
        var frontend = new int[256];
        var backend = new int[256];
        for (int b = 0; b < 256; b++)
        {
            frontend[b] = maxLength(PgDirection.Frontend, (byte)b);
            backend[b] = maxLength(PgDirection.Backend, (byte)b);
            if (frontend[b] < 4 || backend[b] < 4)
            {
                throw new ArgumentOutOfRangeException(nameof(maxLength), $"the limit for type byte {b} is less than 4 (a length word counts itself)");
            }
        }

        return new PgLimits(frontend, backend, maxStartupPacketLength);
    }

    /// <summary>The largest length word of an untyped startup packet.</summary>
    public int MaxStartupPacketLength { get; }

    /// <summary>The largest length word for a typed message.</summary>
    public int MaxLength(PgDirection direction, byte typeByte)
        => direction == PgDirection.Frontend ? _frontend[typeByte] : _backend[typeByte];

    /// <summary>A copy with one limit changed.</summary>
    public PgLimits With(PgDirection direction, byte typeByte, int maxLength)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxLength, 4);
        int[] frontend = (int[])_frontend.Clone();
        int[] backend = (int[])_backend.Clone();
        (direction == PgDirection.Frontend ? frontend : backend)[typeByte] = maxLength;
        return new PgLimits(frontend, backend, MaxStartupPacketLength);
    }

    /// <summary>A copy with every typed limit of one direction set to <paramref name="maxLength"/>.</summary>
    public PgLimits WithAll(PgDirection direction, int maxLength)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxLength, 4);
        int[] frontend = (int[])_frontend.Clone();
        int[] backend = (int[])_backend.Clone();
        Array.Fill(direction == PgDirection.Frontend ? frontend : backend, maxLength);
        return new PgLimits(frontend, backend, MaxStartupPacketLength);
    }

    /// <summary>A copy with another startup packet limit.</summary>
    public PgLimits WithStartupPacket(int maxLength)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxLength, 8);
        return new PgLimits(_frontend, _backend, maxLength);
    }

    private static PgLimits CreateDefault()
    {
        var frontend = new int[256];
        var backend = new int[256];
        for (int b = 0; b < 256; b++)
        {
            frontend[b] = FrontendMessages.DefaultMaxLength((byte)b);
            backend[b] = BackendMessages.DefaultMaxLength((byte)b);
        }

        return new PgLimits(frontend, backend, FrontendMessages.DefaultMaxStartupPacketLength);
    }
}

using System.Globalization;

namespace PgSpec.Protocol;

/// <summary>A protocol version as sent in StartupMessage: major in the high 16 bits, minor in the low.</summary>
public readonly record struct PgProtocolVersion(int Code)
{
    /// <summary>Protocol 3.0 (196608), spoken by every PostgreSQL since 7.4.</summary>
    public static readonly PgProtocolVersion V3_0 = new(196608);

    /// <summary>Protocol 3.2 (196610), PostgreSQL 18 and later: variable-length cancel keys.</summary>
    public static readonly PgProtocolVersion V3_2 = new(196610);

    /// <summary>The newest version this library speaks.</summary>
    public static readonly PgProtocolVersion Latest = V3_2;

    /// <summary>The major version.</summary>
    public int Major => (Code >> 16) & 0xFFFF;

    /// <summary>The minor version.</summary>
    public int Minor => Code & 0xFFFF;

    /// <summary>True for default(PgProtocolVersion), which APIs read as <see cref="Latest"/>.</summary>
    public bool IsDefault => Code == 0;

    /// <summary>True from 3.2 on: cancel keys are 4 to 256 bytes long.</summary>
    public bool HasVariableCancelKey => Code >= V3_2.Code;

    /// <summary>Makes a version from its parts.</summary>
    public static PgProtocolVersion From(int major, int minor) => new((major << 16) | minor);

    /// <summary>Parses "3.0" or "3.2".</summary>
    public static bool TryParse(string? text, out PgProtocolVersion version)
    {
        version = default;
        if (text is null)
        {
            return false;
        }

        string[] parts = text.Split('.');
        if (parts.Length == 2
            && int.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out int major)
            && int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out int minor)
            && major is > 0 and < 0x8000 && minor is >= 0 and <= 0xFFFF)
        {
            version = From(major, minor);
            return true;
        }

        return false;
    }

    /// <inheritdoc/>
    public override string ToString() => IsDefault ? "default" : $"{Major}.{Minor}";
}

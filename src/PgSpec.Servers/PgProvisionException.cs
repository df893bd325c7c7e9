namespace PgSpec.Servers;

/// <summary>A server could not be provided: binaries missing, initdb or start failed, Docker unavailable.</summary>
public sealed class PgProvisionException : Exception
{
    /// <summary>Creates the exception.</summary>
    public PgProvisionException(string message, Exception? inner = null)
        : base(message, inner)
    {
    }
}

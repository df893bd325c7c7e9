using System.CommandLine;
using System.CommandLine.Parsing;
using System.Security.Cryptography.X509Certificates;

namespace PgSpec.Cli;

/// <summary>What the commands that accept connections (proxy, serve) check and load alike.</summary>
internal static class ServerOptions
{
    /// <summary>The longest timeout or grace accepted, in seconds (a day).</summary>
    public const double MaxSeconds = 86400;

    /// <summary>
    /// Checks the timeouts given: each from 0 to a day, the handshake timeout more than 0
    /// (clients need time to start).
    /// </summary>
    public static void CheckSeconds(CommandResult result, Option<double> handshakeTimeout, params Option<double>[] others)
    {
        foreach (Option<double> seconds in others.Prepend(handshakeTimeout))
        {
            if (result.GetResult(seconds) is not { Implicit: false })
            {
                continue;
            }

            double value = PgSpecCommandLine.ValueInValidator(result, seconds);
            double least = seconds == handshakeTimeout ? double.Epsilon : 0;
            if (value < least || double.IsNaN(value) || value > MaxSeconds)
            {
                result.AddError(seconds == handshakeTimeout
                    ? $"--handshake-timeout is a number of seconds more than 0 and at most {MaxSeconds}: clients need time to start."
                    : $"{seconds.Name} is a number of seconds from 0 to {MaxSeconds}.");
            }
        }
    }

    /// <summary>Loads --tls-cert with --tls-key (PEM); false, with the reason on standard error, when they cannot be used.</summary>
    public static bool TryLoadCertificate(string? certFile, string? keyFile, TextWriter stderr, out X509Certificate2? certificate)
    {
        certificate = null;
        if (certFile is null)
        {
            return true;
        }

        try
        {
            certificate = X509Certificate2.CreateFromPemFile(certFile, keyFile);
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or System.Security.Cryptography.CryptographicException)
        {
            stderr.WriteLine($"pgspec: cannot load --tls-cert/--tls-key: {e.Message}");
            return false;
        }
    }
}

using System.Globalization;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using PgSpec.Protocol;
using PgSpec.Shared;

namespace PgSpec.Client;

/// <summary>
/// The client side of SCRAM-SHA-256 and SCRAM-SHA-256-PLUS (RFC 5802, RFC 7677), as PostgreSQL
/// uses it: the user name in the SCRAM messages is empty (the startup packet names the user),
/// the password is SASLprep'ed (falling back to the raw bytes, as PostgreSQL does), the server's
/// nonce must extend the client's, and the server signature is checked in constant time.
/// </summary>
internal sealed class ScramSha256Client
{
    /// <summary>The most PBKDF2 iterations a server may ask for (a hostile server could ask for billions).</summary>
    public const int MaxIterations = 10_000_000;

    private readonly byte[] _password;
    private readonly string _clientNonce;
    private readonly string _gs2Header;
    private readonly byte[] _channelBindingData;
    private string? _clientFirstBare;
    private byte[]? _expectedServerSignature;

    /// <summary>Starts an exchange. <paramref name="channelBinding"/> is the tls-server-end-point data for -PLUS, else null.</summary>
    public ScramSha256Client(string password, bool plus, byte[]? channelBinding, bool clientSupportsBinding, string? clientNonce = null)
        : this(SaslPrep.Prepare(password ?? throw new ArgumentNullException(nameof(password))), plus, channelBinding, clientSupportsBinding, clientNonce)
    {
    }

    /// <summary>
    /// Starts an exchange with a password given as bytes (as a PasswordMessage carries it): SASLprep'ed
    /// when it is UTF-8, used as it is otherwise, as PostgreSQL does.
    /// </summary>
    public ScramSha256Client(ReadOnlySpan<byte> password, bool plus, byte[]? channelBinding, bool clientSupportsBinding, string? clientNonce = null)
        : this(SaslPrep.Prepare(password), plus, channelBinding, clientSupportsBinding, clientNonce)
    {
    }

    private ScramSha256Client(byte[] preparedPassword, bool plus, byte[]? channelBinding, bool clientSupportsBinding, string? clientNonce)
    {
        _password = preparedPassword;
        _clientNonce = clientNonce ?? Convert.ToBase64String(RandomNumberGenerator.GetBytes(18));
        Mechanism = plus ? "SCRAM-SHA-256-PLUS" : "SCRAM-SHA-256";
        if (plus)
        {
            _gs2Header = "p=tls-server-end-point,,";
            _channelBindingData = channelBinding ?? throw new ArgumentNullException(nameof(channelBinding));
        }
        else
        {
            // "y": the client could bind, but the server did not offer -PLUS.
            _gs2Header = clientSupportsBinding ? "y,," : "n,,";
            _channelBindingData = [];
        }
    }

    /// <summary>The mechanism name sent in SASLInitialResponse.</summary>
    public string Mechanism { get; }

    /// <summary>client-first-message.</summary>
    public byte[] ClientFirst()
    {
        _clientFirstBare = "n=,r=" + _clientNonce;
        return Encoding.UTF8.GetBytes(_gs2Header + _clientFirstBare);
    }

    /// <summary>Checks server-first-message and computes client-final-message.</summary>
    public byte[] ClientFinal(ReadOnlySpan<byte> serverFirstBytes)
    {
        if (_clientFirstBare is null)
        {
            throw new InvalidOperationException("ClientFirst must come first");
        }

        string serverFirst = Encoding.UTF8.GetString(serverFirstBytes);
        Dictionary<char, string> attributes = Parse(serverFirst);
        if (attributes.ContainsKey('m'))
        {
            throw new PgConnectionException("SCRAM: the server requires an extension this client does not support");
        }

        if (!attributes.TryGetValue('r', out string? nonce) || !attributes.TryGetValue('s', out string? saltText) || !attributes.TryGetValue('i', out string? iterationText))
        {
            throw new PgConnectionException("SCRAM: malformed server-first-message");
        }

        if (!nonce.StartsWith(_clientNonce, StringComparison.Ordinal) || nonce.Length <= _clientNonce.Length)
        {
            throw new PgConnectionException("SCRAM: the server's nonce does not extend the client's");
        }

        byte[] salt;
        try
        {
            salt = Convert.FromBase64String(saltText);
        }
        catch (FormatException)
        {
            throw new PgConnectionException("SCRAM: the salt is not base64");
        }

        if (!int.TryParse(iterationText, NumberStyles.None, CultureInfo.InvariantCulture, out int iterations) || iterations < 1 || iterations > MaxIterations)
        {
            throw new PgConnectionException($"SCRAM: invalid iteration count '{iterationText}'");
        }

        byte[] saltedPassword = ScramSha256.SaltedPassword(_password, salt, iterations);
        byte[] clientKey = ScramSha256.ClientKey(saltedPassword);
        byte[] storedKey = ScramSha256.StoredKey(clientKey);
        string channel = Convert.ToBase64String([.. Encoding.UTF8.GetBytes(_gs2Header), .. _channelBindingData]);
        string clientFinalWithoutProof = "c=" + channel + ",r=" + nonce;
        byte[] authMessage = Encoding.UTF8.GetBytes(_clientFirstBare + "," + serverFirst + "," + clientFinalWithoutProof);
        byte[] clientSignature = HMACSHA256.HashData(storedKey, authMessage);
        byte[] proof = new byte[clientKey.Length];
        for (int i = 0; i < proof.Length; i++)
        {
            proof[i] = (byte)(clientKey[i] ^ clientSignature[i]);
        }

        byte[] serverKey = ScramSha256.ServerKey(saltedPassword);
        _expectedServerSignature = HMACSHA256.HashData(serverKey, authMessage);
        return Encoding.UTF8.GetBytes(clientFinalWithoutProof + ",p=" + Convert.ToBase64String(proof));
    }

    /// <summary>Checks server-final-message: the server proved it knows the password.</summary>
    public void VerifyServerFinal(ReadOnlySpan<byte> serverFinalBytes)
    {
        if (_expectedServerSignature is null)
        {
            throw new PgConnectionException("SCRAM: server-final-message arrived before client-final-message");
        }

        Dictionary<char, string> attributes = Parse(Encoding.UTF8.GetString(serverFinalBytes));
        if (attributes.TryGetValue('e', out string? error))
        {
            throw new PgConnectionException("SCRAM: the server reports: " + error);
        }

        byte[] signature;
        try
        {
            signature = attributes.TryGetValue('v', out string? v) ? Convert.FromBase64String(v) : throw new PgConnectionException("SCRAM: malformed server-final-message");
        }
        catch (FormatException)
        {
            throw new PgConnectionException("SCRAM: the server signature is not base64");
        }

        if (!CryptographicOperations.FixedTimeEquals(signature, _expectedServerSignature))
        {
            throw new PgConnectionException("SCRAM: the server's signature is wrong: it does not know the password (or someone is in the middle)");
        }
    }

    /// <summary>tls-server-end-point channel binding data (RFC 5929).</summary>
    public static byte[] TlsServerEndPoint(X509Certificate2 certificate) => ScramSha256.TlsServerEndPoint(certificate);

    private static Dictionary<char, string> Parse(string message) => ScramSha256.ParseAttributes(message);
}

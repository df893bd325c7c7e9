using System.Globalization;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using PgSpec.Protocol;

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

        byte[] saltedPassword = Rfc2898DeriveBytes.Pbkdf2(_password, salt, iterations, HashAlgorithmName.SHA256, 32);
        byte[] clientKey = HMACSHA256.HashData(saltedPassword, "Client Key"u8);
        byte[] storedKey = SHA256.HashData(clientKey);
        string channel = Convert.ToBase64String([.. Encoding.UTF8.GetBytes(_gs2Header), .. _channelBindingData]);
        string clientFinalWithoutProof = "c=" + channel + ",r=" + nonce;
        byte[] authMessage = Encoding.UTF8.GetBytes(_clientFirstBare + "," + serverFirst + "," + clientFinalWithoutProof);
        byte[] clientSignature = HMACSHA256.HashData(storedKey, authMessage);
        byte[] proof = new byte[clientKey.Length];
        for (int i = 0; i < proof.Length; i++)
        {
            proof[i] = (byte)(clientKey[i] ^ clientSignature[i]);
        }

        byte[] serverKey = HMACSHA256.HashData(saltedPassword, "Server Key"u8);
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

    /// <summary>tls-server-end-point channel binding data (RFC 5929): the certificate's hash, SHA-256 for MD5/SHA-1 signatures.</summary>
    public static byte[] TlsServerEndPoint(X509Certificate2 certificate)
    {
        ArgumentNullException.ThrowIfNull(certificate);
        string oid = certificate.SignatureAlgorithm.Value ?? "";
        HashAlgorithmName hash = oid switch
        {
            "1.2.840.113549.1.1.12" or "1.2.840.10045.4.3.3" => HashAlgorithmName.SHA384,
            "1.2.840.113549.1.1.13" or "1.2.840.10045.4.3.4" => HashAlgorithmName.SHA512,
            _ => HashAlgorithmName.SHA256,
        };
        return hash == HashAlgorithmName.SHA384 ? SHA384.HashData(certificate.RawData)
            : hash == HashAlgorithmName.SHA512 ? SHA512.HashData(certificate.RawData)
            : SHA256.HashData(certificate.RawData);
    }

    private static Dictionary<char, string> Parse(string message)
    {
        var attributes = new Dictionary<char, string>();
        foreach (string part in message.Split(','))
        {
            if (part.Length >= 2 && part[1] == '=')
            {
                attributes[part[0]] = part[2..];
            }
        }

        return attributes;
    }
}

/// <summary>
/// SASLprep (RFC 4013) for passwords, as PostgreSQL applies it: map non-ASCII spaces to space,
/// drop characters mapped to nothing, NFKC; if the result has prohibited or unassigned
/// characters, or breaks the bidi rules, the raw UTF-8 password is used instead.
/// </summary>
internal static class SaslPrep
{
    /// <summary>The bytes to hash for a password given as bytes: prepared when they are UTF-8, else the bytes themselves.</summary>
    public static byte[] Prepare(ReadOnlySpan<byte> password)
        => System.Text.Unicode.Utf8.IsValid(password) ? Prepare(Encoding.UTF8.GetString(password)) : password.ToArray();

    /// <summary>The bytes to hash for <paramref name="password"/>.</summary>
    public static byte[] Prepare(string password)
    {
        ArgumentNullException.ThrowIfNull(password);
        byte[] raw = Encoding.UTF8.GetBytes(password);
        if (password.All(c => c < 0x80))
        {
            return raw;
        }

        var mapped = new StringBuilder(password.Length);
        foreach (Rune rune in password.EnumerateRunes())
        {
            if (MapsToNothing(rune.Value))
            {
                continue;
            }

            mapped.Append(IsNonAsciiSpace(rune.Value) ? " " : rune.ToString());
        }

        string normalized;
        try
        {
            normalized = mapped.ToString().Normalize(NormalizationForm.FormKC);
        }
        catch (ArgumentException)
        {
            return raw;
        }

        bool hasRandAL = false;
        bool hasL = false;
        foreach (Rune rune in normalized.EnumerateRunes())
        {
            if (IsProhibited(rune) || Rune.GetUnicodeCategory(rune) == UnicodeCategory.OtherNotAssigned)
            {
                return raw;
            }

            hasRandAL |= IsRandAL(rune);
            hasL |= Rune.IsLetter(rune) && !IsRandAL(rune);
        }

        if (hasRandAL)
        {
            Rune first = normalized.EnumerateRunes().First();
            Rune last = normalized.EnumerateRunes().Last();
            if (hasL || !IsRandAL(first) || !IsRandAL(last))
            {
                return raw;
            }
        }

        return normalized.Length == 0 ? raw : Encoding.UTF8.GetBytes(normalized);
    }

    private static bool MapsToNothing(int c)
        => c is 0x00AD or 0x034F or 0x1806 or 0x180B or 0x180C or 0x180D or 0x200B or 0x200C or 0x200D or 0x2060
            or (>= 0xFE00 and <= 0xFE0F) or 0xFEFF;

    private static bool IsNonAsciiSpace(int c)
        => c is 0x00A0 or 0x1680 or (>= 0x2000 and <= 0x200B) or 0x202F or 0x205F or 0x3000;

    private static bool IsProhibited(Rune rune)
    {
        int c = rune.Value;
        return IsNonAsciiSpace(c)
            || c < 0x20 || c == 0x7F || (c >= 0x80 && c <= 0x9F)
            || c is 0x06DD or 0x070F or 0x180E or 0x200C or 0x200D or 0x2028 or 0x2029 or (>= 0x2060 and <= 0x2063) or (>= 0x206A and <= 0x206F) or 0xFEFF or (>= 0xFFF9 and <= 0xFFFC)
            || (c >= 0x1D173 && c <= 0x1D17A)
            || (c >= 0xE000 && c <= 0xF8FF) || (c >= 0xF0000 && c <= 0xFFFFD) || (c >= 0x100000 && c <= 0x10FFFD)
            || (c >= 0xFDD0 && c <= 0xFDEF) || (c & 0xFFFE) == 0xFFFE
            || (c >= 0xD800 && c <= 0xDFFF)
            || c is 0xFFF9 or 0xFFFA or 0xFFFB or 0xFFFC or 0xFFFD
            || (c >= 0x2FF0 && c <= 0x2FFB)
            || c is 0x0340 or 0x0341 or 0x200E or 0x200F or (>= 0x202A and <= 0x202E) or (>= 0x206A and <= 0x206F)
            || c == 0xE0001 || (c >= 0xE0020 && c <= 0xE007F);
    }

    private static bool IsRandAL(Rune rune)
    {
        int c = rune.Value;
        return (c >= 0x0590 && c <= 0x08FF) || (c >= 0xFB1D && c <= 0xFDFF) || (c >= 0xFE70 && c <= 0xFEFF);
    }
}

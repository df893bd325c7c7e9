using System.Globalization;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;

// Compiled into each library that speaks SCRAM (the client and the server): one source for the
// SCRAM-SHA-256 arithmetic and SASLprep, internal to each assembly.
namespace PgSpec.Shared;

/// <summary>SCRAM-SHA-256's key arithmetic (RFC 5802, RFC 7677) and tls-server-end-point (RFC 5929).</summary>
internal static class ScramSha256
{
    /// <summary>Hi(password, salt, i): PBKDF2-HMAC-SHA-256, 32 bytes.</summary>
    public static byte[] SaltedPassword(ReadOnlySpan<byte> preparedPassword, ReadOnlySpan<byte> salt, int iterations)
        => Rfc2898DeriveBytes.Pbkdf2(preparedPassword, salt, iterations, HashAlgorithmName.SHA256, 32);

    /// <summary>HMAC(SaltedPassword, "Client Key").</summary>
    public static byte[] ClientKey(byte[] saltedPassword) => HMACSHA256.HashData(saltedPassword, "Client Key"u8);

    /// <summary>H(ClientKey).</summary>
    public static byte[] StoredKey(byte[] clientKey) => SHA256.HashData(clientKey);

    /// <summary>HMAC(SaltedPassword, "Server Key").</summary>
    public static byte[] ServerKey(byte[] saltedPassword) => HMACSHA256.HashData(saltedPassword, "Server Key"u8);

    /// <summary>HMAC(key, AuthMessage): ClientSignature with StoredKey, ServerSignature with ServerKey.</summary>
    public static byte[] Signature(byte[] key, ReadOnlySpan<byte> authMessage) => HMACSHA256.HashData(key, authMessage);

    /// <summary>tls-server-end-point channel binding data: the certificate's hash, SHA-256 for MD5/SHA-1 signatures.</summary>
    public static byte[] TlsServerEndPoint(X509Certificate2 certificate)
    {
        ArgumentNullException.ThrowIfNull(certificate);
        string oid = certificate.SignatureAlgorithm.Value ?? "";
        return oid switch
        {
            "1.2.840.113549.1.1.12" or "1.2.840.10045.4.3.3" => SHA384.HashData(certificate.RawData),
            "1.2.840.113549.1.1.13" or "1.2.840.10045.4.3.4" => SHA512.HashData(certificate.RawData),
            _ => SHA256.HashData(certificate.RawData),
        };
    }

    /// <summary>The attributes (a=value) of a SCRAM message; the last of a repeated one wins.</summary>
    public static Dictionary<char, string> ParseAttributes(string message)
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

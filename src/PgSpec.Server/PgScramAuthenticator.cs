using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using PgSpec.Protocol;
using PgSpec.Shared;

namespace PgSpec.Server;

/// <summary>
/// A SCRAM-SHA-256 verifier as PostgreSQL stores it in pg_authid.rolpassword:
/// <c>SCRAM-SHA-256$iterations:salt$StoredKey:ServerKey</c> (base64). It lets a server check a
/// password without keeping it.
/// </summary>
public sealed class PgScramVerifier
{
    private const string Prefix = "SCRAM-SHA-256$";

    private PgScramVerifier(int iterations, byte[] salt, byte[] storedKey, byte[] serverKey)
    {
        Iterations = iterations;
        Salt = salt;
        StoredKey = storedKey;
        ServerKey = serverKey;
    }

    /// <summary>The PBKDF2 iteration count.</summary>
    public int Iterations { get; }

    /// <summary>The salt.</summary>
    public ReadOnlyMemory<byte> Salt { get; }

    /// <summary>H(ClientKey).</summary>
    public ReadOnlyMemory<byte> StoredKey { get; }

    /// <summary>HMAC(SaltedPassword, "Server Key").</summary>
    public ReadOnlyMemory<byte> ServerKey { get; }

    /// <summary>A verifier of keys given as they are (for users who do not exist).</summary>
    internal static PgScramVerifier Mock(byte[] salt, byte[] storedKey, byte[] serverKey) => new(4096, salt, storedKey, serverKey);

    /// <summary>Makes a verifier for <paramref name="password"/> (SASLprep'ed, as PostgreSQL does) with a random 16-byte salt.</summary>
    public static PgScramVerifier Create(string password, int iterations = 4096)
        => Create(password, RandomNumberGenerator.GetBytes(16), iterations);

    /// <summary>Makes a verifier for <paramref name="password"/> with the salt given.</summary>
    public static PgScramVerifier Create(string password, ReadOnlySpan<byte> salt, int iterations = 4096)
    {
        ArgumentNullException.ThrowIfNull(password);
        ArgumentOutOfRangeException.ThrowIfLessThan(iterations, 1);
        byte[] salted = ScramSha256.SaltedPassword(SaslPrep.Prepare(password), salt, iterations);
        return new PgScramVerifier(iterations, salt.ToArray(), PgSpec.Shared.ScramSha256.StoredKey(ScramSha256.ClientKey(salted)), ScramSha256.ServerKey(salted));
    }

    /// <summary>Reads a verifier in PostgreSQL's form; throws <see cref="FormatException"/> if it is not one.</summary>
    public static PgScramVerifier Parse(string text)
        => TryParse(text, out PgScramVerifier? verifier) ? verifier : throw new FormatException("not a SCRAM-SHA-256 verifier (SCRAM-SHA-256$iterations:salt$StoredKey:ServerKey)");

    /// <summary>Reads a verifier in PostgreSQL's form.</summary>
    public static bool TryParse(string? text, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out PgScramVerifier? verifier)
    {
        verifier = null;
        if (text is null || !text.StartsWith(Prefix, StringComparison.Ordinal))
        {
            return false;
        }

        string[] parts = text[Prefix.Length..].Split('$');
        if (parts.Length != 2)
        {
            return false;
        }

        string[] head = parts[0].Split(':');
        string[] keys = parts[1].Split(':');
        if (head.Length != 2 || keys.Length != 2
            || !int.TryParse(head[0], NumberStyles.None, CultureInfo.InvariantCulture, out int iterations) || iterations < 1)
        {
            return false;
        }

        try
        {
            byte[] salt = Convert.FromBase64String(head[1]);
            byte[] stored = Convert.FromBase64String(keys[0]);
            byte[] server = Convert.FromBase64String(keys[1]);
            if (stored.Length != 32 || server.Length != 32 || salt.Length == 0)
            {
                return false;
            }

            verifier = new PgScramVerifier(iterations, salt, stored, server);
            return true;
        }
        catch (FormatException)
        {
            return false;
        }
    }

    /// <summary>The verifier in PostgreSQL's form.</summary>
    public override string ToString()
        => string.Create(CultureInfo.InvariantCulture, $"{Prefix}{Iterations}:{Convert.ToBase64String(Salt.Span)}${Convert.ToBase64String(StoredKey.Span)}:{Convert.ToBase64String(ServerKey.Span)}");
}

/// <summary>The server side of SCRAM-SHA-256(-PLUS), with PostgreSQL's checks and its error messages.</summary>
internal sealed class ScramAuthenticator(Func<string, PgScramVerifier?> verifierOf) : PgAuthenticator
{
    private const string Plain = "SCRAM-SHA-256";
    private const string Plus = "SCRAM-SHA-256-PLUS";

    /// <summary>Makes the made-up salt of a user who does not exist the same on every attempt.</summary>
    private static readonly byte[] s_mockSecret = RandomNumberGenerator.GetBytes(32);

    public override string Method => "scram-sha-256";

    internal override async ValueTask AuthenticateAsync(PgAuthenticationExchange exchange, CancellationToken cancellationToken)
    {
        bool tls = exchange.TlsCertificate is not null;
        await exchange.SendAsync(new AuthenticationSASL(tls ? [Plus, Plain] : [Plain]), cancellationToken).ConfigureAwait(false);
        var initial = (SASLInitialResponse)await exchange.ReceiveAsync(cancellationToken).ConfigureAwait(false);
        if (initial.Mechanism is not (Plain or Plus) || (initial.Mechanism == Plus && !tls))
        {
            throw new PgErrorException("FATAL", "08P01", "client selected an invalid SASL authentication mechanism");
        }

        bool plus = initial.Mechanism == Plus;
        ReadOnlyMemory<byte> firstBytes;
        if (initial.Data is ReadOnlyMemory<byte> data)
        {
            firstBytes = data;
        }
        else
        {
            // No initial response (a length of -1): as PostgreSQL, an empty challenge, which the
            // client answers with what the initial response would have held.
            await exchange.SendAsync(new AuthenticationSASLContinue(ReadOnlyMemory<byte>.Empty), cancellationToken).ConfigureAwait(false);
            firstBytes = ((SASLResponse)await exchange.ReceiveAsync(cancellationToken).ConfigureAwait(false)).Data;
        }

        if (firstBytes.IsEmpty)
        {
            throw Malformed("The message is empty.");
        }

        string clientFirst = Utf8(firstBytes.Span);

        // gs2-header: cbind-flag "," [authzid] ","
        int firstComma = clientFirst.IndexOf(',', StringComparison.Ordinal);
        int secondComma = firstComma < 0 ? -1 : clientFirst.IndexOf(',', firstComma + 1);
        if (secondComma < 0)
        {
            throw Malformed("Comma expected, but found end of string.");
        }

        string flag = clientFirst[..firstComma];
        string authzid = clientFirst[(firstComma + 1)..secondComma];
        string gs2Header = clientFirst[..(secondComma + 1)];
        string clientFirstBare = clientFirst[(secondComma + 1)..];
        byte[] bindingData = [];
        switch (flag)
        {
            case "n":
            case "y":
                if (plus)
                {
                    throw Malformed("The client selected SCRAM-SHA-256-PLUS, but the SCRAM message does not include channel binding data.");
                }

                if (flag == "y" && tls)
                {
                    throw new PgErrorException("FATAL", "28000", "SCRAM channel binding negotiation error")
                    {
                        Detail = "The client supports SCRAM channel binding but thinks the server does not.  However, this server does support channel binding.",
                    };
                }

                break;
            case ['p', '=', ..]:
                if (!plus)
                {
                    throw Malformed("The client selected SCRAM-SHA-256 without channel binding, but the SCRAM message includes channel binding data.");
                }

                if (flag != "p=tls-server-end-point")
                {
                    throw new PgErrorException("FATAL", "08P01", $"unsupported SCRAM channel-binding type \"{Sanitize(flag[2..])}\"");
                }

                bindingData = PgSpec.Shared.ScramSha256.TlsServerEndPoint(exchange.TlsCertificate!);
                break;
            default:
                throw Malformed($"Unexpected channel-binding flag \"{Sanitize(flag)}\".");
        }

        if (authzid.Length > 0)
        {
            throw new PgErrorException("FATAL", "0A000", "client uses authorization identity, but it is not supported");
        }

        // Read as PostgreSQL reads it: a mandatory extension is refused first; then the user name
        // (ignored: the startup packet's counts), the nonce, and extensions, each "x=value".
        if (clientFirstBare.StartsWith('m'))
        {
            throw new PgErrorException("FATAL", "0A000", "client requires an unsupported SCRAM extension");
        }

        var first = new AttributeReader(clientFirstBare);
        first.Read('n');
        string clientNonce = first.Read('r');
        if (!clientNonce.All(c => c is >= '\x21' and <= '\x7E' and not ','))
        {
            throw new PgErrorException("FATAL", "08P01", "non-printable characters in SCRAM nonce");
        }

        while (!first.AtEnd)
        {
            first.ReadAny(out _);
        }

        PgScramVerifier? verifier = verifierOf(exchange.User);
        PgScramVerifier effective = verifier ?? MockVerifier(exchange.User);
        string nonce = clientNonce + Convert.ToBase64String(RandomNumberGenerator.GetBytes(18));
        string serverFirst = string.Create(CultureInfo.InvariantCulture, $"r={nonce},s={Convert.ToBase64String(effective.Salt.Span)},i={effective.Iterations}");
        await exchange.SendAsync(new AuthenticationSASLContinue(Encoding.UTF8.GetBytes(serverFirst)), cancellationToken).ConfigureAwait(false);

        var response = (SASLResponse)await exchange.ReceiveAsync(cancellationToken).ConfigureAwait(false);
        string clientFinal = Utf8(response.Data.Span);
        var final = new AttributeReader(clientFinal);
        string channel = final.Read('c');
        string expectedChannel = Convert.ToBase64String([.. Encoding.UTF8.GetBytes(gs2Header), .. bindingData]);
        if (!CryptographicOperations.FixedTimeEquals(Encoding.ASCII.GetBytes(channel), Encoding.ASCII.GetBytes(expectedChannel)))
        {
            if (plus)
            {
                throw new PgErrorException("FATAL", "28000", "SCRAM channel binding check failed");
            }

            throw new PgErrorException("FATAL", "08P01", "unexpected SCRAM channel-binding attribute in client-final-message");
        }

        string finalNonce = final.Read('r');

        // Extensions are skipped up to the proof, which must end the message.
        int proofAt;
        string proofText;
        char attribute;
        do
        {
            proofAt = final.Position - 1;
            proofText = final.ReadAny(out attribute);
        }
        while (attribute != 'p');

        if (!TryBase64(proofText, out byte[] proof) || proof.Length != 32)
        {
            throw Malformed("Malformed proof in client-final-message.");
        }

        if (!final.AtEnd)
        {
            throw Malformed("Garbage found at the end of client-final-message.");
        }

        string withoutProof = clientFinal[..proofAt];
        if (!string.Equals(finalNonce, nonce, StringComparison.Ordinal))
        {
            throw new PgErrorException("FATAL", "08P01", "invalid SCRAM response") { Detail = "Nonce does not match." };
        }

        byte[] authMessage = Encoding.UTF8.GetBytes(clientFirstBare + "," + serverFirst + "," + withoutProof);
        byte[] storedKey = effective.StoredKey.ToArray();
        byte[] clientSignature = PgSpec.Shared.ScramSha256.Signature(storedKey, authMessage);
        byte[] clientKey = new byte[32];
        for (int i = 0; i < clientKey.Length; i++)
        {
            clientKey[i] = (byte)(proof[i] ^ clientSignature[i]);
        }

        if (verifier is null || !CryptographicOperations.FixedTimeEquals(PgSpec.Shared.ScramSha256.StoredKey(clientKey), storedKey))
        {
            throw PasswordFailed(exchange.User);
        }

        byte[] serverSignature = PgSpec.Shared.ScramSha256.Signature(effective.ServerKey.ToArray(), authMessage);
        await exchange.SendAsync(new AuthenticationSASLFinal(Encoding.UTF8.GetBytes("v=" + Convert.ToBase64String(serverSignature))), cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// A made-up verifier for a user who does not exist, as PostgreSQL's mock authentication: the
    /// same salt on every attempt, and keys that match no password. No PBKDF2 runs, so the answer
    /// comes as fast as for a real user (which costs nothing either: its keys are stored).
    /// </summary>
    private static PgScramVerifier MockVerifier(string user)
    {
        byte[] salt = HMACSHA256.HashData(s_mockSecret, Encoding.UTF8.GetBytes(user)).AsSpan(0, 16).ToArray();
        return PgScramVerifier.Mock(salt, RandomNumberGenerator.GetBytes(32), RandomNumberGenerator.GetBytes(32));
    }

    /// <summary>Reads "x=value" attributes separated by commas, refusing what PostgreSQL refuses, with its details.</summary>
    private sealed class AttributeReader(string text)
    {
        public int Position { get; private set; }

        public bool AtEnd => Position >= text.Length;

        /// <summary>The value of the next attribute, which must be <paramref name="expected"/>.</summary>
        public string Read(char expected)
        {
            if (AtEnd || text[Position] != expected)
            {
                throw Malformed($"Expected attribute \"{expected}\" but found \"{Describe()}\".");
            }

            return Value(expected);
        }

        /// <summary>The next attribute, whatever letter it is.</summary>
        public string ReadAny(out char attribute)
        {
            if (AtEnd)
            {
                throw Malformed("Attribute expected, but found end of string.");
            }

            attribute = text[Position];
            if (!char.IsAsciiLetter(attribute))
            {
                throw Malformed($"Attribute expected, but found invalid character \"{Describe()}\".");
            }

            return Value(attribute);
        }

        private string Value(char attribute)
        {
            Position++;
            if (AtEnd || text[Position] != '=')
            {
                throw Malformed($"Expected character \"=\" for attribute \"{attribute}\".");
            }

            int start = Position + 1;
            int end = text.IndexOf(',', start);
            if (end < 0)
            {
                Position = text.Length;
                return text[start..];
            }

            Position = end + 1;
            return text[start..end];
        }

        private string Describe()
            => AtEnd ? "0x00" : text[Position] is >= '\x21' and <= '\x7E' ? $"'{text[Position]}'" : string.Create(CultureInfo.InvariantCulture, $"0x{(int)text[Position]:x2}");
    }

    private static PgErrorException Malformed(string detail)
        => new("FATAL", "08P01", "malformed SCRAM message") { Detail = detail };

    private static string Utf8(ReadOnlySpan<byte> bytes)
    {
        if (!System.Text.Unicode.Utf8.IsValid(bytes))
        {
            throw Malformed("The message is not valid UTF-8.");
        }

        return Encoding.UTF8.GetString(bytes);
    }

    private static bool TryBase64(string text, out byte[] bytes)
    {
        try
        {
            bytes = Convert.FromBase64String(text);
            return true;
        }
        catch (FormatException)
        {
            bytes = [];
            return false;
        }
    }

    private static string Sanitize(string text) => text.Length > 64 ? text[..64] + "..." : text;
}

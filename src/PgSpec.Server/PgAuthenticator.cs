using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using PgSpec.Protocol;

namespace PgSpec.Server;

/// <summary>
/// How a session checks who its client is, after the startup packet and before AuthenticationOk:
/// trust, cleartext password, MD5 or SCRAM-SHA-256 (with SCRAM-SHA-256-PLUS under TLS). A failure
/// ends the session with the FATAL error PostgreSQL sends (28P01 "password authentication failed
/// for user", 28000 for a role that does not exist).
/// </summary>
public abstract class PgAuthenticator
{
    private protected PgAuthenticator()
    {
    }

    /// <summary>The method's name, as pg_hba.conf names it ("trust", "password", "md5", "scram-sha-256").</summary>
    public abstract string Method { get; }

    /// <summary>Everyone gets in, as any user, without a password.</summary>
    public static PgAuthenticator Trust { get; } = new TrustAuthenticator(null);

    /// <summary>No password; only the users <paramref name="userExists"/> knows may log in (others get 28000 "role does not exist").</summary>
    public static PgAuthenticator TrustUsers(Func<string, bool> userExists)
        => new TrustAuthenticator(userExists ?? throw new ArgumentNullException(nameof(userExists)));

    /// <summary>A cleartext password (AuthenticationCleartextPassword), checked by <paramref name="check"/>(user, password).</summary>
    public static PgAuthenticator Cleartext(Func<string, string, CancellationToken, ValueTask<bool>> check)
        => new CleartextAuthenticator(check ?? throw new ArgumentNullException(nameof(check)));

    /// <summary>A cleartext password, compared (in constant time) with the one <paramref name="passwordOf"/> gives for the user (null: no such user).</summary>
    public static PgAuthenticator Cleartext(Func<string, string?> passwordOf)
    {
        ArgumentNullException.ThrowIfNull(passwordOf);
        return new CleartextAuthenticator((user, password, _) =>
        {
            string? expected = passwordOf(user);
            return ValueTask.FromResult(expected is not null && CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(expected), Encoding.UTF8.GetBytes(password)));
        });
    }

    /// <summary>
    /// MD5 (AuthenticationMD5Password with a random salt). <paramref name="passwordOf"/> gives the
    /// user's password, or its stored hash as PostgreSQL keeps it ("md5" + md5(password + user)); null: no such user.
    /// </summary>
    public static PgAuthenticator Md5(Func<string, string?> passwordOf)
        => new Md5Authenticator(passwordOf ?? throw new ArgumentNullException(nameof(passwordOf)));

    /// <summary>
    /// SCRAM-SHA-256, and SCRAM-SHA-256-PLUS (channel binding tls-server-end-point) when the session
    /// is under TLS, from the user's stored verifier (null: no such user; the exchange then runs to
    /// its end with a made-up salt and fails, so that a client cannot tell which users exist).
    /// </summary>
    public static PgAuthenticator ScramSha256(Func<string, PgScramVerifier?> verifierOf)
        => new ScramAuthenticator(verifierOf ?? throw new ArgumentNullException(nameof(verifierOf)));

    /// <summary>Runs the exchange; returns normally when the client is authenticated, throws a FATAL <see cref="PgErrorException"/> otherwise.</summary>
    internal abstract ValueTask AuthenticateAsync(PgAuthenticationExchange exchange, CancellationToken cancellationToken);

    /// <summary>An empty password (cleartext or MD5): PostgreSQL refuses it before checking anything.</summary>
    internal static PgErrorException EmptyPassword() => new("FATAL", "28P01", "empty password returned by client");

    /// <summary>An answer whose frame is sound but whose fields are not, refused in the words of PostgreSQL's message reader.</summary>
    internal static PgErrorException MalformedAnswer(FrontendMessageKind expected, PgDecodeError error)
    {
        string message = expected == FrontendMessageKind.PasswordMessage ? "invalid password packet size"
            : error.Field is null ? "invalid message format"
            : error.Reason.StartsWith("String has no terminating NUL", StringComparison.Ordinal) ? "invalid string in message"
            : "insufficient data left in message";
        return new PgErrorException("FATAL", "08P01", message) { Detail = error.ToString() };
    }

    /// <summary>FATAL 28P01, worded as PostgreSQL words it for every password method.</summary>
    internal static PgErrorException PasswordFailed(string user)
        => new("FATAL", "28P01", $"password authentication failed for user \"{user}\"");

    private sealed class TrustAuthenticator(Func<string, bool>? userExists) : PgAuthenticator
    {
        public override string Method => "trust";

        internal override ValueTask AuthenticateAsync(PgAuthenticationExchange exchange, CancellationToken cancellationToken)
        {
            if (userExists is not null && !userExists(exchange.User))
            {
                throw new PgErrorException("FATAL", "28000", $"role \"{exchange.User}\" does not exist");
            }

            return ValueTask.CompletedTask;
        }
    }

    private sealed class CleartextAuthenticator(Func<string, string, CancellationToken, ValueTask<bool>> check) : PgAuthenticator
    {
        public override string Method => "password";

        internal override async ValueTask AuthenticateAsync(PgAuthenticationExchange exchange, CancellationToken cancellationToken)
        {
            await exchange.SendAsync(new AuthenticationCleartextPassword(), cancellationToken).ConfigureAwait(false);
            PasswordMessage answer = (PasswordMessage)await exchange.ReceiveAsync(cancellationToken).ConfigureAwait(false);
            if (answer.Password.Length == 0)
            {
                throw EmptyPassword();
            }

            if (!await check(exchange.User, answer.Password, cancellationToken).ConfigureAwait(false))
            {
                throw PasswordFailed(exchange.User);
            }
        }
    }

    private sealed class Md5Authenticator(Func<string, string?> passwordOf) : PgAuthenticator
    {
        public override string Method => "md5";

        internal override async ValueTask AuthenticateAsync(PgAuthenticationExchange exchange, CancellationToken cancellationToken)
        {
            byte[] salt = RandomNumberGenerator.GetBytes(4);
            await exchange.SendAsync(new AuthenticationMD5Password(salt), cancellationToken).ConfigureAwait(false);
            PasswordMessage answer = (PasswordMessage)await exchange.ReceiveAsync(cancellationToken).ConfigureAwait(false);
            if (answer.Password.Length == 0)
            {
                throw EmptyPassword();
            }

            string? stored = passwordOf(exchange.User);
            if (stored is null)
            {
                throw PasswordFailed(exchange.User);
            }

            // PostgreSQL keeps "md5" + md5(password + user); the client answers "md5" + md5(that hex + salt).
            string inner = stored.Length == 35 && stored.StartsWith("md5", StringComparison.Ordinal) && IsLowerHex(stored.AsSpan(3))
                ? stored[3..]
                : Convert.ToHexStringLower(MD5.HashData(Encoding.UTF8.GetBytes(stored + exchange.User)));
            string expected = "md5" + Convert.ToHexStringLower(MD5.HashData([.. Encoding.ASCII.GetBytes(inner), .. salt]));
            if (!CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(expected), Encoding.UTF8.GetBytes(answer.Password)))
            {
                throw PasswordFailed(exchange.User);
            }
        }

        private static bool IsLowerHex(ReadOnlySpan<char> text)
        {
            foreach (char c in text)
            {
                if (!char.IsAsciiHexDigitLower(c) && !char.IsAsciiDigit(c))
                {
                    return false;
                }
            }

            return true;
        }
    }
}

/// <summary>What an authentication method needs of its session: the user, TLS, and one message at a time each way.</summary>
internal abstract class PgAuthenticationExchange
{
    /// <summary>The user the startup packet names.</summary>
    public abstract string User { get; }

    /// <summary>The server's certificate when the session is under TLS, else null.</summary>
    public abstract X509Certificate2? TlsCertificate { get; }

    /// <summary>Sends an authentication request and flushes it.</summary>
    public abstract ValueTask SendAsync(IBackendMessage message, CancellationToken cancellationToken);

    /// <summary>Receives the client's answer to the last request (the 'p' message it names); anything else is FATAL 08P01.</summary>
    public abstract ValueTask<IFrontendMessage> ReceiveAsync(CancellationToken cancellationToken);
}

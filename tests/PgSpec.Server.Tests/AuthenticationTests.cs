using System.Security.Cryptography.X509Certificates;
using System.Text;
using PgSpec.Cli.Tests.RealServer;
using PgSpec.Client;
using PgSpec.Protocol;
using PgSpec.Servers;

namespace PgSpec.Server.Tests;

/// <summary>
/// Each password method against our own client, psql and libpq (psycopg); the stored hashes and
/// verifiers come from a real PostgreSQL 15, and every refusal is compared with the one PostgreSQL
/// sends for the same failure.
/// </summary>
[Collection(PostgresCollection.Name)]
public sealed class AuthenticationTests(PostgresFixture postgres)
{
    private const string Psql = "/usr/bin/psql";

    /// <summary>Logs in to our server with the options given and returns the error it refused with.</summary>
    private static async Task<PgErrorFields> RefusedAsync(PgConnectOptions options, Action<PgTraffic>? traffic = null)
    {
        PgServerException error = await Assert.ThrowsAsync<PgServerException>(() => PgFrontendSession.ConnectAsync(options, traffic, Wait.Token));
        return error.Fields;
    }

    private static async Task<IReadOnlyList<Client.PgResult>> LogInAndQueryAsync(PgConnectOptions options, string expectedMethod)
    {
        await using PgFrontendSession client = await PgFrontendSession.ConnectAsync(options, cancellationToken: Wait.Token);
        Assert.Equal(expectedMethod, client.AuthenticationMethod);
        return await client.QueryAsync("rows 2", cancellationToken: Wait.Token);
    }

    [Fact]
    public async Task Cleartext_lets_the_right_password_in_and_refuses_a_wrong_one_as_PostgreSQL_does()
    {
        PgRole role = postgres.Server.Role(PgAuthMethod.Password);
        await using var server = TestServer.Start(o => o.Authentication = PgAuthenticator.Cleartext(user => user == role.Name ? role.Password : null));

        IReadOnlyList<Client.PgResult> results = await LogInAndQueryAsync(server.Client(role.Name, role.Password), "cleartext");
        Assert.Equal("row 2", results[0].Text(1, 1));

        PgErrorFields ours = await RefusedAsync(server.Client(role.Name, "wrong"));
        PgErrorFields theirs = await RefusedAsync(postgres.Login(role.Name, "wrong"));
        Assert.Equal(("FATAL", "FATAL", "28P01", $"password authentication failed for user \"{role.Name}\""), ours.Core());
        Assert.Equal(theirs.Core(), ours.Core());
    }

    [Fact]
    public async Task Md5_with_a_stored_password()
    {
        await using var server = TestServer.Start(o => o.Authentication = PgAuthenticator.Md5(user => user == "alice" ? "s3cret" : null));

        IReadOnlyList<Client.PgResult> results = await LogInAndQueryAsync(server.Client("alice", "s3cret"), "md5");
        Assert.Equal("SELECT 2", results[0].CommandTag);

        PgErrorFields wrong = await RefusedAsync(server.Client("alice", "S3cret"));
        Assert.Equal(("FATAL", "FATAL", "28P01", "password authentication failed for user \"alice\""), wrong.Core());
        PgErrorFields unknown = await RefusedAsync(server.Client("bob", "s3cret"));
        Assert.Equal(("FATAL", "FATAL", "28P01", "password authentication failed for user \"bob\""), unknown.Core());
    }

    [Fact]
    public async Task Md5_with_the_hash_PostgreSQL_stored_and_its_refusal()
    {
        PgRole role = postgres.Server.Role(PgAuthMethod.Md5);
        string? stored = await postgres.StoredPasswordAsync(role.Name);
        Assert.NotNull(stored);
        Assert.StartsWith("md5", stored, StringComparison.Ordinal);
        await using var server = TestServer.Start(o => o.Authentication = PgAuthenticator.Md5(user => user == role.Name ? stored : null));

        IReadOnlyList<Client.PgResult> results = await LogInAndQueryAsync(server.Client(role.Name, role.Password), "md5");
        Assert.Equal("SELECT 2", results[0].CommandTag);

        PgErrorFields ours = await RefusedAsync(server.Client(role.Name, "wrong"));
        PgErrorFields theirs = await RefusedAsync(postgres.Login(role.Name, "wrong"));
        Assert.Equal(theirs.Core(), ours.Core());
        Assert.Equal("28P01", ours.SqlState);
    }

    [Fact]
    public async Task Scram_from_a_verifier_PostgreSQL_made()
    {
        await postgres.ScalarAsync("SET password_encryption = 'scram-sha-256'; DROP ROLE IF EXISTS x; CREATE ROLE x LOGIN PASSWORD 'p'");
        string? stored = await postgres.StoredPasswordAsync("x");
        Assert.NotNull(stored);
        Assert.StartsWith("SCRAM-SHA-256$4096:", stored, StringComparison.Ordinal);

        PgScramVerifier verifier = PgScramVerifier.Parse(stored);
        Assert.Equal(stored, verifier.ToString());

        // Made from the password and PostgreSQL's salt, our verifier is PostgreSQL's.
        Assert.Equal(stored, PgScramVerifier.Create("p", verifier.Salt.Span, verifier.Iterations).ToString());

        await using var server = TestServer.Start(o => o.Authentication = PgAuthenticator.ScramSha256(user => user == "x" ? verifier : null));
        IReadOnlyList<Client.PgResult> results = await LogInAndQueryAsync(server.Client("x", "p"), "SCRAM-SHA-256");
        Assert.Equal("row 1", results[0].Text(0, 1));

    }

    [Fact]
    public async Task Scram_refuses_a_wrong_password_as_PostgreSQL_does()
    {
        PgRole role = postgres.Server.Role(PgAuthMethod.ScramSha256);
        PgScramVerifier verifier = PgScramVerifier.Parse((await postgres.StoredPasswordAsync(role.Name))!);
        await using var server = TestServer.Start(o => o.Authentication = PgAuthenticator.ScramSha256(user => user == role.Name ? verifier : null));

        await LogInAndQueryAsync(server.Client(role.Name, role.Password), "SCRAM-SHA-256");
        PgErrorFields ours = await RefusedAsync(server.Client(role.Name, "wrong"));
        PgErrorFields theirs = await RefusedAsync(postgres.Login(role.Name, "wrong"));
        Assert.Equal(("FATAL", "FATAL", "28P01", $"password authentication failed for user \"{role.Name}\""), ours.Core());
        Assert.Equal(theirs.Core(), ours.Core());
    }

    /// <summary>A startup packet of protocol 3.0 with this body after the version (parameters and terminator, or not).</summary>
    private static byte[] StartupPacket(int version, string body)
    {
        byte[] text = Encoding.UTF8.GetBytes(body);
        byte[] packet = new byte[8 + text.Length];
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(packet, packet.Length);
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(packet.AsSpan(4), version);
        text.CopyTo(packet, 8);
        return packet;
    }

    /// <summary>A 'p' message with this body, as it is.</summary>
    private static byte[] PasswordPacket(byte[] body)
    {
        byte[] packet = new byte[5 + body.Length];
        packet[0] = (byte)'p';
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(packet.AsSpan(1), 4 + body.Length);
        body.CopyTo(packet, 5);
        return packet;
    }

    /// <summary>
    /// Broken startup packets (sent instead of the role's own), and broken answers to the
    /// authentication request (sent after the role's startup packet), for a role of each method.
    /// (Protocol 2.0 is left out: PostgreSQL refuses it in the 2.0 format, which no client reads any more.)
    /// </summary>
    public static TheoryData<string, PgAuthMethod, byte[]?, byte[]?> BrokenLogins => new()
    {
        { "protocol 4.0", PgAuthMethod.Trust, StartupPacket(0x40000, "user\0pgspec_trust\0\0"), null },
        { "no terminator", PgAuthMethod.Trust, StartupPacket(0x30000, "user\0pgspec_trust\0"), null },
        { "a parameter without a value", PgAuthMethod.Trust, StartupPacket(0x30000, "user\0pgspec_trust\0lonely\0\0"), null },
        { "no parameters", PgAuthMethod.Trust, StartupPacket(0x30000, "\0"), null },
        { "an empty cleartext password", PgAuthMethod.Password, null, new PasswordMessage("").ToArray() },
        { "an empty MD5 answer", PgAuthMethod.Md5, null, new PasswordMessage("").ToArray() },
        { "a query instead of the password", PgAuthMethod.Password, null, new Query("SELECT 1").ToArray() },
        { "a query instead of the MD5 answer", PgAuthMethod.Md5, null, new Query("SELECT 1").ToArray() },
        { "a query instead of the SASL initial response", PgAuthMethod.ScramSha256, null, new Query("SELECT 1").ToArray() },
        { "a password followed by more bytes", PgAuthMethod.Password, null, PasswordPacket([.. "cleartext-secret\0xyz"u8]) },
        { "a password without its terminator", PgAuthMethod.Password, null, PasswordPacket([.. "cleartext-secret"u8]) },
        { "a SASL initial response shorter than it says", PgAuthMethod.ScramSha256, null, PasswordPacket([.. "SCRAM-SHA-256\0"u8, 0, 0, 0, 100, .. "n,,"u8]) },
        { "a SASL initial response longer than it says", PgAuthMethod.ScramSha256, null, PasswordPacket([.. "SCRAM-SHA-256\0"u8, 0, 0, 0, 3, .. "n,,n=,r=abc"u8]) },
    };

    [Theory]
    [MemberData(nameof(BrokenLogins))]
    public async Task A_broken_login_is_refused_as_PostgreSQL_refuses_it(string what, PgAuthMethod method, byte[]? startup, byte[]? answer)
    {
        PgRole role = postgres.Server.Role(method);
        string? stored = await postgres.StoredPasswordAsync(role.Name);
        await using var server = TestServer.Start(o => o.Authentication = method switch
        {
            PgAuthMethod.Password => PgAuthenticator.Cleartext(user => user == role.Name ? role.Password : null),
            PgAuthMethod.Md5 => PgAuthenticator.Md5(user => user == role.Name ? stored : null),
            PgAuthMethod.ScramSha256 => PgAuthenticator.ScramSha256(user => user == role.Name ? PgScramVerifier.Parse(stored!) : null),
            _ => PgAuthenticator.Trust,
        });

        async Task<(List<string> Names, (string?, string?, string?, string?) Error)> LoginAsync(int port)
        {
            await using RawConnection raw = await RawConnection.OpenAsync(port);
            var names = new List<string>();
            if (startup is not null)
            {
                await raw.SendAsync(startup);
            }
            else
            {
                await raw.StartupAsync(("user", role.Name), ("database", "postgres"));
                names.Add((await raw.ReceiveAsync())!.Name);
                raw.Context.ObserveFrontend(FrontendMessageKind.PasswordMessage, default);
                await raw.SendAsync(answer!);
            }

            IReadOnlyList<IBackendMessage> rest = await raw.ReceiveToEndAsync();
            names.AddRange(rest.Select(m => m.Name));
            ErrorResponse? error = rest.OfType<ErrorResponse>().LastOrDefault();
            var core = error?.Fields().Core() ?? default;

            // The newest version a server supports is its own.
            core.M = core.M is null ? null : System.Text.RegularExpressions.Regex.Replace(core.M, @"server supports 3\.0 to 3\.\d+$", "server supports 3.0 to 3.x");
            return (names, core);
        }

        var theirs = await LoginAsync(postgres.Server.Port);
        var ours = await LoginAsync(server.Port);
        Assert.True(theirs.Names.SequenceEqual(ours.Names), $"{what}: PostgreSQL sends {string.Join(", ", theirs.Names)}, our server {string.Join(", ", ours.Names)}");
        Assert.True(theirs.Error == ours.Error, $"{what}: PostgreSQL refuses with {theirs.Error}, our server with {ours.Error}");
    }

    /// <summary>
    /// Broken or hostile SCRAM exchanges, each sent by hand to PostgreSQL and to our server: the
    /// client-first-message (null: no initial response, a length of -1, which both answer with an
    /// empty challenge, then "x,,n=,r=abc" in a SASLResponse), and the client-final-message ({nonce}
    /// is the server's nonce, {binding} base64 of "p=tls-server-end-point,," and 32 zero bytes; null:
    /// the first message fails).
    /// </summary>
    public static TheoryData<string, bool, string, string?, string?> HostileScram => new()
    {
        { "an unknown mechanism", false, "SCRAM-SHA-1", "n,,n=,r=abc", null },
        { "PLUS without TLS", false, "SCRAM-SHA-256-PLUS", "p=tls-server-end-point,,n=,r=abc", null },
        { "an empty initial response", false, "SCRAM-SHA-256", "", null },
        { "no initial response, then an unknown channel-binding flag", false, "SCRAM-SHA-256", null, null },
        { "an unknown channel-binding flag", false, "SCRAM-SHA-256", "x,,n=,r=abc", null },
        { "an authorization identity", false, "SCRAM-SHA-256", "n,a=bob,n=,r=abc", null },
        { "a mandatory extension", false, "SCRAM-SHA-256", "n,,m=ext,n=,r=abc", null },
        { "no user name attribute", false, "SCRAM-SHA-256", "n,,r=abc", null },
        { "a non-printable nonce", false, "SCRAM-SHA-256", "n,,n=,r=a\u0001b", null },
        { "a nonce with a comma", false, "SCRAM-SHA-256", "n,,n=,r=a,b", null },
        { "a wrong final nonce", false, "SCRAM-SHA-256", "n,,n=,r=abc", "c=biws,r=abcWRONG,p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=" },
        { "a channel binding other than the first message's", false, "SCRAM-SHA-256", "n,,n=,r=abc", "c=eSws,r={nonce},p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=" },
        { "a proof that is not base64", false, "SCRAM-SHA-256", "y,,n=,r=abc", "c=eSws,r={nonce},p=!!!!" },
        { "a proof of the wrong length", false, "SCRAM-SHA-256", "n,,n=,r=abc", "c=biws,r={nonce},p=AAAA" },
        { "no proof", false, "SCRAM-SHA-256", "n,,n=,r=abc", "c=biws,r={nonce}" },
        { "a wrong proof", false, "SCRAM-SHA-256", "n,,n=,r=abc", "c=biws,r={nonce},p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=" },
        { "'y' under TLS", true, "SCRAM-SHA-256", "y,,n=,r=abc", null },
        { "PLUS without binding data", true, "SCRAM-SHA-256-PLUS", "n,,n=,r=abc", null },
        { "PLUS with tls-unique", true, "SCRAM-SHA-256-PLUS", "p=tls-unique,,n=,r=abc", null },
        { "binding data without PLUS", true, "SCRAM-SHA-256", "p=tls-server-end-point,,n=,r=abc", null },
        { "a wrong certificate hash", true, "SCRAM-SHA-256-PLUS", "p=tls-server-end-point,,n=,r=abc", "c={binding},r={nonce},p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=" },
    };

    [Theory]
    [MemberData(nameof(HostileScram))]
    public async Task A_broken_SCRAM_exchange_is_refused_as_PostgreSQL_refuses_it(string what, bool tls, string mechanism, string? clientFirst, string? clientFinal)
    {
        PgRole role = postgres.Server.Role(PgAuthMethod.ScramSha256);
        PgScramVerifier verifier = PgScramVerifier.Parse((await postgres.StoredPasswordAsync(role.Name))!);
        using X509Certificate2 certificate = Certificates.SelfSigned();
        await using var server = TestServer.Start(o =>
        {
            o.TlsCertificate = certificate;
            o.Authentication = PgAuthenticator.ScramSha256(user => user == role.Name ? verifier : null);
        });

        async Task<(string? S, string? V, string? C, string? M)> ExchangeAsync(int port)
        {
            await using RawConnection raw = await RawConnection.OpenAsync(port);
            if (tls)
            {
                await raw.SendAsync(new SSLRequest());
                Assert.Equal((byte)'S', await raw.ReceiveByteAsync());
                await raw.StartTlsAsync(alpn: null);
            }

            await raw.StartupAsync(("user", role.Name), ("database", "postgres"));
            Assert.IsType<AuthenticationSASL>(await raw.ReceiveAsync());
            await raw.SendAsync(new SASLInitialResponse(mechanism, clientFirst is null ? (ReadOnlyMemory<byte>?)null : Encoding.UTF8.GetBytes(clientFirst)));
            IBackendMessage? answer = await raw.ReceiveAsync();
            if (clientFirst is null)
            {
                Assert.True(Assert.IsType<AuthenticationSASLContinue>(answer).Data.IsEmpty);
                await raw.SendAsync(new SASLResponse(Encoding.UTF8.GetBytes("x,,n=,r=abc")));
                answer = await raw.ReceiveAsync();
            }

            if (clientFinal is not null)
            {
                AuthenticationSASLContinue serverFirst = Assert.IsType<AuthenticationSASLContinue>(answer);
                string nonce = Encoding.UTF8.GetString(serverFirst.Data.Span).Split(',')[0][2..];
                string binding = Convert.ToBase64String([.. Encoding.ASCII.GetBytes("p=tls-server-end-point,,"), .. new byte[32]]);
                string final = clientFinal.Replace("{nonce}", nonce, StringComparison.Ordinal).Replace("{binding}", binding, StringComparison.Ordinal);
                await raw.SendAsync(new SASLResponse(Encoding.UTF8.GetBytes(final)));
                answer = await raw.ReceiveAsync();
            }

            ErrorResponse error = Assert.IsType<ErrorResponse>(answer);
            Assert.Null(await raw.ReceiveAsync());
            return error.Fields().Core();
        }

        var theirs = await ExchangeAsync(postgres.Server.Port);
        var ours = await ExchangeAsync(server.Port);
        Assert.True(theirs == ours, $"{what}: PostgreSQL refuses with {theirs}, our server with {ours}");
    }

    [Fact]
    public async Task Scram_plus_binds_to_the_TLS_certificate()
    {
        using X509Certificate2 certificate = Certificates.SelfSigned();
        PgScramVerifier verifier = PgScramVerifier.Create("tls-secret");
        await using var server = TestServer.Start(o =>
        {
            o.TlsCertificate = certificate;
            o.Authentication = PgAuthenticator.ScramSha256(user => user == "alice" ? verifier : null);
        });
        PgConnectOptions options = server.Client("alice", "tls-secret") with { SslMode = PgSslMode.Require, ChannelBinding = PgChannelBinding.Require };

        var traffic = new List<PgTraffic>();
        await using (PgFrontendSession client = await PgFrontendSession.ConnectAsync(options, t => traffic.Add(t), Wait.Token))
        {
            Assert.Equal("SCRAM-SHA-256-PLUS", client.AuthenticationMethod);
            Assert.Equal("SSLRequest", client.Tls);
            Assert.Single((await client.QueryAsync("rows 1", cancellationToken: Wait.Token))[0].Rows);
        }

        AuthenticationSASL offer = Assert.Single(traffic.Select(t => t.Message).OfType<AuthenticationSASL>());
        Assert.Equal(["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"], offer.Mechanisms.AsEnumerable());
        Assert.Equal("SCRAM-SHA-256-PLUS", Assert.Single(traffic.Select(t => t.Message).OfType<SASLInitialResponse>()).Mechanism);

        // Without TLS only the plain mechanism is offered, and channel_binding=require cannot be met.
        PgConnectionException plain = await Assert.ThrowsAsync<PgConnectionException>(
            () => PgFrontendSession.ConnectAsync(options with { SslMode = PgSslMode.Disable }, cancellationToken: Wait.Token));
        Assert.Contains("channel_binding=require", plain.Message, StringComparison.Ordinal);

        PgErrorFields wrong = await RefusedAsync(options with { Password = "wrong" });
        Assert.Equal(("FATAL", "FATAL", "28P01", "password authentication failed for user \"alice\""), wrong.Core());
    }

    [Fact]
    public async Task Scram_for_an_unknown_user_runs_the_exchange_to_its_end_and_fails_like_a_wrong_password()
    {
        PgScramVerifier verifier = PgScramVerifier.Create("secret");
        await using var server = TestServer.Start(o => o.Authentication = PgAuthenticator.ScramSha256(user => user == "alice" ? verifier : null));

        async Task<(PgErrorFields Error, string Salt, List<string> Names)> AttemptAsync(string user, string password)
        {
            var traffic = new List<PgTraffic>();
            PgErrorFields error = await RefusedAsync(server.Client(user, password), t => traffic.Add(t));
            var serverFirst = Encoding.UTF8.GetString(Assert.Single(traffic.Select(t => t.Message).OfType<AuthenticationSASLContinue>()).Data.Span);
            string salt = serverFirst.Split(',').Single(a => a.StartsWith("s=", StringComparison.Ordinal));
            return (error, salt, traffic.Select(t => t.Name).ToList());
        }

        (PgErrorFields unknown, string salt1, List<string> names) = await AttemptAsync("mallory", "secret");
        Assert.Equal(("FATAL", "FATAL", "28P01", "password authentication failed for user \"mallory\""), unknown.Core());
        Assert.Equal(
            ["StartupMessage", "AuthenticationSASL", "SASLInitialResponse", "AuthenticationSASLContinue", "SASLResponse", "ErrorResponse"],
            names);

        // The made-up salt is the same on every attempt, as a real user's would be.
        (_, string salt2, _) = await AttemptAsync("mallory", "other");
        Assert.Equal(salt1, salt2);
        (_, string otherUserSalt, _) = await AttemptAsync("eve", "secret");
        Assert.NotEqual(salt1, otherUserSalt);

        // A known user with a wrong password goes through the same messages.
        (PgErrorFields wrong, _, List<string> wrongNames) = await AttemptAsync("alice", "wrong");
        Assert.Equal(names, wrongNames);
        Assert.Equal(("FATAL", "FATAL", "28P01", "password authentication failed for user \"alice\""), wrong.Core());
    }

    [Fact]
    public async Task TrustUsers_refuses_an_unknown_role_as_PostgreSQL_does()
    {
        await using var server = TestServer.Start(o => o.Authentication = PgAuthenticator.TrustUsers(user => user == "alice"));
        await using (PgFrontendSession alice = await server.ConnectAsync("alice"))
        {
            Assert.Single((await alice.QueryAsync("rows 1", cancellationToken: Wait.Token))[0].Rows);
        }

        PgErrorFields ours = await RefusedAsync(server.Client("nosuchrole"));
        Assert.Equal(("FATAL", "FATAL", "28000", "role \"nosuchrole\" does not exist"), ours.Core());

        // PostgreSQL trusts every local user over its socket, so it gets as far as the role.
        PgErrorFields theirs = await RefusedAsync(postgres.Login("nosuchrole", null) with { UnixSocketPath = postgres.Server.SocketPath });
        Assert.Equal(theirs.Core(), ours.Core());
    }

    [Fact]
    public async Task A_startup_packet_without_a_user_is_refused_with_28000_as_PostgreSQL_does()
    {
        await using var server = TestServer.Start();

        async Task<IReadOnlyList<IBackendMessage>> WithoutUserAsync(int port)
        {
            await using RawConnection raw = await RawConnection.OpenAsync(port);
            await raw.StartupAsync(("database", "postgres"));
            return await raw.ReceiveToEndAsync();
        }

        IReadOnlyList<IBackendMessage> ours = await WithoutUserAsync(server.Port);
        IReadOnlyList<IBackendMessage> theirs = await WithoutUserAsync(postgres.Server.Port);
        ErrorResponse error = Assert.IsType<ErrorResponse>(Assert.Single(ours));
        Assert.Equal(("FATAL", "FATAL", "28000", "no PostgreSQL user name specified in startup packet"), error.Fields().Core());
        Assert.Equal(Assert.IsType<ErrorResponse>(Assert.Single(theirs)).Fields().Core(), error.Fields().Core());
    }

    [Fact]
    public async Task Psql_logs_in_with_md5_and_with_scram_plus_through_TLS()
    {
        using X509Certificate2 certificate = Certificates.SelfSigned();
        await using var md5 = TestServer.Start(o =>
        {
            o.TlsCertificate = certificate;
            o.Authentication = PgAuthenticator.Md5(user => user == "alice" ? "md5-pass" : null);
        });
        PgScramVerifier verifier = PgScramVerifier.Create("scram-pass");
        await using var scram = TestServer.Start(o =>
        {
            o.TlsCertificate = certificate;
            o.Authentication = PgAuthenticator.ScramSha256(user => user == "alice" ? verifier : null);
        });

        ProcessOutput viaMd5 = RunPsql(md5, "md5-pass", "sslmode=require");
        Assert.True(viaMd5.ExitCode == 0, viaMd5.ToString());
        Assert.Equal("1|row 1\n2|row 2\n", viaMd5.Stdout);
        ProcessOutput viaScram = RunPsql(scram, "scram-pass", "sslmode=require channel_binding=require");
        Assert.True(viaScram.ExitCode == 0, viaScram.ToString());
        Assert.Equal("1|row 1\n2|row 2\n", viaScram.Stdout);
        Assert.All(md5.Handlers.Concat(scram.Handlers), h => Assert.Equal("SSLRequest", h.Session.Tls));
        Assert.Equal("psql", scram.Handlers.Single().Session.StartupParameters["application_name"]);

        ProcessOutput wrong = RunPsql(scram, "wrong", "sslmode=require channel_binding=require");
        Assert.NotEqual(0, wrong.ExitCode);
        Assert.Contains("FATAL:  password authentication failed for user \"alice\"", wrong.Stderr, StringComparison.Ordinal);
    }

    private static ProcessOutput RunPsql(TestServer server, string password, string tls)
        => ExternalProcess.Run(
            Psql,
            ["-X", "-A", "-t", "-d", $"host=127.0.0.1 port={server.Port} user=alice dbname=postgres connect_timeout=30 {tls}", "-c", "rows 2"],
            environment: new Dictionary<string, string> { ["PGPASSWORD"] = password });

    [Fact]
    public async Task Libpq_through_psycopg_logs_in_with_md5_and_with_scram_plus_through_TLS()
    {
        using X509Certificate2 certificate = Certificates.SelfSigned();
        await using var md5 = TestServer.Start(o =>
        {
            o.TlsCertificate = certificate;
            o.Authentication = PgAuthenticator.Md5(user => user == "alice" ? "md5-pass" : null);
        });
        PgScramVerifier verifier = PgScramVerifier.Create("scram-pass");
        await using var scram = TestServer.Start(o =>
        {
            o.TlsCertificate = certificate;
            o.Authentication = PgAuthenticator.ScramSha256(user => user == "alice" ? verifier : null);
        });

        ProcessOutput viaMd5 = Psycopg.Run($"host=127.0.0.1 port={md5.Port} user=alice password=md5-pass dbname=postgres sslmode=require", "rows 2");
        Assert.True(viaMd5.ExitCode == 0, viaMd5.ToString());
        Assert.Equal("1|row 1\n2|row 2\n", viaMd5.Stdout);
        ProcessOutput viaScram = Psycopg.Run($"host=127.0.0.1 port={scram.Port} user=alice password=scram-pass dbname=postgres sslmode=require channel_binding=require", "rows 2");
        Assert.True(viaScram.ExitCode == 0, viaScram.ToString());
        Assert.Equal("1|row 1\n2|row 2\n", viaScram.Stdout);
        Assert.All(md5.Handlers.Concat(scram.Handlers), h => Assert.Equal("SSLRequest", h.Session.Tls));

        ProcessOutput wrong = Psycopg.Run($"host=127.0.0.1 port={md5.Port} user=alice password=wrong dbname=postgres sslmode=require", "rows 2");
        Assert.NotEqual(0, wrong.ExitCode);
        Assert.Contains("password authentication failed for user \"alice\"", wrong.Stderr, StringComparison.Ordinal);
    }
}

/// <summary>Runs a statement through libpq with psycopg 3 and prints the rows as "a|b" lines.</summary>
internal static class Psycopg
{
    private const string Script = """
        import sys
        import psycopg
        with psycopg.connect(sys.argv[1], autocommit=True) as conn:
            for row in conn.execute(sys.argv[2]).fetchall():
                print("|".join(str(v) for v in row))
        """;

    /// <summary>With the system's libpq.</summary>
    public static ProcessOutput Run(string conninfo, string sql)
        => ExternalProcess.Run("/usr/bin/python3", ["-c", Script, conninfo, sql], environment: new Dictionary<string, string> { ["PSYCOPG_IMPL"] = "python" });

    /// <summary>With libpq 18 (direct TLS, protocol 3.2).</summary>
    public static ProcessOutput RunWithLibpq18(string conninfo, string sql)
        => ExternalProcess.Run(Libpq18.Python, ["-c", Script, conninfo, sql], environment: new Dictionary<string, string> { ["PSYCOPG_IMPL"] = "python", ["LD_LIBRARY_PATH"] = Libpq18.LibraryDirectory });
}

using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using PgSpec.Client;
using PgSpec.Protocol;

namespace PgSpec.Server.Tests;

/// <summary>A <see cref="PgBackendServer"/> on a free loopback port with <see cref="ScriptedHandler"/>s, for one test.</summary>
internal sealed class TestServer : IAsyncDisposable
{
    private TestServer(PgBackendServer server, ConcurrentQueue<ScriptedHandler> handlers)
    {
        Server = server;
        Handlers = handlers;
    }

    public PgBackendServer Server { get; }

    public int Port => ((IPEndPoint)Server.EndPoints[0]).Port;

    /// <summary>The handlers made so far, one per authenticated session, in the order the sessions started.</summary>
    public ConcurrentQueue<ScriptedHandler> Handlers { get; }

    public static TestServer Start(Action<PgBackendOptions>? configure = null)
    {
        var options = new PgBackendOptions();
        options.Listen.Add(new IPEndPoint(IPAddress.Loopback, 0));
        configure?.Invoke(options);
        var handlers = new ConcurrentQueue<ScriptedHandler>();
        PgBackendServer server = PgBackendServer.Start(options, session =>
        {
            var handler = new ScriptedHandler(session);
            handlers.Enqueue(handler);
            return handler;
        });
        return new TestServer(server, handlers);
    }

    /// <summary>The handler of the session with this process ID.</summary>
    public ScriptedHandler HandlerOf(int processId) => Handlers.Single(h => h.Session.ProcessId == processId);

    /// <summary>Client options for this server: no TLS, protocol 3.0.</summary>
    public PgConnectOptions Client(string user = "alice", string? password = null) => new()
    {
        Port = Port,
        User = user,
        Password = password,
        SslMode = PgSslMode.Disable,
        ConnectTimeout = TimeSpan.FromSeconds(30),
    };

    public Task<PgFrontendSession> ConnectAsync(string user = "alice") => PgFrontendSession.ConnectAsync(Client(user), cancellationToken: Wait.Token);

    public async ValueTask DisposeAsync() => await Server.DisposeAsync();
}

/// <summary>Certificates made for the tests.</summary>
internal static class Certificates
{
    /// <summary>A self-signed RSA certificate for localhost and 127.0.0.1, with its private key.</summary>
    public static X509Certificate2 SelfSigned()
    {
        using var key = RSA.Create(2048);
        var request = new CertificateRequest("CN=localhost", key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        var names = new SubjectAlternativeNameBuilder();
        names.AddDnsName("localhost");
        names.AddIpAddress(IPAddress.Loopback);
        request.CertificateExtensions.Add(names.Build());
        using X509Certificate2 created = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddDays(1));

        // Through PKCS#12, so that the key is usable by SslStream everywhere.
        return X509CertificateLoader.LoadPkcs12(created.Export(X509ContentType.Pkcs12), null);
    }
}

/// <summary>
/// A connection that speaks the protocol by hand: it sends the bytes it is given, as they are,
/// and reads back whole backend messages, or the end of the stream.
/// </summary>
internal sealed class RawConnection : IAsyncDisposable
{
    private readonly PgMessageReader _reader;
    private byte[] _buffer = new byte[65536];
    private int _start;
    private int _end;

    private RawConnection(Socket socket)
    {
        Socket = socket;
        Stream = new NetworkStream(socket, ownsSocket: true);
        Context = new DecodeContext();
        _reader = new PgMessageReader(PgDirection.Backend, Context);
    }

    public Socket Socket { get; }

    public Stream Stream { get; private set; }

    public DecodeContext Context { get; }

    public static async Task<RawConnection> OpenAsync(int port, int? receiveBufferSize = null)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        if (receiveBufferSize is int size)
        {
            socket.ReceiveBufferSize = size;
        }

        await socket.ConnectAsync(IPAddress.Loopback, port, Wait.Token);
        return new RawConnection(socket);
    }

    /// <summary>Writes the bytes in one write.</summary>
    public async Task SendAsync(byte[] bytes)
    {
        await Stream.WriteAsync(bytes, Wait.Token);
        await Stream.FlushAsync(Wait.Token);
    }

    /// <summary>Sends a frontend message and lets the decode context learn from it.</summary>
    public async Task SendAsync(IFrontendMessage message)
    {
        byte[] bytes = message.ToArray(Context.ProtocolVersion);
        Context.ObserveFrontend(message.FrontendKind, bytes.AsSpan(message.TypeByte < 0 ? 4 : 5));
        await SendAsync(bytes);
    }

    /// <summary>Sends a StartupMessage of protocol 3.0 with these parameters.</summary>
    public Task StartupAsync(params (string Name, string Value)[] parameters)
        => SendAsync(new StartupMessage(PgProtocolVersion.V3_0.Code, [.. parameters.Select(p => new StartupMessage.Parameter(p.Name, p.Value))]));

    /// <summary>Logs in as <paramref name="user"/> on a trusting server and reads up to the first ReadyForQuery.</summary>
    public async Task<IReadOnlyList<IBackendMessage>> LoginAsync(string user = "alice")
    {
        await StartupAsync(("user", user));
        return await ReceiveUntilAsync(m => m is ReadyForQuery);
    }

    /// <summary>Reads exactly one byte (an answer to SSLRequest or GSSENCRequest); null at the end of the stream.</summary>
    public async Task<byte?> ReceiveByteAsync()
    {
        Context.ExpectEncryptionAnswer = false;
        if (_end > _start)
        {
            return _buffer[_start++];
        }

        byte[] one = new byte[1];
        int n = await Stream.ReadAsync(one, Wait.Token);
        return n == 0 ? null : one[0];
    }

    /// <summary>The next message; null when the server closed the connection between messages.</summary>
    public async Task<IBackendMessage?> ReceiveAsync(CancellationToken cancellationToken = default)
    {
        using var limit = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        limit.CancelAfter(Wait.Limit);
        while (true)
        {
            if (_end > _start)
            {
                PgReadStatus status = _reader.TryRead(_buffer.AsSpan(_start, _end - _start), out int consumed, out PgReceivedMessage message, out PgDecodeError error);
                if (status == PgReadStatus.Message)
                {
                    IBackendMessage decoded = (IBackendMessage)message.ToMessage(Context);
                    _start += consumed;
                    return decoded;
                }

                Assert.True(status == PgReadStatus.Incomplete, $"the server sent a malformed message: {error}");
            }

            if (_start > 0)
            {
                _buffer.AsSpan(_start, _end - _start).CopyTo(_buffer);
                _end -= _start;
                _start = 0;
            }

            if (_end == _buffer.Length)
            {
                Array.Resize(ref _buffer, _buffer.Length * 2);
            }

            int n;
            try
            {
                n = await Stream.ReadAsync(_buffer.AsMemory(_end), limit.Token);
            }
            catch (IOException e) when (e.InnerException is SocketException { SocketErrorCode: SocketError.ConnectionReset })
            {
                n = 0;
            }

            if (n == 0)
            {
                Assert.True(_end == _start, $"the connection closed inside a message ({_end - _start} bytes of it received)");
                return null;
            }

            _end += n;
        }
    }

    /// <summary>Reads messages until one satisfies <paramref name="last"/> (included); fails if the connection closes first.</summary>
    public async Task<IReadOnlyList<IBackendMessage>> ReceiveUntilAsync(Func<IBackendMessage, bool> last)
    {
        var messages = new List<IBackendMessage>();
        while (true)
        {
            IBackendMessage? message = await ReceiveAsync();
            Assert.True(message is not null, $"the server closed the connection after {string.Join(", ", messages.Select(m => m.Name))}");
            messages.Add(message);
            if (last(message))
            {
                return messages;
            }
        }
    }

    /// <summary>Reads every message up to the end of the stream.</summary>
    public async Task<IReadOnlyList<IBackendMessage>> ReceiveToEndAsync()
    {
        var messages = new List<IBackendMessage>();
        while (await ReceiveAsync() is IBackendMessage message)
        {
            messages.Add(message);
        }

        return messages;
    }

    /// <summary>Starts TLS as a client on this connection, offering <paramref name="alpn"/> (none when null).</summary>
    public async Task StartTlsAsync(string? alpn)
    {
        Assert.Equal(_start, _end);
        var ssl = new SslStream(Stream, leaveInnerStreamOpen: false);
        var options = new SslClientAuthenticationOptions
        {
            TargetHost = "localhost",
            RemoteCertificateValidationCallback = (_, _, _, _) => true,
        };
        if (alpn is not null)
        {
            options.ApplicationProtocols = [new SslApplicationProtocol(alpn)];
        }

        await ssl.AuthenticateAsClientAsync(options, Wait.Token);
        Stream = ssl;
    }

    /// <summary>A CancelRequest for protocol 3.0 (a 4-byte key).</summary>
    public static byte[] CancelRequest(int processId, ReadOnlySpan<byte> key)
    {
        byte[] bytes = new byte[12 + key.Length];
        BinaryPrimitives.WriteInt32BigEndian(bytes, bytes.Length);
        BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(4), 80877102);
        BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(8), processId);
        key.CopyTo(bytes.AsSpan(12));
        return bytes;
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            await Stream.DisposeAsync();
        }
        catch (IOException)
        {
        }

        Socket.Dispose();
    }
}

internal static class ErrorFields
{
    /// <summary>The fields S, V, C and M of an error, the ones compared with PostgreSQL's.</summary>
    public static (string? S, string? V, string? C, string? M) Core(this PgErrorFields fields)
        => (fields.Severity, fields.SeverityNonLocalized, fields.SqlState, fields.Message);

    public static PgErrorFields Fields(this ErrorResponse error) => PgErrorFields.From(error.Fields.Select(f => (f.Code, f.Value)));
}

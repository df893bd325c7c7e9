using System.Globalization;
using System.Text.Encodings.Web;
using System.Text.Json;
using PgSpec.Client;
using PgSpec.Protocol;
using PgSpec.Protocol.Replication;

namespace PgSpec.Cli.Replicate;

/// <summary>
/// A physical replication stream (--physical): the WAL is not decoded or kept; each XLogData becomes
/// a line with where its bytes lie. The position confirmed to the server is the end of the last
/// XLogData written out (what a physical slot keeps WAL for), never applied.
/// </summary>
internal sealed class PhysicalStream
{
    private static readonly JsonWriterOptions s_options = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
    private readonly PgFrontendSession _session;
    private readonly ReplicateSettings _settings;
    private readonly ReplicationOutput _output;
    private readonly TextWriter _stderr;
    private readonly ReplicateSignals _signals;
    private readonly CancellationToken _stop;
    private long _written;
    private long _acknowledged;
    private long _messages;
    private long _bytes;
    private readonly ReplicationReceiver _receiver;
    private string _stoppedBy = "SIGINT/SIGTERM";

    public PhysicalStream(PgFrontendSession session, ReplicateSettings settings, ReplicationOutput output, TextWriter stderr, ReplicateSignals signals)
    {
        _session = session;
        _settings = settings;
        _output = output;
        _stderr = stderr;
        _signals = signals;
        _stop = signals.Stop;
        _receiver = new ReplicationReceiver(session, settings, output, signals, SendStatusAsync);
    }

    /// <summary>Streams from <paramref name="start"/> on <paramref name="timeline"/> until SIGINT/SIGTERM, --endpos or an error.</summary>
    public async Task<int> RunAsync(long start, string timeline)
    {
        string slot = _settings.Slot is { } name ? $"SLOT {name} " : "";
        string command = $"START_REPLICATION {slot}PHYSICAL {ReplicationValues.FormatLsn(start)} TIMELINE {timeline}";
        try
        {
            await _session.StartCopyBothAsync(command, _stop).ConfigureAwait(false);
        }
        catch (PgServerException e)
        {
            throw new ReplicateException(ReplicateCommand.ExitServerError, "START_REPLICATION: " + ReplicationConnection.Describe(e), e);
        }

        if (_settings.Verbose)
        {
            _stderr.WriteLine($"pgspec replicate: {command}");
        }

        var json = new Utf8JsonWriter(_output.Stream, s_options);
        while (!_stop.IsCancellationRequested)
        {
            if (_signals.TakeReopen())
            {
                _output.Reopen();
                json.Reset(_output.Stream);
            }

            IBackendMessage? message = await _receiver.ReceiveAsync().ConfigureAwait(false);
            if (message is null)
            {
                continue;
            }

            _receiver.Ready();
            switch (message)
            {
                case CopyData data:
                    if (!ReplicationMessages.TryDecode(data.Data.Span, PgDirection.Backend, out IReplicationMessage? replication, out PgDecodeError error))
                    {
                        throw new ReplicateException(PgSpecCommandLine.ExitServerViolation, "the server sent a CopyData that is not a replication message: " + error);
                    }

                    if (replication is XLogData xlog)
                    {
                        json.Reset(_output.Stream);
                        json.WriteStartObject();
                        json.WriteString("op", "wal");
                        json.WriteString("walStart", ReplicationValues.FormatLsn(xlog.WalStart));
                        json.WriteString("walEnd", ReplicationValues.FormatLsn(xlog.WalEnd));
                        json.WriteString("sendTime", ReplicationValues.FormatTime(xlog.SendTime));
                        json.WriteNumber("bytes", xlog.Data.Length);
                        json.WriteEndObject();
                        json.Flush();
                        _output.Stream.WriteByte((byte)'\n');
                        _messages++;
                        _bytes += xlog.Data.Length;
                        _written = Math.Max(_written, xlog.WalStart + xlog.Data.Length);
                        if (_settings.EndLsn is { } end && _written >= end)
                        {
                            _stoppedBy = "--endpos " + ReplicationValues.FormatLsn(end);
                            return await FinishAsync().ConfigureAwait(false);
                        }
                    }
                    else if (replication is PrimaryKeepalive { ReplyRequested: not 0 })
                    {
                        await SendStatusAsync(false).ConfigureAwait(false);
                    }

                    break;

                case ErrorResponse errorResponse:
                    throw new ReplicateException(ReplicateCommand.ExitServerError, "the server ended replication with an error: " + ReplicationConnection.Describe(new PgServerException(PgErrorFields.From(errorResponse.Fields.Select(f => (f.Code, f.Value))), errorResponse)));

                case CopyDone:
                    throw new ReplicateException(PgSpecCommandLine.ExitConnection, "the server ended the replication stream (CopyDone): the timeline ended, or the server is shutting down");

                case NoticeResponse or ParameterStatus:
                    break;

                default:
                    throw new ReplicateException(PgSpecCommandLine.ExitServerViolation, $"the server sent {message.Name} during replication");
            }
        }

        return await FinishAsync().ConfigureAwait(false);
    }

    private async Task SendStatusAsync(bool replyRequested)
    {
        _output.FlushDurable();
        long position = Math.Max(_written, _acknowledged);
        _session.Send(new CopyData(new StandbyStatusUpdate(position, position, 0, ReplicationValues.Now(), replyRequested ? (byte)1 : (byte)0).ToArray()));
        using var bound = new CancellationTokenSource(_settings.Timeout);
        try
        {
            await _session.FlushAsync(bound.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (bound.IsCancellationRequested)
        {
            throw new ReplicateException(PgSpecCommandLine.ExitTimeout, $"the server took no data for {_settings.Timeout.TotalSeconds:0.#} s (--timeout): a standby status update could not be sent");
        }

        _acknowledged = position;
        _receiver.LastStatus = DateTime.UtcNow;
    }

    private async Task<int> FinishAsync()
    {
        await SendStatusAsync(false).ConfigureAwait(false);
        string ended = await ReplicationConnection.EndStreamAsync(_session).ConfigureAwait(false);
        _stderr.WriteLine(string.Create(CultureInfo.InvariantCulture, $"pgspec replicate: stopped ({_stoppedBy}); confirmed {ReplicationValues.FormatLsn(_acknowledged)} to the server; {_messages} XLogData messages ({_bytes} bytes of WAL) seen{ended}"));
        return PgSpecCommandLine.ExitOk;
    }
}

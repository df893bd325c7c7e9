using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Unicode;
using PgSpec.Protocol;
using PgSpec.Protocol.PgOutput;

namespace PgSpec.Cli.Replicate;

/// <summary>How a transaction ended, for its commit line.</summary>
/// <param name="CommitLsn">The LSN of the commit (or of COMMIT PREPARED).</param>
/// <param name="EndLsn">The end of the commit record: the position acknowledged once the transaction is written.</param>
/// <param name="CommitTime">The commit time (microseconds since 2000-01-01 UTC).</param>
internal readonly record struct CommitInfo(long CommitLsn, long EndLsn, long CommitTime);

/// <summary>
/// Writes the JSON lines of <c>pgspec replicate</c>: a transaction at a time once it has committed
/// (begin, its changes, commit), and logical decoding messages sent outside transactions. Keeps
/// what the server said about relations and types (Relation and Type messages), and the names of
/// the built-in types, to describe each change's relation.
/// </summary>
internal sealed class ChangeWriter
{
    private static readonly JsonWriterOptions s_options = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
    private readonly Stream _output;
    private readonly Utf8JsonWriter _json;
    private readonly Dictionary<uint, Relation> _relations = [];
    private readonly Dictionary<uint, string> _typeNames = [];
    private readonly PgOutputContext _plain;
    private readonly PgOutputContext _inBlock;

    public ChangeWriter(Stream output, int protocolVersion, PgOutputStreaming streaming)
    {
        _output = output;
        _json = new Utf8JsonWriter(output, s_options);
        _plain = new PgOutputContext(protocolVersion, streaming);
        _inBlock = new PgOutputContext(protocolVersion, streaming) { InStreamedTransaction = streaming != PgOutputStreaming.Off };
    }

    /// <summary>The changes written so far (insert, update, delete, truncate and transactional messages).</summary>
    public long Changes { get; private set; }

    /// <summary>The transactions written so far.</summary>
    public long Transactions { get; private set; }

    /// <summary>Names a type (a built-in one, from the catalogue); a Type message names it again.</summary>
    public void AddTypeName(uint oid, string name) => _typeNames[oid] = name;

    /// <summary>Learns a relation or a type from the server.</summary>
    public void Learn(IPgOutputMessage message)
    {
        switch (message)
        {
            case Relation relation:
                _relations[relation.RelationOid] = relation;
                break;
            case DataType type:
                _typeNames[type.TypeOid] = Qualified(type.Namespace, type.TypeName);
                break;
        }
    }

    /// <summary>
    /// Writes a transaction that committed: a begin line, a line per change (the changes of aborted
    /// subtransactions left out), a commit line. Relation and Type messages among its messages are
    /// learnt on the way. <paramref name="keepAlive"/> is called every thousand messages or so (a
    /// large transaction takes a while to write, and the server must hear from the client meanwhile).
    /// Returns the number of changes.
    /// </summary>
    public async Task<int> WriteTransactionAsync(BufferedTransaction transaction, CommitInfo commit, Func<Task> keepAlive)
    {
        Begin();
        _json.WriteString("op", "begin");
        _json.WriteNumber("xid", transaction.Xid);
        _json.WriteString("lsn", ReplicationValues.FormatLsn(transaction.FirstLsn));
        WriteCommonCommit(transaction, commit);
        if (transaction.Origin is { } origin)
        {
            _json.WriteString("originLsn", ReplicationValues.FormatLsn(transaction.OriginLsn));
        }

        if (transaction.Gid is { } gid)
        {
            _json.WriteString("gid", gid);
            if (transaction.PrepareLsn is { } prepareLsn)
            {
                _json.WriteString("prepareLsn", ReplicationValues.FormatLsn(prepareLsn));
            }

            if (transaction.PrepareTime is { } prepareTime)
            {
                _json.WriteString("prepareTime", ReplicationValues.FormatTime(prepareTime));
            }
        }

        if (transaction.Streamed)
        {
            _json.WriteBoolean("streamed", true);
        }

        End();

        int changes = 0;
        int read = 0;
        IReadOnlySet<int> aborted = transaction.AbortedSubtransactions;
        foreach (BufferedRecord record in transaction.Records())
        {
            if (++read % 1024 == 0)
            {
                await keepAlive().ConfigureAwait(false);
            }

            PgOutputContext context = record.InStreamedBlock ? _inBlock : _plain;
            if (!PgOutputMessages.TryDecode(record.Data.Span, context, out IPgOutputMessage? message, out PgDecodeError error))
            {
                // It decoded when it arrived: the bytes kept are not the bytes received.
                throw new ReplicateException(PgSpecCommandLine.ExitServerViolation, $"a message of transaction {transaction.Xid} kept for its commit no longer decodes: {error}");
            }

            if (message is Relation or DataType)
            {
                // Relations are learnt even from aborted subtransactions: the server does not send them again.
                Learn(message);
                continue;
            }

            if (aborted.Count > 0 && aborted.Contains(record.Xid))
            {
                continue;
            }

            if (WriteChange(message, record.WalStart, transaction, commit))
            {
                changes++;
            }
        }

        Begin();
        _json.WriteString("op", "commit");
        _json.WriteNumber("xid", transaction.Xid);
        _json.WriteString("lsn", ReplicationValues.FormatLsn(commit.CommitLsn));
        WriteCommonCommit(transaction, commit);
        _json.WriteString("endLsn", ReplicationValues.FormatLsn(commit.EndLsn));
        if (transaction.Gid is { } commitGid)
        {
            _json.WriteString("gid", commitGid);
        }

        _json.WriteNumber("changes", changes);
        End();
        Changes += changes;
        Transactions++;
        return changes;
    }

    /// <summary>Writes a logical decoding message sent outside any transaction (pg_logical_emit_message(false, ...)).</summary>
    public void WriteMessage(LogicalMessage message, long walStart)
    {
        Begin();
        _json.WriteString("op", "message");
        _json.WriteString("lsn", ReplicationValues.FormatLsn(message.Lsn != 0 ? message.Lsn : walStart));
        WriteMessageBody(message);
        End();
    }

    private void WriteCommonCommit(BufferedTransaction transaction, CommitInfo commit)
    {
        _json.WriteString("commitLsn", ReplicationValues.FormatLsn(commit.CommitLsn));
        _json.WriteString("commitTime", ReplicationValues.FormatTime(commit.CommitTime));
        if (transaction.Origin is { } origin)
        {
            _json.WriteString("origin", origin);
        }
    }

    private bool WriteChange(IPgOutputMessage message, long walStart, BufferedTransaction transaction, CommitInfo commit)
    {
        string op;
        switch (message)
        {
            case Insert:
                op = "insert";
                break;
            case Update:
                op = "update";
                break;
            case Delete:
                op = "delete";
                break;
            case Truncate:
                op = "truncate";
                break;
            case LogicalMessage:
                op = "message";
                break;
            default:
                // Nothing else belongs in a transaction's changes (Origin is kept apart).
                return false;
        }

        Begin();
        _json.WriteString("op", op);
        _json.WriteNumber("xid", transaction.Xid);
        _json.WriteString("lsn", ReplicationValues.FormatLsn(message is LogicalMessage { Lsn: not 0 } logical ? logical.Lsn : walStart));
        WriteCommonCommit(transaction, commit);
        switch (message)
        {
            case Insert insert:
            {
                Relation relation = RelationOf(insert.RelationOid, op);
                WriteRelation(relation);
                WriteTuple("new", relation, insert.NewTuple, keyOnly: false);
                break;
            }

            case Update update:
            {
                Relation relation = RelationOf(update.RelationOid, op);
                WriteRelation(relation);
                if (update.OldTuple is { } old)
                {
                    bool key = update.OldTupleKind == OldTupleKind.Key;
                    WriteTuple(key ? "key" : "old", relation, old, keyOnly: key);
                }

                WriteTuple("new", relation, update.NewTuple, keyOnly: false);
                break;
            }

            case Delete delete:
            {
                Relation relation = RelationOf(delete.RelationOid, op);
                WriteRelation(relation);
                bool key = delete.OldTupleKind == OldTupleKind.Key;
                WriteTuple(key ? "key" : "old", relation, delete.OldTuple, keyOnly: key);
                break;
            }

            case Truncate truncate:
                _json.WriteStartArray("relations");
                foreach (uint oid in truncate.RelationOids)
                {
                    Relation relation = RelationOf(oid, op);
                    _json.WriteStartObject();
                    _json.WriteNumber("oid", relation.RelationOid);
                    _json.WriteString("schema", SchemaName(relation.Namespace));
                    _json.WriteString("name", relation.RelationName);
                    _json.WriteEndObject();
                }

                _json.WriteEndArray();
                _json.WriteBoolean("cascade", (truncate.Options & 1) != 0);
                _json.WriteBoolean("restartIdentity", (truncate.Options & 2) != 0);
                break;

            case LogicalMessage logicalMessage:
                WriteMessageBody(logicalMessage);
                break;
        }

        End();
        return true;
    }

    private void WriteMessageBody(LogicalMessage message)
    {
        _json.WriteBoolean("transactional", (message.Flags & LogicalMessageFlags.Transactional) != 0);
        _json.WriteString("prefix", message.Prefix);
        ReadOnlySpan<byte> content = message.Content.Span;
        if (Utf8.IsValid(content))
        {
            _json.WriteString("content", content);
        }
        else
        {
            _json.WriteBase64String("contentBase64", content);
        }
    }

    private Relation RelationOf(uint oid, string op)
        => _relations.TryGetValue(oid, out Relation? relation)
            ? relation
            : throw new ReplicateException(PgSpecCommandLine.ExitServerViolation, $"the server sent {op} on relation {oid} without its Relation message first");

    private void WriteRelation(Relation relation)
    {
        _json.WriteStartObject("relation");
        _json.WriteNumber("oid", relation.RelationOid);
        _json.WriteString("schema", SchemaName(relation.Namespace));
        _json.WriteString("name", relation.RelationName);
        _json.WriteString("replicaIdentity", relation.ReplicaIdentity switch
        {
            ReplicaIdentity.Default => "default",
            ReplicaIdentity.Nothing => "nothing",
            ReplicaIdentity.Full => "full",
            ReplicaIdentity.Index => "index",
            _ => relation.ReplicaIdentity.ToString(),
        });
        _json.WriteStartArray("columns");
        foreach (Relation.Column column in relation.Columns)
        {
            _json.WriteStartObject();
            _json.WriteString("name", column.Name);
            if (_typeNames.TryGetValue(column.TypeOid, out string? type))
            {
                _json.WriteString("type", type);
            }
            else
            {
                _json.WriteNull("type");
            }

            _json.WriteNumber("typeOid", column.TypeOid);
            if (column.TypeModifier != -1)
            {
                _json.WriteNumber("typeModifier", column.TypeModifier);
            }

            _json.WriteBoolean("key", (column.Flags & 1) != 0);
            _json.WriteEndObject();
        }

        _json.WriteEndArray();
        _json.WriteEndObject();
    }

    private void WriteTuple(string name, Relation relation, TupleData tuple, bool keyOnly)
    {
        if (tuple.Columns.Length != relation.Columns.Length)
        {
            throw new ReplicateException(PgSpecCommandLine.ExitServerViolation, $"a row of {SchemaName(relation.Namespace)}.{relation.RelationName} has {tuple.Columns.Length} columns, and its Relation message {relation.Columns.Length}");
        }

        _json.WriteStartObject(name);
        for (int i = 0; i < tuple.Columns.Length; i++)
        {
            Relation.Column column = relation.Columns[i];
            if (keyOnly && (column.Flags & 1) == 0)
            {
                continue;
            }

            TupleData.Column value = tuple.Columns[i];
            _json.WritePropertyName(column.Name);
            switch (value.Kind)
            {
                case TupleValueKind.Null:
                    _json.WriteNullValue();
                    break;
                case TupleValueKind.UnchangedToast:
                    _json.WriteStartObject();
                    _json.WriteBoolean("unchanged", true);
                    _json.WriteEndObject();
                    break;
                case TupleValueKind.Text when value.Value is { } text && Utf8.IsValid(text.Span):
                    _json.WriteStringValue(text.Span);
                    break;
                default:
                    // Binary values, and text that is not UTF-8 (a database in another encoding).
                    _json.WriteStartObject();
                    _json.WriteBase64String("base64", value.Value is { } bytes ? bytes.Span : default);
                    _json.WriteEndObject();
                    break;
            }
        }

        _json.WriteEndObject();
    }

    private static string SchemaName(string schema) => schema.Length == 0 ? "pg_catalog" : schema;

    /// <summary>A type's name as the catalogue would print it: bare in pg_catalog, qualified elsewhere.</summary>
    internal static string Qualified(string schema, string name) => schema.Length == 0 || schema == "pg_catalog" ? name : schema + "." + name;

    private void Begin()
    {
        _json.Reset(_output);
        _json.WriteStartObject();
    }

    private void End()
    {
        _json.WriteEndObject();
        _json.Flush();
        _output.WriteByte((byte)'\n');
    }
}

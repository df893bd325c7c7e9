using System.Text;
using PgSpec.Protocol;

namespace PgSpec.Cli.Tests;

/// <summary>A constructed SCRAM conversation, both directions, encoded by the codecs.</summary>
public static class Conversation
{
    public static readonly StartupMessage Startup = new(196608, [new StartupMessage.Parameter("user", "alice"), new StartupMessage.Parameter("database", "shop")]);
    public static readonly SASLInitialResponse SaslInitial = new("SCRAM-SHA-256", Encoding.ASCII.GetBytes("n,,n=,r=abc"));
    public static readonly SASLResponse SaslResponse = new(Encoding.ASCII.GetBytes("c=biws,r=abc,p=xyz"));
    public static readonly Query Select = new("SELECT 1, NULL");

    public static readonly AuthenticationSASL Sasl = new(["SCRAM-SHA-256"]);
    public static readonly AuthenticationSASLContinue SaslContinue = new(Encoding.ASCII.GetBytes("r=abc,s=c2FsdA==,i=4096"));
    public static readonly AuthenticationSASLFinal SaslFinal = new(Encoding.ASCII.GetBytes("v=c2ln"));
    public static readonly ParameterStatus ServerVersion = new("server_version", "15.0");
    public static readonly RowDescription Columns = new([new RowDescription.Field("?column?", 0, 0, 23, 4, -1, 0), new RowDescription.Field("?column?", 0, 0, 25, -1, -1, 0)]);
    public static readonly DataRow Row = new([Encoding.ASCII.GetBytes("1"), null]);

    public static byte[] Frontend => Bytes(Startup, SaslInitial, SaslResponse, Select, new Terminate());

    public static byte[] Backend => Bytes(
        Sasl,
        SaslContinue,
        SaslFinal,
        new AuthenticationOk(),
        ServerVersion,
        new BackendKeyData(4242, new byte[] { 0, 0, 0, 7 }),
        new ReadyForQuery(TransactionStatus.Idle),
        Columns,
        Row,
        new CommandComplete("SELECT 1"),
        new ReadyForQuery(TransactionStatus.Idle));

    public static byte[] Bytes(params IPgMessage[] messages) => messages.SelectMany(m => m.ToArray()).ToArray();

    public static byte[] Concat(params byte[][] parts) => parts.SelectMany(p => p).ToArray();
}

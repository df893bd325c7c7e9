namespace PgSpec.Servers;

/// <summary>How a role authenticates, as pg_hba.conf names the method.</summary>
public enum PgAuthMethod
{
    /// <summary>No password.</summary>
    Trust,

    /// <summary>Cleartext password.</summary>
    Password,

    /// <summary>MD5 challenge (the role's password stored as MD5).</summary>
    Md5,

    /// <summary>SCRAM-SHA-256.</summary>
    ScramSha256,
}

/// <summary>A login role a provisioned server has, with its matching pg_hba line.</summary>
/// <param name="Name">The role name.</param>
/// <param name="Password">The password (empty for trust).</param>
/// <param name="Method">How it authenticates.</param>
/// <param name="SslOnly">Only allowed over TLS (hostssl).</param>
/// <param name="Replication">Has REPLICATION and a replication pg_hba line.</param>
public sealed record PgRole(string Name, string Password, PgAuthMethod Method, bool SslOnly = false, bool Replication = false)
{
    /// <summary>The roles every provisioned server has: one per authentication method, a TLS-only one and a replication one.</summary>
    public static IReadOnlyList<PgRole> Standard { get; } =
    [
        new("pgspec_trust", "", PgAuthMethod.Trust),
        new("pgspec_password", "cleartext-secret", PgAuthMethod.Password),
        new("pgspec_md5", "md5-secret", PgAuthMethod.Md5),
        new("pgspec_scram", "scram-secret", PgAuthMethod.ScramSha256),
        new("pgspec_ssl", "ssl-secret", PgAuthMethod.ScramSha256, SslOnly: true),
        new("pgspec_repl", "repl-secret", PgAuthMethod.ScramSha256, Replication: true),
    ];

    /// <summary>pg_hba.conf's name of the method.</summary>
    public string HbaMethod => Method switch
    {
        PgAuthMethod.Trust => "trust",
        PgAuthMethod.Password => "password",
        PgAuthMethod.Md5 => "md5",
        _ => "scram-sha-256",
    };
}

using System.Globalization;
using Testcontainers.PostgreSql;

namespace PgSpec.Servers;

/// <summary>
/// PostgreSQL in a container (any major version with an official image), where a Docker engine
/// is available. Without one it fails at once with a clear <see cref="PgProvisionException"/>.
/// The container has only the image's superuser (SCRAM), so only that role is offered.
/// </summary>
public sealed class DockerPgServerProvider : IPgServerProvider
{
    /// <inheritdoc/>
    public string Name => "docker";

    /// <inheritdoc/>
    public async Task<PgServer> StartAsync(PgServerOptions options, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(options);
        int major = options.MajorVersion ?? 18;
        PostgreSqlContainer container;
        try
        {
            container = new PostgreSqlBuilder("postgres:" + major.ToString(CultureInfo.InvariantCulture))
                .WithUsername("pgspec_scram")
                .WithPassword("scram-secret")
                .WithDatabase("postgres")
                .WithCommand(["-c", "wal_level=logical", .. options.Settings.SelectMany(setting => new[] { "-c", setting.Key + "=" + setting.Value })])
                .Build();
            await container.StartAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            throw new PgProvisionException($"Docker is not available ({e.GetType().Name}: {e.Message.Split('\n')[0]}); use the local provider instead", e);
        }

        options.Progress?.Invoke($"PostgreSQL {major} in container {container.Id[..12]} on {container.Hostname}:{container.GetMappedPublicPort(5432)}");
        return new PgServer(
            "docker",
            container.Hostname,
            container.GetMappedPublicPort(5432),
            null,
            major,
            "PostgreSQL " + major.ToString(CultureInfo.InvariantCulture) + " (docker)",
            null,
            [new PgRole("pgspec_scram", "scram-secret", PgAuthMethod.ScramSha256)],
            null,
            null,
            async (_, _) => await container.DisposeAsync().ConfigureAwait(false));
    }
}

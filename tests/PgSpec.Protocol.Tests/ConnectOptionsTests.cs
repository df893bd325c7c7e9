using PgSpec.Client;

namespace PgSpec.Protocol.Tests;

/// <summary>postgres:// URLs: what libpq accepts is read as libpq reads it, the rest is an <see cref="ArgumentException"/>.</summary>
public class ConnectOptionsTests
{
    [Fact]
    public void FromUrl_EveryPart_IsRead()
    {
        PgConnectOptions options = PgConnectOptions.FromUrl("postgresql://app:s%40cret@db.example:6432/sales?sslmode=verify-full&sslnegotiation=direct&channel_binding=require&connect_timeout=7&application_name=x");

        Assert.Equal(("db.example", 6432, "app", "s@cret", "sales"), (options.Host, options.Port, options.User, options.Password, options.Database));
        Assert.Equal((PgSslMode.VerifyFull, PgSslNegotiation.Direct, PgChannelBinding.Require), (options.SslMode, options.SslNegotiation, options.ChannelBinding));
        Assert.Equal(TimeSpan.FromSeconds(7), options.ConnectTimeout);
        Assert.Equal([new KeyValuePair<string, string>("application_name", "x")], options.Parameters);
    }

    [Theory]
    [InlineData("0")]
    [InlineData("-3")]
    public void FromUrl_ConnectTimeoutZeroOrLess_WaitsIndefinitely(string value)
    {
        Assert.Equal(Timeout.InfiniteTimeSpan, PgConnectOptions.FromUrl("postgres://u@h/d?connect_timeout=" + value).ConnectTimeout);
    }

    [Theory]
    [InlineData("http://u@h/d", "postgres://")]
    [InlineData("postgres://u@h:0/d", "port 0")]
    [InlineData("postgres://u@h/d?connect_timeout=soon", "connect_timeout 'soon'")]
    [InlineData("postgres://u@h/d?connect_timeout=NaN", "connect_timeout 'NaN'")]
    [InlineData("postgres://u@h/d?connect_timeout=1e300", "connect_timeout '1e300'")]
    [InlineData("postgres://u@h/d?sslmode=sometimes", "sslmode 'sometimes'")]
    [InlineData("postgres://u@h/d?sslnegotiation=eventually", "sslnegotiation 'eventually'")]
    [InlineData("postgres://u@h/d?channel_binding=2", "channel_binding '2'")]
    public void FromUrl_UnusableValue_ThrowsArgumentExceptionSayingWhich(string url, string named)
    {
        ArgumentException e = Assert.ThrowsAny<ArgumentException>(() => PgConnectOptions.FromUrl(url));

        Assert.Contains(named, e.Message, StringComparison.Ordinal);
    }
}

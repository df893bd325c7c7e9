using System.Text;

namespace PgSpec.Cli.Replicate;

/// <summary>
/// libpq's connection strings, as -d takes them: "key=value key='quoted value'" or
/// postgres://user:password@host:port/database?key=value. Only the keys <c>pgspec replicate</c>
/// uses are accepted; anything else is an error that names it.
/// </summary>
internal static class ConnectionString
{
    private static readonly HashSet<string> s_keys = new(StringComparer.Ordinal)
    {
        "host", "hostaddr", "port", "user", "password", "dbname", "sslmode", "sslrootcert", "application_name",
    };

    /// <summary>Parses <paramref name="text"/> into <paramref name="values"/>; false, with what is wrong, when it is not a connection string this tool can use.</summary>
    public static bool TryParse(string text, Dictionary<string, string> values, out string? error)
    {
        bool parsed = text.StartsWith("postgres://", StringComparison.Ordinal) || text.StartsWith("postgresql://", StringComparison.Ordinal)
            ? TryParseUrl(text, values, out error)
            : TryParseKeywords(text, values, out error);
        if (!parsed)
        {
            return false;
        }

        foreach (string key in values.Keys)
        {
            if (!s_keys.Contains(key))
            {
                error = $"the connection option '{key}' is unknown or not supported here (supported: {string.Join(", ", s_keys)})";
                return false;
            }
        }

        if (values.TryGetValue("host", out string? host) && host.Contains(',', StringComparison.Ordinal))
        {
            error = "several hosts are not supported: give one";
            return false;
        }

        return true;
    }

    private static bool TryParseKeywords(string text, Dictionary<string, string> values, out string? error)
    {
        int i = 0;
        while (true)
        {
            while (i < text.Length && char.IsWhiteSpace(text[i]))
            {
                i++;
            }

            if (i == text.Length)
            {
                error = null;
                return true;
            }

            int keyStart = i;
            while (i < text.Length && text[i] != '=' && !char.IsWhiteSpace(text[i]))
            {
                i++;
            }

            string key = text[keyStart..i];
            while (i < text.Length && char.IsWhiteSpace(text[i]))
            {
                i++;
            }

            if (key.Length == 0 || i == text.Length || text[i] != '=')
            {
                error = $"'{text}' is not a connection string: '{key}' has no '=value'";
                return false;
            }

            i++;
            while (i < text.Length && char.IsWhiteSpace(text[i]))
            {
                i++;
            }

            var value = new StringBuilder();
            if (i < text.Length && text[i] == '\'')
            {
                i++;
                bool closed = false;
                while (i < text.Length)
                {
                    char c = text[i++];
                    if (c == '\\' && i < text.Length)
                    {
                        value.Append(text[i++]);
                    }
                    else if (c == '\'')
                    {
                        closed = true;
                        break;
                    }
                    else
                    {
                        value.Append(c);
                    }
                }

                if (!closed)
                {
                    error = $"the quoted value of '{key}' has no closing quote";
                    return false;
                }
            }
            else
            {
                while (i < text.Length && !char.IsWhiteSpace(text[i]))
                {
                    char c = text[i++];
                    value.Append(c == '\\' && i < text.Length ? text[i++] : c);
                }
            }

            values[key] = value.ToString();
        }
    }

    private static bool TryParseUrl(string text, Dictionary<string, string> values, out string? error)
    {
        string rest = text[(text.IndexOf("://", StringComparison.Ordinal) + 3)..];
        string? query = null;
        int question = rest.IndexOf('?', StringComparison.Ordinal);
        if (question >= 0)
        {
            query = rest[(question + 1)..];
            rest = rest[..question];
        }

        int slash = rest.IndexOf('/', StringComparison.Ordinal);
        string authority = slash < 0 ? rest : rest[..slash];
        if (slash >= 0 && rest.Length > slash + 1)
        {
            values["dbname"] = Uri.UnescapeDataString(rest[(slash + 1)..]);
        }

        int at = authority.LastIndexOf('@');
        if (at >= 0)
        {
            string userInfo = authority[..at];
            authority = authority[(at + 1)..];
            int colon = userInfo.IndexOf(':', StringComparison.Ordinal);
            string userName = colon < 0 ? userInfo : userInfo[..colon];
            if (userName.Length > 0)
            {
                values["user"] = Uri.UnescapeDataString(userName);
            }

            if (colon >= 0)
            {
                values["password"] = Uri.UnescapeDataString(userInfo[(colon + 1)..]);
            }
        }

        string hostPart = authority;
        string? portPart = null;
        if (authority.StartsWith('['))
        {
            int close = authority.IndexOf(']', StringComparison.Ordinal);
            if (close < 0)
            {
                error = $"'{text}': the IPv6 address has no closing ']'";
                return false;
            }

            hostPart = authority[1..close];
            if (authority.Length > close + 1)
            {
                if (authority[close + 1] != ':')
                {
                    error = $"'{text}': what follows the IPv6 address is not ':port'";
                    return false;
                }

                portPart = authority[(close + 2)..];
            }
        }
        else if (authority.LastIndexOf(':') is int colon and >= 0)
        {
            hostPart = authority[..colon];
            portPart = authority[(colon + 1)..];
        }

        if (hostPart.Length > 0)
        {
            values["host"] = Uri.UnescapeDataString(hostPart);
        }

        if (!string.IsNullOrEmpty(portPart))
        {
            values["port"] = portPart;
        }

        if (query is not null)
        {
            foreach (string pair in query.Split('&', StringSplitOptions.RemoveEmptyEntries))
            {
                int equals = pair.IndexOf('=', StringComparison.Ordinal);
                if (equals <= 0)
                {
                    error = $"'{text}': the parameter '{pair}' has no '=value'";
                    return false;
                }

                values[Uri.UnescapeDataString(pair[..equals])] = Uri.UnescapeDataString(pair[(equals + 1)..]);
            }
        }

        error = null;
        return true;
    }
}

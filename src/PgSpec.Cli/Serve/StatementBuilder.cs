using SQLitePCL;

namespace PgSpec.Cli.Serve;

/// <summary>Parses one statement: the commands the engine answers itself, or SQL prepared by SQLite.</summary>
internal static class StatementBuilder
{
    public static SqlStatement Build(SqliteSession session, string sql, IReadOnlyList<uint> given)
    {
        var rw = SqlRewriter.Rewrite(sql);
        var units = rw.Units;
        int n = units.Count;
        while (n > 0 && units[n - 1].Kind == UnitKind.Semicolon) n--;
        bool trigger = n >= 2 && units[0].IsWord("create") && units.Take(Math.Min(n, 5)).Any(u => u.IsWord("trigger"));
        if (!trigger && units.Take(n).Any(u => u.Kind == UnitKind.Semicolon))
            throw SqlError.Error(SqlStates.SyntaxError, "cannot insert multiple commands into a prepared statement");
        units = units.GetRange(0, n);
        var parameterTypes = ParameterTypes(rw, given);
        var statement = n == 0
            ? new SqlStatement(session, sql, SqlCommandKind.Empty, parameterTypes, null)
            : Utility(session, sql, units, parameterTypes) ?? Query(session, sql, rw, units, parameterTypes);
        statement.UntypedParameters = Untyped(rw, given, parameterTypes.Count);
        return statement;
    }

    /// <summary>Which $n neither Parse nor a cast gave a type (their text type is a guess).</summary>
    private static bool[] Untyped(RewrittenSql rw, IReadOnlyList<uint> given, int count)
    {
        var untyped = new bool[count];
        for (int i = 1; i <= count; i++)
            untyped[i - 1] = (i > given.Count || given[i - 1] == 0) && !rw.ParameterCasts.ContainsKey(i);
        return untyped;
    }

    private static List<uint> ParameterTypes(RewrittenSql rw, IReadOnlyList<uint> given)
    {
        int count = Math.Max(rw.ParameterCount, given.Count);
        var types = new List<uint>(count);
        for (int i = 1; i <= count; i++)
        {
            uint oid = i <= given.Count ? given[i - 1] : 0;
            if (oid == 0) oid = rw.ParameterCasts.TryGetValue(i, out var cast) ? cast.Oid : PgType.TextOid;
            types.Add(oid);
        }
        return types;
    }

    private static SqlStatement Query(SqliteSession session, string sql, RewrittenSql rw, List<Unit> units, List<uint> parameterTypes)
    {
        string sqliteSql = rw.Sql.TrimEnd();
        while (sqliteSql.EndsWith(';')) sqliteSql = sqliteSql[..^1].TrimEnd();
        session.StartStep();
        int rc = raw.sqlite3_prepare_v2(session.Db, sqliteSql, out sqlite3_stmt stmt, out string tail);
        if (rc != raw.SQLITE_OK)
        {
            stmt?.Dispose();
            throw session.Error(rc, sql);
        }
        if (!string.IsNullOrEmpty(tail) && SqlLexer.Tokenize(tail).Any(t => !t.IsTrivia && t.Kind != TokenKind.Semicolon))
        {
            stmt?.Dispose();
            throw SqlError.Error(SqlStates.SyntaxError, "cannot insert multiple commands into a prepared statement");
        }
        if (stmt is null || stmt.IsInvalid)
            return new SqlStatement(session, sql, SqlCommandKind.Empty, parameterTypes, null);
        int count = raw.sqlite3_column_count(stmt);
        PgType?[]? types = null;
        string[]? names = null;
        List<SqlColumn>? columns = null;
        if (count > 0)
        {
            types = new PgType?[count];
            names = new string[count];
            var items = MapItems(rw.Items, count);
            columns = new List<SqlColumn>(count);
            for (int i = 0; i < count; i++)
            {
                var item = items[i];
                string sqliteName = raw.sqlite3_column_name(stmt, i).utf8_to_string() ?? "?column?";
                string? declared = raw.sqlite3_column_decltype(stmt, i).utf8_to_string();
                names[i] = item?.Name ?? sqliteName;
                types[i] = item?.Type ?? PgType.FromDeclaredType(declared);
                columns.Add(SqlColumn.Of(names[i], types[i] ?? PgType.Text));
            }
        }
        bool vacuum = units[0].IsWord("vacuum");
        return new SqlStatement(session, sql, SqlCommandKind.Query, parameterTypes, columns)
        {
            SqliteSql = sqliteSql,
            Rewritten = rw,
            StaticTypes = types,
            ColumnNames = names,
            Handle = stmt,
            OutsideTransaction = vacuum,
        };
    }

    /// <summary>Matches the select list's items to SQLite's columns: those before a * from the front, those after it from the back.</summary>
    private static SelectItem?[] MapItems(List<SelectItem>? items, int count)
    {
        var result = new SelectItem?[count];
        if (items is null || items.Count == 0) return result;
        int firstStar = items.FindIndex(i => i.IsStar);
        if (firstStar < 0)
        {
            if (items.Count == count)
                for (int i = 0; i < count; i++) result[i] = items[i];
            return result;
        }
        int lastStar = items.FindLastIndex(i => i.IsStar);
        for (int i = 0; i < firstStar && i < count; i++) result[i] = items[i];
        int after = items.Count - lastStar - 1;
        for (int k = 0; k < after && count - 1 - k >= firstStar; k++) result[count - 1 - k] = items[items.Count - 1 - k];
        return result;
    }

    // ---------------------------------------------------------------- commands the engine answers

    private static SqlError Unsupported(string what) => SqlError.Error(SqlStates.FeatureNotSupported, what);

    private static SqlError Syntax(List<Unit> units, int at) =>
        at < units.Count
            ? SqlError.Error(SqlStates.SyntaxError, $"syntax error at or near \"{units[at].Text}\"")
            : SqlError.Error(SqlStates.SyntaxError, "syntax error at end of input");

    private static bool W(List<Unit> u, int i, string word) => i < u.Count && u[i].IsWord(word);

    private static SqlStatement? Utility(SqliteSession session, string sql, List<Unit> u, List<uint> types)
    {
        if (u[0].Kind != UnitKind.Word) return null;
        SqlStatement Make(SqlCommandKind kind, IReadOnlyList<SqlColumn>? columns = null) => new(session, sql, kind, types, columns);
        switch (u[0].Name)
        {
            case "begin":
            {
                string? mode = W(u, 1, "immediate") ? "IMMEDIATE" : W(u, 1, "exclusive") ? "EXCLUSIVE" : null;
                return new SqlStatement(session, sql, SqlCommandKind.Begin, types, null) { SettingValue = mode };
            }
            case "start" when W(u, 1, "transaction"):
                return Make(SqlCommandKind.Begin);
            case "commit" or "end":
                if (W(u, 1, "prepared")) throw Unsupported("COMMIT PREPARED is not supported");
                return new SqlStatement(session, sql, SqlCommandKind.Commit, types, null) { TransactionChain = Chain(u) };
            case "rollback" or "abort":
            {
                if (W(u, 1, "prepared")) throw Unsupported("ROLLBACK PREPARED is not supported");
                int to = u.FindIndex(x => x.IsWord("to"));
                if (to > 0)
                {
                    if (!u[^1].IsIdent || u.Count - 1 <= to) throw Syntax(u, u.Count);
                    return new SqlStatement(session, sql, SqlCommandKind.RollbackToSavepoint, types, null) { SavepointName = u[^1].Name };
                }
                return new SqlStatement(session, sql, SqlCommandKind.Rollback, types, null) { TransactionChain = Chain(u) };
            }
            case "savepoint":
                if (u.Count != 2 || !u[1].IsIdent) throw Syntax(u, Math.Min(2, u.Count));
                return new SqlStatement(session, sql, SqlCommandKind.Savepoint, types, null) { SavepointName = u[1].Name };
            case "release":
                if (u.Count < 2 || !u[^1].IsIdent || (u.Count == 2 && u[1].IsWord("savepoint"))) throw Syntax(u, u.Count);
                return new SqlStatement(session, sql, SqlCommandKind.Release, types, null) { SavepointName = u[^1].Name };
            case "prepare":
                throw Unsupported(W(u, 1, "transaction") ? "PREPARE TRANSACTION is not supported" : "PREPARE (SQL) is not supported: use the extended query protocol");
            case "execute":
                throw Unsupported("EXECUTE (SQL) is not supported: use the extended query protocol");
            case "set":
                return ParseSet(session, sql, u, types);
            case "reset":
            {
                if (u.Count < 2) throw Syntax(u, 1);
                string? name = W(u, 1, "all") ? null : u.Count == 3 && W(u, 1, "time") && W(u, 2, "zone") ? "TimeZone"
                    : u.Count == 3 && W(u, 1, "session") && W(u, 2, "authorization") ? "session_authorization" : DottedName(u, 1, out _);
                if (name is not null && name != "session_authorization" && session.Settings.CanonicalName(name) is null && !name.Contains('.', StringComparison.Ordinal))
                    throw SessionSettings.Unrecognized(name);
                return new SqlStatement(session, sql, SqlCommandKind.Reset, types, null) { SettingName = name };
            }
            case "show":
            {
                if (u.Count < 2) throw Syntax(u, 1);
                if (W(u, 1, "all") && u.Count == 2)
                    return Make(SqlCommandKind.Show, [SqlColumn.Of("name", PgType.Text), SqlColumn.Of("setting", PgType.Text), SqlColumn.Of("description", PgType.Text)]);
                string name = u.Skip(1).All(x => x.Kind == UnitKind.Word) && u.Count > 2
                    ? string.Join(' ', u.Skip(1).Select(x => x.Name))
                    : DottedName(u, 1, out int end) is { } d && end == u.Count ? d : throw Syntax(u, 2);
                string canonical = session.Settings.CanonicalName(name) ?? throw SessionSettings.Unrecognized(name);
                return new SqlStatement(session, sql, SqlCommandKind.Show, types, [SqlColumn.Of(canonical, PgType.Text)]) { SettingName = canonical };
            }
            case "copy":
                return CopyParser.Parse(session, sql, u, types);
            case "discard":
            {
                string what = u.Count == 2 && u[1].Kind == UnitKind.Word ? u[1].Name! : throw Syntax(u, Math.Min(u.Count, 2));
                string tag = what switch
                {
                    "all" => "DISCARD ALL",
                    "plans" => "DISCARD PLANS",
                    "sequences" => "DISCARD SEQUENCES",
                    "temp" or "temporary" => "DISCARD TEMP",
                    _ => throw Syntax(u, 1),
                };
                return new SqlStatement(session, sql, SqlCommandKind.Discard, types, null) { Tag = tag };
            }
            case "deallocate":
            {
                int i = W(u, 1, "prepare") ? 2 : 1;
                if (i >= u.Count || !u[i].IsIdent) throw Syntax(u, i);
                bool all = u[i].IsWord("all");
                return new SqlStatement(session, sql, SqlCommandKind.Deallocate, types, null)
                {
                    Tag = all ? "DEALLOCATE ALL" : "DEALLOCATE",
                    DeallocateName = all ? null : u[i].Name,
                };
            }
            case "listen" or "notify":
                throw Unsupported($"{u[0].Name!.ToUpperInvariant()} is not supported");
            case "unlisten":
                return new SqlStatement(session, sql, SqlCommandKind.NoOp, types, null) { Tag = "UNLISTEN" };
            case "checkpoint":
                return new SqlStatement(session, sql, SqlCommandKind.NoOp, types, null) { Tag = "CHECKPOINT" };
            case "lock":
                return new SqlStatement(session, sql, SqlCommandKind.NoOp, types, null) { Tag = "LOCK TABLE" };
            case "vacuum" when u.Count > 1:
                return new SqlStatement(session, sql, SqlCommandKind.NoOp, types, null) { Tag = "VACUUM" };
            case "close" when u.Count == 2 && u[1].IsWord("all"):
                // No SQL cursor is ever open: closing them all is done (Npgsql's reset of a pooled connection sends it).
                return new SqlStatement(session, sql, SqlCommandKind.NoOp, types, null) { Tag = "CLOSE CURSOR ALL" };
            case "declare" or "fetch" or "move" or "close":
                throw Unsupported("SQL cursors are not supported: use the extended query protocol's portals");
            case "truncate":
                return Truncate(session, sql, u, types);
            case "drop" when u.Count > 2 && u[1].Kind == UnitKind.Word && u[1].Name is "table" or "view" or "index" or "trigger"
                              && (u.Any(x => x.Kind == UnitKind.Comma) || u[^1].IsWord("cascade") || u[^1].IsWord("restrict")):
                return DropMany(session, sql, u, types);
            default:
                return null;
        }
    }

    private static bool Chain(List<Unit> u) => u.Count >= 2 && u[^1].IsWord("chain") && !u[^2].IsWord("no");

    /// <summary>A name a[.b[.c]] from index <paramref name="i"/>; <paramref name="end"/> is the index after it.</summary>
    internal static string? DottedName(List<Unit> u, int i, out int end)
    {
        end = i;
        if (i >= u.Count || !u[i].IsIdent) return null;
        var parts = new List<string> { u[i].Name! };
        end = i + 1;
        while (end + 1 < u.Count && u[end].Kind == UnitKind.Dot && u[end + 1].IsIdent)
        {
            parts.Add(u[end + 1].Name!);
            end += 2;
        }
        return string.Join('.', parts);
    }

    private static SqlStatement ParseSet(SqliteSession session, string sql, List<Unit> u, List<uint> types)
    {
        int i = 1;
        bool local = false;
        if (W(u, i, "session")) i++;
        else if (W(u, i, "local")) { local = true; i++; }
        SqlStatement Set(string? name, string? value) =>
            new(session, sql, SqlCommandKind.Set, types, null) { SettingName = name, SettingValue = value, SettingLocal = local };
        if (W(u, i, "transaction") || (W(u, i, "characteristics") && W(u, i + 1, "as")) || W(u, i, "role") || W(u, i, "authorization")
            || (W(u, i, "session") && W(u, i + 1, "authorization")) || W(u, i, "constraints"))
            return Set(null, null);
        if (W(u, i, "time") && W(u, i + 1, "zone"))
        {
            i += 2;
            if (W(u, i, "local") || W(u, i, "default")) return Set("TimeZone", null);
            if (W(u, i, "interval")) i++;
            return Set("TimeZone", Values(u, i) ?? throw Syntax(u, i));
        }
        if (W(u, i, "names")) return Set("client_encoding", W(u, i + 1, "default") ? null : Values(u, i + 1) ?? throw Syntax(u, i + 1));
        if (W(u, i, "schema")) return Set("search_path", Values(u, i + 1) ?? throw Syntax(u, i + 1));
        string name = DottedName(u, i, out int end) ?? throw Syntax(u, i);
        if (!(W(u, end, "to") || (end < u.Count && u[end].Kind == UnitKind.Operator && u[end].Text == "="))) throw Syntax(u, end);
        if (W(u, end + 1, "default") && end + 2 == u.Count) return Set(name, null);
        return Set(name, Values(u, end + 1) ?? throw Syntax(u, end + 1));
    }

    /// <summary>SET's value list from <paramref name="i"/>: literals, names, numbers (with a sign), joined with ", ".</summary>
    private static string? Values(List<Unit> u, int i)
    {
        var values = new List<string>();
        bool expectValue = true;
        string sign = "";
        for (; i < u.Count; i++)
        {
            var x = u[i];
            if (!expectValue)
            {
                if (x.Kind != UnitKind.Comma) return null;
                expectValue = true;
                continue;
            }
            if (x.Kind == UnitKind.Operator && x.Text is "-" or "+") { sign = x.Text == "-" ? "-" : ""; continue; }
            string? v = x.Kind switch
            {
                UnitKind.Literal => x.Name ?? sign + x.Text,
                UnitKind.Word or UnitKind.QuotedIdent => x.Name,
                _ => null,
            };
            if (v is null) return null;
            values.Add(v);
            sign = "";
            expectValue = false;
        }
        return values.Count == 0 || expectValue ? null : string.Join(", ", values);
    }

    private static SqlStatement Truncate(SqliteSession session, string sql, List<Unit> u, List<uint> types)
    {
        int i = W(u, 1, "table") ? 2 : 1;
        var statements = new List<string>();
        while (i < u.Count)
        {
            if (W(u, i, "only")) i++;
            int start = i;
            if (DottedName(u, i, out int end) is null) throw Syntax(u, i);
            string table = string.Concat(u.GetRange(start, end - start).Select(x => x.Text));
            statements.Add("DELETE FROM " + table);
            i = end;
            if (i < u.Count && u[i].Kind == UnitKind.Operator && u[i].Text == "*") i++;
            if (i < u.Count && u[i].Kind == UnitKind.Comma) { i++; continue; }
            break;
        }
        while (i < u.Count && u[i].Kind == UnitKind.Word && u[i].Name is "restart" or "continue" or "identity" or "cascade" or "restrict") i++;
        if (i != u.Count || statements.Count == 0) throw Syntax(u, i);
        return new SqlStatement(session, sql, SqlCommandKind.Batch, types, null) { BatchSql = statements, Tag = "TRUNCATE TABLE" };
    }

    private static SqlStatement DropMany(SqliteSession session, string sql, List<Unit> u, List<uint> types)
    {
        string kind = u[1].Name!.ToUpperInvariant();
        int i = 2;
        string ifExists = "";
        if (W(u, i, "if") && W(u, i + 1, "exists")) { ifExists = "IF EXISTS "; i += 2; }
        var statements = new List<string>();
        while (i < u.Count)
        {
            int start = i;
            if (DottedName(u, i, out int end) is null) throw Syntax(u, i);
            statements.Add($"DROP {kind} {ifExists}{string.Concat(u.GetRange(start, end - start).Select(x => x.Text))}");
            i = end;
            if (i < u.Count && u[i].Kind == UnitKind.Comma) { i++; continue; }
            break;
        }
        if (W(u, i, "cascade") || W(u, i, "restrict")) i++;
        if (i != u.Count) throw Syntax(u, i);
        return new SqlStatement(session, sql, SqlCommandKind.Batch, types, null) { BatchSql = statements, Tag = "DROP " + kind };
    }
}

using System.Collections.Immutable;
using System.Text;
using PgSpec.Protocol;

namespace PgSpec.Fuzz;

/// <summary>
/// The zero-copy views of the messages with lists (the ones whose readers skip through
/// variable-length items): they must accept exactly what validation accepts, read without
/// allocating, and see the same values as the owned message.
/// </summary>
internal static class Views
{
    public static void Check(string what, int kind, PgDirection direction, ReadOnlySpan<byte> body, DecodeContext context, bool accepted, IPgMessage? message = null)
    {
        if (direction == PgDirection.Backend)
        {
            switch ((BackendMessageKind)kind)
            {
                case BackendMessageKind.DataRow:
                    CheckDataRow(what, body, context, accepted, (DataRow?)message);
                    break;
                case BackendMessageKind.RowDescription:
                    CheckRowDescription(what, body, context, accepted, (RowDescription?)message);
                    break;
                case BackendMessageKind.ErrorResponse:
                    CheckErrorResponse(what, body, context, accepted, (ErrorResponse?)message);
                    break;
                case BackendMessageKind.AuthenticationSASL:
                    CheckSasl(what, body, context, accepted, (AuthenticationSASL?)message);
                    break;
                case BackendMessageKind.NegotiateProtocolVersion:
                    CheckNegotiate(what, body, context, accepted, (NegotiateProtocolVersion?)message);
                    break;
                case BackendMessageKind.ParameterDescription:
                    CheckParameterDescription(what, body, context, accepted, (ParameterDescription?)message);
                    break;
            }

            return;
        }

        switch ((FrontendMessageKind)kind)
        {
            case FrontendMessageKind.Bind:
                CheckBind(what, body, context, accepted, (Bind?)message);
                break;
            case FrontendMessageKind.FunctionCall:
                CheckFunctionCall(what, body, context, accepted, (FunctionCall?)message);
                break;
            case FrontendMessageKind.StartupMessage:
                CheckStartup(what, body, context, accepted, (StartupMessage?)message);
                break;
        }
    }

    private static void Agree(string what, bool accepted, bool read, long allocated)
    {
        if (accepted != read)
        {
            throw new FuzzFindingException($"{what}: the view {(read ? "accepts" : "rejects")} what validation {(accepted ? "accepts" : "rejects")}");
        }

        Oracle.CheckAllocation($"{what}: reading the view", allocated, read ? 0 : Oracle.RejectBudget);
    }

    private static void Same(string what, string field, bool same)
    {
        if (!same)
        {
            throw new FuzzFindingException($"{what}: the view's {field} differs from the owned message's");
        }
    }

    private static bool SameValues(PgValueList view, PgValueArray owned)
    {
        if (view.Count != owned.Length)
        {
            return false;
        }

        int i = 0;
        foreach (PgValue value in view)
        {
            ReadOnlyMemory<byte>? expected = owned[i++];
            if (value.IsNull != (expected is null) || (expected is { } bytes && !value.Bytes.SequenceEqual(bytes.Span)))
            {
                return false;
            }
        }

        return i == owned.Length;
    }

    private static bool SameStrings(PgStringList view, ImmutableArray<string> owned)
    {
        if (view.Count != owned.Length)
        {
            return false;
        }

        int i = 0;
        foreach (ReadOnlySpan<byte> value in view)
        {
            if (i >= owned.Length || !value.SequenceEqual(Encoding.UTF8.GetBytes(owned[i++])))
            {
                return false;
            }
        }

        return i == owned.Length;
    }

    private static bool SameInt16s(PgInt16List view, ImmutableArray<short> owned)
    {
        if (view.Count != owned.Length)
        {
            return false;
        }

        for (int i = 0; i < owned.Length; i++)
        {
            if (view[i] != owned[i])
            {
                return false;
            }
        }

        return true;
    }

    private static bool SameString(ReadOnlySpan<byte> view, string owned) => view.SequenceEqual(Encoding.UTF8.GetBytes(owned));

    private static void CheckDataRow(string what, ReadOnlySpan<byte> body, DecodeContext context, bool accepted, DataRow? owned)
    {
        long before = Oracle.Allocated();
        bool read = DataRow.View.TryRead(body, context, out DataRow.View view, out _);
        int count = read ? view.Columns.Count : 0;
        long total = 0;
        if (read)
        {
            foreach (PgValue value in view.Columns)
            {
                total += value.IsNull ? 0 : value.Bytes.Length;
            }
        }

        Agree(what, accepted, read, Oracle.Allocated() - before);
        if (owned is not null)
        {
            Same(what, "Columns", count == owned.Columns.Length && SameValues(view.Columns, owned.Columns) && total == owned.Columns.Sum(c => (long)(c?.Length ?? 0)));
        }
    }

    private static void CheckRowDescription(string what, ReadOnlySpan<byte> body, DecodeContext context, bool accepted, RowDescription? owned)
    {
        long before = Oracle.Allocated();
        bool read = RowDescription.View.TryRead(body, context, out RowDescription.View view, out _);
        int count = 0;
        if (read)
        {
            foreach (RowDescription.Field.View field in view.Fields)
            {
                count += field.Name.Length >= 0 ? 1 : 0;
            }
        }

        Agree(what, accepted, read, Oracle.Allocated() - before);
        if (owned is null)
        {
            return;
        }

        Same(what, "Fields.Count", count == owned.Fields.Length && view.Fields.Count == owned.Fields.Length);
        int i = 0;
        foreach (RowDescription.Field.View field in view.Fields)
        {
            RowDescription.Field expected = owned.Fields[i++];
            Same(what, "Fields[" + (i - 1) + "]", SameString(field.Name, expected.Name)
                && field.TableOid == expected.TableOid
                && field.ColumnAttributeNumber == expected.ColumnAttributeNumber
                && field.DataTypeOid == expected.DataTypeOid
                && field.DataTypeSize == expected.DataTypeSize
                && field.TypeModifier == expected.TypeModifier
                && field.FormatCode == expected.FormatCode);
        }
    }

    private static void CheckErrorResponse(string what, ReadOnlySpan<byte> body, DecodeContext context, bool accepted, ErrorResponse? owned)
    {
        long before = Oracle.Allocated();
        bool read = ErrorResponse.View.TryRead(body, context, out ErrorResponse.View view, out _);
        int count = 0;
        if (read)
        {
            foreach (ErrorResponse.Field.View field in view.Fields)
            {
                count += field.Code != 0 ? 1 : 0;
            }
        }

        Agree(what, accepted, read, Oracle.Allocated() - before);
        if (owned is null)
        {
            return;
        }

        Same(what, "Fields.Count", count == owned.Fields.Length && view.Fields.Count == owned.Fields.Length);
        int i = 0;
        foreach (ErrorResponse.Field.View field in view.Fields)
        {
            ErrorResponse.Field expected = owned.Fields[i++];
            Same(what, "Fields[" + (i - 1) + "]", field.Code == expected.Code && SameString(field.Value, expected.Value));
        }
    }

    private static void CheckSasl(string what, ReadOnlySpan<byte> body, DecodeContext context, bool accepted, AuthenticationSASL? owned)
    {
        long before = Oracle.Allocated();
        bool read = AuthenticationSASL.View.TryRead(body, context, out AuthenticationSASL.View view, out _);
        int count = read ? view.Mechanisms.Count : 0;
        Agree(what, accepted, read, Oracle.Allocated() - before);
        if (owned is not null)
        {
            Same(what, "Mechanisms", count == owned.Mechanisms.Length && SameStrings(view.Mechanisms, owned.Mechanisms));
        }
    }

    private static void CheckNegotiate(string what, ReadOnlySpan<byte> body, DecodeContext context, bool accepted, NegotiateProtocolVersion? owned)
    {
        long before = Oracle.Allocated();
        bool read = NegotiateProtocolVersion.View.TryRead(body, context, out NegotiateProtocolVersion.View view, out _);
        int count = read ? view.UnrecognizedOptions.Count : 0;
        Agree(what, accepted, read, Oracle.Allocated() - before);
        if (owned is not null)
        {
            Same(what, "UnrecognizedOptions", count == owned.UnrecognizedOptions.Length && SameStrings(view.UnrecognizedOptions, owned.UnrecognizedOptions)
                && view.NewestProtocolVersion == owned.NewestProtocolVersion);
        }
    }

    private static void CheckParameterDescription(string what, ReadOnlySpan<byte> body, DecodeContext context, bool accepted, ParameterDescription? owned)
    {
        long before = Oracle.Allocated();
        bool read = ParameterDescription.View.TryRead(body, context, out ParameterDescription.View view, out _);
        int count = read ? view.ParameterTypeOids.Count : 0;
        Agree(what, accepted, read, Oracle.Allocated() - before);
        if (owned is null)
        {
            return;
        }

        bool same = count == owned.ParameterTypeOids.Length;
        for (int i = 0; same && i < count; i++)
        {
            same = view.ParameterTypeOids[i] == owned.ParameterTypeOids[i];
        }

        Same(what, "ParameterTypeOids", same);
    }

    private static void CheckBind(string what, ReadOnlySpan<byte> body, DecodeContext context, bool accepted, Bind? owned)
    {
        long before = Oracle.Allocated();
        bool read = Bind.View.TryRead(body, context, out Bind.View view, out _);
        int count = read ? view.Parameters.Count + view.ParameterFormatCodes.Count + view.ResultFormatCodes.Count : 0;
        Agree(what, accepted, read, Oracle.Allocated() - before);
        if (owned is not null)
        {
            Same(what, "fields", count == owned.Parameters.Length + owned.ParameterFormatCodes.Length + owned.ResultFormatCodes.Length
                && SameString(view.PortalName, owned.PortalName)
                && SameString(view.StatementName, owned.StatementName)
                && SameInt16s(view.ParameterFormatCodes, owned.ParameterFormatCodes)
                && SameValues(view.Parameters, owned.Parameters)
                && SameInt16s(view.ResultFormatCodes, owned.ResultFormatCodes));
        }
    }

    private static void CheckFunctionCall(string what, ReadOnlySpan<byte> body, DecodeContext context, bool accepted, FunctionCall? owned)
    {
        long before = Oracle.Allocated();
        bool read = FunctionCall.View.TryRead(body, context, out FunctionCall.View view, out _);
        int count = read ? view.Arguments.Count + view.ArgumentFormatCodes.Count : 0;
        Agree(what, accepted, read, Oracle.Allocated() - before);
        if (owned is not null)
        {
            Same(what, "fields", count == owned.Arguments.Length + owned.ArgumentFormatCodes.Length
                && view.FunctionOid == owned.FunctionOid
                && SameInt16s(view.ArgumentFormatCodes, owned.ArgumentFormatCodes)
                && SameValues(view.Arguments, owned.Arguments));
        }
    }

    private static void CheckStartup(string what, ReadOnlySpan<byte> body, DecodeContext context, bool accepted, StartupMessage? owned)
    {
        long before = Oracle.Allocated();
        bool read = StartupMessage.View.TryRead(body, context, out StartupMessage.View view, out _);
        int count = 0;
        if (read)
        {
            foreach (StartupMessage.Parameter.View parameter in view.Parameters)
            {
                count += parameter.Name.Length > 0 ? 1 : 0;
            }
        }

        Agree(what, accepted, read, Oracle.Allocated() - before);
        if (owned is null)
        {
            return;
        }

        Same(what, "Parameters.Count", count == owned.Parameters.Length && view.Parameters.Count == owned.Parameters.Length && view.ProtocolVersion == owned.ProtocolVersion);
        int i = 0;
        foreach (StartupMessage.Parameter.View parameter in view.Parameters)
        {
            StartupMessage.Parameter expected = owned.Parameters[i++];
            Same(what, "Parameters[" + (i - 1) + "]", SameString(parameter.Name, expected.Name) && SameString(parameter.Value, expected.Value));
        }
    }
}

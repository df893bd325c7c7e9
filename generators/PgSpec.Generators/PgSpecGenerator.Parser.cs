using System;
using System.Collections.Generic;
using System.Collections.Immutable;
using System.Globalization;
using System.Linq;
using System.Text.RegularExpressions;
using System.Threading;
using Microsoft.CodeAnalysis.Text;
using PgSpec.Generators.Model;

namespace PgSpec.Generators
{
    public sealed partial class PgSpecGenerator
    {
        /// <summary>Turns the text of one spec file into its model and the diagnostics it earned.</summary>
        internal static class Parser
        {
            private static readonly Regex s_messageHeader = new Regex(
                @"^(?<name>[A-Za-z][A-Za-z0-9]*)\s*\((?<dir>F|B|F\s*&\s*B)\)\s*(?<options>.*)$",
                RegexOptions.CultureInvariant);

            private static readonly Regex s_enumHeader = new Regex(
                @"^enum\s+(?<name>[A-Za-z][A-Za-z0-9]*)\s*:\s*(?<type>\S+)\s*$",
                RegexOptions.CultureInvariant);

            private static readonly Regex s_familyHeader = new Regex(
                @"^family\s+(?<name>\S+)\s+in\s+(?<carrier>[A-Za-z][A-Za-z0-9]*)\.(?<field>[A-Za-z][A-Za-z0-9]*)(?:\s+versions\s+(?<min>[0-9]+)\.\.(?<max>[0-9]+))?\s*$",
                RegexOptions.CultureInvariant);

            private static readonly Regex s_partHeader = new Regex(
                @"^part\s+(?<name>\S+)\s+of\s+(?<family>[A-Za-z][A-Za-z0-9]*)\s*$",
                RegexOptions.CultureInvariant);

            private static readonly Regex s_typeExpression = new Regex(
                @"^(?<base>[A-Za-z][A-Za-z0-9]*)(?:\((?<arg>[^)]*)\))?(?:\[(?<count>[A-Za-z0-9_]*)\])?$",
                RegexOptions.CultureInvariant);

            private static readonly HashSet<string> s_reservedNames = new HashSet<string>(StringComparer.Ordinal)
            {
                "messageName", "typeCode", "typeByte", "packetCode", "subCode", "defaultMaxLength", "encodedLength",
                "frontendKind", "backendKind", "view", "equals", "validate", "encode", "decode", "trace", "toArray",
                "getHashCode", "toString", "tryDecode", "tryValidate", "computeLength", "writeUnchecked",
                "body", "tryRead", "read", "toMessage",
            };

            // The members every group class (and its view) has.
            private static readonly HashSet<string> s_reservedGroupNames = new HashSet<string>(StringComparer.Ordinal)
            {
                "equals", "getHashCode", "toString", "skipItem", "view", "list", "bytes",
            };

            // The members of every message class: a message of that name would have a member of its own name.
            private static readonly HashSet<string> s_messageMemberNames = new HashSet<string>(
                s_reservedNames.Select(Pascal).Concat(new[] { "View", "List", "Length" }),
                StringComparer.Ordinal);

            // What the emitter declares beside the messages and enums, in the same namespace.
            private static readonly HashSet<string> s_generatedTypeNames = new HashSet<string>(StringComparer.Ordinal)
            {
                "FrontendMessageKind", "BackendMessageKind", "IFrontendMessage", "IBackendMessage",
                "FrontendMessages", "BackendMessages", "PgProtocolSpec", "ProtocolDictionary",
            };

            // The files the emitter adds beside one per message; the compiler compares file (hint) names ignoring case.
            private static readonly HashSet<string> s_generatedFileNames = new HashSet<string>(StringComparer.OrdinalIgnoreCase)
            {
                "Enums", "MessageInterfaces", "FrontendMessages", "BackendMessages", "PgProtocolSpec", "ProtocolDictionary",
            };

            // The members of the dispatchers (FrontendMessages, BackendMessages), which name the message
            // types from inside, where a member of the same name would hide the type; and the member of
            // the kinds for what no spec defines.
            private static readonly HashSet<string> s_dispatcherNames = new HashSet<string>(StringComparer.Ordinal)
            {
                "DefaultMaxLength", "DefaultUnknownMaxLength", "DefaultMaxStartupPacketLength", "IsDefinedTypeByte",
                "Classify", "ClassifyStartup", "NameOf", "TypeByteOf", "AnsweredBy", "IsByContext", "IsSecret",
                "IsAllowedIn", "IsIgnoredIn", "IsTypeByteAllowedIn", "NextPhase", "IsExtendedQuery", "EndsErrorSkip", "All", "TryDecode", "TryValidate", "TryValidateRecording", "Trace", "TraceValidated",
                "Unknown",
            };

            // The members of the static class a String enum becomes, besides its constants.
            private static readonly HashSet<string> s_stringEnumMemberNames = new HashSet<string>(StringComparer.Ordinal)
            {
                "All", "Equals", "GetHashCode", "GetType", "ToString", "ReferenceEquals", "MemberwiseClone", "Finalize",
            };

            // The types nested in every message and group class, where fields name their enums.
            private static readonly HashSet<string> s_nestedTypeNames = new HashSet<string>(StringComparer.Ordinal) { "View", "List" };

            private static readonly Regex s_identifier = new Regex(@"^[a-z][A-Za-z0-9]*$", RegexOptions.CultureInvariant);
            private static readonly Regex s_typeName = new Regex(@"^[A-Z][A-Za-z0-9]*$", RegexOptions.CultureInvariant);
            private static readonly Regex s_fixedBytes = new Regex(@"^Byte(?<n>[1-9][0-9]*)$", RegexOptions.CultureInvariant);

            private readonly struct Line
            {
                public Line(int number, int indent, string text)
                {
                    Number = number;
                    Indent = indent;
                    Text = text;
                }

                public int Number { get; }
                public int Indent { get; }
                public string Text { get; }
            }

            public static SpecFile ParseFile(string path, SourceText? text, CancellationToken cancellationToken)
            {
                var diagnostics = ImmutableArray.CreateBuilder<DiagnosticInfo>();
                var messages = ImmutableArray.CreateBuilder<MessageSpec>();
                var enums = ImmutableArray.CreateBuilder<EnumSpec>();
                var families = ImmutableArray.CreateBuilder<FamilySpec>();
                var familyMessages = ImmutableArray.CreateBuilder<MessageSpec>();
                if (text is null)
                {
                    diagnostics.Add(new DiagnosticInfo("PGSPEC001", "The spec file cannot be read", path, 1, 1, 0));
                    return new SpecFile(path, messages.ToEquatableArray(), enums.ToEquatableArray(), diagnostics.ToEquatableArray());
                }

                var context = new ParseContext(path, diagnostics) { Families = families, FamilyMessages = familyMessages };
                Line? header = null;
                var body = new List<Line>();
                string pendingComment = "";
                string blockComment = "";

                foreach (TextLine textLine in text.Lines)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    string raw = textLine.ToString();
                    int number = textLine.LineNumber + 1;
                    string comment;
                    string content = StripComment(raw, out comment).TrimEnd();
                    if (content.Trim().Length == 0)
                    {
                        if (comment.Length > 0 && IndentOf(raw) == 0)
                        {
                            pendingComment = pendingComment.Length == 0 ? comment : pendingComment + "\n" + comment;
                        }
                        else if (raw.Trim().Length == 0)
                        {
                            pendingComment = "";
                        }

                        continue;
                    }

                    int indent = IndentOf(content);
                    if (indent == 0)
                    {
                        if (header is Line previous)
                        {
                            FinishBlock(context, previous, body, blockComment, messages, enums);
                        }

                        header = new Line(number, 0, content.Trim());
                        blockComment = pendingComment;
                        pendingComment = "";
                        body.Clear();
                    }
                    else if (header is null)
                    {
                        context.Report("PGSPEC001", "An indented line must belong to a message or an enum above it", number, indent + 1, content.Length - indent);
                    }
                    else
                    {
                        body.Add(new Line(number, indent, content.Trim()));
                    }
                }

                if (header is Line last)
                {
                    FinishBlock(context, last, body, blockComment, messages, enums);
                }

                return new SpecFile(path, messages.ToEquatableArray(), enums.ToEquatableArray(), diagnostics.ToEquatableArray())
                {
                    Families = families.ToEquatableArray(),
                    FamilyMessages = familyMessages.ToEquatableArray(),
                };
            }

            private static int IndentOf(string line)
            {
                int indent = 0;
                foreach (char c in line)
                {
                    if (c == ' ')
                    {
                        indent++;
                    }
                    else if (c == '\t')
                    {
                        indent += 4;
                    }
                    else
                    {
                        break;
                    }
                }

                return indent;
            }

            private static string StripComment(string line, out string comment)
            {
                bool inQuote = false;
                for (int i = 0; i < line.Length; i++)
                {
                    char c = line[i];
                    if (c == '\'')
                    {
                        inQuote = !inQuote;
                    }
                    else if (c == '#' && !inQuote)
                    {
                        comment = line.Substring(i + 1).Trim();
                        return line.Substring(0, i);
                    }
                }

                comment = "";
                return line;
            }

            private sealed class ParseContext
            {
                private readonly ImmutableArray<DiagnosticInfo>.Builder _diagnostics;

                public ParseContext(string path, ImmutableArray<DiagnosticInfo>.Builder diagnostics)
                {
                    Path = path;
                    _diagnostics = diagnostics;
                }

                public string Path { get; }

                public bool HasErrors { get; set; }

                /// <summary>Whether the block being read is a family's sub-message or part (no length word; tags inside).</summary>
                public bool InFamily { get; set; }

                public ImmutableArray<FamilySpec>.Builder Families { get; set; } = ImmutableArray.CreateBuilder<FamilySpec>();

                public ImmutableArray<MessageSpec>.Builder FamilyMessages { get; set; } = ImmutableArray.CreateBuilder<MessageSpec>();

                public void Report(string id, string message, int line, int column = 1, int length = 0)
                {
                    HasErrors = true;
                    _diagnostics.Add(new DiagnosticInfo(id, message, Path, line, column, length));
                }
            }

            private static void FinishBlock(
                ParseContext context,
                Line header,
                List<Line> body,
                string comment,
                ImmutableArray<MessageSpec>.Builder messages,
                ImmutableArray<EnumSpec>.Builder enums)
            {
                Match enumMatch = s_enumHeader.Match(header.Text);
                if (enumMatch.Success)
                {
                    EnumSpec? spec = ParseEnum(context, header, enumMatch, body);
                    if (spec is not null)
                    {
                        enums.Add(spec);
                    }

                    return;
                }

                if (header.Text.StartsWith("family", StringComparison.Ordinal) && (header.Text.Length == 6 || header.Text[6] == ' ' || header.Text[6] == '\t'))
                {
                    ParseFamily(context, header, body, comment);
                    return;
                }

                if (header.Text.StartsWith("part", StringComparison.Ordinal) && (header.Text.Length == 4 || header.Text[4] == ' ' || header.Text[4] == '\t'))
                {
                    bool before = context.HasErrors;
                    context.HasErrors = false;
                    MessageSpec? part = ParsePart(context, header, body, comment);
                    if (part is not null && !context.HasErrors)
                    {
                        context.FamilyMessages.Add(part);
                    }

                    context.HasErrors |= before;
                    return;
                }

                Match messageMatch = s_messageHeader.Match(header.Text);
                if (!messageMatch.Success)
                {
                    context.Report("PGSPEC001", $"Expected a message header such as 'Query (F)', an enum header such as 'enum Name : Byte1', a family header such as 'family Replication in CopyData.data' or a part header such as 'part TupleData', found '{header.Text}'", header.Number, 1, header.Text.Length);
                    return;
                }

                bool hadErrors = context.HasErrors;
                context.HasErrors = false;
                context.InFamily = Tokens(messageMatch.Groups["options"].Value).Contains("of");
                MessageSpec? message = ParseMessage(context, header, messageMatch, body, comment);
                context.InFamily = false;
                if (message is not null && !context.HasErrors)
                {
                    (message.Family.Length > 0 ? context.FamilyMessages : messages).Add(message);
                }

                context.HasErrors |= hadErrors;
            }

            /// <summary>'family NAME in CARRIER.FIELD [versions MIN..MAX]': a family of sub-messages carried in a field of another message.</summary>
            private static void ParseFamily(ParseContext context, Line header, List<Line> body, string comment)
            {
                Match match = s_familyHeader.Match(header.Text);
                if (!match.Success)
                {
                    context.Report("PGSPEC008", $"A family is declared as 'family NAME in MESSAGE.field [versions MIN..MAX]' (such as 'family Replication in CopyData.data'), found '{header.Text}'", header.Number, 1, header.Text.Length);
                    return;
                }

                string name = match.Groups["name"].Value;
                int column = match.Groups["name"].Index + 1;
                if (!s_typeName.IsMatch(name))
                {
                    context.Report("PGSPEC008", $"Family name '{name}' must be a C# type name starting with an upper-case letter (such as 'Replication')", header.Number, column, name.Length);
                    return;
                }

                if (s_generatedTypeNames.Contains(name) || s_generatedFileNames.Contains(name))
                {
                    context.Report("PGSPEC004", $"Family name '{name}' is reserved: the generator declares a type or file of that name; choose another", header.Number, column, name.Length);
                    return;
                }

                int min = 0;
                int max = 0;
                if (match.Groups["min"].Success)
                {
                    if (!int.TryParse(match.Groups["min"].Value, NumberStyles.None, CultureInfo.InvariantCulture, out min)
                        || !int.TryParse(match.Groups["max"].Value, NumberStyles.None, CultureInfo.InvariantCulture, out max)
                        || min < 1 || max < min || max > 255)
                    {
                        context.Report("PGSPEC008", $"The versions of family '{name}' are written 'versions MIN..MAX' with 1 <= MIN <= MAX <= 255", header.Number, match.Groups["min"].Index + 1, header.Text.Length - match.Groups["min"].Index);
                        return;
                    }
                }

                foreach (Line line in body)
                {
                    context.Report("PGSPEC001", $"A family header stands alone; its messages name it with 'of {name}' (found an indented line below it)", line.Number, line.Indent + 1, line.Text.Length);
                }

                context.Families.Add(new FamilySpec
                {
                    Name = name,
                    Carrier = match.Groups["carrier"].Value,
                    CarrierField = match.Groups["field"].Value,
                    MinVersion = min,
                    MaxVersion = max,
                    Path = context.Path,
                    Line = header.Number,
                    Comment = comment,
                });
            }

            /// <summary>'part NAME' + fields: a message part shared by sub-messages (TupleData), used as a field type.</summary>
            private static MessageSpec? ParsePart(ParseContext context, Line header, List<Line> body, string comment)
            {
                Match match = s_partHeader.Match(header.Text);
                string name = match.Success ? match.Groups["name"].Value : "";
                if (!match.Success || !s_typeName.IsMatch(name))
                {
                    context.Report("PGSPEC008", $"A part is declared as 'part NAME of FAMILY' with NAME a C# type name (such as 'part TupleData of PgOutput'), found '{header.Text}'", header.Number, 1, header.Text.Length);
                    return null;
                }

                if (!CheckMessageName(context, header, name))
                {
                    return null;
                }

                if (body.Count == 0)
                {
                    context.Report("PGSPEC008", $"Part '{name}' has no fields", header.Number, 1, header.Text.Length);
                    return null;
                }

                context.InFamily = true;
                int position = 0;
                ImmutableArray<FieldSpec> fields = ParseFields(context, body, ref position, body[0].Indent, topLevel: true);
                context.InFamily = false;
                if (context.HasErrors)
                {
                    return null;
                }

                if (fields.Any(f => f.Kind == FieldKind.TypeByte || f.Kind == FieldKind.Length || f.Kind == FieldKind.RestBytes))
                {
                    context.Report("PGSPEC006", $"Part '{name}' is embedded in messages: it has neither a type byte, nor a length word, nor a Byten to the end", header.Number, 1, header.Text.Length);
                    return null;
                }

                fields = CheckReferences(context, name, fields, topLevel: true);
                CheckGroupNames(context, name, fields);
                CheckConditions(context, name, fields);
                CheckFamilyNames(context, name, fields);
                if (context.HasErrors)
                {
                    return null;
                }

                return new MessageSpec
                {
                    Name = name,
                    Direction = Direction.Both,
                    IsPart = true,
                    Family = match.Groups["family"].Value,
                    Fields = fields.ToEquatableArray(),
                    Path = context.Path,
                    Line = header.Number,
                    Comment = comment,
                };
            }

            private static EnumSpec? ParseEnum(ParseContext context, Line header, Match match, List<Line> body)
            {
                string name = match.Groups["name"].Value;
                int nameColumn = match.Groups["name"].Index + 1;
                if (!char.IsUpper(name[0]))
                {
                    context.Report("PGSPEC009", $"Enum name '{name}' must start with an upper-case letter: it names a C# type", header.Number, nameColumn, name.Length);
                    return null;
                }

                if (s_generatedTypeNames.Contains(name) || s_nestedTypeNames.Contains(name))
                {
                    context.Report("PGSPEC004", $"Enum name '{name}' is reserved: the generator declares a type of that name (beside the messages, or in every message and group); choose another", header.Number, nameColumn, name.Length);
                    return null;
                }

                WireType type;
                switch (match.Groups["type"].Value)
                {
                    case "Byte1": type = WireType.Byte1; break;
                    case "Int8": type = WireType.Int8; break;
                    case "String": type = WireType.String; break;
                    default:
                        context.Report("PGSPEC009", $"Enum '{name}' must be based on Byte1, Int8 or String, not '{match.Groups["type"].Value}'", header.Number, 1, header.Text.Length);
                        return null;
                }

                var members = ImmutableArray.CreateBuilder<EnumMemberSpec>();
                var seenNames = new HashSet<string>(StringComparer.Ordinal);
                var seenValues = new HashSet<long>();
                var seenTexts = new HashSet<string>(StringComparer.Ordinal);
                foreach (Line line in body)
                {
                    string[] tokens = Tokens(line.Text);
                    if (tokens.Length != 2 || !s_typeName.IsMatch(tokens[1]))
                    {
                        string example = type == WireType.String ? "\"SCRAM-SHA-256\" ScramSha256" : "'S' Statement";
                        context.Report("PGSPEC009", $"An enum member is a value and a name, such as {example}; found '{line.Text}'", line.Number, line.Indent + 1, line.Text.Length);
                        continue;
                    }

                    if (type == WireType.String)
                    {
                        string token = tokens[0];
                        if (token.Length < 3 || token[0] != '"' || token[token.Length - 1] != '"' || token.Substring(1, token.Length - 2).Any(c => c < 0x21 || c >= 0x7f || c == '"' || c == '\\'))
                        {
                            context.Report("PGSPEC007", $"'{token}' is not a quoted string of printable ASCII without spaces, quotes or backslashes", line.Number, line.Indent + 1, token.Length);
                            continue;
                        }

                        string text = token.Substring(1, token.Length - 2);
                        if (!seenNames.Add(tokens[1]) || !seenTexts.Add(text))
                        {
                            context.Report("PGSPEC004", $"Enum '{name}' has '{tokens[1]}' or its value twice", line.Number, line.Indent + 1, line.Text.Length);
                            continue;
                        }

                        // A String enum is a static class of constants beside its list 'All'.
                        if (tokens[1] == name || s_stringEnumMemberNames.Contains(tokens[1]))
                        {
                            context.Report("PGSPEC004", $"'{tokens[1]}' is reserved in a String enum, whose class '{name}' has 'All' and the members of object; choose another", line.Number, line.Text.IndexOf(tokens[1], token.Length, StringComparison.Ordinal) + line.Indent + 1, tokens[1].Length);
                            continue;
                        }

                        members.Add(new EnumMemberSpec(tokens[1], 0, false, text));
                        continue;
                    }

                    if (!TryParseLiteral(tokens[0], out long value, out bool isChar) || value < 0 || value > (type == WireType.Int8 ? sbyte.MaxValue : byte.MaxValue))
                    {
                        context.Report("PGSPEC007", $"'{tokens[0]}' is not a one-byte value (0 to {(type == WireType.Int8 ? sbyte.MaxValue : byte.MaxValue)} for {match.Groups["type"].Value})", line.Number, line.Indent + 1, tokens[0].Length);
                        continue;
                    }

                    if (!seenNames.Add(tokens[1]) || !seenValues.Add(value))
                    {
                        context.Report("PGSPEC004", $"Enum '{name}' has '{tokens[1]}' or its value twice", line.Number, line.Indent + 1, line.Text.Length);
                        continue;
                    }

                    members.Add(new EnumMemberSpec(tokens[1], value, isChar));
                }

                if (members.Count == 0)
                {
                    context.Report("PGSPEC009", $"Enum '{name}' has no members", header.Number, 1, header.Text.Length);
                    return null;
                }

                return new EnumSpec(name, type, members.ToEquatableArray(), context.Path, header.Number);
            }

            private static string[] Tokens(string text)
                => text.Split(new[] { ' ', '\t' }, StringSplitOptions.RemoveEmptyEntries);

            internal static bool TryParseLiteral(string token, out long value, out bool isChar)
            {
                isChar = false;
                value = 0;
                if (token.Length == 3 && token[0] == '\'' && token[2] == '\'' && token[1] >= 0x20 && token[1] < 0x7f)
                {
                    value = token[1];
                    isChar = true;
                    return true;
                }

                if (token.StartsWith("0x", StringComparison.OrdinalIgnoreCase))
                {
                    return long.TryParse(token.Substring(2), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out value);
                }

                return long.TryParse(token, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out value);
            }

            private static MessageSpec? ParseMessage(ParseContext context, Line header, Match match, List<Line> body, string comment)
            {
                string name = match.Groups["name"].Value;
                if (!CheckMessageName(context, header, name))
                {
                    return null;
                }

                string dir = match.Groups["dir"].Value;
                Direction direction = dir == "F" ? Direction.Frontend : dir == "B" ? Direction.Backend : Direction.Both;

                long max = 0x3FFFFFFE;
                bool byContext = false;
                bool maskedLength = false;
                bool untraced = false;
                string answeredBy = "";
                bool secret = false;
                string family = "";
                int since = 0;
                bool startsStream = false;
                bool endsStream = false;

                // The options of the header, then those of the flow lines ('(F) ...', '(B) ...') right below it.
                var options = new List<Option>();
                foreach (string token in Tokens(match.Groups["options"].Value))
                {
                    options.Add(new Option(token, header, 1, header.Text.Length));
                }

                int flowLines = 0;
                while (flowLines < body.Count && IsFlowLine(body[flowLines].Text))
                {
                    Line flowLine = body[flowLines];
                    foreach (string token in Tokens(flowLine.Text))
                    {
                        options.Add(new Option(token, flowLine, flowLine.Indent + 1, flowLine.Text.Length));
                    }

                    flowLines++;
                }

                body = body.GetRange(flowLines, body.Count - flowLines);
                foreach (Line misplaced in body.Where(l => IsFlowLine(l.Text)))
                {
                    context.Report("PGSPEC015", $"A flow line ('{misplaced.Text.Substring(0, 3)} ...') comes right below the message header, before the fields", misplaced.Number, misplaced.Indent + 1, misplaced.Text.Length);
                }

                body = body.Where(l => !IsFlowLine(l.Text)).ToList();

                var flow = new FlowReader(context, name, direction);
                for (int i = 0; i < options.Count; i++)
                {
                    string option = options[i].Text;
                    if (option == "max" && i + 1 < options.Count && TryParseLiteral(options[i + 1].Text, out long value, out bool isChar) && !isChar && value >= 4 && value <= int.MaxValue)
                    {
                        max = value;
                        i++;
                    }
                    else if (option == "by-context")
                    {
                        byContext = true;
                    }
                    else if (option == "masked-length")
                    {
                        maskedLength = true;
                    }
                    else if (option == "untraced")
                    {
                        untraced = true;
                    }
                    else if (option == "secret")
                    {
                        secret = true;
                    }
                    else if (option == "answered-by" && i + 1 < options.Count && s_typeName.IsMatch(options[i + 1].Text))
                    {
                        answeredBy = options[i + 1].Text;
                        i++;
                    }
                    else if (option == "of" && i + 1 < options.Count && s_typeName.IsMatch(options[i + 1].Text))
                    {
                        family = options[i + 1].Text;
                        i++;
                    }
                    else if (option == "since" && context.InFamily && i + 1 < options.Count && int.TryParse(options[i + 1].Text, NumberStyles.None, CultureInfo.InvariantCulture, out int version) && version >= 1 && version <= 255)
                    {
                        since = version;
                        i++;
                    }
                    else if (option == "starts-stream" && context.InFamily)
                    {
                        startsStream = true;
                    }
                    else if (option == "ends-stream" && context.InFamily)
                    {
                        endsStream = true;
                    }
                    else if (context.InFamily)
                    {
                        options[i].Report(context, "PGSPEC008", $"Unknown option '{option}' of a family's sub-message (expected 'of FAMILY', 'since N' with 1 <= N <= 255, 'starts-stream', 'ends-stream', 'untraced', 'secret')");
                        break;
                    }
                    else if (!flow.TryRead(options, ref i))
                    {
                        options[i].Report(context, "PGSPEC008", $"Unknown message option '{option}' (expected 'max N' with 4 <= N < 2^31, 'by-context', 'masked-length', 'untraced', 'secret', 'answered-by MESSAGE', or the flow options '(F)', '(B)', 'in PHASES', 'ignored-in PHASES', 'enters PHASE [from PHASES]', 'extended', 'ends-error-skip')");
                    }
                }

                flow.Check();

                if (body.Count == 0)
                {
                    context.Report("PGSPEC008", $"Message '{name}' has no fields", header.Number, 1, header.Text.Length);
                    return null;
                }

                int position = 0;
                ImmutableArray<FieldSpec> fields = ParseFields(context, body, ref position, body[0].Indent, topLevel: true);
                if (context.HasErrors)
                {
                    return null;
                }

                if (family.Length > 0)
                {
                    return FinishFamilyMessage(context, header, name, direction, fields, comment) is MessageSpec sub
                        ? sub with { Family = family, Since = since, StartsStream = startsStream, EndsStream = endsStream, Untraced = untraced, Secret = secret }
                        : null;
                }

                int typeByte = -1;
                int index = 0;
                if (fields.Length > 0 && fields[0].Kind == FieldKind.TypeByte)
                {
                    typeByte = (int)fields[0].Literal!.Value;
                    index = 1;
                }

                if (fields.Length <= index || fields[index].Kind != FieldKind.Length)
                {
                    context.Report("PGSPEC008", $"Message '{name}' must start with Byte1('x') and 'Int32 length', or for an untyped packet with 'Int32 length'", header.Number, 1, header.Text.Length);
                    return null;
                }

                for (int i = index + 1; i < fields.Length; i++)
                {
                    if (fields[i].Kind == FieldKind.Length)
                    {
                        context.Report("PGSPEC008", $"Message '{name}' has a second length word; 'Int32 length' comes once, right after the type byte", fields[i].Line, 1, 0);
                        return null;
                    }
                }

                if (typeByte < 0)
                {
                    FieldSpec? code = fields.Length > 1 ? fields[1] : null;
                    bool isCode = code is not null && code.Type == WireType.Int32 && (code.Kind == FieldKind.Literal
                        || (code.Kind == FieldKind.Scalar && code.HasRange && code.RangeMin >= int.MinValue && code.RangeMax <= int.MaxValue));
                    if (!isCode)
                    {
                        context.Report("PGSPEC008", $"Untyped packet '{name}' must follow its length with an Int32 code: a literal, or a field with a range within the Int32 values", body[Math.Min(1, body.Count - 1)].Number, 1, 0);
                        return null;
                    }
                }

                if (byContext && typeByte < 0)
                {
                    context.Report("PGSPEC008", $"'by-context' applies to typed messages only; '{name}' has no type byte", header.Number, 1, header.Text.Length);
                    return null;
                }

                fields = CheckReferences(context, name, fields, topLevel: true);
                CheckGroupNames(context, name, fields);
                if (context.HasErrors)
                {
                    return null;
                }

                return new MessageSpec
                {
                    Name = name,
                    Direction = direction,
                    TypeByte = typeByte,
                    MaxLength = max,
                    ByContext = byContext,
                    MaskedLength = maskedLength,
                    Untraced = untraced,
                    AnsweredBy = answeredBy,
                    Secret = secret,
                    FrontendFlow = flow.Build(Direction.Frontend),
                    BackendFlow = flow.Build(Direction.Backend),
                    Fields = fields.ToEquatableArray(),
                    Path = context.Path,
                    Line = header.Number,
                    Comment = comment,
                };
            }

            /// <summary>The checks of a family's sub-message: its type byte first, no length word, valid conditions.</summary>
            private static MessageSpec? FinishFamilyMessage(ParseContext context, Line header, string name, Direction direction, ImmutableArray<FieldSpec> fields, string comment)
            {
                if (fields.Length == 0 || fields[0].Kind != FieldKind.TypeByte)
                {
                    context.Report("PGSPEC008", $"Sub-message '{name}' must start with its type byte, Byte1('x')", header.Number, 1, header.Text.Length);
                    return null;
                }

                FieldSpec? length = fields.FirstOrDefault(f => f.Kind == FieldKind.Length);
                if (length is not null)
                {
                    context.Report("PGSPEC008", $"Sub-message '{name}' has no length word: its body is the rest of the field that carries it", length.Line, 1, 0);
                    return null;
                }

                fields = CheckReferences(context, name, fields, topLevel: true);
                CheckGroupNames(context, name, fields);
                CheckConditions(context, name, fields);
                CheckFamilyNames(context, name, fields);
                if (context.HasErrors)
                {
                    return null;
                }

                return new MessageSpec
                {
                    Name = name,
                    Direction = direction,
                    TypeByte = (int)fields[0].Literal!.Value,
                    Fields = fields.ToEquatableArray(),
                    Path = context.Path,
                    Line = header.Number,
                    Comment = comment,
                };
            }

            // The members a family's message, part or group has besides its fields (IPgSubMessage's, the dispatcher's, the walkers').
            private static readonly HashSet<string> s_familyMemberNames = new HashSet<string>(StringComparer.Ordinal)
            {
                "sizeOfBody", "writeBody", "traceBody", "writeJson", "writeJsonFields", "checkEncodable", "tryRead", "trySkip",
            };

            // What a family's message has besides (its interface's members and the constants of its version).
            private static readonly HashSet<string> s_familyMessageMemberNames = new HashSet<string>(StringComparer.Ordinal)
            {
                "kind", "family", "direction", "sinceVersion",
            };

            /// <summary>A field of a family's message, part or group must not take the name of a member they have.</summary>
            private static void CheckFamilyNames(ParseContext context, string owner, ImmutableArray<FieldSpec> fields, bool topLevel = true)
            {
                foreach (FieldSpec f in fields)
                {
                    bool taken = s_familyMemberNames.Contains(f.Name) || (topLevel && s_familyMessageMemberNames.Contains(f.Name));
                    if (taken && f.Kind != FieldKind.TypeByte && f.Kind != FieldKind.Literal)
                    {
                        context.Report("PGSPEC004", $"Field name '{f.Name}' of '{owner}' is taken by a member of the generated class; choose another", f.Line);
                    }

                    if (f.GroupName is not null)
                    {
                        CheckFamilyNames(context, f.GroupName, f.Children.Items, topLevel: false);
                    }
                }
            }

            /// <summary>
            /// 'if FIELD [is A, B]' names an earlier field of the same level that is an enum (with 'is') or
            /// itself conditional; a length and the Byten it sizes share one condition; 'optional' is for enums.
            /// </summary>
            private static void CheckConditions(ParseContext context, string owner, ImmutableArray<FieldSpec> fields)
            {
                for (int i = 0; i < fields.Length; i++)
                {
                    FieldSpec f = fields[i];
                    if (f.ConditionField is string target)
                    {
                        int index = IndexOf(fields, target, i);
                        if (index < 0)
                        {
                            context.Report("PGSPEC003", $"'{f.Name}' is present 'if {target}', which names no earlier field of '{owner}'", f.Line);
                        }
                        else if (f.ConditionValues.Count > 0 && fields[index].Kind != FieldKind.Enum)
                        {
                            context.Report("PGSPEC003", $"'{f.Name}' is present 'if {target} is ...', but '{target}' is no enum field", f.Line);
                        }
                        else if (f.ConditionValues.Count == 0 && !fields[index].IsConditional)
                        {
                            context.Report("PGSPEC003", $"'{f.Name}' is present 'if {target}', but '{target}' is always present (write 'if {target} is VALUE, ...' for an enum's values)", f.Line);
                        }
                    }

                    if (f.Kind == FieldKind.SizedBytes && i > 0 && fields[i - 1].Role == FieldRole.ValueLength)
                    {
                        FieldSpec len = fields[i - 1];
                        if (len.ConditionFlag != f.ConditionFlag || len.ConditionField != f.ConditionField || len.ConditionValues != f.ConditionValues || len.Since != f.Since)
                        {
                            context.Report("PGSPEC010", $"'{len.Name}' and Byten({len.Name}) '{f.Name}' must have the same condition", f.Line);
                        }
                    }

                    if (f.Optional && f.Kind != FieldKind.Enum)
                    {
                        context.Report("PGSPEC010", $"'optional' applies to an enum field (present when the next byte is one of its values), not to '{f.Name}'", f.Line);
                    }

                    if (f.IsConditional && (f.Role == FieldRole.Count || f.Kind == FieldKind.RestBytes || f.Kind == FieldKind.Array))
                    {
                        context.Report("PGSPEC010", $"'{f.Name}' cannot be conditional: counts, lists and Byten to the end are always present", f.Line);
                    }

                    if (f.Kind == FieldKind.Array && f.GroupName is not null)
                    {
                        CheckConditions(context, f.GroupName, f.Children.Items);
                    }
                }
            }

            /// <summary>A line right below a message header that gives one side's flow: '(F) in Normal ...'.</summary>
            private static bool IsFlowLine(string text)
                => (text.StartsWith("(F)", StringComparison.Ordinal) || text.StartsWith("(B)", StringComparison.Ordinal))
                    && (text.Length == 3 || text[3] == ' ' || text[3] == '\t');

            /// <summary>One option token and where it was written (for diagnostics: its line).</summary>
            private readonly struct Option
            {
                public Option(string text, Line line, int column, int length)
                {
                    Text = text;
                    Line = line.Number;
                    Column = column;
                    Length = length;
                }

                public string Text { get; }
                public int Line { get; }
                public int Column { get; }
                public int Length { get; }

                public void Report(ParseContext context, string id, string message) => context.Report(id, message, Line, Column, Length);
            }

            /// <summary>
            /// Reads the flow options of a message: for each side that sends it, the phases it may be
            /// sent in ('in', 'ignored-in'), the phase changes it makes ('enters'), and for the frontend
            /// the extended query rules ('extended', 'ends-error-skip'). A message both sides send names
            /// the side first: '(F)' or '(B)'.
            /// </summary>
            private sealed class FlowReader
            {
                private readonly ParseContext _context;
                private readonly string _name;
                private readonly Direction _direction;
                private readonly Dictionary<Direction, Side> _sides = new Dictionary<Direction, Side>();
                private Direction? _side;

                public FlowReader(ParseContext context, string name, Direction direction)
                {
                    _context = context;
                    _name = name;
                    _direction = direction;
                    _side = direction == Direction.Both ? null : direction;
                }

                /// <summary>Reads the flow option at <paramref name="i"/> (and its arguments); false if it is none.</summary>
                public bool TryRead(List<Option> options, ref int i)
                {
                    Option option = options[i];
                    switch (option.Text)
                    {
                        case "(F)":
                        case "(B)":
                            Direction marked = option.Text == "(F)" ? Direction.Frontend : Direction.Backend;
                            if (_direction != Direction.Both && _direction != marked)
                            {
                                option.Report(_context, "PGSPEC015", $"'{option.Text}' names the {SideName(marked)}, which does not send '{_name}' ({(_direction == Direction.Frontend ? "F" : "B")})");
                            }

                            _side = marked;
                            return true;
                        case "in":
                        case "ignored-in":
                        {
                            Side? side = Current(option);
                            List<string>? phases = ReadPhases(options, ref i, option);
                            if (side is not null && phases is not null)
                            {
                                List<string> list = option.Text == "in" ? side.In : side.IgnoredIn;
                                foreach (string phase in phases)
                                {
                                    if (side.In.Contains(phase) || side.IgnoredIn.Contains(phase))
                                    {
                                        option.Report(_context, "PGSPEC015", $"'{_name}' ({SideLetter(side.Direction)}) lists the phase '{phase}' twice in 'in' and 'ignored-in'; a message is either acted on or dropped in a phase");
                                    }
                                    else
                                    {
                                        list.Add(phase);
                                    }
                                }
                            }

                            return true;
                        }

                        case "enters":
                        {
                            Side? side = Current(option);
                            if (i + 1 >= options.Count || !IsPhase(options[i + 1].Text))
                            {
                                option.Report(_context, "PGSPEC015", $"'enters' expects a phase ({PhaseList}), found {(i + 1 < options.Count ? "'" + options[i + 1].Text + "'" : "nothing")}");
                                i = Math.Min(i + 1, options.Count - 1);
                                return true;
                            }

                            string to = options[++i].Text;
                            List<string> from = new List<string> { "" };
                            if (i + 1 < options.Count && options[i + 1].Text == "from")
                            {
                                i++;
                                from = ReadPhases(options, ref i, options[i]) ?? new List<string>();
                            }

                            if (side is not null)
                            {
                                foreach (string phase in from)
                                {
                                    side.Transitions.Add((new PhaseTransition(phase, to), option));
                                }
                            }

                            return true;
                        }

                        case "extended":
                        case "ends-error-skip":
                        {
                            Side? side = Current(option);
                            if (side is null)
                            {
                                return true;
                            }

                            if (side.Direction != Direction.Frontend)
                            {
                                option.Report(_context, "PGSPEC015", $"'{option.Text}' is a rule of the frontend's messages (the extended query protocol and the skip after an error are the server's reading of them); '{_name}' is sent by the backend here");
                                return true;
                            }

                            if (option.Text == "extended")
                            {
                                side.Extended = true;
                            }
                            else
                            {
                                side.EndsErrorSkip = true;
                            }

                            return true;
                        }

                        default:
                            return false;
                    }
                }

                /// <summary>What only the whole set of options can tell: the phase changes agree with each other and with 'in'.</summary>
                public void Check()
                {
                    foreach (Side side in _sides.Values)
                    {
                        var seen = new HashSet<string>(StringComparer.Ordinal);
                        bool any = false, conditional = false;
                        foreach ((PhaseTransition transition, Option option) in side.Transitions)
                        {
                            string who = $"'{_name}' ({SideLetter(side.Direction)})";
                            if (transition.From.Length == 0)
                            {
                                if (any || conditional)
                                {
                                    option.Report(_context, "PGSPEC015", $"{who} enters a phase whatever the phase ('enters {transition.To}' without 'from') and has another phase change; give each a 'from'");
                                }

                                any = true;
                                continue;
                            }

                            conditional = true;
                            if (any)
                            {
                                option.Report(_context, "PGSPEC015", $"{who} already enters a phase whatever the phase ('enters' without 'from'); 'enters {transition.To} from {transition.From}' contradicts it");
                            }
                            else if (!seen.Add(transition.From))
                            {
                                option.Report(_context, "PGSPEC015", $"{who} has two phase changes from '{transition.From}'");
                            }
                            else if (transition.From == transition.To)
                            {
                                option.Report(_context, "PGSPEC015", $"{who} 'enters {transition.To} from {transition.From}': a phase change needs two different phases");
                            }
                            else if (!side.In.Contains(transition.From))
                            {
                                option.Report(_context, "PGSPEC015", $"{who} 'enters {transition.To} from {transition.From}', but 'in' does not list '{transition.From}': a message changes the phase only where it is acted on");
                            }
                        }
                    }
                }

                /// <summary>The flow of one side, as the model keeps it.</summary>
                public FlowSpec Build(Direction direction)
                {
                    if (!_sides.TryGetValue(direction, out Side? side))
                    {
                        return FlowSpec.Empty;
                    }

                    return new FlowSpec
                    {
                        In = side.In.ToEquatableArray(),
                        IgnoredIn = side.IgnoredIn.ToEquatableArray(),
                        Transitions = side.Transitions.Select(t => t.Transition).ToEquatableArray(),
                        Extended = side.Extended,
                        EndsErrorSkip = side.EndsErrorSkip,
                    };
                }

                private Side? Current(Option option)
                {
                    if (_side is not Direction side)
                    {
                        option.Report(_context, "PGSPEC015", $"'{option.Text}' on '{_name}', which both sides send: say whose flow it is with '(F)' or '(B)' before it");
                        return null;
                    }

                    if (!_sides.TryGetValue(side, out Side? flow))
                    {
                        flow = new Side(side);
                        _sides.Add(side, flow);
                    }

                    return flow;
                }

                /// <summary>Reads 'A, B, C' after the option at <paramref name="i"/> (spaces after the commas allowed); null after a diagnostic.</summary>
                private List<string>? ReadPhases(List<Option> options, ref int i, Option option)
                {
                    if (i + 1 >= options.Count)
                    {
                        option.Report(_context, "PGSPEC015", $"'{option.Text}' expects a list of phases such as 'Normal, CopyIn' ({PhaseList}), found nothing");
                        return null;
                    }

                    string text = options[++i].Text;
                    while (i + 1 < options.Count && (text.EndsWith(",", StringComparison.Ordinal) || options[i + 1].Text.StartsWith(",", StringComparison.Ordinal)))
                    {
                        text += options[++i].Text;
                    }

                    var phases = new List<string>();
                    foreach (string item in text.Split(','))
                    {
                        if (!IsPhase(item))
                        {
                            option.Report(_context, "PGSPEC015", item.Length == 0
                                ? $"'{option.Text} {text}' is not a list of phases: an empty item (a comma too many); write them as 'Normal, CopyIn'"
                                : $"'{item}' is not a phase: the phases are {PhaseList}");
                            return null;
                        }

                        if (phases.Contains(item))
                        {
                            option.Report(_context, "PGSPEC015", $"'{option.Text} {text}' lists '{item}' twice");
                            return null;
                        }

                        phases.Add(item);
                    }

                    return phases;
                }

                private static string SideName(Direction direction) => direction == Direction.Frontend ? "frontend" : "backend";

                private static string SideLetter(Direction direction) => direction == Direction.Frontend ? "F" : "B";

                private sealed class Side
                {
                    public Side(Direction direction)
                    {
                        Direction = direction;
                    }

                    public Direction Direction { get; }
                    public List<string> In { get; } = new List<string>();
                    public List<string> IgnoredIn { get; } = new List<string>();
                    public List<(PhaseTransition Transition, Option Option)> Transitions { get; } = new List<(PhaseTransition, Option)>();
                    public bool Extended { get; set; }
                    public bool EndsErrorSkip { get; set; }
                }
            }

            /// <summary>The phases of a connection: the members of PgSpec.Protocol's PgSessionPhase, which the flow options name.</summary>
            internal static readonly string[] Phases = { "Startup", "Authentication", "Normal", "CopyIn", "CopyOut", "CopyBoth" };

            private static string PhaseList => string.Join(", ", Phases);

            private static bool IsPhase(string text) => Array.IndexOf(Phases, text) >= 0;

            /// <summary>
            /// A message names a C# type, its kind in the kinds enums and, with a file of its own, a
            /// hint name: none may be a name the generator uses for something else.
            /// </summary>
            private static bool CheckMessageName(ParseContext context, Line header, string name)
            {
                if (!char.IsUpper(name[0]))
                {
                    context.Report("PGSPEC008", $"Message name '{name}' must start with an upper-case letter: it names a C# type (such as 'Query')", header.Number, 1, name.Length);
                    return false;
                }

                string? taken = s_generatedTypeNames.Contains(name) ? "a type the generator declares beside the messages"
                    : s_generatedFileNames.Contains(name) ? $"a file the generator adds beside the messages ({name}.g.cs; file names compare ignoring case)"
                    : s_dispatcherNames.Contains(name) ? "a member of the dispatchers (FrontendMessages, BackendMessages) or of the kinds enums"
                    : s_messageMemberNames.Contains(name) ? "a member every message has"
                    : null;
                if (taken is not null)
                {
                    context.Report("PGSPEC004", $"Message name '{name}' is reserved: it is {taken}; choose another", header.Number, 1, name.Length);
                    return false;
                }

                return true;
            }

            /// <summary>
            /// Reads the fields of one level, all at <paramref name="indent"/>. A group's level ends at
            /// a shallower line; the message's own level reads to its last line, so every line is
            /// either a field or an error.
            /// </summary>
            private static ImmutableArray<FieldSpec> ParseFields(ParseContext context, List<Line> lines, ref int position, int indent, bool topLevel)
            {
                var fields = ImmutableArray.CreateBuilder<FieldSpec>();
                while (position < lines.Count)
                {
                    Line line = lines[position];
                    if (line.Indent < indent && !topLevel)
                    {
                        break;
                    }

                    if (line.Indent < indent)
                    {
                        context.Report("PGSPEC001", $"This line is indented less than the fields of the message above it, which start at column {indent + 1}; a message's fields share one indentation", line.Number, line.Indent + 1, line.Text.Length);
                        position++;
                        continue;
                    }

                    if (line.Indent > indent)
                    {
                        string? group = fields.Count > 0 ? fields[fields.Count - 1].GroupName : null;
                        context.Report(
                            "PGSPEC001",
                            group is null
                                ? "This line is indented deeper than the field above it, which is not a group"
                                : $"This line is indented neither like the fields of group '{group}' above it nor like the fields around the group, which start at column {indent + 1}",
                            line.Number,
                            line.Indent + 1,
                            line.Text.Length);
                        position++;
                        continue;
                    }

                    position++;
                    FieldSpec? field = ParseField(context, line, topLevel && fields.Count == 0);
                    if (field is null)
                    {
                        // Skip a bad group's children along with it.
                        while (position < lines.Count && lines[position].Indent > indent)
                        {
                            position++;
                        }

                        continue;
                    }

                    if (field.Kind == FieldKind.Array && field.GroupName is not null)
                    {
                        if (position >= lines.Count || lines[position].Indent <= indent)
                        {
                            context.Report("PGSPEC001", $"Group '{field.GroupName}' needs its fields on the following, deeper-indented lines", line.Number, line.Indent + 1, line.Text.Length);
                            continue;
                        }

                        ImmutableArray<FieldSpec> children = ParseFields(context, lines, ref position, lines[position].Indent, topLevel: false);
                        field = field with { Children = children.ToEquatableArray() };
                    }

                    fields.Add(field);
                }

                return fields.ToImmutable();
            }

            private static FieldSpec? ParseField(ParseContext context, Line line, bool first)
            {
                string[] tokens = Tokens(line.Text);
                int column = line.Indent + 1;
                Match type = s_typeExpression.Match(tokens[0]);
                if (!type.Success)
                {
                    context.Report("PGSPEC002", $"'{tokens[0]}' is not a field type (Byte1, Int8, Int16, Int32, Int64, ByteN, Byten, String, an enum, or a group such as Field[count])", line.Number, column, tokens[0].Length);
                    return null;
                }

                string baseType = type.Groups["base"].Value;
                bool hasArg = type.Groups["arg"].Success;
                string arg = type.Groups["arg"].Value;
                bool isArray = type.Groups["count"].Success;
                string count = type.Groups["count"].Value;

                int next = 1;
                string name = "";
                if (tokens.Length > 1 && s_identifier.IsMatch(tokens[1]) && !IsAttribute(tokens[1]))
                {
                    name = tokens[1];
                    next = 2;
                }

                var field = new FieldSpec { Name = name, Line = line.Number };

                // Attributes.
                for (int i = next; i < tokens.Length; i++)
                {
                    string attribute = tokens[i];
                    switch (attribute)
                    {
                        case "oid":
                            field = field with { Oid = true };
                            break;
                        case "nullable":
                            field = field with { Nullable = true };
                            break;
                        case "masked":
                            field = field with { TraceMasked = true };
                            break;
                        case "untraced":
                            field = field with { Untraced = true };
                            break;
                        case "traced-as-int32":
                            field = field with { TracedAsInt32 = true };
                            break;
                        case "trace-end":
                            field = field with { TraceEnd = true };
                            break;
                        case "optional" when context.InFamily:
                            field = field with { Optional = true };
                            break;
                        case "since" when context.InFamily:
                            if (i + 1 >= tokens.Length || !int.TryParse(tokens[i + 1], NumberStyles.None, CultureInfo.InvariantCulture, out int sinceVersion) || sinceVersion < 1 || sinceVersion > 255)
                            {
                                context.Report("PGSPEC010", "A field of a later version is written 'since N' with 1 <= N <= 255", line.Number, column, line.Text.Length);
                                return null;
                            }

                            field = field with { Since = sinceVersion };
                            i++;
                            break;
                        case "if" when context.InFamily:
                        {
                            if (i + 1 >= tokens.Length)
                            {
                                context.Report("PGSPEC010", "A condition is written 'if streaming', 'if parallel', 'if FIELD' or 'if FIELD is VALUE, VALUE'", line.Number, column, line.Text.Length);
                                return null;
                            }

                            string subject = tokens[i + 1];
                            i++;
                            if (subject == "streaming" || subject == "parallel")
                            {
                                field = field with { ConditionFlag = subject };
                                break;
                            }

                            if (!s_identifier.IsMatch(subject))
                            {
                                context.Report("PGSPEC010", $"'{subject}' is not a condition: write 'if streaming', 'if parallel', 'if FIELD' or 'if FIELD is VALUE, VALUE'", line.Number, column, line.Text.Length);
                                return null;
                            }

                            var values = new List<string>();
                            if (i + 1 < tokens.Length && tokens[i + 1] == "is")
                            {
                                i++;
                                while (i + 1 < tokens.Length)
                                {
                                    string value = tokens[i + 1].TrimEnd(',');
                                    if (!s_typeName.IsMatch(value))
                                    {
                                        break;
                                    }

                                    values.Add(value);
                                    i++;
                                    if (!tokens[i].EndsWith(",", StringComparison.Ordinal))
                                    {
                                        break;
                                    }
                                }

                                if (values.Count == 0)
                                {
                                    context.Report("PGSPEC010", $"'if {subject} is' names no enum member (write 'if {subject} is Text, Binary')", line.Number, column, line.Text.Length);
                                    return null;
                                }
                            }

                            field = field with { ConditionField = subject, ConditionValues = values.ToEquatableArray() };
                            break;
                        }

                        case "until":
                            if (i + 1 >= tokens.Length || tokens[i + 1] != "0")
                            {
                                context.Report("PGSPEC011", "A terminated list is written 'until 0': it ends at a zero byte where the next item would start", line.Number, column, line.Text.Length);
                                return null;
                            }

                            field = field with { Terminated = true };
                            i++;
                            break;
                        case "range":
                        {
                            if (i + 1 >= tokens.Length || !TryParseRange(tokens[i + 1], out long min, out long max))
                            {
                                context.Report("PGSPEC010", "A range is written 'range MIN..MAX'", line.Number, column, line.Text.Length);
                                return null;
                            }

                            field = field with { HasRange = true, RangeMin = min, RangeMax = max };
                            i++;
                            break;
                        }

                        case "size":
                        {
                            int consumed = 0;
                            bool ok = false;
                            while (i + 1 < tokens.Length && tokens[i + 1].IndexOf(':') > 0)
                            {
                                string[] parts = tokens[i + 1].Split(':');
                                if (parts.Length != 2 || !TryParseRange(parts[1], out long min, out long max) || min < 0)
                                {
                                    ok = false;
                                    break;
                                }

                                if (parts[0] == "3.0")
                                {
                                    field = field with { MinSize30 = (int)min, MaxSize30 = (int)max };
                                    ok = true;
                                }
                                else if (parts[0] == "3.2")
                                {
                                    field = field with { MinSize32 = (int)min, MaxSize32 = (int)max };
                                    ok = true;
                                }
                                else
                                {
                                    ok = false;
                                    break;
                                }

                                consumed++;
                                i++;
                            }

                            if (!ok || consumed != 2)
                            {
                                context.Report("PGSPEC010", "Sizes by protocol version are written 'size 3.0:N 3.2:MIN..MAX'", line.Number, column, line.Text.Length);
                                return null;
                            }

                            field = field with { HasVersionSizes = true };
                            break;
                        }

                        default:
                            if (attribute.StartsWith("masked-if-code=", StringComparison.Ordinal) && attribute.Length > "masked-if-code=".Length)
                            {
                                field = field with { MaskIfCodes = attribute.Substring("masked-if-code=".Length) };
                                break;
                            }

                            context.Report("PGSPEC010", $"Unknown attribute '{attribute}' (expected oid, nullable, until 0, range MIN..MAX, size 3.0:N 3.2:MIN..MAX, masked, masked-if-code=XYZ, untraced, traced-as-int32, trace-end)", line.Number, column, line.Text.Length);
                            return null;
                    }
                }

                WireType scalar = ScalarType(baseType);
                Match fixedBytes = s_fixedBytes.Match(baseType);

                if (baseType == "Byte1" && hasArg && !first && context.InFamily)
                {
                    // A tag inside a sub-message (Update's Byte1('N')): a literal byte.
                    if (isArray || !TryParseLiteral(arg, out long tag, out bool tagIsChar) || tag <= 0 || tag > 255)
                    {
                        context.Report("PGSPEC007", $"'{arg}' is not a valid Byte1 tag", line.Number, column, tokens[0].Length);
                        return null;
                    }

                    return field with { Kind = FieldKind.Literal, Type = WireType.Byte1, Literal = tag, Name = name.Length > 0 ? name : "tag" + (tagIsChar && char.IsLetterOrDigit((char)tag) ? ((char)tag).ToString() : tag.ToString(CultureInfo.InvariantCulture)) };
                }

                if (baseType == "Byte1" && hasArg)
                {
                    if (!first || isArray || !TryParseLiteral(arg, out long value, out _) || value <= 0 || value > 255)
                    {
                        context.Report("PGSPEC008", "Byte1('x') is the type byte and must be a message's first field, with a non-zero byte", line.Number, column, tokens[0].Length);
                        return null;
                    }

                    return field with { Kind = FieldKind.TypeByte, Type = WireType.Byte1, Literal = value, Name = "type" };
                }

                if (scalar != WireType.None && scalar != WireType.String)
                {
                    if (hasArg)
                    {
                        // Literals become C# constants of the signed type (an Int32 code is an int).
                        if (!TryParseLiteral(arg, out long value, out _) || !FitsIn(scalar, value) || isArray
                            || (scalar == WireType.Int32 && (value < int.MinValue || value > int.MaxValue)))
                        {
                            context.Report("PGSPEC007", $"'{arg}' is not a valid {baseType} literal", line.Number, column, tokens[0].Length);
                            return null;
                        }

                        if (name == "length")
                        {
                            if (scalar != WireType.Int32)
                            {
                                context.Report("PGSPEC008", "The length field is an Int32", line.Number, column, tokens[0].Length);
                                return null;
                            }

                            return field with { Kind = FieldKind.Length, Type = scalar, Literal = value };
                        }

                        return field with { Kind = FieldKind.Literal, Type = scalar, Name = name.Length == 0 ? "code" : name, Literal = value };
                    }

                    if (name.Length == 0)
                    {
                        context.Report("PGSPEC001", $"A {baseType} field needs a name, such as '{baseType} processId'", line.Number, column, line.Text.Length);
                        return null;
                    }

                    if (name == "length")
                    {
                        if (scalar != WireType.Int32 || isArray)
                        {
                            context.Report("PGSPEC008", "The length field is an Int32", line.Number, column, tokens[0].Length);
                            return null;
                        }

                        return field with { Kind = FieldKind.Length, Type = scalar };
                    }

                    if (isArray)
                    {
                        return field with { Kind = FieldKind.Array, ElementKind = FieldKind.Scalar, Type = scalar, CountField = EmptyToNull(count) };
                    }

                    return field with { Kind = FieldKind.Scalar, Type = scalar };
                }

                if (name.Length == 0)
                {
                    context.Report("PGSPEC001", $"A {baseType} field needs a name", line.Number, column, line.Text.Length);
                    return null;
                }

                if (name == "length")
                {
                    context.Report("PGSPEC008", "'length' is reserved for the Int32 length word", line.Number, column, line.Text.Length);
                    return null;
                }

                if (baseType == "String")
                {
                    if (hasArg)
                    {
                        context.Report("PGSPEC002", "String takes no argument", line.Number, column, tokens[0].Length);
                        return null;
                    }

                    return isArray
                        ? field with { Kind = FieldKind.Array, ElementKind = FieldKind.String, Type = WireType.String, CountField = EmptyToNull(count) }
                        : field with { Kind = FieldKind.String, Type = WireType.String };
                }

                if (baseType == "Byten")
                {
                    if (isArray)
                    {
                        context.Report("PGSPEC002", "Byten cannot repeat; repeat a group holding it", line.Number, column, tokens[0].Length);
                        return null;
                    }

                    return hasArg
                        ? field with { Kind = FieldKind.SizedBytes, Type = WireType.Bytes, LengthField = arg }
                        : field with { Kind = FieldKind.RestBytes, Type = WireType.Bytes };
                }

                if (fixedBytes.Success)
                {
                    if (hasArg || isArray)
                    {
                        context.Report("PGSPEC002", $"{baseType} takes no argument and cannot repeat", line.Number, column, tokens[0].Length);
                        return null;
                    }

                    return field with { Kind = FieldKind.FixedBytes, Type = WireType.Bytes, FixedSize = int.Parse(fixedBytes.Groups["n"].Value, CultureInfo.InvariantCulture) };
                }

                if (s_typeName.IsMatch(baseType) && !hasArg)
                {
                    if (isArray)
                    {
                        // A group: its fields follow on deeper-indented lines.
                        return field with { Kind = FieldKind.Array, ElementKind = FieldKind.Array, GroupName = baseType, CountField = EmptyToNull(count) };
                    }

                    // An enum, resolved against every file later.
                    return field with { Kind = FieldKind.Enum, EnumName = baseType };
                }

                context.Report("PGSPEC002", $"'{tokens[0]}' is not a field type (Byte1, Int8, Int16, Int32, Int64, ByteN, Byten, String, an enum, or a group such as Field[count])", line.Number, column, tokens[0].Length);
                return null;
            }

            private static string? EmptyToNull(string value) => value.Length == 0 ? null : value;

            private static bool IsAttribute(string token)
                => token == "oid" || token == "nullable" || token == "until" || token == "range" || token == "size"
                || token == "masked" || token == "untraced" || token == "trace-end" || token == "if" || token == "since" || token == "optional";

            private static bool TryParseRange(string text, out long min, out long max)
            {
                int dots = text.IndexOf("..", StringComparison.Ordinal);
                if (dots < 0)
                {
                    bool single = TryParseLiteral(text, out min, out bool isChar) && !isChar;
                    max = min;
                    return single;
                }

                max = 0;
                return TryParseLiteral(text.Substring(0, dots), out min, out bool c1) && !c1
                    && TryParseLiteral(text.Substring(dots + 2), out max, out bool c2) && !c2
                    && min <= max;
            }

            private static WireType ScalarType(string baseType)
            {
                switch (baseType)
                {
                    case "Byte1": return WireType.Byte1;
                    case "Int8": return WireType.Int8;
                    case "Int16": return WireType.Int16;
                    case "Int32": return WireType.Int32;
                    case "Int64": return WireType.Int64;
                    case "String": return WireType.String;
                    default: return WireType.None;
                }
            }

            internal static bool FitsIn(WireType type, long value)
            {
                switch (type)
                {
                    case WireType.Byte1: return value >= 0 && value <= 255;
                    case WireType.Int8: return value >= sbyte.MinValue && value <= 255;
                    case WireType.Int16: return value >= short.MinValue && value <= ushort.MaxValue;
                    case WireType.Int32: return value >= int.MinValue && value <= uint.MaxValue;
                    case WireType.Int64: return true;
                    default: return false;
                }
            }

            /// <summary>
            /// Checks what fields say of each other within one level: counts and value lengths
            /// name an earlier integer, Byten comes last, names are unique; marks the roles.
            /// </summary>
            private static ImmutableArray<FieldSpec> CheckReferences(ParseContext context, string owner, ImmutableArray<FieldSpec> fields, bool topLevel)
            {
                var result = fields.ToBuilder();
                var names = new HashSet<string>(StringComparer.Ordinal);
                for (int i = 0; i < result.Count; i++)
                {
                    FieldSpec field = result[i];
                    if (field.Kind != FieldKind.TypeByte && field.Kind != FieldKind.Length && !names.Add(field.Name))
                    {
                        context.Report("PGSPEC004", $"'{owner}' has two fields named '{field.Name}'", field.Line);
                    }

                    if (topLevel && s_reservedNames.Contains(field.Name))
                    {
                        context.Report("PGSPEC004", $"Field name '{field.Name}' is taken by a member every message has; choose another", field.Line);
                    }

                    if (!topLevel && s_reservedGroupNames.Contains(field.Name))
                    {
                        context.Report("PGSPEC004", $"Field name '{field.Name}' is taken by a member every group has; choose another", field.Line);
                    }

                    if (string.Equals(Pascal(field.Name), owner, StringComparison.Ordinal))
                    {
                        context.Report("PGSPEC004", $"Field '{field.Name}' would have the name of its message '{owner}'; choose another", field.Line);
                    }

                    if (!topLevel && (field.Kind == FieldKind.TypeByte || field.Kind == FieldKind.Length || field.Kind == FieldKind.RestBytes))
                    {
                        context.Report("PGSPEC006", $"'{field.Name}' cannot stand inside a group", field.Line);
                    }

                    if (field.Kind == FieldKind.RestBytes && i != result.Count - 1)
                    {
                        context.Report("PGSPEC006", $"Byten '{field.Name}' runs to the end of the message, so it must be the last field", field.Line);
                    }

                    if (field.Kind == FieldKind.Array)
                    {
                        if (field.CountField is null && !field.Terminated)
                        {
                            context.Report("PGSPEC011", $"'{field.Name}' repeats with neither a count ([count]) nor 'until 0'", field.Line);
                        }
                        else if (field.CountField is not null && field.Terminated)
                        {
                            context.Report("PGSPEC011", $"'{field.Name}' has both a count and 'until 0'", field.Line);
                        }
                        else if (field.CountField is not null)
                        {
                            int countIndex = IndexOf(result, field.CountField, i);
                            if (countIndex < 0 || result[countIndex].Kind != FieldKind.Scalar || (result[countIndex].Type != WireType.Int16 && result[countIndex].Type != WireType.Int32))
                            {
                                context.Report("PGSPEC003", $"The count of '{field.Name}' names '{field.CountField}', which is no earlier Int16 or Int32 field of '{owner}'", field.Line);
                            }
                            else if (result[countIndex].Role != FieldRole.Value)
                            {
                                context.Report("PGSPEC003", $"'{field.CountField}' already counts or sizes another field", field.Line);
                            }
                            else
                            {
                                result[countIndex] = result[countIndex] with { Role = FieldRole.Count };
                            }
                        }

                        if (field.Terminated)
                        {
                            bool startsNonZero = field.ElementKind == FieldKind.String
                                || (field.ElementKind == FieldKind.Array && field.Children.Count > 0
                                    && (field.Children[0].Type == WireType.String || (field.Children[0].Kind == FieldKind.Scalar && field.Children[0].Type == WireType.Byte1)));
                            if (!startsNonZero)
                            {
                                context.Report("PGSPEC011", $"Items of '{field.Name}' must start with a String or a Byte1, so that a zero byte can end the list", field.Line);
                            }
                        }

                        if (field.GroupName is not null)
                        {
                            ImmutableArray<FieldSpec> children = CheckReferences(context, field.GroupName, field.Children.Items, topLevel: false);
                            result[i] = field with { Children = children.ToEquatableArray() };
                        }
                    }

                    if (field.Kind == FieldKind.SizedBytes)
                    {
                        if (i == 0 || result[i - 1].Name != field.LengthField || result[i - 1].Kind != FieldKind.Scalar || result[i - 1].Type != WireType.Int32)
                        {
                            context.Report("PGSPEC003", $"Byten({field.LengthField}) must follow the Int32 field '{field.LengthField}' that gives its length", field.Line);
                        }
                        else
                        {
                            result[i - 1] = result[i - 1] with { Role = FieldRole.ValueLength };
                            result[i] = field with { Nullable = result[i - 1].Nullable };
                        }
                    }

                    if (field.Kind != FieldKind.Scalar && field.Nullable)
                    {
                        context.Report("PGSPEC010", $"'nullable' belongs on the Int32 length before a Byten(len) field, not on '{field.Name}'", field.Line);
                    }

                    if (field.HasVersionSizes && field.Kind != FieldKind.RestBytes)
                    {
                        context.Report("PGSPEC010", "'size 3.0:... 3.2:...' applies to a Byten field", field.Line);
                    }

                    if (field.Oid && !((field.Kind == FieldKind.Scalar || (field.Kind == FieldKind.Array && field.ElementKind == FieldKind.Scalar)) && field.Type == WireType.Int32))
                    {
                        context.Report("PGSPEC010", "'oid' applies to Int32 fields", field.Line);
                    }
                }

                for (int i = 0; i < result.Count; i++)
                {
                    if (result[i].Nullable && result[i].Kind == FieldKind.Scalar && result[i].Role != FieldRole.ValueLength)
                    {
                        context.Report("PGSPEC012", $"'{result[i].Name}' is nullable but no Byten({result[i].Name}) follows it", result[i].Line);
                    }

                    if (result[i].HasRange && (result[i].Kind != FieldKind.Scalar || result[i].Role != FieldRole.Value))
                    {
                        context.Report("PGSPEC010", $"'range' applies to integer fields that carry a value, not to '{result[i].Name}'", result[i].Line);
                    }
                }

                return result.ToImmutable();
            }

            /// <summary>
            /// Every group, however deep, becomes a class nested in the message's class, so its name
            /// must differ from the message, its members, any field's property, its enums and the other groups.
            /// </summary>
            private static void CheckGroupNames(ParseContext context, string message, ImmutableArray<FieldSpec> fields)
            {
                var members = new HashSet<string>(s_messageMemberNames, StringComparer.Ordinal) { message };

                var groups = new List<FieldSpec>();
                CollectGroups(fields, groups, members);
                var seen = new HashSet<string>(StringComparer.Ordinal);
                foreach (FieldSpec group in groups)
                {
                    if (members.Contains(group.GroupName!) || !seen.Add(group.GroupName!))
                    {
                        context.Report("PGSPEC004", $"Group name '{group.GroupName}' is taken in '{message}' (by the message, a member, a field at any depth, an enum or another group); choose another", group.Line);
                    }
                }
            }

            private static void CollectGroups(EquatableArray<FieldSpec> fields, List<FieldSpec> groups, HashSet<string> members)
                => CollectGroups(fields.Items, groups, members);

            private static void CollectGroups(ImmutableArray<FieldSpec> fields, List<FieldSpec> groups, HashSet<string> members)
            {
                foreach (FieldSpec field in fields)
                {
                    // Views name nested groups from inside other groups, where any field's property would hide them.
                    members.Add(Pascal(field.Name));
                    if (field.EnumName is not null)
                    {
                        members.Add(field.EnumName);
                    }

                    if (field.GroupName is not null)
                    {
                        groups.Add(field);
                        CollectGroups(field.Children, groups, members);
                    }
                }
            }

            private static int IndexOf(IList<FieldSpec> fields, string name, int before)
            {
                for (int i = 0; i < before; i++)
                {
                    if (fields[i].Name == name)
                    {
                        return i;
                    }
                }

                return -1;
            }

            internal static string Pascal(string name)
                => name.Length == 0 ? name : char.ToUpperInvariant(name[0]) + name.Substring(1);
        }
    }
}

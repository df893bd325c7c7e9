using System;
using System.Collections.Generic;
using System.Collections.Immutable;
using System.Linq;
using System.Threading;
using PgSpec.Generators.Model;

namespace PgSpec.Generators
{
    public sealed partial class PgSpecGenerator
    {
        /// <summary>Checks what only all files together can tell, and resolves enum references.</summary>
        internal static class Resolver
        {
            public static ProtocolSpec Resolve(ImmutableArray<SpecFile> files, string ns, CancellationToken cancellationToken)
            {
                var diagnostics = ImmutableArray.CreateBuilder<DiagnosticInfo>();
                var enums = new Dictionary<string, EnumSpec>(StringComparer.Ordinal);
                var messages = new List<MessageSpec>();

                // Files in path order, so the output never depends on the order they came in.
                foreach (SpecFile file in files.OrderBy(f => f.Path, StringComparer.Ordinal))
                {
                    diagnostics.AddRange(file.Diagnostics);
                    foreach (EnumSpec e in file.Enums)
                    {
                        if (enums.ContainsKey(e.Name))
                        {
                            diagnostics.Add(new DiagnosticInfo("PGSPEC004", $"Enum '{e.Name}' is defined twice", e.Path, e.Line, 1, 0));
                        }
                        else
                        {
                            enums.Add(e.Name, e);
                        }
                    }
                }

                // Each message has a file of its own, and the compiler compares file (hint) names ignoring case.
                var names = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
                foreach (SpecFile file in files.OrderBy(f => f.Path, StringComparer.Ordinal))
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    foreach (MessageSpec message in file.Messages)
                    {
                        if (names.TryGetValue(message.Name, out string? other) && other != message.Name)
                        {
                            diagnostics.Add(new DiagnosticInfo("PGSPEC004", $"'{message.Name}' differs from the message '{other}' in case only, and so would its generated file {message.Name}.g.cs; choose another name", message.Path, message.Line, 1, message.Name.Length));
                            continue;
                        }

                        if (other is not null || enums.ContainsKey(message.Name))
                        {
                            diagnostics.Add(new DiagnosticInfo("PGSPEC004", $"'{message.Name}' is defined twice", message.Path, message.Line, 1, message.Name.Length));
                            continue;
                        }

                        names.Add(message.Name, message.Name);

                        if (message.ByContext && ns != ProtocolNamespace)
                        {
                            diagnostics.Add(new DiagnosticInfo("PGSPEC008", $"'{message.Name}' is 'by-context': only the protocol's own 'p' messages can be, since only PgSpec.Protocol's decode context names them; a spec of your own (namespace {ns}) gives each message a type byte or a literal code of its own", message.Path, message.Line, 1, message.Name.Length));
                            continue;
                        }

                        MessageSpec? resolved = ResolveEnums(message, enums, diagnostics);
                        if (resolved is not null)
                        {
                            messages.Add(resolved);
                        }
                    }
                }

                CheckTypeBytes(messages, Direction.Frontend, diagnostics);
                CheckTypeBytes(messages, Direction.Backend, diagnostics);
                CheckUntyped(messages, diagnostics);
                CheckAnswers(messages, diagnostics);
                (List<FamilySpec> families, List<MessageSpec> familyMessages) = ResolveFamilies(files, messages, enums, ns, diagnostics);

                return new ProtocolSpec(
                    messages.OrderBy(m => m.Name, StringComparer.Ordinal).ToEquatableArray(),
                    enums.Values.OrderBy(e => e.Name, StringComparer.Ordinal).ToEquatableArray(),
                    ns,
                    diagnostics.ToEquatableArray())
                {
                    Families = families.OrderBy(f => f.Name, StringComparer.Ordinal).ToEquatableArray(),
                    FamilyMessages = familyMessages.OrderBy(m => m.Family, StringComparer.Ordinal).ThenBy(m => m.Name, StringComparer.Ordinal).ToEquatableArray(),
                };
            }

            /// <summary>
            /// Families: each declared once, carried in a Byten field of a message (of the protocol or of
            /// another family); their sub-messages and parts resolved against the enums and the family's parts.
            /// </summary>
            private static (List<FamilySpec>, List<MessageSpec>) ResolveFamilies(ImmutableArray<SpecFile> files, List<MessageSpec> messages, Dictionary<string, EnumSpec> enums, string ns, ImmutableArray<DiagnosticInfo>.Builder diagnostics)
            {
                var families = new Dictionary<string, FamilySpec>(StringComparer.Ordinal);
                var declared = new List<MessageSpec>();
                foreach (SpecFile file in files.OrderBy(f => f.Path, StringComparer.Ordinal))
                {
                    foreach (FamilySpec family in file.Families)
                    {
                        if (families.ContainsKey(family.Name) || enums.ContainsKey(family.Name) || messages.Any(m => m.Name == family.Name))
                        {
                            diagnostics.Add(new DiagnosticInfo("PGSPEC004", $"'{family.Name}' is defined twice (a family's name is the namespace of its messages)", family.Path, family.Line, 1, 0));
                            continue;
                        }

                        families.Add(family.Name, family);
                    }

                    declared.AddRange(file.FamilyMessages);
                }

                var result = new List<MessageSpec>();
                var names = new Dictionary<string, MessageSpec>(StringComparer.OrdinalIgnoreCase);
                foreach (MessageSpec message in declared)
                {
                    if (!families.TryGetValue(message.Family, out FamilySpec? family))
                    {
                        diagnostics.Add(new DiagnosticInfo("PGSPEC008", $"'{message.Name}' is 'of {message.Family}', but no spec declares 'family {message.Family} in MESSAGE.field'", message.Path, message.Line, 1, message.Name.Length));
                        continue;
                    }

                    if (names.ContainsKey(message.Family + "." + message.Name) || message.Name == family.Name || enums.ContainsKey(message.Name)
                        || message.Name == family.Name + "Messages" || message.Name == family.Name + "MessageKind" || message.Name == "I" + family.Name + "Message")
                    {
                        diagnostics.Add(new DiagnosticInfo("PGSPEC004", $"'{message.Name}' is defined twice in family '{message.Family}' (or names the family, an enum, or a type the family's dispatcher declares)", message.Path, message.Line, 1, message.Name.Length));
                        continue;
                    }

                    names.Add(message.Family + "." + message.Name, message);
                    if (message.IsPart)
                    {
                        continue;
                    }

                    if (!family.HasContext && (message.Since > 0 || message.StartsStream || message.EndsStream))
                    {
                        diagnostics.Add(new DiagnosticInfo("PGSPEC008", $"'{message.Name}' uses 'since', 'starts-stream' or 'ends-stream', but family '{family.Name}' has no versions ('versions MIN..MAX')", message.Path, message.Line, 1, message.Name.Length));
                    }
                    else if (message.Since > 0 && (message.Since < family.MinVersion || message.Since > family.MaxVersion))
                    {
                        diagnostics.Add(new DiagnosticInfo("PGSPEC008", $"'{message.Name}' is 'since {message.Since}', outside the versions {family.MinVersion}..{family.MaxVersion} of family '{family.Name}'", message.Path, message.Line, 1, message.Name.Length));
                    }
                }

                foreach (MessageSpec message in declared.Where(m => names.TryGetValue(m.Family + "." + m.Name, out MessageSpec? kept) && ReferenceEquals(kept, m)))
                {
                    FamilySpec family = families[message.Family];
                    bool ok = true;
                    EquatableArray<FieldSpec> fields = ResolveFamilyFields(message, family, message.Fields, enums, names, diagnostics, ref ok);
                    if (ok)
                    {
                        result.Add(message with { Fields = fields });
                    }
                }

                foreach (FamilySpec family in families.Values)
                {
                    MessageSpec? carrier = messages.FirstOrDefault(m => m.Name == family.Carrier) ?? result.FirstOrDefault(m => !m.IsPart && m.Name == family.Carrier);
                    FieldSpec? field = carrier?.Fields.FirstOrDefault(f => f.Name == family.CarrierField);

                    // A project of its own may carry a family in the protocol's CopyData, which its specs do not declare.
                    bool protocolCopyData = carrier is null && ns != ProtocolNamespace && family.Carrier == "CopyData" && family.CarrierField == "data";
                    if (!protocolCopyData && (carrier is null || field is null || (field.Kind != FieldKind.RestBytes && field.Kind != FieldKind.SizedBytes)))
                    {
                        diagnostics.Add(new DiagnosticInfo("PGSPEC003", $"Family '{family.Name}' is carried in '{family.Carrier}.{family.CarrierField}', which is no Byten field of a message", family.Path, family.Line, 1, 0));
                    }
                }

                foreach (IGrouping<(string, Direction), MessageSpec> group in result.Where(m => !m.IsPart)
                    .SelectMany(m => (m.Direction == Direction.Both ? new[] { Direction.Frontend, Direction.Backend } : new[] { m.Direction }).Select(d => (Key: (m.Family, d), Message: m)))
                    .GroupBy(p => p.Key, p => p.Message))
                {
                    foreach (IGrouping<int, MessageSpec> same in group.GroupBy(m => m.TypeByte).Where(g => g.Count() > 1))
                    {
                        MessageSpec second = same.Skip(1).First();
                        diagnostics.Add(new DiagnosticInfo("PGSPEC005", $"'{second.Name}' has the type byte '{(char)same.Key}' of '{same.First().Name}' in family '{second.Family}' and the same direction: sub-messages are told apart by their type byte alone", second.Path, second.Line, 1, second.Name.Length));
                    }
                }

                return (families.Values.ToList(), result);
            }

            private static EquatableArray<FieldSpec> ResolveFamilyFields(MessageSpec message, FamilySpec family, EquatableArray<FieldSpec> fields, Dictionary<string, EnumSpec> enums, Dictionary<string, MessageSpec> parts, ImmutableArray<DiagnosticInfo>.Builder diagnostics, ref bool ok)
            {
                var result = new List<FieldSpec>(fields.Count);
                foreach (FieldSpec field in fields)
                {
                    FieldSpec f = field;
                    if (f.Kind == FieldKind.Enum && f.EnumName is not null && parts.TryGetValue(family.Name + "." + f.EnumName, out MessageSpec? part) && part.IsPart)
                    {
                        if (part.Name == message.Name)
                        {
                            diagnostics.Add(new DiagnosticInfo("PGSPEC003", $"Part '{part.Name}' cannot contain itself", message.Path, f.Line, 1, 0));
                            ok = false;
                            continue;
                        }

                        f = f with { Kind = FieldKind.Part, PartName = part.Name, EnumName = null };
                    }
                    else if (f.Kind == FieldKind.Enum)
                    {
                        if (f.EnumName is null || !enums.TryGetValue(f.EnumName, out EnumSpec? e))
                        {
                            diagnostics.Add(new DiagnosticInfo("PGSPEC002", $"'{f.EnumName}' is neither a field type, nor an enum, nor a part of family '{family.Name}'", message.Path, f.Line, 1, 0));
                            ok = false;
                            continue;
                        }

                        if (e.Type == WireType.String)
                        {
                            diagnostics.Add(new DiagnosticInfo("PGSPEC009", $"Enum '{e.Name}' lists String values: it names values a field may carry, it is not a field type (use String)", message.Path, f.Line, 1, 0));
                            ok = false;
                            continue;
                        }

                        f = f with { EnumType = e.Type, Type = e.Type, EnumValues = e.Members.Select(x => x.Value).ToEquatableArray(), EnumNames = e.Members.Select(x => x.Name).ToEquatableArray() };
                    }

                    if (f.Kind == FieldKind.Array && f.GroupName is not null)
                    {
                        f = f with { Children = ResolveFamilyFields(message, family, f.Children, enums, parts, diagnostics, ref ok) };
                    }

                    if (f.Kind == FieldKind.Array && f.ElementKind == FieldKind.Scalar && f.Type != WireType.Int16 && f.Type != WireType.Int32)
                    {
                        diagnostics.Add(new DiagnosticInfo("PGSPEC002", $"Arrays of {f.Type} are not supported (Int16 and Int32 are)", message.Path, f.Line, 1, 0));
                        ok = false;
                        continue;
                    }

                    if ((f.ConditionFlag.Length > 0 || f.Since > 0) && !family.HasContext)
                    {
                        diagnostics.Add(new DiagnosticInfo("PGSPEC010", $"'{f.Name}' depends on the context ('if streaming', 'if parallel', 'since N'), but family '{family.Name}' has no versions ('versions MIN..MAX')", message.Path, f.Line, 1, 0));
                        ok = false;
                        continue;
                    }

                    if (f.Since > 0 && (f.Since < family.MinVersion || f.Since > family.MaxVersion))
                    {
                        diagnostics.Add(new DiagnosticInfo("PGSPEC010", $"'{f.Name}' is 'since {f.Since}', outside the versions {family.MinVersion}..{family.MaxVersion} of family '{family.Name}'", message.Path, f.Line, 1, 0));
                        ok = false;
                        continue;
                    }

                    if (f.ConditionValues.Count > 0)
                    {
                        FieldSpec? tag = result.FirstOrDefault(r => r.Name == f.ConditionField);
                        var bytes = new List<long>();
                        foreach (string value in f.ConditionValues)
                        {
                            int index = tag is null ? -1 : tag.EnumNames.Items.IndexOf(value);
                            if (index < 0)
                            {
                                diagnostics.Add(new DiagnosticInfo("PGSPEC009", $"'{value}' is no member of the enum of '{f.ConditionField}'", message.Path, f.Line, 1, 0));
                                ok = false;
                                break;
                            }

                            bytes.Add(tag!.EnumValues[index]);
                        }

                        f = f with { ConditionBytes = bytes.ToEquatableArray() };
                    }

                    result.Add(f);
                }

                return result.ToEquatableArray();
            }

            public static ImmutableArray<ResolvedMessage> PerMessage(ProtocolSpec spec)
            {
                if (spec.Diagnostics.Count > 0)
                {
                    return ImmutableArray<ResolvedMessage>.Empty;
                }

                var result = ImmutableArray.CreateBuilder<ResolvedMessage>();
                foreach (MessageSpec message in spec.Messages)
                {
                    var used = new HashSet<string>(StringComparer.Ordinal);
                    CollectEnums(message.Fields, used);
                    EquatableArray<EnumSpec> enums = spec.Enums.Where(e => used.Contains(e.Name)).ToEquatableArray();
                    string? family = null;
                    if (message.TypeByte >= 0 && spec.Messages.Count(m => m.TypeByte == message.TypeByte && Overlaps(m.Direction, message.Direction)) > 1)
                    {
                        family = message.ByContext ? "context" : "code";
                    }

                    result.Add(new ResolvedMessage(message, enums, spec.Namespace, family));
                }

                return result.ToImmutable();
            }

            private static void CollectEnums(EquatableArray<FieldSpec> fields, HashSet<string> used)
            {
                foreach (FieldSpec field in fields)
                {
                    if (field.EnumName is not null)
                    {
                        used.Add(field.EnumName);
                    }

                    CollectEnums(field.Children, used);
                }
            }

            internal static bool Overlaps(Direction a, Direction b)
                => a == Direction.Both || b == Direction.Both || a == b;

            private static MessageSpec? ResolveEnums(MessageSpec message, Dictionary<string, EnumSpec> enums, ImmutableArray<DiagnosticInfo>.Builder diagnostics)
            {
                bool ok = true;
                EquatableArray<FieldSpec> fields = ResolveFields(message, message.Fields, enums, diagnostics, ref ok);
                return ok ? message with { Fields = fields } : null;
            }

            private static EquatableArray<FieldSpec> ResolveFields(MessageSpec message, EquatableArray<FieldSpec> fields, Dictionary<string, EnumSpec> enums, ImmutableArray<DiagnosticInfo>.Builder diagnostics, ref bool ok)
            {
                var result = ImmutableArray.CreateBuilder<FieldSpec>(fields.Count);
                foreach (FieldSpec field in fields)
                {
                    FieldSpec f = field;
                    if (f.Kind == FieldKind.Enum)
                    {
                        if (f.EnumName is null || !enums.TryGetValue(f.EnumName, out EnumSpec? e))
                        {
                            diagnostics.Add(new DiagnosticInfo("PGSPEC002", $"'{f.EnumName}' is neither a field type nor an enum defined in any spec file", message.Path, f.Line, 1, 0));
                            ok = false;
                            continue;
                        }

                        if (e.Type == WireType.String)
                        {
                            diagnostics.Add(new DiagnosticInfo("PGSPEC009", $"Enum '{e.Name}' lists String values: it names values a field may carry, it is not a field type (use String)", message.Path, f.Line, 1, 0));
                            ok = false;
                            continue;
                        }

                        f = f with { EnumType = e.Type, Type = e.Type, EnumValues = e.Members.Select(x => x.Value).ToEquatableArray(), EnumNames = e.Members.Select(x => x.Name).ToEquatableArray() };
                    }

                    if (f.Kind == FieldKind.Array && f.GroupName is not null)
                    {
                        if (enums.ContainsKey(f.GroupName))
                        {
                            diagnostics.Add(new DiagnosticInfo("PGSPEC002", $"Arrays of enum '{f.GroupName}' are not supported; use a group", message.Path, f.Line, 1, 0));
                            ok = false;
                            continue;
                        }

                        f = f with { Children = ResolveFields(message, f.Children, enums, diagnostics, ref ok) };
                    }

                    if (f.Kind == FieldKind.Array && f.ElementKind == FieldKind.Scalar && f.Type != WireType.Int16 && f.Type != WireType.Int32)
                    {
                        diagnostics.Add(new DiagnosticInfo("PGSPEC002", $"Arrays of {f.Type} are not supported (Int16 and Int32 are)", message.Path, f.Line, 1, 0));
                        ok = false;
                        continue;
                    }

                    result.Add(f);
                }

                return result.ToEquatableArray();
            }

            /// <summary>Messages sharing a type byte in one direction need a sub-code or the decode context.</summary>
            /// <summary>'answered-by': a backend message names the frontend message, told apart by context, that answers it.</summary>
            private static void CheckAnswers(List<MessageSpec> messages, ImmutableArray<DiagnosticInfo>.Builder diagnostics)
            {
                foreach (MessageSpec message in messages.Where(m => m.AnsweredBy.Length > 0))
                {
                    MessageSpec? answer = messages.FirstOrDefault(m => m.Name == message.AnsweredBy);
                    if (message.Direction != Direction.Backend)
                    {
                        diagnostics.Add(new DiagnosticInfo("PGSPEC008", $"'{message.Name}' is not a backend message: only a backend message is 'answered-by' one of the frontend's", message.Path, message.Line, 1, message.Name.Length));
                    }
                    else if (answer is null || answer.Direction != Direction.Frontend || !answer.ByContext)
                    {
                        diagnostics.Add(new DiagnosticInfo("PGSPEC008", $"'{message.Name}' is 'answered-by {message.AnsweredBy}', which is no frontend message marked 'by-context' (the context names such a message by what it answers)", message.Path, message.Line, 1, message.Name.Length));
                    }
                }
            }

            private static void CheckTypeBytes(List<MessageSpec> messages, Direction direction, ImmutableArray<DiagnosticInfo>.Builder diagnostics)
            {
                foreach (IGrouping<int, MessageSpec> group in messages
                    .Where(m => m.TypeByte >= 0 && Overlaps(m.Direction, direction) && m.Direction != (direction == Direction.Frontend ? Direction.Backend : Direction.Frontend))
                    .GroupBy(m => m.TypeByte))
                {
                    if (group.Count() < 2)
                    {
                        continue;
                    }

                    var members = group.ToList();
                    bool allContext = members.All(m => m.ByContext);
                    bool allCoded = members.All(m => m.Fields.Count > 2 && m.Fields[2].Kind == FieldKind.Literal && m.Fields[2].Type == WireType.Int32);
                    string dir = direction == Direction.Frontend ? "frontend" : "backend";
                    if (!allContext && !allCoded)
                    {
                        MessageSpec second = members[1];
                        diagnostics.Add(new DiagnosticInfo(
                            "PGSPEC005",
                            $"'{second.Name}' shares the {dir} type byte '{(char)group.Key}' with '{members[0].Name}', but they are told apart neither by a literal Int32 code after the length nor by 'by-context' on all of them",
                            second.Path, second.Line, 1, second.Name.Length));
                        continue;
                    }

                    if (allCoded)
                    {
                        var codes = new HashSet<long>();
                        foreach (MessageSpec m in members)
                        {
                            if (!codes.Add(m.Fields[2].Literal!.Value))
                            {
                                diagnostics.Add(new DiagnosticInfo("PGSPEC005", $"'{m.Name}' has the same type byte '{(char)group.Key}' and code {m.Fields[2].Literal} as another {dir} message", m.Path, m.Line, 1, m.Name.Length));
                            }
                        }
                    }

                    if (members.Select(m => m.MaxLength).Distinct().Count() > 1)
                    {
                        MessageSpec m = members[1];
                        diagnostics.Add(new DiagnosticInfo("PGSPEC005", $"Messages sharing the {dir} type byte '{(char)group.Key}' must share one 'max' (the limit is checked before the body is read)", m.Path, m.Line, 1, m.Name.Length));
                    }
                }
            }

            /// <summary>Untyped packets are told apart by the code after the length: literal codes unique, one range at most.</summary>
            private static void CheckUntyped(List<MessageSpec> messages, ImmutableArray<DiagnosticInfo>.Builder diagnostics)
            {
                var codes = new Dictionary<long, string>();
                MessageSpec? ranged = null;
                foreach (MessageSpec m in messages.Where(m => m.TypeByte < 0))
                {
                    FieldSpec code = m.Fields[1];
                    if (code.Kind == FieldKind.Literal)
                    {
                        if (codes.ContainsKey(code.Literal!.Value))
                        {
                            diagnostics.Add(new DiagnosticInfo("PGSPEC005", $"Untyped packet '{m.Name}' has the code {code.Literal} of '{codes[code.Literal.Value]}'", m.Path, m.Line, 1, m.Name.Length));
                        }
                        else
                        {
                            codes.Add(code.Literal.Value, m.Name);
                        }
                    }
                    else if (ranged is not null)
                    {
                        diagnostics.Add(new DiagnosticInfo("PGSPEC005", $"Untyped packets '{ranged.Name}' and '{m.Name}' are both told apart by a range; only one may be", m.Path, m.Line, 1, m.Name.Length));
                    }
                    else
                    {
                        ranged = m;
                    }
                }

                if (ranged is not null)
                {
                    FieldSpec range = ranged.Fields[1];
                    foreach (KeyValuePair<long, string> pair in codes)
                    {
                        if (pair.Key >= range.RangeMin && pair.Key <= range.RangeMax)
                        {
                            diagnostics.Add(new DiagnosticInfo("PGSPEC005", $"The range of '{ranged.Name}' contains the code of '{pair.Value}'", ranged.Path, range.Line, 1, 0));
                        }
                    }
                }
            }
        }
    }
}

using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using PgSpec.Generators.Model;

namespace PgSpec.Generators
{
    public sealed partial class PgSpecGenerator
    {
        internal static partial class Emitter
        {
            /// <summary>What needs every message at once: enums, message kinds, dispatchers, limits, the fuzzing dictionary.</summary>
            public static IEnumerable<(string Name, string Source)> EmitProtocol(ProtocolSpec spec)
            {
                yield return ("Enums.g.cs", EmitEnums(spec));
                yield return ("FrontendMessages.g.cs", EmitDirection(spec, Direction.Frontend));
                yield return ("BackendMessages.g.cs", EmitDirection(spec, Direction.Backend));
                yield return ("ProtocolDictionary.g.cs", EmitDictionary(spec));
                yield return ("PgProtocolSpec.g.cs", EmitDescriptors(spec));
                if (spec.Namespace != ProtocolNamespace)
                {
                    yield return ("MessageInterfaces.g.cs", EmitInterfaces(spec));
                }
            }

            /// <summary>
            /// A message set of the user's own gets interfaces of its own (PgSpec.Protocol's name the
            /// protocol's kinds): each message is an IPgMessage, and names its kind in this set.
            /// </summary>
            private static string EmitInterfaces(ProtocolSpec spec)
            {
                var w = new IndentedWriter();
                w.Line(Header.TrimEnd('\n'));
                w.Line();
                w.Open("namespace " + spec.Namespace);
                foreach (string prefix in new[] { "Frontend", "Backend" })
                {
                    w.Line("/// <summary>A message of this set that the " + prefix.ToLowerInvariant() + " sends.</summary>");
                    w.Open("public interface I" + prefix + "Message : " + Rt + ".IPgMessage");
                    w.Line("/// <summary>Which " + prefix.ToLowerInvariant() + " message of this set it is.</summary>");
                    w.Line("global::" + spec.Namespace + "." + prefix + "MessageKind " + prefix + "Kind { get; }");
                    w.Close();
                    w.Line();
                }

                w.Close();
                return w.ToString();
            }

            private static string EmitEnums(ProtocolSpec spec)
            {
                var w = new IndentedWriter();
                w.Line(Header.TrimEnd('\n'));
                w.Line();
                w.Open("namespace " + spec.Namespace);
                foreach (EnumSpec e in spec.Enums)
                {
                    if (e.Type == WireType.String)
                    {
                        EmitStringEnum(w, e);
                        continue;
                    }

                    w.Line("/// <summary>" + e.Name + ": a " + e.Type + " with the values of " + FileName(e.Path) + " line " + Int(e.Line) + ".</summary>");
                    w.Open("public enum " + e.Name + " : " + (e.Type == WireType.Int8 ? "sbyte" : "byte"));
                    foreach (EnumMemberSpec member in e.Members)
                    {
                        string value = member.IsChar && e.Type != WireType.Int8 ? ByteLit(member.Value) : Int(member.Value);
                        w.Line("/// <summary>" + (member.IsChar ? "'" + (char)member.Value + "'" : Int(member.Value)) + ".</summary>");
                        w.Line(member.Name + " = " + value + ",");
                    }

                    w.Close();
                    w.Line();
                }

                w.Close();
                return w.ToString();
            }

            /// <summary>A String enum: the values a String field may carry, as constants and a list (they decode as any string).</summary>
            private static void EmitStringEnum(IndentedWriter w, EnumSpec e)
            {
                w.Line("/// <summary>" + e.Name + ": the String values of " + FileName(e.Path) + " line " + Int(e.Line) + ".</summary>");
                w.Open("public static partial class " + e.Name);
                foreach (EnumMemberSpec member in e.Members)
                {
                    w.Line("/// <summary>\"" + member.Text + "\".</summary>");
                    w.Line("public const string " + member.Name + " = " + Lit(member.Text!) + ";");
                    w.Line();
                }

                w.Line("/// <summary>Every value, in spec order.</summary>");
                w.Line("public static global::System.Collections.Generic.IReadOnlyList<string> All { get; } = new string[] { " + string.Join(", ", e.Members.Select(m => m.Name)) + " };");
                w.Close();
                w.Line();
            }

            /// <summary>A static predicate over the kinds: true for <paramref name="members"/>, false for the rest.</summary>
            private static void EmitKindPredicate(IndentedWriter w, string kindType, string name, IEnumerable<MessageSpec> members, string summary)
            {
                w.Line("/// <summary>" + summary + "</summary>");
                w.Open("public static bool " + name + "(" + kindType + " kind)");
                w.Open("switch (kind)");
                bool any = false;
                foreach (MessageSpec m in members)
                {
                    w.Line("case " + kindType + "." + m.Name + ":");
                    any = true;
                }

                if (any)
                {
                    w.Line("    return true;");
                }

                w.Line("default: return false;");
                w.Close();
                w.Close();
                w.Line();
            }

            private const string Phase = Rt + ".PgSessionPhase";

            /// <summary>
            /// The flow of one direction's messages, as tables: the phases each may be sent in ('in',
            /// 'ignored-in'), the phase after it ('enters'), and for the frontend the extended query
            /// protocol's rules ('extended', 'ends-error-skip').
            /// </summary>
            private static void EmitFlow(IndentedWriter w, string kindType, Direction direction, List<MessageSpec> messages)
            {
                string side = direction == Direction.Frontend ? "frontend" : "backend";
                string receiver = direction == Direction.Frontend ? "backend" : "frontend";
                Func<MessageSpec, FlowSpec> flowOf = direction == Direction.Frontend ? (Func<MessageSpec, FlowSpec>)(m => m.FrontendFlow) : m => m.BackendFlow;

                EmitPhasePredicate(
                    w,
                    "public static bool IsAllowedIn(" + kindType + " kind, " + Phase + " phase)",
                    messages.Select(m => (Case: kindType + "." + m.Name, Phases: flowOf(m).In.Concat(flowOf(m).IgnoredIn))),
                    "Whether the " + side + " may send a message of this kind while the connection is in <paramref name=\"phase\"/> (the spec's 'in' and 'ignored-in'): the " + receiver + " acts on it there, or drops it (<see cref=\"IsIgnoredIn\"/>). Any other message there is a protocol violation.");

                EmitPhasePredicate(
                    w,
                    "public static bool IsIgnoredIn(" + kindType + " kind, " + Phase + " phase)",
                    messages.Select(m => (Case: kindType + "." + m.Name, Phases: (IEnumerable<string>)flowOf(m).IgnoredIn)),
                    "Whether the " + receiver + " drops a message of this kind in <paramref name=\"phase\"/> without acting on it (the spec's 'ignored-in')" + (direction == Direction.Frontend ? ", as PostgreSQL drops Flush and Sync during COPY FROM STDIN and the copy messages that follow a failed COPY." : "."));

                EmitPhasePredicate(
                    w,
                    "public static bool IsTypeByteAllowedIn(byte typeByte, " + Phase + " phase)",
                    messages.Where(m => m.TypeByte >= 0).GroupBy(m => m.TypeByte).OrderBy(g => g.Key)
                        .Select(g => (Case: ByteLit(g.Key), Phases: g.SelectMany(m => flowOf(m).In.Concat(flowOf(m).IgnoredIn)))),
                    "Whether a typed message with this type byte may be sent by the " + side + " in <paramref name=\"phase\"/>, judged from the type byte alone, before the body is read (as PostgreSQL judges it): true when some message of that byte may be (<see cref=\"IsAllowedIn\"/>).");

                // The phase changes.
                w.Line("/// <summary>The phase after the " + side + " sends a message of this kind in <paramref name=\"current\"/> (the spec's 'enters'): <paramref name=\"current\"/> itself when the message changes nothing there.</summary>");
                w.Open("public static " + Phase + " NextPhase(" + kindType + " kind, " + Phase + " current)");
                w.Open("switch (kind)");
                foreach (var group in messages
                    .Where(m => flowOf(m).Transitions.Count > 0)
                    .GroupBy(m => string.Join(";", flowOf(m).Transitions.OrderBy(t => PhaseIndex(t.From)).Select(t => t.From + ">" + t.To)), StringComparer.Ordinal))
                {
                    foreach (MessageSpec m in group)
                    {
                        w.Line("case " + kindType + "." + m.Name + ":");
                    }

                    w.Indent();
                    EquatableArray<PhaseTransition> transitions = flowOf(group.First()).Transitions;
                    if (transitions.Count == 1 && transitions[0].From.Length == 0)
                    {
                        w.Line("return " + Phase + "." + transitions[0].To + ";");
                    }
                    else
                    {
                        w.Open("switch (current)");
                        foreach (PhaseTransition t in transitions.OrderBy(t => PhaseIndex(t.From)))
                        {
                            w.Line("case " + Phase + "." + t.From + ": return " + Phase + "." + t.To + ";");
                        }

                        w.Line("default: return current;");
                        w.Close();
                    }

                    w.Outdent();
                }

                w.Line("default: return current;");
                w.Close();
                w.Close();
                w.Line();

                if (direction == Direction.Frontend)
                {
                    EmitKindPredicate(w, kindType, "IsExtendedQuery", messages.Where(m => m.FrontendFlow.Extended), "Whether messages of this kind belong to the extended query protocol (the spec's 'extended'). When the server fails on one of them, it sends ErrorResponse and then discards every message until one that <see cref=\"EndsErrorSkip\"/> (Sync), unless the failing message was itself one of those.");
                    EmitKindPredicate(w, kindType, "EndsErrorSkip", messages.Where(m => m.FrontendFlow.EndsErrorSkip), "Whether a message of this kind ends the skip that follows an error in the extended query protocol (the spec's 'ends-error-skip'): the server, which discards every other message after such an error, acts on it again (Sync, which it answers with ReadyForQuery; and Terminate, as PostgreSQL does).");
                }
            }

            /// <summary>
            /// A static predicate over cases (kinds or type bytes) and a phase: true when the phase is
            /// one of the case's; cases with the same phases share one return.
            /// </summary>
            private static void EmitPhasePredicate(IndentedWriter w, string signature, IEnumerable<(string Case, IEnumerable<string> Phases)> cases, string summary)
            {
                string parameter = signature.Substring(signature.IndexOf('(') + 1).Split(' ')[0] == "byte" ? "typeByte" : "kind";
                w.Line("/// <summary>" + summary + "</summary>");
                w.Open(signature);
                w.Open("switch (" + parameter + ")");
                var groups = cases
                    .Select(c => (c.Case, Phases: c.Phases.Distinct().OrderBy(PhaseIndex).ToList()))
                    .Where(c => c.Phases.Count > 0)
                    .GroupBy(c => string.Join(",", c.Phases), StringComparer.Ordinal);
                foreach (var group in groups)
                {
                    foreach (var c in group)
                    {
                        w.Line("case " + c.Case + ":");
                    }

                    w.Line("    return phase is " + string.Join(" or ", group.First().Phases.Select(p => Phase + "." + p)) + ";");
                }

                w.Line("default: return false;");
                w.Close();
                w.Close();
                w.Line();
            }

            /// <summary>The order of the phases in PgSessionPhase (any phase, the empty name, first).</summary>
            private static int PhaseIndex(string phase) => Array.IndexOf(Parser.Phases, phase);

            private static string EmitDirection(ProtocolSpec spec, Direction direction)
            {
                string prefix = direction == Direction.Frontend ? "Frontend" : "Backend";
                string kindType = prefix + "MessageKind";
                string iface = "I" + prefix + "Message";
                List<MessageSpec> messages = spec.Messages.Where(m => m.Direction == direction || m.Direction == Direction.Both).ToList();
                List<MessageSpec> typed = messages.Where(m => m.TypeByte >= 0).ToList();
                List<MessageSpec> untyped = messages.Where(m => m.TypeByte < 0).ToList();
                char dirChar = direction == Direction.Frontend ? 'F' : 'B';

                var w = new IndentedWriter();
                w.Line(Header.TrimEnd('\n'));
                w.Line();
                w.Open("namespace " + spec.Namespace);

                w.Line("/// <summary>Every message the " + prefix.ToLowerInvariant() + " sends, as the spec names them.</summary>");
                w.Open("public enum " + kindType);
                w.Line("/// <summary>A type byte, sub-code or packet code no spec defines, or a 'by-context' message the context cannot name.</summary>");
                w.Line("Unknown = 0,");
                int value = 1;
                foreach (MessageSpec m in messages)
                {
                    w.Line("/// <summary>" + Describe(m) + ".</summary>");
                    w.Line(m.Name + " = " + Int(value++) + ",");
                }

                w.Close();
                w.Line();

                w.Line("/// <summary>Classifies, decodes, validates and traces " + prefix.ToLowerInvariant() + " messages by kind.</summary>");
                w.Open("public static partial class " + prefix + "Messages");

                // Limits.
                w.Line("/// <summary>The largest length word accepted by default for a typed message of this type byte; for type bytes no spec defines, <see cref=\"DefaultUnknownMaxLength\"/>.</summary>");
                w.Open("public static int DefaultMaxLength(byte typeByte)");
                w.Open("switch (typeByte)");
                foreach (IGrouping<int, MessageSpec> g in typed.GroupBy(m => m.TypeByte).OrderBy(g => g.Key))
                {
                    w.Line("case " + ByteLit(g.Key) + ": return " + Int(g.Max(m => m.MaxLength)) + ";");
                }

                w.Line("default: return DefaultUnknownMaxLength;");
                w.Close();
                w.Close();
                w.Line();
                w.Line("/// <summary>The largest length word accepted by default for a type byte no spec defines" + (direction == Direction.Backend ? " (libpq's limit for messages that are not expected to be long)" : " (PostgreSQL's limit for small messages)") + ".</summary>");
                w.Line("public const int DefaultUnknownMaxLength = " + (direction == Direction.Backend ? "30000" : "10004") + ";");
                w.Line();
                w.Line("/// <summary>The largest length word accepted by default for an untyped startup-phase packet.</summary>");
                w.Line("public const int DefaultMaxStartupPacketLength = " + Int(untyped.Count == 0 ? 10000 : untyped.Max(m => m.MaxLength)) + ";");
                w.Line();

                // Type bytes.
                w.Line("/// <summary>Whether any spec defines this type byte in this direction.</summary>");
                w.Open("public static bool IsDefinedTypeByte(byte typeByte)");
                w.Open("switch (typeByte)");
                int[] typeBytes = typed.Select(m => m.TypeByte).Distinct().OrderBy(x => x).ToArray();
                foreach (int b in typeBytes)
                {
                    w.Line("case " + ByteLit(b) + ":");
                }

                if (typeBytes.Length > 0)
                {
                    w.Line("    return true;");
                }

                w.Line("default:");
                w.Line("    return false;");
                w.Close();
                w.Close();
                w.Line();

                // Classify typed.
                w.Line("/// <summary>Names the message a typed body is, from its type byte, its Int32 sub-code or the decode context.</summary>");
                w.Open("public static " + kindType + " Classify(byte typeByte, " + Span + " body, " + Rt + ".DecodeContext? context)");
                w.Open("switch (typeByte)");
                foreach (IGrouping<int, MessageSpec> g in typed.GroupBy(m => m.TypeByte).OrderBy(g => g.Key))
                {
                    List<MessageSpec> members = g.ToList();
                    if (members.Count == 1)
                    {
                        w.Line("case " + ByteLit(g.Key) + ": return " + kindType + "." + members[0].Name + ";");
                    }
                    else if (members.All(m => m.ByContext))
                    {
                        w.Line("case " + ByteLit(g.Key) + ": return context?.Resolve" + prefix + "ByContext(typeByte) ?? " + kindType + ".Unknown;");
                    }
                    else
                    {
                        w.Line("case " + ByteLit(g.Key) + ":");
                        w.Indent();
                        w.Open("if (body.Length < 4)");
                        w.Line("return " + kindType + ".Unknown;");
                        w.Close();
                        w.Open("switch (global::System.Buffers.Binary.BinaryPrimitives.ReadInt32BigEndian(body))");
                        foreach (MessageSpec m in members.OrderBy(m => m.Fields[2].Literal))
                        {
                            w.Line("case " + Int(m.Fields[2].Literal!.Value) + ": return " + kindType + "." + m.Name + ";");
                        }

                        w.Line("default: return " + kindType + ".Unknown;");
                        w.Close();
                        w.Outdent();
                    }
                }

                w.Line("default: return " + kindType + ".Unknown;");
                w.Close();
                w.Close();
                w.Line();

                // Classify untyped.
                w.Line("/// <summary>Names an untyped startup-phase packet from the code after its length word (<paramref name=\"body\"/> starts at that code).</summary>");
                w.Open("public static " + kindType + " ClassifyStartup(" + Span + " body)");
                w.Open("if (body.Length < 4)");
                w.Line("return " + kindType + ".Unknown;");
                w.Close();
                w.Line("int code = global::System.Buffers.Binary.BinaryPrimitives.ReadInt32BigEndian(body);");
                w.Line("_ = code;");
                foreach (MessageSpec m in untyped.Where(m => m.Fields[1].Kind == FieldKind.Literal))
                {
                    w.Open("if (code == " + Int(m.Fields[1].Literal!.Value) + ")");
                    w.Line("return " + kindType + "." + m.Name + ";");
                    w.Close();
                }

                foreach (MessageSpec m in untyped.Where(m => m.Fields[1].Kind != FieldKind.Literal))
                {
                    w.Open("if (code >= " + Int(m.Fields[1].RangeMin) + " && code <= " + Int(m.Fields[1].RangeMax) + ")");
                    w.Line("return " + kindType + "." + m.Name + ";");
                    w.Close();
                }

                w.Line("return " + kindType + ".Unknown;");
                w.Close();
                w.Line();

                // Names, type bytes, startup.
                w.Line("/// <summary>The documented name of a message kind.</summary>");
                w.Open("public static string NameOf(" + kindType + " kind)");
                w.Open("switch (kind)");
                foreach (MessageSpec m in messages)
                {
                    w.Line("case " + kindType + "." + m.Name + ": return " + Lit(m.Name) + ";");
                }

                w.Line("default: return \"Unknown\";");
                w.Close();
                w.Close();
                w.Line();
                w.Line("/// <summary>The type byte of a message kind, or -1 for untyped packets and Unknown.</summary>");
                w.Open("public static int TypeByteOf(" + kindType + " kind)");
                w.Open("switch (kind)");
                foreach (MessageSpec m in typed)
                {
                    w.Line("case " + kindType + "." + m.Name + ": return " + ByteLit(m.TypeByte) + ";");
                }

                w.Line("default: return -1;");
                w.Close();
                w.Close();
                w.Line();
                if (direction == Direction.Backend)
                {
                    // The flow the bytes alone cannot say: which frontend message answers a request ('answered-by').
                    w.Line("/// <summary>The frontend message that answers a message of this kind (its spec's 'answered-by': the 'p' message an authentication request asks for), or the frontend's Unknown when none does.</summary>");
                    w.Open("public static FrontendMessageKind AnsweredBy(" + kindType + " kind)");
                    w.Open("switch (kind)");
                    foreach (MessageSpec m in messages.Where(m => m.AnsweredBy.Length > 0))
                    {
                        w.Line("case " + kindType + "." + m.Name + ": return FrontendMessageKind." + m.AnsweredBy + ";");
                    }

                    w.Line("default: return FrontendMessageKind.Unknown;");
                    w.Close();
                    w.Close();
                    w.Line();
                }
                else
                {
                    EmitKindPredicate(w, kindType, "IsByContext", messages.Where(m => m.ByContext), "Whether messages of this kind share their type byte and are told apart only by what the other side asked for (the spec's 'by-context': the 'p' family).");
                }

                EmitKindPredicate(w, kindType, "IsSecret", messages.Where(m => m.Secret), "Whether messages of this kind carry a password or authentication exchange data (the spec's 'secret'): traces hide them unless asked to show secrets.");

                EmitFlow(w, kindType, direction, messages);

                w.Line("/// <summary>Every message kind of this direction, in name order.</summary>");
                w.Line("public static global::System.Collections.Generic.IReadOnlyList<" + kindType + "> All { get; } = new " + kindType + "[] { " + string.Join(", ", messages.Select(m => kindType + "." + m.Name)) + " };");
                w.Line();

                // Decode.
                w.Line("/// <summary>Decodes a body as the given kind into an owned message; never throws.</summary>");
                w.Open("public static bool TryDecode(" + kindType + " kind, " + Span + " body, " + Rt + ".DecodeContext? context, [global::System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out global::" + spec.Namespace + "." + iface + "? message, out " + Rt + ".PgDecodeError error)");
                w.Open("switch (kind)");
                foreach (MessageSpec m in messages)
                {
                    w.Open("case " + kindType + "." + m.Name + ":");
                    w.Line("bool ok" + m.Name + " = " + m.Name + ".TryDecode(body, context, out " + m.Name + "? m" + m.Name + ", out error);");
                    w.Line("message = m" + m.Name + ";");
                    w.Line("return ok" + m.Name + ";");
                    w.Close();
                }

                w.Line("default:");
                w.Line("    message = null;");
                w.Line("    error = new " + Rt + ".PgDecodeError(\"Unknown\", null, 0, \"no spec defines this message\");");
                w.Line("    return false;");
                w.Close();
                w.Close();
                w.Line();

                w.Line("/// <summary>Checks a body as the given kind without building anything; never throws.</summary>");
                w.Open("public static bool TryValidate(" + kindType + " kind, " + Span + " body, " + Rt + ".DecodeContext? context, out " + Rt + ".PgDecodeError error)");
                w.Open("switch (kind)");
                foreach (MessageSpec m in messages)
                {
                    w.Line("case " + kindType + "." + m.Name + ": return " + m.Name + ".TryValidate(body, context, out error);");
                }

                w.Line("default:");
                w.Line("    error = new " + Rt + ".PgDecodeError(\"Unknown\", null, 0, \"no spec defines this message\");");
                w.Line("    return false;");
                w.Close();
                w.Close();
                w.Line();

                if (spec.Namespace == ProtocolNamespace)
                {
                    // The owned message of a body a reader has checked, from the places of its values.
                    w.Line("/// <summary>TryDecode of a body a reader has checked, with the places of its values the check recorded (<see cref=\"" + Rt + ".PgReceivedMessage.ValuePlaces\"/>).</summary>");
                    w.Open("internal static bool TryDecodeRecorded(" + kindType + " kind, " + Span + " body, global::System.ReadOnlySpan<long> valueSlots, " + Rt + ".DecodeContext? context, [global::System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out global::" + spec.Namespace + "." + iface + "? message, out " + Rt + ".PgDecodeError error)");
                    w.Open("switch (kind)");
                    foreach (MessageSpec m in messages)
                    {
                        if (SlotsField(m.Fields.Skip(m.TypeByte >= 0 ? 2 : 1).ToList()) is { } list && IsValueArray(list))
                        {
                            w.Open("case " + kindType + "." + m.Name + ":");
                            w.Line("bool ok" + m.Name + " = " + m.Name + ".TryDecodeRecorded(body, valueSlots, context, out " + m.Name + "? m" + m.Name + ", out error);");
                            w.Line("message = m" + m.Name + ";");
                            w.Line("return ok" + m.Name + ";");
                            w.Close();
                        }
                    }

                    w.Line("default:");
                    w.Line("    return TryDecode(kind, body, context, out message, out error);");
                    w.Close();
                    w.Close();
                    w.Line();

                    // PgMessageReader's check, which also records where a message's values are.
                    w.Line("/// <summary>");
                    w.Line("/// Checks a body as the given kind, as the public TryValidate does, and");
                    w.Line("/// records where the values of its value list are in <paramref name=\"valueSlots\"/> when they fit (<paramref name=\"slotsRecorded\"/>).");
                    w.Line("/// </summary>");
                    w.Open("internal static bool TryValidateRecording(" + kindType + " kind, " + Span + " body, " + Rt + ".DecodeContext? context, global::System.Span<long> valueSlots, int knownSlots, out int slotsRecorded, out " + Rt + ".PgDecodeError error)");
                    w.Open("switch (kind)");
                    foreach (MessageSpec m in messages)
                    {
                        if (SlotsField(m.Fields.Skip(m.TypeByte >= 0 ? 2 : 1).ToList()) is not null)
                        {
                            w.Line("case " + kindType + "." + m.Name + ": return " + m.Name + ".TryValidateRecording(body, context, valueSlots, knownSlots, out slotsRecorded, out error);");
                        }
                    }

                    w.Line("default:");
                    w.Line("    slotsRecorded = -1;");
                    w.Line("    return TryValidate(kind, body, context, out error);");
                    w.Close();
                    w.Close();
                    w.Line();
                }

                w.Line("/// <summary>Writes libpq's trace line of a body of the given kind; a malformed body throws <see cref=\"" + Rt + ".PgProtocolException\"/> and writes nothing.</summary>");
                w.Open("public static void Trace(" + kindType + " kind, " + Span + " body, " + Rt + ".PgTraceWriter trace, " + Rt + ".DecodeContext? context = null)");
                w.Open("switch (kind)");
                foreach (MessageSpec m in messages)
                {
                    w.Line("case " + kindType + "." + m.Name + ": " + m.Name + ".Trace(body, trace, '" + dirChar + "', context); return;");
                }

                w.Line("default: throw new global::System.ArgumentOutOfRangeException(nameof(kind));");
                w.Close();
                w.Close();
                w.Line();

                w.Line("/// <summary>Writes libpq's trace line of a body of the given kind already validated; nothing is checked again.</summary>");
                w.Open("internal static void TraceValidated(" + kindType + " kind, " + Span + " body, " + Rt + ".PgTraceWriter trace)");
                w.Open("switch (kind)");
                foreach (MessageSpec m in messages)
                {
                    w.Line("case " + kindType + "." + m.Name + ": " + m.Name + ".TraceValidated(body, trace, '" + dirChar + "'); return;");
                }

                w.Line("default: throw new global::System.ArgumentOutOfRangeException(nameof(kind));");
                w.Close();
                w.Close();
                w.Close();
                w.Close();
                return w.ToString();
            }

            /// <summary>
            /// The tokens a fuzzer should know: type bytes, sub-codes, packet codes, enum values and
            /// error field codes. A new spec file extends it.
            /// </summary>
            private static string EmitDictionary(ProtocolSpec spec)
            {
                var tokens = new SortedSet<string>(StringComparer.Ordinal);
                foreach (MessageSpec m in spec.Messages)
                {
                    if (m.TypeByte >= 0)
                    {
                        tokens.Add(Hex(new[] { (byte)m.TypeByte }));
                        if (m.Fields.Count > 2 && m.Fields[2].Kind == FieldKind.Literal)
                        {
                            tokens.Add(Hex(BigEndian((int)m.Fields[2].Literal!.Value)));
                        }
                    }
                    else if (m.Fields[1].Kind == FieldKind.Literal)
                    {
                        tokens.Add(Hex(BigEndian((int)m.Fields[1].Literal!.Value)));
                    }
                    else if (m.Fields[1].HasRange)
                    {
                        tokens.Add(Hex(BigEndian((int)m.Fields[1].RangeMin)));
                    }

                    if (m.Fields.Count > 1 && m.Fields[m.TypeByte >= 0 ? 1 : 0].Literal is long len)
                    {
                        tokens.Add(Hex(BigEndian((int)len)));
                    }
                }

                foreach (EnumSpec e in spec.Enums)
                {
                    foreach (EnumMemberSpec member in e.Members)
                    {
                        if (member.Text is not null)
                        {
                            // A String value, and the same with its terminator, as it crosses the wire.
                            byte[] text = System.Text.Encoding.UTF8.GetBytes(member.Text);
                            tokens.Add(Hex(text));
                            tokens.Add(Hex(text.Concat(new byte[] { 0 }).ToArray()));
                        }
                        else
                        {
                            tokens.Add(Hex(new[] { (byte)member.Value }));
                        }
                    }
                }

                var w = new IndentedWriter();
                w.Line(Header.TrimEnd('\n'));
                w.Line();
                w.Open("namespace " + spec.Namespace);
                w.Line("/// <summary>Byte strings a fuzzer should try, derived from the specs (AFL++ dictionary entries); for fuzzing tools, not for applications.</summary>");
                w.Line("[global::System.ComponentModel.EditorBrowsable(global::System.ComponentModel.EditorBrowsableState.Never)]");
                w.Open("public static partial class ProtocolDictionary");
                w.Line("/// <summary>Each entry as AFL++ writes it: a quoted string with \\xNN escapes.</summary>");
                w.Line("public static global::System.Collections.Generic.IReadOnlyList<string> Entries { get; } = new string[]");
                w.Line("{");
                w.Indent();
                foreach (string token in tokens)
                {
                    w.Line(Lit(token) + ",");
                }

                w.Outdent();
                w.Line("};");
                w.Close();
                w.Close();
                return w.ToString();
            }

            private static byte[] BigEndian(int value)
                => new[] { (byte)(value >> 24), (byte)(value >> 16), (byte)(value >> 8), (byte)value };

            private static string Hex(byte[] bytes)
                => "\"" + string.Concat(bytes.Select(b => "\\x" + b.ToString("X2", CultureInfo.InvariantCulture))) + "\"";
        }
    }
}

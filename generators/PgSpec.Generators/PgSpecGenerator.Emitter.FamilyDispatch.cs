using System.Collections.Generic;
using System.Linq;
using PgSpec.Generators.Model;

namespace PgSpec.Generators
{
    public sealed partial class PgSpecGenerator
    {
        internal static partial class Emitter
        {
            /// <summary>A family's kinds, interface and dispatcher: decode a carrier's payload by its type byte.</summary>
            private static string EmitFamilyDispatcher(ProtocolSpec spec, FamilySpec family, List<MessageSpec> messages)
            {
                string ns = FamilyNs(spec, family);
                string kind = family.Name + "MessageKind";
                string iface = "I" + family.Name + "Message";
                string cls = family.Name + "Messages";
                bool bothWays = messages.Any(m => m.Direction != Direction.Backend) && messages.Any(m => m.Direction != Direction.Frontend);
                string dirParam = bothWays ? ", " + Rt + ".PgDirection direction" : "";
                string dirArg = bothWays ? ", direction" : "";
                string carrier = messages.Any(m => m.Name == family.Carrier) ? "global::" + ns + "." + family.Carrier
                    : spec.FamilyMessages.Any(m => m.Name == family.Carrier && !m.IsPart) ? "global::" + spec.Namespace + "." + spec.FamilyMessages.First(m => m.Name == family.Carrier && !m.IsPart).Family + "." + family.Carrier
                    : spec.Messages.Any(m => m.Name == family.Carrier) ? "global::" + spec.Namespace + "." + family.Carrier
                    : Rt + "." + family.Carrier;
                string carrierField = Pascal(family.CarrierField);

                var w = new IndentedWriter();
                w.Line(Header.TrimEnd('\n'));
                w.Line();
                w.Open("namespace " + ns);

                w.Line("/// <summary>The messages of the " + family.Name + " family, carried in " + family.Carrier + "." + family.CarrierField + " (" + FileName(family.Path) + " line " + Int(family.Line) + ").</summary>");
                w.Open("public enum " + kind);
                w.Line("/// <summary>A type byte no spec of the family names.</summary>");
                w.Line("Unknown = 0,");
                foreach (MessageSpec m in messages)
                {
                    w.Line("/// <summary>" + m.Name + " ('" + (char)m.TypeByte + "', " + Dir(m.Direction) + ").</summary>");
                    w.Line(m.Name + ",");
                }

                w.Close();
                w.Line();

                w.Line("/// <summary>A message of the " + family.Name + " family.</summary>");
                w.Open("public interface " + iface + " : " + Rt + ".IPgSubMessage");
                w.Line("/// <summary>Which message of the family it is.</summary>");
                w.Line(kind + " Kind { get; }");
                w.Close();
                w.Line();

                w.Line("/// <summary>");
                foreach (string line in DocLines(family.Comment))
                {
                    w.Line("/// " + line);
                }

                w.Line("/// The " + family.Name + " family's dispatcher: its messages by type byte" + (bothWays ? " and direction" : "") + ", decoded from the payload of " + family.Carrier + "." + family.CarrierField + ".");
                w.Line("/// </summary>");
                w.Open("public static partial class " + cls);
                w.Line("/// <summary>The family's name.</summary>");
                w.Line("public const string FamilyName = " + Lit(family.Name) + ";");
                w.Line();
                if (family.HasContext)
                {
                    w.Line("/// <summary>The oldest protocol version of the family.</summary>");
                    w.Line("public const int MinVersion = " + Int(family.MinVersion) + ";");
                    w.Line();
                    w.Line("/// <summary>The newest protocol version of the family (what decoding assumes without a context).</summary>");
                    w.Line("public const int MaxVersion = " + Int(family.MaxVersion) + ";");
                    w.Line();
                }

                w.Line("/// <summary>Every message of the family, in name order.</summary>");
                w.Line("public static global::System.Collections.Generic.IReadOnlyList<" + kind + "> All { get; } = new " + kind + "[] { " + string.Join(", ", messages.Select(m => kind + "." + m.Name)) + " };");
                w.Line();

                // Classify
                w.Line("/// <summary>The message a type byte names" + (bothWays ? " in a direction" : "") + ", or Unknown.</summary>");
                w.Open("public static " + kind + " Classify(byte typeByte" + dirParam + ")");
                if (bothWays)
                {
                    foreach (string side in new[] { "Frontend", "Backend" })
                    {
                        Direction d = side == "Frontend" ? Direction.Frontend : Direction.Backend;
                        w.Open("if (direction == " + Rt + ".PgDirection." + side + ")");
                        EmitClassifySwitch(w, kind, messages.Where(m => Resolver.Overlaps(m.Direction, d)));
                        w.Close();
                    }

                    w.Line("return " + kind + ".Unknown;");
                }
                else
                {
                    EmitClassifySwitch(w, kind, messages);
                }

                w.Close();
                w.Line();

                w.Line("/// <summary>The message's name.</summary>");
                w.Open("public static string NameOf(" + kind + " kind)");
                w.Open("switch (kind)");
                foreach (MessageSpec m in messages)
                {
                    w.Line("case " + kind + "." + m.Name + ": return " + Lit(m.Name) + ";");
                }

                w.Line("default: return \"Unknown\";");
                w.Close();
                w.Close();
                w.Line();

                w.Line("/// <summary>The message's type byte (0 for Unknown).</summary>");
                w.Open("public static byte TypeByteOf(" + kind + " kind)");
                w.Open("switch (kind)");
                foreach (MessageSpec m in messages)
                {
                    w.Line("case " + kind + "." + m.Name + ": return " + ByteLit(m.TypeByte) + ";");
                }

                w.Line("default: return 0;");
                w.Close();
                w.Close();
                w.Line();

                w.Line("/// <summary>Whether <paramref name=\"direction\"/>'s side sends the message.</summary>");
                w.Open("public static bool IsSentBy(" + kind + " kind, " + Rt + ".PgDirection direction)");
                w.Open("switch (kind)");
                foreach (MessageSpec m in messages)
                {
                    string expr = m.Direction == Direction.Both ? "true" : "direction == " + Rt + ".PgDirection." + (m.Direction == Direction.Frontend ? "Frontend" : "Backend");
                    w.Line("case " + kind + "." + m.Name + ": return " + expr + ";");
                }

                w.Line("default: return false;");
                w.Close();
                w.Close();
                w.Line();

                if (family.HasContext)
                {
                    EmitKindTable(w, kind, "SinceVersion", "int", messages, m => Int(System.Math.Max(m.Since, family.MinVersion)), "0", "The first protocol version of the family that has the message ('since N'; 0 for Unknown).");
                    EmitKindTable(w, kind, "StartsStream", "bool", messages, m => m.StartsStream ? "true" : "false", "false", "Whether the message opens a streamed transaction block, in which the fields marked 'if streaming' are present ('starts-stream').");
                    EmitKindTable(w, kind, "EndsStream", "bool", messages, m => m.EndsStream ? "true" : "false", "false", "Whether the message closes the streamed transaction block ('ends-stream').");
                }

                // TryDecode over a payload
                string ctxParam = family.HasContext ? ", " + Context + "? context" : "";
                string ctxArg = family.HasContext ? ", context" : "";
                w.Line("/// <summary>");
                w.Line("/// Decodes one message of the family from <paramref name=\"payload\"/>: its type byte, then its body to the end of the payload,");
                w.Line("/// strictly" + (family.HasContext ? ", as <paramref name=\"context\"/> says (null: the newest version, outside a streamed transaction; the context is not changed: see TryDecodeNext)" : "") + ".");
                w.Line("/// Never throws: an empty payload, an unknown type byte" + (family.HasContext ? ", a message newer than the context's version" : "") + " or a malformed body gives false and the error.");
                w.Line("/// </summary>");
                w.Open("public static bool TryDecode(" + Span + " payload" + dirParam + ctxParam + ", [global::System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out " + iface + "? message, out " + Rt + ".PgDecodeError error)");
                w.Line("message = null;");
                w.Open("if (!TryClassify(payload" + dirArg + ctxArg + ", out " + kind + " kind, out error))");
                w.Line("return false;");
                w.Close();
                w.Line(Span + " body = payload.Slice(1);");
                w.Open("switch (kind)");
                foreach (MessageSpec m in messages)
                {
                    w.Line("case " + kind + "." + m.Name + ": { bool ok = global::" + ns + "." + m.Name + ".TryDecode(body" + ctxArg + ", out global::" + ns + "." + m.Name + "? decoded, out error); message = decoded; return ok; }");
                }

                w.Line("default: return false;");
                w.Close();
                w.Close();
                w.Line();

                w.Line("/// <summary>Checks one message of the family in <paramref name=\"payload\"/> as <see cref=\"TryDecode(" + "global::System.ReadOnlySpan{byte}" + (bothWays ? ", " + Rt + ".PgDirection" : "") + (family.HasContext ? ", " + Context : "") + ", out " + iface + ", out " + Rt + ".PgDecodeError)\"/> does, building nothing; gives the message's kind.</summary>");
                w.Open("public static bool TryValidate(" + Span + " payload" + dirParam + ctxParam + ", out " + kind + " kind, out " + Rt + ".PgDecodeError error)");
                w.Open("if (!TryClassify(payload" + dirArg + ctxArg + ", out kind, out error))");
                w.Line("return false;");
                w.Close();
                w.Line(Span + " body = payload.Slice(1);");
                w.Open("switch (kind)");
                foreach (MessageSpec m in messages)
                {
                    w.Line("case " + kind + "." + m.Name + ": return global::" + ns + "." + m.Name + ".TryValidate(body" + ctxArg + ", out error);");
                }

                w.Line("default: return false;");
                w.Close();
                w.Close();
                w.Line();

                w.Line("/// <summary>Decodes one message of the family from <paramref name=\"payload\"/>; throws <see cref=\"" + Rt + ".PgProtocolException\"/> if it cannot.</summary>");
                w.Open("public static " + iface + " Decode(" + Span + " payload" + dirParam + (family.HasContext ? ", " + Context + "? context = null" : "") + ")");
                w.Line("return TryDecode(payload" + dirArg + ctxArg + ", out " + iface + "? message, out " + Rt + ".PgDecodeError error) ? message : throw new " + Rt + ".PgProtocolException(error);");
                w.Close();
                w.Line();

                w.Line("/// <summary>Decodes the message carried in <paramref name=\"carrier\"/>'s " + family.CarrierField + ", as <see cref=\"TryDecode(" + "global::System.ReadOnlySpan{byte}" + (bothWays ? ", " + Rt + ".PgDirection" : "") + (family.HasContext ? ", " + Context : "") + ", out " + iface + ", out " + Rt + ".PgDecodeError)\"/> does.</summary>");
                w.Open("public static bool TryDecode(" + carrier + " carrier" + dirParam + ctxParam + ", [global::System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out " + iface + "? message, out " + Rt + ".PgDecodeError error)");
                w.Line("global::System.ArgumentNullException.ThrowIfNull(carrier);");
                w.Line("return TryDecode(carrier." + carrierField + ".Span" + dirArg + ctxArg + ", out message, out error);");
                w.Close();
                w.Line();

                if (family.HasContext)
                {
                    w.Line("/// <summary>");
                    w.Line("/// Decodes the next message of a stream of them with <paramref name=\"context\"/>, then follows it: a message that");
                    w.Line("/// starts a streamed transaction block (StartsStream) sets <see cref=\"" + Context + ".InStreamedTransaction\"/>, one that");
                    w.Line("/// ends it (EndsStream) clears it, as the spec says. A message that cannot be decoded changes nothing.");
                    w.Line("/// </summary>");
                    w.Open("public static bool TryDecodeNext(" + Span + " payload" + dirParam + ", " + Context + " context, [global::System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out " + iface + "? message, out " + Rt + ".PgDecodeError error)");
                    w.Line("global::System.ArgumentNullException.ThrowIfNull(context);");
                    w.Open("if (!TryDecode(payload" + dirArg + ", context, out message, out error))");
                    w.Line("return false;");
                    w.Close();
                    w.Line("Observe(context, message.Kind);");
                    w.Line("return true;");
                    w.Close();
                    w.Line();
                    w.Line("/// <summary>Decodes the next message carried in <paramref name=\"carrier\"/>'s " + family.CarrierField + " and follows it, as TryDecodeNext over a payload does.</summary>");
                    w.Open("public static bool TryDecodeNext(" + carrier + " carrier" + dirParam + ", " + Context + " context, [global::System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out " + iface + "? message, out " + Rt + ".PgDecodeError error)");
                    w.Line("global::System.ArgumentNullException.ThrowIfNull(carrier);");
                    w.Line("return TryDecodeNext(carrier." + carrierField + ".Span" + dirArg + ", context, out message, out error);");
                    w.Close();
                    w.Line();
                    w.Line("/// <summary>Follows a message of the stream in <paramref name=\"context\"/>: StartsStream sets, EndsStream clears <see cref=\"" + Context + ".InStreamedTransaction\"/>.</summary>");
                    w.Open("public static void Observe(" + Context + " context, " + kind + " kind)");
                    w.Line("global::System.ArgumentNullException.ThrowIfNull(context);");
                    w.Open("if (StartsStream(kind))");
                    w.Line("context.InStreamedTransaction = true;");
                    w.Close();
                    w.Open("else if (EndsStream(kind))");
                    w.Line("context.InStreamedTransaction = false;");
                    w.Close();
                    w.Close();
                    w.Line();
                }

                // TryTrace
                w.Line("/// <summary>Writes the trace line of the message in <paramref name=\"payload\"/>; false (writing nothing) when it cannot be decoded.</summary>");
                w.Open("public static bool TryTrace(" + Span + " payload" + dirParam + ctxParam + ", " + Rt + ".PgTraceWriter trace, out " + Rt + ".PgDecodeError error)");
                w.Line("global::System.ArgumentNullException.ThrowIfNull(trace);");
                w.Open("if (!TryDecode(payload" + dirArg + ctxArg + ", out " + iface + "? message, out error))");
                w.Line("return false;");
                w.Close();
                w.Line("message.Trace(trace, message.Direction == " + Rt + ".PgDirection.Frontend ? 'F' : 'B');");
                w.Line("return true;");
                w.Close();
                w.Line();

                // classify with errors
                w.Open("private static bool TryClassify(" + Span + " payload" + dirParam + ctxParam + ", out " + kind + " kind, out " + Rt + ".PgDecodeError error)");
                w.Open("if (payload.IsEmpty)");
                w.Line("kind = " + kind + ".Unknown;");
                w.Line("error = new " + Rt + ".PgDecodeError(FamilyName, null, 0, \"empty payload: a " + family.Name + " message starts with its type byte\");");
                w.Line("return false;");
                w.Close();
                if (family.HasContext)
                {
                    w.Open("if (context is not null && (context.ProtocolVersion < MinVersion || context.ProtocolVersion > MaxVersion))");
                    w.Line("kind = " + kind + ".Unknown;");
                    w.Line("error = new " + Rt + ".PgDecodeError(FamilyName, null, 0, \"protocol version \" + context.ProtocolVersion + \" is not one of \" + MinVersion + \"..\" + MaxVersion);");
                    w.Line("return false;");
                    w.Close();
                }

                w.Line("kind = Classify(payload[0]" + dirArg + ");");
                w.Open("if (kind == " + kind + ".Unknown)");
                w.Line("error = new " + Rt + ".PgDecodeError(FamilyName, null, 0, \"unknown type byte \" + " + Rt + ".PgTraceWriter.FormatBytes(payload.Slice(0, 1))" + (bothWays ? " + \" from the \" + (direction == " + Rt + ".PgDirection.Frontend ? \"frontend\" : \"backend\")" : "") + ");");
                w.Line("return false;");
                w.Close();
                w.Line("error = default;");
                w.Line("return true;");
                w.Close();
                w.Line();

                // descriptors
                w.Line("/// <summary>The family's messages as data, in name order (with the parts they share, as <see cref=\"" + Rt + ".PgFieldDescriptor.PartName\"/> names them, in <see cref=\"Parts\"/>).</summary>");
                w.Line("public static global::System.Collections.Generic.IReadOnlyList<" + Rt + ".PgMessageDescriptor> Descriptors { get; } = new " + Rt + ".PgMessageDescriptor[]");
                w.Line("{");
                w.Indent();
                foreach (MessageSpec m in messages)
                {
                    EmitFamilyDescriptor(w, family, m, ns);
                }

                w.Outdent();
                w.Line("};");
                w.Line();
                w.Line("/// <summary>The parts the family's messages share (TupleData), as data.</summary>");
                w.Line("public static global::System.Collections.Generic.IReadOnlyList<" + Rt + ".PgMessageDescriptor> Parts { get; } = new " + Rt + ".PgMessageDescriptor[]");
                w.Line("{");
                w.Indent();
                foreach (MessageSpec m in spec.FamilyMessages.Where(p => p.Family == family.Name && p.IsPart))
                {
                    EmitFamilyDescriptor(w, family, m, ns);
                }

                w.Outdent();
                w.Line("};");
                w.Close();
                w.Close();
                return w.ToString();
            }

            private static void EmitFamilyDescriptor(IndentedWriter w, FamilySpec family, MessageSpec m, string ns)
            {
                w.Line("new " + Rt + ".PgMessageDescriptor");
                w.Line("{");
                w.Indent();
                w.Line("Name = " + Lit(m.Name) + ",");
                w.Line("Frontend = " + (m.Direction != Direction.Backend ? "true" : "false") + ",");
                w.Line("Backend = " + (m.Direction != Direction.Frontend ? "true" : "false") + ",");
                w.Line("TypeByte = " + Int(m.IsPart ? -1 : m.TypeByte) + ",");
                w.Line("MaxLength = int.MaxValue,");
                w.Line("MessageType = typeof(global::" + ns + "." + m.Name + "),");
                w.Line("Source = " + Lit(FileName(m.Path) + ":" + Int(m.Line)) + ",");
                w.Line("Family = " + Lit(family.Name) + ",");
                if (m.Since > 0)
                {
                    w.Line("SinceVersion = " + Int(m.Since) + ",");
                }

                w.Line("Fields = new " + Rt + ".PgFieldDescriptor[]");
                w.Line("{");
                w.Indent();
                foreach (FieldSpec f in m.Fields.Skip(m.IsPart ? 0 : 1))
                {
                    EmitFieldDescriptor(w, f);
                }

                w.Outdent();
                w.Line("},");
                w.Outdent();
                w.Line("},");
            }

            private static void EmitClassifySwitch(IndentedWriter w, string kind, IEnumerable<MessageSpec> messages)
            {
                w.Open("switch (typeByte)");
                foreach (MessageSpec m in messages)
                {
                    w.Line("case " + ByteLit(m.TypeByte) + ": return " + kind + "." + m.Name + ";");
                }

                w.Line("default: return " + kind + ".Unknown;");
                w.Close();
            }

            private static void EmitKindTable(IndentedWriter w, string kind, string name, string type, List<MessageSpec> messages, System.Func<MessageSpec, string> value, string fallback, string summary)
            {
                w.Line("/// <summary>" + summary + "</summary>");
                w.Open("public static " + type + " " + name + "(" + kind + " kind)");
                w.Open("switch (kind)");
                foreach (MessageSpec m in messages)
                {
                    w.Line("case " + kind + "." + m.Name + ": return " + value(m) + ";");
                }

                w.Line("default: return " + fallback + ";");
                w.Close();
                w.Close();
                w.Line();
            }
        }
    }
}

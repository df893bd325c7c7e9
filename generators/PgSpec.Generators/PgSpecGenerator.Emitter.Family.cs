using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using PgSpec.Generators.Model;

namespace PgSpec.Generators
{
    public sealed partial class PgSpecGenerator
    {
        /// <summary>
        /// The families of sub-messages ('family Replication in CopyData.data'): for each sub-message and
        /// part an owned class (decode, validate, encode, trace, JSON, a view), and for each family a
        /// dispatcher by type byte, its kinds and its interface.
        /// </summary>
        internal static partial class Emitter
        {
            private const string Context = Rt + ".PgOutputContext";

            /// <summary>How a family's code is walked over the bytes.</summary>
            private enum Walk
            {
                /// <summary>Checked reads that build the owned value.</summary>
                Build,

                /// <summary>Checked reads that build nothing.</summary>
                Check,
            }

            public static IEnumerable<(string Name, string Source)> EmitFamilies(ProtocolSpec spec)
            {
                foreach (FamilySpec family in spec.Families)
                {
                    List<MessageSpec> members = spec.FamilyMessages.Where(m => m.Family == family.Name).ToList();
                    yield return (family.Name + ".Messages.g.cs", EmitFamilyDispatcher(spec, family, members.Where(m => !m.IsPart).ToList()));
                    foreach (MessageSpec m in members)
                    {
                        yield return (family.Name + "." + m.Name + ".g.cs", EmitFamilyMessage(spec, family, m));
                    }
                }
            }

            /// <summary>The text of a field's condition, as the spec writes it.</summary>
            internal static string ConditionText(FieldSpec f)
            {
                var parts = new List<string>();
                if (f.Optional)
                {
                    parts.Add("optional");
                }

                if (f.Since > 0)
                {
                    parts.Add("since " + Int(f.Since));
                }

                if (f.ConditionFlag.Length > 0)
                {
                    parts.Add("if " + f.ConditionFlag);
                }

                if (f.ConditionField is not null)
                {
                    parts.Add("if " + f.ConditionField + (f.ConditionValues.Count > 0 ? " is " + string.Join(", ", f.ConditionValues) : ""));
                }

                return string.Join(" ", parts);
            }

            private static string FamilyNs(ProtocolSpec spec, FamilySpec family) => spec.Namespace + "." + family.Name;

            private static string CtxParam(FamilySpec family, bool optional)
                => family.HasContext ? ", " + Context + "? context" + (optional ? " = null" : "") : "";

            private static string CtxArg(FamilySpec family) => family.HasContext ? ", context" : "";

            /// <summary>What a part's reader takes of the context: the version and the flags, so that a view can call it without a context object.</summary>
            private static string PartParams(FamilySpec family) => family.HasContext ? ", int version, bool streaming, bool parallel" : "";

            private static string PartArgs(FamilySpec family) => family.HasContext ? ", version, streaming, parallel" : "";

            private static bool FVisible(FieldSpec f)
                => f.Kind != FieldKind.TypeByte && f.Kind != FieldKind.Length && f.Kind != FieldKind.Literal
                    && !(f.Kind == FieldKind.Scalar && f.Role != FieldRole.Value);

            private static bool IsRef(FieldSpec f) => f.Kind == FieldKind.String || f.Kind == FieldKind.Part;

            /// <summary>Present only sometimes: the property is nullable.</summary>
            private static bool Maybe(FieldSpec f) => f.IsConditional || (f.Kind == FieldKind.SizedBytes && f.Nullable);

            private static string FElementCs(FieldSpec f)
            {
                if (f.GroupName is not null)
                {
                    return f.GroupName;
                }

                return f.ElementKind == FieldKind.String ? "string" : ScalarCs(f);
            }

            private static string FBaseCs(ProtocolSpec spec, FamilySpec family, FieldSpec f)
            {
                switch (f.Kind)
                {
                    case FieldKind.Scalar: return ScalarCs(f);
                    case FieldKind.Enum: return "global::" + spec.Namespace + "." + f.EnumName;
                    case FieldKind.FixedBytes:
                    case FieldKind.RestBytes:
                    case FieldKind.SizedBytes: return Memory;
                    case FieldKind.String: return "string";
                    case FieldKind.Array: return ImmArray + "<" + FElementCs(f) + ">";
                    case FieldKind.Part: return "global::" + FamilyNs(spec, family) + "." + f.PartName;
                    default: throw new InvalidOperationException(f.Kind.ToString());
                }
            }

            private static string FCs(ProtocolSpec spec, FamilySpec family, FieldSpec f) => FBaseCs(spec, family, f) + (Maybe(f) ? "?" : "");

            private static string Dir(Direction d) => d == Direction.Frontend ? "F" : d == Direction.Backend ? "B" : "F &amp; B";

            // ------------------------------------------------------------------ one sub-message or part

            private static string EmitFamilyMessage(ProtocolSpec spec, FamilySpec family, MessageSpec m)
            {
                var w = new IndentedWriter();
                w.Line(Header.TrimEnd('\n'));
                w.Line();
                w.Open("namespace " + FamilyNs(spec, family));
                string ifaceName = "global::" + FamilyNs(spec, family) + ".I" + family.Name + "Message";
                List<FieldSpec> body = m.IsPart ? m.Fields.ToList() : m.Fields.Skip(1).ToList();

                w.Line("/// <summary>");
                foreach (string line in DocLines(m.Comment))
                {
                    w.Line("/// " + line);
                }

                w.Line("/// " + (m.IsPart ? "Part of " + family.Name + " messages" : m.Name + " (" + Dir(m.Direction) + ", in " + family.Carrier + "." + family.CarrierField + ")") + ": " + Notation(m) + ".");
                w.Line("/// </summary>");
                w.Line("/// <remarks>Specified in " + FileName(m.Path) + " at line " + Int(m.Line) + ".</remarks>");
                w.Open("public sealed partial class " + m.Name + " : " + (m.IsPart ? "" : ifaceName + ", ") + "global::System.IEquatable<" + m.Name + ">");

                if (!m.IsPart)
                {
                    w.Line("/// <summary>The message name.</summary>");
                    w.Line("public const string MessageName = " + Lit(m.Name) + ";");
                    w.Line();
                    w.Line("/// <summary>The type byte that starts the message.</summary>");
                    w.Line("public const byte TypeCode = " + ByteLit(m.TypeByte) + ";");
                    w.Line();
                    if (family.HasContext)
                    {
                        w.Line("/// <summary>The first protocol version of " + family.Name + " that has this message.</summary>");
                        w.Line("public const int SinceVersion = " + Int(Math.Max(m.Since, family.MinVersion)) + ";");
                        w.Line();
                    }

                    w.Line("private int _length = -1;");
                    w.Line();
                }

                List<FieldSpec> visible = body.Where(FVisible).ToList();
                EmitFamilyCtor(w, spec, family, m.Name, visible);

                if (!m.IsPart)
                {
                    w.Line("/// <inheritdoc/>");
                    w.Line("string " + Rt + ".IPgSubMessage.Name => MessageName;");
                    w.Line();
                    w.Line("/// <inheritdoc/>");
                    w.Line("public byte TypeByte => TypeCode;");
                    w.Line();
                    w.Line("/// <inheritdoc/>");
                    w.Line("public string Family => " + Lit(family.Name) + ";");
                    w.Line();
                    w.Line("/// <inheritdoc/>");
                    w.Line("public global::" + FamilyNs(spec, family) + "." + family.Name + "MessageKind Kind => global::" + FamilyNs(spec, family) + "." + family.Name + "MessageKind." + m.Name + ";");
                    w.Line();
                    w.Line("/// <inheritdoc/>");
                    w.Line("public " + Rt + ".PgDirection Direction => " + Rt + ".PgDirection." + (m.Direction == Direction.Frontend ? "Frontend" : "Backend") + ";");
                    w.Line();
                    w.Line("/// <summary>The size of the encoded message: its type byte and its body.</summary>");
                    w.Line("public int EncodedLength => _length >= 0 ? _length : (_length = ComputeLength());");
                    w.Line();
                    w.Open("private int ComputeLength()");
                    w.Line("long n = 1 + SizeOfBody();");
                    w.Line("return n > int.MaxValue ? int.MaxValue : (int)n;");
                    w.Close();
                    w.Line();
                }

                // size and writes
                w.Line("/// <summary>The size of the fields (after the type byte, if any).</summary>");
                w.Open("internal long SizeOfBody()");
                w.Line("long n = 0;");
                EmitFSize(w, spec, family, body, "this", 0);
                w.Line("return n;");
                w.Close();
                w.Line();
                w.Line("/// <summary>Writes the fields (after the type byte, if any); <see cref=\"" + (m.IsPart ? "CheckEncodable" : "Validate") + "\"/> has passed.</summary>");
                w.Open("internal void WriteBody(ref " + Rt + ".PgSpanWriter w)");
                EmitFWrites(w, spec, family, body, "this", 0);
                w.Close();
                w.Line();

                // validate (encode side)
                if (m.IsPart)
                {
                    w.Line("/// <summary>Checks the encode-side rules of the part.</summary>");
                    w.Open("internal void CheckEncodable(string message" + CtxParam(family, false) + ")");
                }
                else
                {
                    w.Line("/// <summary>");
                    w.Line("/// Checks every encode-side rule (no NUL in a String, counts that fit, enum values, fields present as their");
                    w.Line("/// conditions say) and throws <see cref=\"" + Rt + ".PgEncodeException\"/> on the first one broken." + (family.HasContext ? " With a" : ""));
                    if (family.HasContext)
                    {
                        w.Line("/// <paramref name=\"context\"/>, the fields that depend on the protocol version or on streaming must be present exactly");
                        w.Line("/// when it says; without one, whichever are present are written.");
                    }

                    w.Line("/// </summary>");
                    w.Open("public void Validate(" + (family.HasContext ? Context + "? context = null" : "") + ")");
                    w.Line("const string message = MessageName;");
                    if (family.HasContext)
                    {
                        w.Open("if (context is not null && context.ProtocolVersion < SinceVersion)");
                        w.Line("throw new " + Rt + ".PgEncodeException(message, null, \"" + m.Name + " exists since protocol version \" + SinceVersion + \" of " + family.Name + "; the context has \" + context.ProtocolVersion);");
                        w.Close();
                    }
                }

                if (family.HasContext)
                {
                    EmitContextLocals(w, family, encodeSide: true);
                }

                EmitFGuards(w, spec, family, body, "this", 0, "");
                if (!m.IsPart)
                {
                    w.Open("if (EncodedLength == int.MaxValue)");
                    w.Line("throw new " + Rt + ".PgEncodeException(message, null, \"the message would be over 2 GiB\");");
                    w.Close();
                }

                w.Close();
                w.Line();

                if (!m.IsPart)
                {
                    EmitFamilyEncode(w, family);
                    EmitFamilyDecode(w, spec, family, m, body);
                }
                else
                {
                    EmitPartRead(w, spec, family, m, body);
                }

                EmitFamilyTraceAndJson(w, spec, family, m, body);
                EmitFamilyEquality(w, spec, family, m.Name, visible);
                if (!m.IsPart)
                {
                    EmitFamilyView(w, spec, family, m, body);
                }

                foreach (FieldSpec group in AllGroups(m.Fields))
                {
                    EmitFamilyGroup(w, spec, family, m, group);
                }

                w.Close();
                w.Close();
                return w.ToString();
            }

            private static IEnumerable<string> DocLines(string comment)
            {
                foreach (string line in comment.Split('\n'))
                {
                    string text = line.Trim();
                    if (text.Length > 0)
                    {
                        yield return text.Replace("&", "&amp;").Replace("<", "&lt;").Replace(">", "&gt;");
                    }
                }
            }

            /// <summary>The context as locals: the version, streaming, parallel (decode side: defaults without a context).</summary>
            private static void EmitContextLocals(IndentedWriter w, FamilySpec family, bool encodeSide)
            {
                w.Line("bool known = context is not null;");
                w.Line("int version = context?.ProtocolVersion ?? " + Int(family.MaxVersion) + ";");
                w.Line("bool streaming = context?.InStreamedTransaction ?? false;");
                w.Line("bool parallel = context?.Streaming == " + Rt + ".PgOutputStreaming.Parallel;");
                w.Line("_ = known; _ = version; _ = streaming; _ = parallel;");
            }

            private static void EmitFamilyCtor(IndentedWriter w, ProtocolSpec spec, FamilySpec family, string typeName, List<FieldSpec> visible)
            {
                string parameters = string.Join(", ", visible.Select(f => FCs(spec, family, f) + " " + Param(f.Name)));
                w.Line("/// <summary>Creates the value from its fields; tags, lengths and counts are derived." + (visible.Any(Maybe) ? " A null field is absent." : "") + "</summary>");
                w.Open("public " + typeName + "(" + parameters + ")");
                foreach (FieldSpec f in visible)
                {
                    string p = Param(f.Name);
                    string prop = Pascal(f.Name);
                    if (IsRef(f) && !Maybe(f))
                    {
                        w.Line(prop + " = " + p + " ?? throw new global::System.ArgumentNullException(nameof(" + p + "));");
                    }
                    else if (f.Kind == FieldKind.Array)
                    {
                        w.Line(prop + " = " + p + ".IsDefault ? " + ImmArray + "<" + FElementCs(f) + ">.Empty : " + p + ";");
                    }
                    else
                    {
                        w.Line(prop + " = " + p + ";");
                    }
                }

                w.Close();
                w.Line();
                foreach (FieldSpec f in visible)
                {
                    string cond = f.IsConditional ? " Present " + ConditionText(f).Replace("optional", "when given") + "; null when absent." : "";
                    w.Line("/// <summary>" + FieldNotation(f).Replace("<", "&lt;").Replace(">", "&gt;").Replace("&", "&amp;") + " " + f.Name + "." + cond + "</summary>");
                    w.Line("public " + FCs(spec, family, f) + " " + Pascal(f.Name) + " { get; }");
                    w.Line();
                }
            }

            // ------------------------------------------------------------------ encode side (over owned values)

            /// <summary>The condition of a field over owned values: null when it depends on nothing checkable here.</summary>
            private static string? OwnedCondition(ProtocolSpec spec, FamilySpec family, FieldSpec f, IList<FieldSpec> siblings, string owner, bool withContext)
            {
                var parts = new List<string>();
                if (withContext && f.Since > 0)
                {
                    parts.Add("version >= " + Int(f.Since));
                }

                if (withContext && f.ConditionFlag.Length > 0)
                {
                    parts.Add(f.ConditionFlag);
                }

                if (f.ConditionField is string target)
                {
                    FieldSpec tag = siblings.First(s => s.Name == target);
                    string access = Access(owner, tag);
                    if (f.ConditionValues.Count == 0)
                    {
                        parts.Add(access + " is not null");
                    }
                    else
                    {
                        string value = Maybe(tag) ? access + ".GetValueOrDefault()" : access;
                        string test = string.Join(" || ", f.ConditionBytes.Select(b => "unchecked((byte)" + value + ") == 0x" + b.ToString("X2", CultureInfo.InvariantCulture)));
                        parts.Add((Maybe(tag) ? access + " is not null && " : "") + "(" + test + ")");
                    }
                }

                return parts.Count == 0 ? null : string.Join(" && ", parts.Select(p => "(" + p + ")"));
            }

            private static void EmitFSize(IndentedWriter w, ProtocolSpec spec, FamilySpec family, List<FieldSpec> fields, string owner, int depth)
            {
                foreach (FieldSpec f in fields)
                {
                    string? present = PresenceOf(fields, f, owner);
                    if (present is not null)
                    {
                        w.Open("if (" + present + ")");
                    }

                    EmitFSizeOne(w, spec, family, fields, f, owner, depth);
                    if (present is not null)
                    {
                        w.Close();
                    }
                }
            }

            /// <summary>Whether a (conditional) field is present in an owned value; null when always.</summary>
            private static string? PresenceOf(IList<FieldSpec> fields, FieldSpec f, string owner)
            {
                if (!f.IsConditional)
                {
                    return null;
                }

                if (FVisible(f))
                {
                    return Access(owner, f) + " is not null";
                }

                // A hidden length: present with the Byten it sizes.
                FieldSpec? sized = f.Role == FieldRole.ValueLength ? SizedBy(fields, f) : null;
                return sized is null ? "true" : Access(owner, sized) + " is not null";
            }

            private static string Val(FieldSpec f, string owner) => Maybe(f) && !IsRef(f) ? Access(owner, f) + ".GetValueOrDefault()" : Access(owner, f) + (Maybe(f) ? "!" : "");

            private static void EmitFSizeOne(IndentedWriter w, ProtocolSpec spec, FamilySpec family, List<FieldSpec> fields, FieldSpec f, string owner, int depth)
            {
                switch (f.Kind)
                {
                    case FieldKind.Literal:
                    case FieldKind.Scalar:
                        w.Line("n += " + Int(ScalarSize(f.Type)) + ";");
                        break;
                    case FieldKind.Enum:
                        w.Line("n += 1;");
                        break;
                    case FieldKind.FixedBytes:
                        w.Line("n += " + Int(f.FixedSize) + ";");
                        break;
                    case FieldKind.RestBytes:
                    case FieldKind.SizedBytes:
                        w.Line("n += " + (f.Kind == FieldKind.SizedBytes && f.Nullable && !f.IsConditional ? "(" + Access(owner, f) + "?.Length ?? 0)" : Val(f, owner) + ".Length") + ";");
                        break;
                    case FieldKind.String:
                        w.Line("n += global::System.Text.Encoding.UTF8.GetByteCount(" + Val(f, owner) + ") + 1;");
                        break;
                    case FieldKind.Part:
                        w.Line("n += " + Val(f, owner) + ".SizeOfBody();");
                        break;
                    case FieldKind.Array:
                        if (f.GroupName is null && f.ElementKind == FieldKind.Scalar)
                        {
                            w.Line("n += (long)" + Access(owner, f) + ".Length * " + Int(ScalarSize(f.Type)) + ";");
                            break;
                        }

                        string item = "item" + Int(depth);
                        w.Open("foreach (" + FElementCs(f) + " " + item + " in " + Access(owner, f) + ")");
                        if (f.GroupName is null)
                        {
                            w.Line("n += global::System.Text.Encoding.UTF8.GetByteCount(" + item + ") + 1;");
                        }
                        else
                        {
                            w.Line("n += " + item + ".SizeOfBody();");
                        }

                        w.Close();
                        break;
                }
            }

            private static void EmitFWrites(IndentedWriter w, ProtocolSpec spec, FamilySpec family, List<FieldSpec> fields, string owner, int depth)
            {
                foreach (FieldSpec f in fields)
                {
                    string? present = PresenceOf(fields, f, owner);
                    if (present is not null)
                    {
                        w.Open("if (" + present + ")");
                    }

                    switch (f.Kind)
                    {
                        case FieldKind.Literal:
                            w.Line(WriteScalar(f.Type, "unchecked((" + ScalarCsRaw(f.Type) + ")" + Int(f.Literal!.Value) + ")") + ";");
                            break;
                        case FieldKind.Scalar:
                            if (f.Role == FieldRole.Count)
                            {
                                FieldSpec target = CountedBy(fields, f)!;
                                w.Line(WriteScalar(f.Type, "unchecked((" + ScalarCsRaw(f.Type) + ")" + Access(owner, target) + ".Length)") + ";");
                            }
                            else if (f.Role == FieldRole.ValueLength)
                            {
                                FieldSpec target = SizedBy(fields, f)!;
                                w.Line("w.WriteInt32(" + (target.Nullable && !target.IsConditional ? "(" + Access(owner, target) + "?.Length ?? -1)" : Val(target, owner) + ".Length") + ");");
                            }
                            else
                            {
                                w.Line(WriteScalar(f.Type, "unchecked((" + ScalarCsRaw(f.Type) + ")" + Val(f, owner) + ")") + ";");
                            }

                            break;
                        case FieldKind.Enum:
                            w.Line("w.WriteByte(unchecked((byte)" + Val(f, owner) + "));");
                            break;
                        case FieldKind.FixedBytes:
                        case FieldKind.RestBytes:
                            w.Line("w.WriteBytes(" + Val(f, owner) + ".Span);");
                            break;
                        case FieldKind.SizedBytes:
                            w.Line(f.Nullable && !f.IsConditional
                                ? "if (" + Access(owner, f) + " is { } v" + Int(depth) + "_" + f.Name + ") { w.WriteBytes(v" + Int(depth) + "_" + f.Name + ".Span); }"
                                : "w.WriteBytes(" + Val(f, owner) + ".Span);");
                            break;
                        case FieldKind.String:
                            w.Line("w.WriteString(" + Val(f, owner) + ");");
                            break;
                        case FieldKind.Part:
                            w.Line(Val(f, owner) + ".WriteBody(ref w);");
                            break;
                        case FieldKind.Array:
                            string item = "item" + Int(depth);
                            w.Open("foreach (" + FElementCs(f) + " " + item + " in " + Access(owner, f) + ")");
                            if (f.GroupName is not null)
                            {
                                w.Line(item + ".WriteBody(ref w);");
                            }
                            else if (f.ElementKind == FieldKind.String)
                            {
                                w.Line("w.WriteString(" + item + ");");
                            }
                            else
                            {
                                w.Line(WriteScalar(f.Type, "unchecked((" + ScalarCsRaw(f.Type) + ")" + item + ")") + ";");
                            }

                            w.Close();
                            break;
                    }

                    if (present is not null)
                    {
                        w.Close();
                    }
                }
            }

            private static void EmitFGuards(IndentedWriter w, ProtocolSpec spec, FamilySpec family, List<FieldSpec> fields, string owner, int depth, string path)
            {
                foreach (FieldSpec f in fields)
                {
                    string field = Lit(path + f.Name);
                    if (FVisible(f) && f.IsConditional && !f.Optional)
                    {
                        // Present exactly when the condition holds: always checkable for a field's condition, with a context for the rest.
                        bool contextual = f.Since > 0 || f.ConditionFlag.Length > 0;
                        string? expected = OwnedCondition(spec, family, f, fields, owner, withContext: true);
                        string guard = contextual ? "known && " : "";
                        w.Open("if (" + guard + "(" + Access(owner, f) + " is not null) != (" + (expected ?? "true") + "))");
                        w.Line("throw new " + Rt + ".PgEncodeException(message, " + field + ", (" + Access(owner, f) + " is not null ? \"present\" : \"absent\") + \" against its condition: " + ConditionText(f) + "\");");
                        w.Close();
                    }
                    else if (FVisible(f) && IsRef(f) && !Maybe(f))
                    {
                        w.Line("global::System.ArgumentNullException.ThrowIfNull(" + Access(owner, f) + ");");
                    }

                    string? present = FVisible(f) && Maybe(f) ? Access(owner, f) + " is not null" : null;
                    if (present is not null)
                    {
                        w.Open("if (" + present + ")");
                    }

                    switch (f.Kind)
                    {
                        case FieldKind.Scalar when f.Role == FieldRole.Value && f.HasRange:
                            w.Line(Rt + ".PgEncoding.CheckRange(message, " + field + ", " + Val(f, owner) + ", " + Int(f.RangeMin) + ", " + Int(f.RangeMax) + ");");
                            break;
                        case FieldKind.Scalar when f.Role == FieldRole.Count:
                            FieldSpec target = CountedBy(fields, f)!;
                            w.Line(Rt + ".PgEncoding.CheckCount(message, " + Lit(path + target.Name) + ", " + Access(owner, target) + ".Length, " + (f.Type == WireType.Int16 ? "ushort.MaxValue" : "int.MaxValue") + ");");
                            break;
                        case FieldKind.Enum:
                            w.Line(Rt + ".PgEncoding.CheckEnum(message, " + field + ", global::System.Enum.IsDefined(" + Val(f, owner) + "), (long)" + Val(f, owner) + ");");
                            break;
                        case FieldKind.FixedBytes:
                            w.Line(Rt + ".PgEncoding.CheckFixedSize(message, " + field + ", " + Val(f, owner) + ".Length, " + Int(f.FixedSize) + ");");
                            break;
                        case FieldKind.String:
                            w.Line(Rt + ".PgEncoding.CheckString(message, " + field + ", " + Val(f, owner) + ");");
                            break;
                        case FieldKind.Part:
                            w.Line(Val(f, owner) + ".CheckEncodable(message" + CtxArg(family) + ");");
                            break;
                        case FieldKind.Array when f.GroupName is not null || f.ElementKind == FieldKind.String:
                            string item = "item" + Int(depth);
                            w.Open("foreach (" + FElementCs(f) + " " + item + " in " + Access(owner, f) + ")");
                            w.Line(f.GroupName is null
                                ? Rt + ".PgEncoding.CheckString(message, " + field + ", " + item + ");"
                                : "global::System.ArgumentNullException.ThrowIfNull(" + item + ");");
                            if (f.GroupName is not null)
                            {
                                w.Line(item + ".CheckEncodable(message" + CtxArg(family) + ");");
                            }

                            w.Close();
                            break;
                    }

                    if (present is not null)
                    {
                        w.Close();
                    }
                }
            }

            private static void EmitFamilyEncode(IndentedWriter w, FamilySpec family)
            {
                string validateArgs = family.HasContext ? "context" : "";
                string ctxDecl = family.HasContext ? Context + "? context = null" : "";
                w.Line("/// <summary>Validates, then writes the whole message (type byte and body) to <paramref name=\"writer\"/>.</summary>");
                w.Open("public void Encode(global::System.Buffers.IBufferWriter<byte> writer" + (family.HasContext ? ", " + ctxDecl : "") + ")");
                w.Line("global::System.ArgumentNullException.ThrowIfNull(writer);");
                w.Line("Validate(" + validateArgs + ");");
                w.Line("int size = EncodedLength;");
                w.Line("WriteUnchecked(writer.GetSpan(size));");
                w.Line("writer.Advance(size);");
                w.Close();
                w.Line();
                w.Line("/// <summary>Validates, then writes the whole message to <paramref name=\"destination\"/>; returns the bytes written.</summary>");
                w.Open("public int Encode(global::System.Span<byte> destination" + (family.HasContext ? ", " + ctxDecl : "") + ")");
                w.Line("Validate(" + validateArgs + ");");
                w.Line("int size = EncodedLength;");
                w.Open("if (destination.Length < size)");
                w.Line("throw new " + Rt + ".PgEncodeException(MessageName, null, \"the destination has \" + destination.Length + \" bytes; the message needs \" + size);");
                w.Close();
                w.Line("WriteUnchecked(destination);");
                w.Line("return size;");
                w.Close();
                w.Line();
                w.Line("/// <summary>Validates and encodes into a new array: the payload of its carrier's field.</summary>");
                w.Open("public byte[] ToArray(" + ctxDecl + ")");
                w.Line("Validate(" + validateArgs + ");");
                w.Line("byte[] bytes = new byte[EncodedLength];");
                w.Line("WriteUnchecked(bytes);");
                w.Line("return bytes;");
                w.Close();
                w.Line();
                if (family.HasContext)
                {
                    w.Line("/// <inheritdoc/>");
                    w.Line("void " + Rt + ".IPgSubMessage.Encode(global::System.Buffers.IBufferWriter<byte> writer) => Encode(writer);");
                    w.Line();
                    w.Line("/// <inheritdoc/>");
                    w.Line("int " + Rt + ".IPgSubMessage.Encode(global::System.Span<byte> destination) => Encode(destination);");
                    w.Line();
                    w.Line("/// <inheritdoc/>");
                    w.Line("byte[] " + Rt + ".IPgSubMessage.ToArray() => ToArray();");
                    w.Line();
                    w.Line("/// <inheritdoc/>");
                    w.Line("void " + Rt + ".IPgSubMessage.Validate() => Validate();");
                    w.Line();
                }

                w.Open("private void WriteUnchecked(global::System.Span<byte> destination)");
                w.Line("var w = new " + Rt + ".PgSpanWriter(destination);");
                w.Line("w.WriteByte(TypeCode);");
                w.Line("WriteBody(ref w);");
                w.Close();
                w.Line();
            }

            // ------------------------------------------------------------------ decode side (over bytes)

            private static void EmitFamilyDecode(IndentedWriter w, ProtocolSpec spec, FamilySpec family, MessageSpec m, List<FieldSpec> body)
            {
                string versionCheck = "if (context is not null && context.ProtocolVersion < SinceVersion) { error = new " + Rt + ".PgDecodeError(MessageName, null, 0, \"" + m.Name + " exists since protocol version \" + SinceVersion + \" of " + family.Name + "; the context has \" + context.ProtocolVersion); " ;
                w.Line("/// <summary>");
                w.Line("/// Decodes the body of the message (the bytes after its type byte, to the end of the carrier's field), strictly");
                w.Line("/// (exact sizes, nothing left over, enum values checked)" + (family.HasContext ? ", as <paramref name=\"context\"/> says (protocol version, streaming; none: the latest version outside a streamed transaction)" : "") + ".");
                w.Line("/// Never throws: a malformed body gives false and the error, its offset counted from the type byte.");
                w.Line("/// </summary>");
                w.Open("public static bool TryDecode(" + Span + " body" + CtxParam(family, false) + ", [global::System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out " + m.Name + "? message, out " + Rt + ".PgDecodeError error)");
                if (family.HasContext)
                {
                    w.Line(versionCheck + "message = null; return false; }");
                    EmitContextLocals(w, family, encodeSide: false);
                }

                w.Line("var r = new " + Rt + ".PgSpanReader(body, MessageName, 1);");
                w.Line("byte[]? owned = null;");
                w.Line("_ = owned;");
                var locals = new Dictionary<string, string>(StringComparer.Ordinal);
                EmitFWalk(w, spec, family, body, Walk.Build, "f_", 0, locals);
                w.Line("if (!r.End()) goto fail;");
                w.Line("message = new " + m.Name + "(" + string.Join(", ", body.Where(FVisible).Select(f => locals[f.Name])) + ");");
                w.Line("error = default;");
                w.Line("return true;");
                w.Line("fail:");
                w.Line("message = null;");
                w.Line("error = r.Error;");
                w.Line("return false;");
                w.Close();
                w.Line();

                w.Line("/// <summary>Decodes the body of the message, strictly; throws <see cref=\"" + Rt + ".PgProtocolException\"/> if it is malformed.</summary>");
                w.Open("public static " + m.Name + " Decode(" + Span + " body" + CtxParam(family, true) + ")");
                w.Line("return TryDecode(body" + CtxArg(family) + ", out " + m.Name + "? message, out " + Rt + ".PgDecodeError error) ? message : throw new " + Rt + ".PgProtocolException(error);");
                w.Close();
                w.Line();

                w.Line("/// <summary>Checks a body with the rules of <see cref=\"TryDecode\"/> without building anything (Strings in any encoding).</summary>");
                w.Open("public static bool TryValidate(" + Span + " body" + CtxParam(family, false) + ", out " + Rt + ".PgDecodeError error)");
                if (family.HasContext)
                {
                    w.Line(versionCheck + "return false; }");
                    EmitContextLocals(w, family, encodeSide: false);
                }

                w.Line("var r = new " + Rt + ".PgSpanReader(body, MessageName, 1);");
                EmitFWalk(w, spec, family, body, Walk.Check, "f_", 0, new Dictionary<string, string>(StringComparer.Ordinal));
                w.Line("if (!r.End()) goto fail;");
                w.Line("error = default;");
                w.Line("return true;");
                w.Line("fail:");
                w.Line("error = r.Error;");
                w.Line("return false;");
                w.Close();
                w.Line();
            }

            private static void EmitPartRead(IndentedWriter w, ProtocolSpec spec, FamilySpec family, MessageSpec m, List<FieldSpec> body)
            {
                w.Line("/// <summary>Reads the part where <paramref name=\"r\"/> stands (over <paramref name=\"body\"/>, whose copy <paramref name=\"owned\"/> holds the values).</summary>");
                w.Open("internal static bool TryRead(ref " + Rt + ".PgSpanReader r, " + Span + " body, ref byte[]? owned" + PartParams(family) + ", [global::System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out " + m.Name + "? value)");

                var locals = new Dictionary<string, string>(StringComparer.Ordinal);
                EmitFWalk(w, spec, family, body, Walk.Build, "f_", 0, locals);
                w.Line("value = new " + m.Name + "(" + string.Join(", ", body.Where(FVisible).Select(f => locals[f.Name])) + ");");
                w.Line("return true;");
                w.Line("fail:");
                w.Line("value = null;");
                w.Line("return false;");
                w.Close();
                w.Line();
                w.Line("/// <summary>Checks the part where <paramref name=\"r\"/> stands and moves past it, building nothing.</summary>");
                w.Open("internal static bool TrySkip(ref " + Rt + ".PgSpanReader r, " + Span + " body" + PartParams(family) + ")");

                EmitFWalk(w, spec, family, body, Walk.Check, "f_", 0, new Dictionary<string, string>(StringComparer.Ordinal));
                w.Line("return true;");
                w.Line("fail:");
                w.Line("return false;");
                w.Close();
                w.Line();
            }

            /// <summary>The condition of a field over the bytes being read (locals of earlier fields).</summary>
            private static string DecodeCondition(FieldSpec f, Dictionary<string, string> raw, string prefix, HashSet<string> conditional)
            {
                var parts = new List<string>();
                if (f.Since > 0)
                {
                    parts.Add("version >= " + Int(f.Since));
                }

                if (f.ConditionFlag.Length > 0)
                {
                    parts.Add(f.ConditionFlag);
                }

                if (f.ConditionField is string target)
                {
                    string present = conditional.Contains(target) ? "p_" + prefix + target : "true";
                    if (f.ConditionValues.Count == 0)
                    {
                        parts.Add(present);
                    }
                    else
                    {
                        string value = raw[target];
                        parts.Add((present == "true" ? "" : present + " && ") + "(" + string.Join(" || ", f.ConditionBytes.Select(b => value + " == 0x" + b.ToString("X2", CultureInfo.InvariantCulture))) + ")");
                    }
                }

                return parts.Count == 0 ? "true" : string.Join(" && ", parts.Select(p => "(" + p + ")"));
            }

            private static void EmitFWalk(IndentedWriter w, ProtocolSpec spec, FamilySpec family, List<FieldSpec> fields, Walk walk, string prefix, int depth, Dictionary<string, string> locals)
            {
                var raw = new Dictionary<string, string>(StringComparer.Ordinal);
                var conditionalNames = new HashSet<string>(fields.Where(x => x.IsConditional).Select(x => x.Name), StringComparer.Ordinal);
                bool build = walk == Walk.Build;
                foreach (FieldSpec f in fields)
                {
                    string local = prefix + f.Name;
                    string name = Lit(f.Name);
                    string presence = "p_" + local;
                    bool conditional = f.IsConditional;
                    if (conditional)
                    {
                        if (f.Optional)
                        {
                            string next = "body[r.Position]";
                            string test = string.Join(" || ", f.EnumValues.Select(v => next + " == 0x" + v.ToString("X2", CultureInfo.InvariantCulture)));
                            string rest = DecodeCondition(f with { Optional = false }, raw, prefix, conditionalNames);
                            w.Line("bool " + presence + " = " + (rest == "true" ? "" : rest + " && ") + "r.Remaining > 0 && (" + test + ");");
                        }
                        else
                        {
                            w.Line("bool " + presence + " = " + DecodeCondition(f, raw, prefix, conditionalNames) + ";");
                        }

                        if (build && FVisible(f))
                        {
                            w.Line(FCs(spec, family, f) + " " + local + " = null;");
                        }

                        if (f.Role == FieldRole.ValueLength)
                        {
                            w.Line("int " + local + " = -1;");
                        }

                        if (f.Kind == FieldKind.Enum)
                        {
                            w.Line("byte b_" + local + " = 0;");
                        }

                        w.Open("if (" + presence + ")");
                    }

                    string target = conditional ? "t_" + local : local;
                    switch (f.Kind)
                    {
                        case FieldKind.TypeByte:
                            break;
                        case FieldKind.Literal:
                            w.Line("if (!r.Expect" + (f.Type == WireType.Byte1 ? "Byte1" : f.Type.ToString()) + "(" + name + ", " + (f.Type == WireType.Byte1 ? ByteLit(f.Literal!.Value) : "unchecked((" + ScalarCsRaw(f.Type) + ")" + Int(f.Literal!.Value) + ")") + ")) goto fail;");
                            break;
                        case FieldKind.Scalar:
                            if (f.Role == FieldRole.Count)
                            {
                                w.Line("if (!r.ReadCount" + (f.Type == WireType.Int16 ? "16" : "32") + "(" + name + ", out int " + local + ")) goto fail;");
                            }
                            else if (f.Role == FieldRole.ValueLength)
                            {
                                w.Line("if (!r.ReadValueLength(" + name + ", " + (f.Nullable ? "true" : "false") + ", out " + (conditional ? "" : "int ") + local + ")) goto fail;");
                            }
                            else
                            {
                                string read = ReadMethod(f.Type);
                                string rawType = ScalarCsRaw(f.Type);
                                w.Line("if (!r." + read + "(" + name + ", out " + rawType + " r_" + local + ")) goto fail;");
                                if (f.HasRange)
                                {
                                    w.Line("if (!r.CheckRange(" + name + ", r_" + local + ", " + Int(f.RangeMin) + ", " + Int(f.RangeMax) + ", " + Int(ScalarSize(f.Type)) + ")) goto fail;");
                                }

                                string value = f.Oid ? "unchecked((uint)r_" + local + ")" : "r_" + local;
                                Assign(w, build, conditional, local, value);
                                locals[f.Name] = local;
                            }

                            break;
                        case FieldKind.Enum:
                        {
                            string allowed = "[" + string.Join(", ", f.EnumValues.Select(v => "0x" + v.ToString("X2", CultureInfo.InvariantCulture))) + "]";
                            if (conditional)
                            {
                                w.Line("if (!r.ReadEnum(" + name + ", " + allowed + ", out b_" + local + ")) goto fail;");
                            }
                            else
                            {
                                w.Line("if (!r.ReadEnum(" + name + ", " + allowed + ", out byte b_" + local + ")) goto fail;");
                            }

                            string enumCs = "global::" + spec.Namespace + "." + f.EnumName;
                            Assign(w, build, conditional, local, "(" + enumCs + ")" + (f.EnumType == WireType.Int8 ? "unchecked((sbyte)b_" + local + ")" : "b_" + local));
                            locals[f.Name] = local;
                            break;
                        }

                        case FieldKind.FixedBytes:
                            w.Line("if (!r.ReadBytes(" + name + ", " + Int(f.FixedSize) + ", out " + Span + " s_" + local + ")) goto fail;");
                            Assign(w, build, conditional, local, "new " + Memory + "(owned ??= body.ToArray(), r.Position - " + Int(f.FixedSize) + ", " + Int(f.FixedSize) + ")");
                            locals[f.Name] = local;
                            break;
                        case FieldKind.RestBytes:
                            w.Line(Span + " s_" + local + " = r.ReadRest();");
                            Assign(w, build, conditional, local, "new " + Memory + "(owned ??= body.ToArray(), r.Position - s_" + local + ".Length, s_" + local + ".Length)");
                            locals[f.Name] = local;
                            break;
                        case FieldKind.SizedBytes:
                        {
                            string len = prefix + f.LengthField;
                            w.Line("if (!r.ReadValue(" + name + ", " + len + ", out " + Span + " s_" + local + ")) goto fail;");
                            string value = "new " + Memory + "(owned ??= body.ToArray(), r.Position - " + len + ", " + len + ")";
                            if (f.Nullable && !conditional)
                            {
                                value = "(" + len + " < 0 ? (" + Memory + "?)null : " + value + ")";
                            }

                            Assign(w, build, conditional, local, value);
                            locals[f.Name] = local;
                            break;
                        }

                        case FieldKind.String:
                            if (build)
                            {
                                w.Line("if (!r.ReadString(" + name + ", out string s_" + local + ")) goto fail;");
                                Assign(w, build, conditional, local, "s_" + local);
                            }
                            else
                            {
                                w.Line("if (!r.ReadStringSpan(" + name + ", out _)) goto fail;");
                            }

                            locals[f.Name] = local;
                            break;
                        case FieldKind.Part:
                            if (build)
                            {
                                w.Line("if (!global::" + FamilyNs(spec, family) + "." + f.PartName + ".TryRead(ref r, body, ref owned" + PartArgs(family) + ", out global::" + FamilyNs(spec, family) + "." + f.PartName + "? v_" + local + ")) goto fail;");
                                Assign(w, build, conditional, local, "v_" + local);
                            }
                            else
                            {
                                w.Line("if (!global::" + FamilyNs(spec, family) + "." + f.PartName + ".TrySkip(ref r, body" + PartArgs(family) + ")) goto fail;");
                            }

                            locals[f.Name] = local;
                            break;
                        case FieldKind.Array:
                            EmitFArray(w, spec, family, f, walk, prefix, depth, local);
                            locals[f.Name] = local;
                            break;
                    }

                    if (conditional)
                    {
                        w.Close();
                    }

                    if (f.Kind == FieldKind.Enum)
                    {
                        raw[f.Name] = "b_" + local;
                    }
                }
            }

            private static void Assign(IndentedWriter w, bool build, bool conditional, string local, string value)
            {
                if (!build)
                {
                    return;
                }

                w.Line(conditional ? local + " = " + value + ";" : "var " + local + " = " + value + ";");
            }

            private static string ReadMethod(WireType t)
            {
                switch (t)
                {
                    case WireType.Byte1: return "ReadByte1";
                    case WireType.Int8: return "ReadInt8";
                    case WireType.Int16: return "ReadInt16";
                    case WireType.Int32: return "ReadInt32";
                    default: return "ReadInt64";
                }
            }

            private static int FMinSize(FieldSpec f)
            {
                if (f.IsConditional)
                {
                    return 0;
                }

                switch (f.Kind)
                {
                    case FieldKind.Literal:
                    case FieldKind.Scalar: return ScalarSize(f.Type);
                    case FieldKind.Enum: return 1;
                    case FieldKind.FixedBytes: return f.FixedSize;
                    case FieldKind.String: return 1;
                    default: return 0;
                }
            }

            private static void EmitFArray(IndentedWriter w, ProtocolSpec spec, FamilySpec family, FieldSpec f, Walk walk, string prefix, int depth, string local)
            {
                string count = prefix + f.CountField;
                string name = Lit(f.Name);
                int itemSize = f.GroupName is not null ? Math.Max(1, f.Children.Sum(FMinSize)) : f.ElementKind == FieldKind.String ? 1 : ScalarSize(f.Type);
                w.Line("if (!r.CheckItems(" + name + ", " + count + ", " + Int(itemSize) + ")) goto fail;");
                bool build = walk == Walk.Build;
                string element = FElementCs(f);
                string i = "i" + Int(depth);
                if (!build && f.GroupName is null && f.ElementKind == FieldKind.Scalar)
                {
                    w.Line("r.Skip(" + count + " * " + Int(ScalarSize(f.Type)) + ");");
                    return;
                }

                if (build)
                {
                    w.Line("var a_" + local + " = " + count + " == 0 ? global::System.Array.Empty<" + element + ">() : new " + element + "[" + count + "];");
                }

                w.Open("for (int " + i + " = 0; " + i + " < " + count + "; " + i + "++)");
                if (f.GroupName is not null)
                {
                    var childLocals = new Dictionary<string, string>(StringComparer.Ordinal);
                    EmitFWalk(w, spec, family, f.Children.ToList(), walk, "g" + Int(depth + 1) + "_", depth + 1, childLocals);
                    if (build)
                    {
                        w.Line("a_" + local + "[" + i + "] = new " + f.GroupName + "(" + string.Join(", ", f.Children.Where(FVisible).Select(c => childLocals[c.Name])) + ");");
                    }
                }
                else if (f.ElementKind == FieldKind.String)
                {
                    if (build)
                    {
                        w.Line("if (!r.ReadString(" + name + ", out string e_" + local + ")) goto fail;");
                        w.Line("a_" + local + "[" + i + "] = e_" + local + ";");
                    }
                    else
                    {
                        w.Line("if (!r.ReadStringSpan(" + name + ", out _)) goto fail;");
                    }
                }
                else
                {
                    w.Line("if (!r." + ReadMethod(f.Type) + "(" + name + ", out " + ScalarCsRaw(f.Type) + " e_" + local + ")) goto fail;");
                    w.Line("a_" + local + "[" + i + "] = " + (f.Oid ? "unchecked((uint)e_" + local + ")" : "e_" + local) + ";");
                }

                w.Close();
                if (build)
                {
                    w.Line("var " + local + " = global::System.Runtime.InteropServices.ImmutableCollectionsMarshal.AsImmutableArray(a_" + local + ");");
                }
            }

            // ------------------------------------------------------------------ trace, JSON, equality

            private static void EmitFamilyTraceAndJson(IndentedWriter w, ProtocolSpec spec, FamilySpec family, MessageSpec m, List<FieldSpec> body)
            {
                if (!m.IsPart)
                {
                    w.Line("/// <summary>Writes the message as a line in libpq's PQtrace layout: direction, size (type byte included: a sub-message has no length word), name, fields.</summary>");
                    w.Open("public void Trace(" + Rt + ".PgTraceWriter trace, char direction)");
                    w.Line("global::System.ArgumentNullException.ThrowIfNull(trace);");
                    w.Line("trace.BeginMessage(direction, EncodedLength, MessageName, maskLength: false, hasFields: " + (body.Count > 0 ? "true" : "false") + ");");
                    w.Line("TraceBody(trace);");
                    w.Line("trace.EndMessage(0, 0, checkLength: false);");
                    w.Close();
                    w.Line();
                    w.Line("/// <summary>Checks <paramref name=\"body\"/> as <see cref=\"TryDecode\"/> does and writes its trace line; a malformed one throws <see cref=\"" + Rt + ".PgProtocolException\"/> and writes nothing.</summary>");
                    w.Open("public static void Trace(" + Span + " body, " + Rt + ".PgTraceWriter trace, char direction" + CtxParam(family, true) + ")");
                    w.Line("global::System.ArgumentNullException.ThrowIfNull(trace);");
                    w.Line("Decode(body" + CtxArg(family) + ").Trace(trace, direction);");
                    w.Close();
                    w.Line();
                    w.Line("/// <summary>The message as its trace line, for logs and test failures.</summary>");
                    w.Line("public override string ToString() => " + Rt + ".PgSubMessages.Describe(this);");
                    w.Line();
                    w.Line("/// <summary>Writes the message as a JSON object: its name, its type byte and its fields (bytes as {\"hex\": ...}; absent fields left out).</summary>");
                    w.Open("public void WriteJson(global::System.Text.Json.Utf8JsonWriter writer)");
                    w.Line("global::System.ArgumentNullException.ThrowIfNull(writer);");
                    w.Line("writer.WriteStartObject();");
                    w.Line("writer.WriteString(\"name\", MessageName);");
                    w.Line("writer.WriteString(\"type\", " + Lit(((char)m.TypeByte).ToString()) + ");");
                    w.Line("writer.WriteStartObject(\"fields\");");
                    w.Line("WriteJsonFields(writer);");
                    w.Line("writer.WriteEndObject();");
                    w.Line("writer.WriteEndObject();");
                    w.Close();
                    w.Line();
                }
                else
                {
                    w.Line("/// <summary>The part as the fields of a trace line.</summary>");
                    w.Line("public override string ToString() => " + Rt + ".PgSubMessages.Describe(TraceBody);");
                    w.Line();
                }

                w.Line("/// <summary>Writes the fields to a trace line.</summary>");
                w.Open("internal void TraceBody(" + Rt + ".PgTraceWriter trace)");
                EmitFTrace(w, spec, family, body, "this", 0);
                w.Close();
                w.Line();
                w.Line("/// <summary>Writes the fields as JSON properties.</summary>");
                w.Open("internal void WriteJsonFields(global::System.Text.Json.Utf8JsonWriter writer)");
                EmitFJson(w, spec, family, body, "this", 0);
                w.Close();
                w.Line();
            }

            private static void EmitFTrace(IndentedWriter w, ProtocolSpec spec, FamilySpec family, List<FieldSpec> fields, string owner, int depth)
            {
                foreach (FieldSpec f in fields)
                {
                    if (f.Kind == FieldKind.TypeByte || (f.Kind == FieldKind.Scalar && f.Role != FieldRole.Value && f.Role != FieldRole.Count && f.Role != FieldRole.ValueLength))
                    {
                        continue;
                    }

                    string? present = PresenceOf(fields, f, owner);
                    if (present is not null)
                    {
                        w.Open("if (" + present + ")");
                    }

                    switch (f.Kind)
                    {
                        case FieldKind.Literal:
                            w.Line(f.Type == WireType.Byte1 ? "trace.Byte1(" + ByteLit(f.Literal!.Value) + ");" : TraceNumber(f.Type, Int(f.Literal!.Value)));
                            break;
                        case FieldKind.Scalar:
                            if (f.Role == FieldRole.Count)
                            {
                                w.Line(TraceNumber(f.Type, Access(owner, CountedBy(fields, f)!) + ".Length"));
                            }
                            else if (f.Role == FieldRole.ValueLength)
                            {
                                FieldSpec target = SizedBy(fields, f)!;
                                w.Line("trace.Int32(" + (target.Nullable && !target.IsConditional ? "(" + Access(owner, target) + "?.Length ?? -1)" : Val(target, owner) + ".Length") + ", masked: false);");
                            }
                            else
                            {
                                w.Line(TraceNumber(f.Type, (f.Oid ? "unchecked((int)" + Val(f, owner) + ")" : Val(f, owner))));
                            }

                            break;
                        case FieldKind.Enum:
                            w.Line("trace.Byte1(unchecked((byte)" + Val(f, owner) + "));");
                            break;
                        case FieldKind.FixedBytes:
                        case FieldKind.RestBytes:
                            w.Line("trace.Bytes(" + Val(f, owner) + ".Span, masked: false);");
                            break;
                        case FieldKind.SizedBytes:
                            w.Line(f.Nullable && !f.IsConditional
                                ? "if (" + Access(owner, f) + " is { } t" + Int(depth) + "_" + f.Name + ") { trace.Bytes(t" + Int(depth) + "_" + f.Name + ".Span, masked: false); }"
                                : "trace.Bytes(" + Val(f, owner) + ".Span, masked: false);");
                            break;
                        case FieldKind.String:
                            w.Line("trace.String(global::System.Text.Encoding.UTF8.GetBytes(" + Val(f, owner) + "), masked: false);");
                            break;
                        case FieldKind.Part:
                            w.Line(Val(f, owner) + ".TraceBody(trace);");
                            break;
                        case FieldKind.Array:
                            string item = "item" + Int(depth);
                            w.Open("foreach (" + FElementCs(f) + " " + item + " in " + Access(owner, f) + ")");
                            if (f.GroupName is not null)
                            {
                                w.Line(item + ".TraceBody(trace);");
                            }
                            else if (f.ElementKind == FieldKind.String)
                            {
                                w.Line("trace.String(global::System.Text.Encoding.UTF8.GetBytes(" + item + "), masked: false);");
                            }
                            else
                            {
                                w.Line(TraceNumber(f.Type, f.Oid ? "unchecked((int)" + item + ")" : item));
                            }

                            w.Close();
                            break;
                    }

                    if (present is not null)
                    {
                        w.Close();
                    }
                }
            }

            private static string TraceNumber(WireType t, string expr)
            {
                switch (t)
                {
                    case WireType.Byte1: return "trace.Int32(" + expr + ", masked: false);";
                    case WireType.Int8: return "trace.Int32(" + expr + ", masked: false);";
                    case WireType.Int16: return "trace.Int16(" + expr + ");";
                    case WireType.Int32: return "trace.Int32(" + expr + ", masked: false);";
                    default: return "trace.Int64(" + expr + ");";
                }
            }

            private static void EmitFJson(IndentedWriter w, ProtocolSpec spec, FamilySpec family, List<FieldSpec> fields, string owner, int depth)
            {
                foreach (FieldSpec f in fields.Where(FVisible))
                {
                    string name = Lit(f.Name);
                    string? present = Maybe(f) ? Access(owner, f) + " is not null" : null;
                    if (present is not null)
                    {
                        w.Open("if (" + present + ")");
                    }

                    switch (f.Kind)
                    {
                        case FieldKind.Scalar:
                            w.Line("writer.WriteNumber(" + name + ", " + Val(f, owner) + ");");
                            break;
                        case FieldKind.Enum:
                            w.Line("writer.WriteString(" + name + ", " + EnumNameSwitch(spec, f, Val(f, owner)) + ");");
                            break;
                        case FieldKind.FixedBytes:
                        case FieldKind.RestBytes:
                        case FieldKind.SizedBytes:
                            w.Line("writer.WriteStartObject(" + name + ");");
                            w.Line("writer.WriteString(\"hex\", global::System.Convert.ToHexStringLower(" + Val(f, owner) + ".Span));");
                            w.Line("writer.WriteEndObject();");
                            break;
                        case FieldKind.String:
                            w.Line("writer.WriteString(" + name + ", " + Val(f, owner) + ");");
                            break;
                        case FieldKind.Part:
                            w.Line("writer.WriteStartObject(" + name + ");");
                            w.Line(Val(f, owner) + ".WriteJsonFields(writer);");
                            w.Line("writer.WriteEndObject();");
                            break;
                        case FieldKind.Array:
                            string item = "item" + Int(depth);
                            w.Line("writer.WriteStartArray(" + name + ");");
                            w.Open("foreach (" + FElementCs(f) + " " + item + " in " + Access(owner, f) + ")");
                            if (f.GroupName is not null)
                            {
                                w.Line("writer.WriteStartObject();");
                                w.Line(item + ".WriteJsonFields(writer);");
                                w.Line("writer.WriteEndObject();");
                            }
                            else if (f.ElementKind == FieldKind.String)
                            {
                                w.Line("writer.WriteStringValue(" + item + ");");
                            }
                            else
                            {
                                w.Line("writer.WriteNumberValue(" + item + ");");
                            }

                            w.Close();
                            w.Line("writer.WriteEndArray();");
                            break;
                    }

                    if (present is not null)
                    {
                        w.Close();
                    }
                }
            }

            private static string EnumNameSwitch(ProtocolSpec spec, FieldSpec f, string value)
            {
                string enumCs = "global::" + spec.Namespace + "." + f.EnumName;
                var arms = f.EnumNames.Select(n => enumCs + "." + n + " => " + Lit(n)).ToList();
                arms.Add("_ => ((long)" + value + ").ToString(global::System.Globalization.CultureInfo.InvariantCulture)");
                return value + " switch { " + string.Join(", ", arms) + " }";
            }

            private static void EmitFamilyEquality(IndentedWriter w, ProtocolSpec spec, FamilySpec family, string typeName, List<FieldSpec> visible)
            {
                w.Line("/// <inheritdoc/>");
                w.Open("public bool Equals(" + typeName + "? other)");
                var terms = new List<string> { "other is not null" };
                foreach (FieldSpec f in visible)
                {
                    string p = Pascal(f.Name);
                    terms.Add(f.Kind == FieldKind.Array || f.Kind == FieldKind.FixedBytes || f.Kind == FieldKind.RestBytes || f.Kind == FieldKind.SizedBytes
                        ? Rt + ".PgEquality.Equal(" + p + ", other." + p + ")"
                        : "global::System.Collections.Generic.EqualityComparer<" + FCs(spec, family, f) + ">.Default.Equals(" + p + ", other." + p + ")");
                }

                w.Line("return " + string.Join("\n                && ", terms) + ";");
                w.Close();
                w.Line();
                EmitObjectEqualsAndHash(w, typeName, visible);
            }

            // ------------------------------------------------------------------ groups and views

            private static void EmitFamilyGroup(IndentedWriter w, ProtocolSpec spec, FamilySpec family, MessageSpec m, FieldSpec group)
            {
                List<FieldSpec> children = group.Children.ToList();
                List<FieldSpec> visible = children.Where(FVisible).ToList();
                w.Line("/// <summary>One item of " + m.Name + "." + group.Name + ": " + FieldNotation(group).Replace("<", "&lt;").Replace(">", "&gt;").Replace("&", "&amp;") + ".</summary>");
                w.Open("public sealed partial class " + group.GroupName + " : global::System.IEquatable<" + group.GroupName + ">");
                EmitFamilyCtor(w, spec, family, group.GroupName!, visible);
                w.Line("/// <summary>The size of the item.</summary>");
                w.Open("internal long SizeOfBody()");
                w.Line("long n = 0;");
                EmitFSize(w, spec, family, children, "this", 0);
                w.Line("return n;");
                w.Close();
                w.Line();
                w.Line("/// <summary>Writes the item.</summary>");
                w.Open("internal void WriteBody(ref " + Rt + ".PgSpanWriter w)");
                EmitFWrites(w, spec, family, children, "this", 0);
                w.Close();
                w.Line();
                w.Line("/// <summary>Checks the encode-side rules of the item.</summary>");
                w.Open("internal void CheckEncodable(string message" + CtxParam(family, false) + ")");
                if (family.HasContext)
                {
                    EmitContextLocals(w, family, encodeSide: true);
                }

                EmitFGuards(w, spec, family, children, "this", 0, group.Name + ".");
                w.Close();
                w.Line();
                w.Line("/// <summary>Writes the item's fields to a trace line.</summary>");
                w.Open("internal void TraceBody(" + Rt + ".PgTraceWriter trace)");
                EmitFTrace(w, spec, family, children, "this", 0);
                w.Close();
                w.Line();
                w.Line("/// <summary>Writes the item's fields as JSON properties.</summary>");
                w.Open("internal void WriteJsonFields(global::System.Text.Json.Utf8JsonWriter writer)");
                EmitFJson(w, spec, family, children, "this", 0);
                w.Close();
                w.Line();
                w.Line("/// <summary>The item as the fields of a trace line.</summary>");
                w.Line("public override string ToString() => " + Rt + ".PgSubMessages.Describe(TraceBody);");
                w.Line();
                EmitFamilyEquality(w, spec, family, group.GroupName!, visible);
                w.Close();
                w.Line();
            }

            private static void EmitFamilyView(IndentedWriter w, ProtocolSpec spec, FamilySpec family, MessageSpec m, List<FieldSpec> body)
            {
                w.Line("/// <summary>A zero-copy view of a received " + m.Name + ", valid as long as the bytes it was read from" + (family.HasContext ? "; it keeps what the context said when it was read" : "") + ".</summary>");
                w.Open("public readonly ref struct View");
                w.Line("private readonly " + Span + " _body;");
                if (family.HasContext)
                {
                    w.Line("private readonly int _version;");
                    w.Line("private readonly bool _streaming;");
                    w.Line("private readonly bool _parallel;");
                    w.Line();
                    w.Open("private View(" + Span + " body, " + Context + "? context)");
                    w.Line("_body = body;");
                    w.Line("_version = context?.ProtocolVersion ?? " + Int(family.MaxVersion) + ";");
                    w.Line("_streaming = context?.InStreamedTransaction ?? false;");
                    w.Line("_parallel = context?.Streaming == " + Rt + ".PgOutputStreaming.Parallel;");
                    w.Close();
                }
                else
                {
                    w.Line();
                    w.Line("private View(" + Span + " body) => _body = body;");
                }

                w.Line();
                w.Line("/// <summary>The body: the bytes after the type byte.</summary>");
                w.Line("public " + Span + " Body => _body;");
                w.Line();
                w.Line("/// <summary>Validates <paramref name=\"body\"/> as strictly as <see cref=\"TryDecode\"/> (Strings in any encoding) and wraps it without copying.</summary>");
                w.Open("public static bool TryRead(" + Span + " body" + CtxParam(family, false) + ", out View view, out " + Rt + ".PgDecodeError error)");
                w.Open("if (!TryValidate(body" + CtxArg(family) + ", out error))");
                w.Line("view = default;");
                w.Line("return false;");
                w.Close();
                w.Line("view = new View(body" + CtxArg(family) + ");");
                w.Line("return true;");
                w.Close();
                w.Line();
                w.Line("/// <summary>Validates and wraps <paramref name=\"body\"/>; throws <see cref=\"" + Rt + ".PgProtocolException\"/> if it is malformed.</summary>");
                w.Open("public static View Read(" + Span + " body" + CtxParam(family, true) + ")");
                w.Line("return TryRead(body" + CtxArg(family) + ", out View view, out " + Rt + ".PgDecodeError error) ? view : throw new " + Rt + ".PgProtocolException(error);");
                w.Close();
                w.Line();
                w.Line("/// <summary>Copies the view into an owned message" + (family.HasContext ? " (with the context it was read with)" : "") + ".</summary>");
                w.Line("public " + m.Name + " ToMessage(" + (family.HasContext ? Context + "? context = null" : "") + ") => Decode(_body" + CtxArg(family) + ");");
                w.Line();

                // An accessor per scalar, enum, String or bytes field: it walks the validated body to the field.
                var conditionalNames = new HashSet<string>(body.Where(x => x.IsConditional).Select(x => x.Name), StringComparer.Ordinal);
                for (int i = 0; i < body.Count; i++)
                {
                    FieldSpec f = body[i];
                    if (!FVisible(f) || f.Kind == FieldKind.Part || f.Kind == FieldKind.Array)
                    {
                        continue;
                    }

                    bool bytes = f.Kind == FieldKind.String || f.Kind == FieldKind.FixedBytes || f.Kind == FieldKind.RestBytes || f.Kind == FieldKind.SizedBytes;
                    string type = f.Kind == FieldKind.Scalar ? ScalarCs(f) : f.Kind == FieldKind.Enum ? "global::" + spec.Namespace + "." + f.EnumName : Span;
                    bool maybe = f.IsConditional && !bytes;
                    string prop = Pascal(f.Name);
                    if (f.IsConditional && bytes)
                    {
                        w.Line("/// <summary>Whether " + f.Name + " is present (" + ConditionText(f) + ").</summary>");
                        w.Line("public bool Has" + prop + " => Find" + prop + "(out _);");
                        w.Line();
                    }

                    w.Line("/// <summary>" + f.Name + ", read in place" + (f.IsConditional ? (bytes ? "; empty when absent" : "; null when absent") : "") + ".</summary>");
                    w.Line("public " + type + (maybe ? "?" : "") + " " + prop + " => Find" + prop + "(out " + type + " value) ? value : " + (maybe ? "null" : "default") + ";");
                    w.Line();
                    w.Open("private bool Find" + prop + "(out " + type + " value)");
                    w.Line(Span + " body = _body;");
                    if (family.HasContext)
                    {
                        w.Line("int version = _version;");
                        w.Line("bool streaming = _streaming;");
                        w.Line("bool parallel = _parallel;");
                        w.Line("_ = version; _ = streaming; _ = parallel;");
                    }

                    w.Line("var r = new " + Rt + ".PgSpanReader(body, MessageName, 1);");
                    EmitFWalk(w, spec, family, body.Take(i).ToList(), Walk.Check, "f_", 0, new Dictionary<string, string>(StringComparer.Ordinal));
                    if (f.IsConditional)
                    {
                        string presence;
                        if (f.Optional)
                        {
                            presence = "r.Remaining > 0 && (" + string.Join(" || ", f.EnumValues.Select(v => "body[r.Position] == 0x" + v.ToString("X2", CultureInfo.InvariantCulture))) + ")";
                            string rest = DecodeCondition(f with { Optional = false }, RawOf(body.Take(i)), "f_", conditionalNames);
                            presence = rest == "true" ? presence : rest + " && " + presence;
                        }
                        else
                        {
                            presence = DecodeCondition(f, RawOf(body.Take(i)), "f_", conditionalNames);
                        }

                        w.Open("if (!(" + presence + "))");
                        w.Line("value = default;");
                        w.Line("return false;");
                        w.Close();
                    }

                    string name = Lit(f.Name);
                    switch (f.Kind)
                    {
                        case FieldKind.Scalar:
                            w.Line("if (!r." + ReadMethod(f.Type) + "(" + name + ", out " + ScalarCsRaw(f.Type) + " raw)) goto fail;");
                            w.Line("value = " + (f.Oid ? "unchecked((uint)raw)" : "raw") + ";");
                            break;
                        case FieldKind.Enum:
                            w.Line("if (!r.ReadByte1(" + name + ", out byte raw)) goto fail;");
                            w.Line("value = (" + type + ")" + (f.EnumType == WireType.Int8 ? "unchecked((sbyte)raw)" : "raw") + ";");
                            break;
                        case FieldKind.String:
                            w.Line("if (!r.ReadStringSpan(" + name + ", out value)) goto fail;");
                            break;
                        case FieldKind.FixedBytes:
                            w.Line("if (!r.ReadBytes(" + name + ", " + Int(f.FixedSize) + ", out value)) goto fail;");
                            break;
                        case FieldKind.RestBytes:
                            w.Line("value = r.ReadRest();");
                            break;
                        case FieldKind.SizedBytes:
                            w.Line("if (!r.ReadValue(" + name + ", f_" + f.LengthField + ", out value)) goto fail;");
                            break;
                    }

                    w.Line("return true;");
                    w.Line("fail:");
                    w.Line("throw new " + Rt + ".PgProtocolException(r.Error);");
                    w.Close();
                    w.Line();
                }

                w.Close();
                w.Line();
            }

            /// <summary>The locals holding the raw bytes of the enum fields among <paramref name="fields"/>, as the walk names them.</summary>
            private static Dictionary<string, string> RawOf(IEnumerable<FieldSpec> fields)
                => fields.Where(f => f.Kind == FieldKind.Enum).ToDictionary(f => f.Name, f => "b_f_" + f.Name, StringComparer.Ordinal);

            private static string ViewScalar(FieldSpec f, string at)
            {
                string bp = "global::System.Buffers.Binary.BinaryPrimitives";
                switch (f.Type)
                {
                    case WireType.Byte1: return "_body[" + at + "]";
                    case WireType.Int8: return "unchecked((sbyte)_body[" + at + "])";
                    case WireType.Int16: return bp + ".ReadInt16BigEndian(_body.Slice(" + at + "))";
                    case WireType.Int32: return f.Oid ? bp + ".ReadUInt32BigEndian(_body.Slice(" + at + "))" : bp + ".ReadInt32BigEndian(_body.Slice(" + at + "))";
                    default: return bp + ".ReadInt64BigEndian(_body.Slice(" + at + "))";
                }
            }
        }
    }
}

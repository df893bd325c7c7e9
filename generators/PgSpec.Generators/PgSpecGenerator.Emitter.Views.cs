using System.Collections.Generic;
using System.Linq;
using PgSpec.Generators.Model;

namespace PgSpec.Generators
{
    public sealed partial class PgSpecGenerator
    {
        internal static partial class Emitter
        {
            /// <summary>
            /// The borrowed view: a ref struct over the received body, validated once, whose
            /// accessors read the wire bytes in place and allocate nothing.
            /// </summary>
            private static void EmitView(IndentedWriter w, MessageSpec m, bool protocol)
            {
                bool typed = m.TypeByte >= 0;
                List<FieldSpec> body = m.Fields.Skip(typed ? 2 : 1).ToList();
                FieldSpec? slots = protocol ? SlotsField(body) : null;
                w.Line(slots is null
                    ? "/// <summary>A zero-copy view of a received " + m.Name + ", valid as long as the bytes it was read from.</summary>"
                    : "/// <summary>A zero-copy view of a received " + m.Name + ", valid as long as the bytes it was read from; one read from a reader's message (<see cref=\"Read(in " + Rt + ".PgReceivedMessage, " + Rt + ".DecodeContext?)\"/>) reads its " + slots.Name + " from places the reader keeps until it checks another list, and walks them after that (a list taken from the view before the reader's next read is valid until that read: take it again).</summary>");
                w.Open("public readonly ref struct View");
                w.Line("private readonly " + Span + " _body;");
                if (slots is not null)
                {
                    // Where the reader found the values of the list (none when it did not record them).
                    w.Line("private readonly " + Rt + ".PgValuePlaces _places;");
                    w.Line();
                    w.Line("private View(" + Span + " body) => _body = body;");
                    w.Line();
                    w.Line("private View(" + Span + " body, " + Rt + ".PgValuePlaces places)");
                    w.Line("{");
                    w.Line("    _body = body;");
                    w.Line("    _places = places;");
                    w.Line("}");
                }
                else
                {
                    w.Line();
                    w.Line("private View(" + Span + " body) => _body = body;");
                }

                w.Line();
                w.Line("/// <summary>The message body: the bytes after the length word.</summary>");
                w.Line("public " + Span + " Body => _body;");
                w.Line();
                w.Line("/// <summary>Validates <paramref name=\"body\"/> as strictly as <see cref=\"TryDecode\"/>, but for Strings, which may be in any encoding, and wraps it without copying.</summary>");
                w.Open("public static bool TryRead(" + Span + " body, " + Rt + ".DecodeContext? context, out View view, out " + Rt + ".PgDecodeError error)");
                w.Open("if (!TryValidate(body, context, out error))");
                w.Line("view = default;");
                w.Line("return false;");
                w.Close();
                w.Line("view = new View(body);");
                w.Line("return true;");
                w.Close();
                w.Line();
                w.Line("/// <summary>Validates and wraps <paramref name=\"body\"/>; throws <see cref=\"" + Rt + ".PgProtocolException\"/> if it is malformed.</summary>");
                w.Open("public static View Read(" + Span + " body, " + Rt + ".DecodeContext? context = null)");
                w.Line("return TryRead(body, context, out View view, out " + Rt + ".PgDecodeError error) ? view : throw new " + Rt + ".PgProtocolException(error);");
                w.Close();
                w.Line();
                if (protocol)
                {
                    // A reader names and validates what it reads: its messages need no second check.
                    var kinds = new List<string>();
                    if (m.Direction != Direction.Backend)
                    {
                        kinds.Add("message.FrontendKind == " + Rt + ".FrontendMessageKind." + m.Name);
                    }

                    if (m.Direction != Direction.Frontend)
                    {
                        kinds.Add("message.BackendKind == " + Rt + ".BackendMessageKind." + m.Name);
                    }

                    w.Line("/// <summary>");
                    w.Line("/// Wraps the body of a message a <see cref=\"" + Rt + ".PgMessageReader\"/> has read, without checking it");
                    w.Line("/// again when the reader validated it (see <see cref=\"" + Rt + ".PgReceivedMessage.IsValidated\"/>); another");
                    w.Line("/// message is an <see cref=\"global::System.ArgumentException\"/>.");
                    w.Line("/// </summary>");
                    // Small enough to inline into the caller's loop: the failure is out of line.
                    w.Line("[global::System.Runtime.CompilerServices.MethodImpl(global::System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]");
                    w.Open("public static View Read(scoped in " + Rt + ".PgReceivedMessage message, " + Rt + ".DecodeContext? context = null)");
                    w.Open("if (!(" + string.Join(" || ", kinds) + "))");
                    w.Line("ThrowNotThisMessage(message.Name);");
                    w.Close();
                    w.Line();
                    w.Line("return message.IsValidated ? new View(message.Body" + (slots is not null ? ", message.ValuePlaces" : "") + ") : Read(message.Body, context);");
                    w.Close();
                    w.Line();
                    w.Line("[global::System.Diagnostics.CodeAnalysis.DoesNotReturn]");
                    w.Line("[global::System.Runtime.CompilerServices.MethodImpl(global::System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]");
                    w.Line("private static void ThrowNotThisMessage(string name) => throw new global::System.ArgumentException(\"the message is \" + name + \", not \" + MessageName, \"message\");");
                    w.Line();
                }

                w.Line("/// <summary>Copies the view into an owned message.</summary>");
                if (slots is not null && IsValueArray(slots))
                {
                    // The places of the values, when the reader recorded them, spare the list a second walk.
                    w.Line("public " + m.Name + " ToMessage(" + Rt + ".DecodeContext? context = null)");
                    w.Line("    => TryDecodeRecorded(_body, _places.Current, context, out " + m.Name + "? message, out " + Rt + ".PgDecodeError error) ? message : throw new " + Rt + ".PgProtocolException(error);");
                }
                else
                {
                    w.Line("public " + m.Name + " ToMessage(" + Rt + ".DecodeContext? context = null) => Decode(_body, context);");
                }
                w.Line();
                EmitAccessors(w, m, body, "_body", typed ? "5" : "4", lastEndsSpan: true, slots?.Name);
                w.Close();
                w.Line();
            }

            /// <param name="lastEndsSpan">The span ends where the last field ends (a validated message body): a list in the last field is the rest of it, without walking its items.</param>
            /// <param name="slotsField">The value list whose values' places the view may have from its reader (<c>_places</c>).</param>
            private static void EmitAccessors(IndentedWriter w, MessageSpec m, List<FieldSpec> fields, string span, string origin, bool lastEndsSpan, string? slotsField = null)
            {
                for (int k = 0; k < fields.Count; k++)
                {
                    FieldSpec f = fields[k];
                    if (!IsVisible(f))
                    {
                        continue;
                    }

                    string type = ViewType(f);
                    w.Line("/// <summary>" + f.Name + ", read in place.</summary>");
                    w.Open("public " + type + " " + Pascal(f.Name));
                    w.Open("get");
                    w.Line("var r = new " + Rt + ".PgSpanReader(" + span + ", MessageName, " + origin + ");");
                    EmitWalk(w, m, fields.Take(k).ToList(), Mode.Skip, "f_", 0, new Dictionary<string, string>());
                    if (f.Name == slotsField)
                    {
                        // Read from the places while they are this message's (else the list walks its values): its end need not be found.
                        w.Open("if (_places.Count != 0)");
                        w.Line("return new " + Rt + ".PgValueList(" + span + ", r.Position, f_" + f.CountField + ", _places);");
                        w.Close();
                        w.Line();
                    }

                    EmitViewRead(w, f, span, rest: lastEndsSpan && k == fields.Count - 1);
                    w.Close();
                    w.Close();
                    w.Line();
                }
            }

            private static string ViewType(FieldSpec f)
            {
                switch (f.Kind)
                {
                    case FieldKind.Scalar: return ScalarCs(f);
                    case FieldKind.Enum: return f.EnumName!;
                    case FieldKind.FixedBytes:
                    case FieldKind.RestBytes:
                    case FieldKind.String: return Span;
                    case FieldKind.SizedBytes: return f.Nullable ? Rt + ".PgValue" : Span;
                    case FieldKind.Array:
                        if (f.GroupName is not null)
                        {
                            return IsValueGroup(f) ? Rt + ".PgValueList" : f.GroupName + ".List";
                        }

                        if (f.ElementKind == FieldKind.String)
                        {
                            return Rt + ".PgStringList";
                        }

                        return f.Type == WireType.Int16 ? Rt + ".PgInt16List" : f.Oid ? Rt + ".PgOidList" : Rt + ".PgInt32List";
                    default: return "object";
                }
            }

            private static void EmitViewRead(IndentedWriter w, FieldSpec f, string span, bool rest)
            {
                switch (f.Kind)
                {
                    case FieldKind.Scalar:
                        string raw = f.Type == WireType.Byte1 ? "r.NextByte()" : f.Type == WireType.Int8 ? "unchecked((sbyte)r.NextByte())" : "r.Next" + f.Type + "()";
                        w.Line("return " + (f.Oid ? "unchecked((uint)" + raw + ")" : raw) + ";");
                        break;
                    case FieldKind.Enum:
                        w.Line("return (" + f.EnumName + ")" + (f.EnumType == WireType.Int8 ? "unchecked((sbyte)r.NextByte())" : "r.NextByte()") + ";");
                        break;
                    case FieldKind.FixedBytes:
                        w.Line("return r.NextBytes(" + Int(f.FixedSize) + ");");
                        break;
                    case FieldKind.RestBytes:
                        w.Line("return r.ReadRest();");
                        break;
                    case FieldKind.String:
                        w.Line("return r.NextString();");
                        break;
                    case FieldKind.SizedBytes:
                        string len = "f_" + f.LengthField;
                        w.Line(f.Nullable
                            ? "return " + len + " < 0 ? " + Rt + ".PgValue.Null : new " + Rt + ".PgValue(r.NextBytes(" + len + "));"
                            : "return r.NextBytes(" + len + ");");
                        break;
                    case FieldKind.Array:
                        string count = f.Terminated ? "-1" : "f_" + f.CountField;
                        if (f.GroupName is null && f.ElementKind == FieldKind.Scalar)
                        {
                            w.Line("return new " + ViewType(f) + "(r.NextBytes(" + count + " * " + Int(ScalarSize(f.Type)) + "));");
                            break;
                        }

                        if (rest && !f.Terminated)
                        {
                            // The last field of a validated body: its items are the rest of it.
                            w.Line("return new " + ViewType(f) + "(" + span + ".Slice(r.Position), " + count + ");");
                            break;
                        }

                        w.Line("int start = r.Position;");
                        if (f.Terminated)
                        {
                            w.Line("int end = start;");
                            w.Open("while (!r.NextIsListEnd())");
                            EmitSkipItem(w, f);
                            w.Line("end = r.Position;");
                            w.Close();
                            w.Line("return new " + ViewType(f) + "(" + span + ".Slice(start, end - start), -1);");
                        }
                        else
                        {
                            w.Open("for (int i = 0; i < " + count + "; i++)");
                            EmitSkipItem(w, f);
                            w.Close();
                            w.Line("return new " + ViewType(f) + "(" + span + ".Slice(start, r.Position - start), " + count + ");");
                        }

                        break;
                }
            }

            private static void EmitSkipItem(IndentedWriter w, FieldSpec array)
            {
                if (array.GroupName is null)
                {
                    w.Line("r.NextString();");
                }
                else if (IsValueGroup(array))
                {
                    w.Line("int n = r.NextInt32();");
                    w.Line("r.Skip(global::System.Math.Max(n, 0));");
                }
                else
                {
                    w.Line(array.GroupName + ".SkipItem(ref r);");
                }
            }

            private static void EmitGroupViews(IndentedWriter w, MessageSpec m, FieldSpec group)
            {
                List<FieldSpec> children = group.Children.ToList();
                w.Line("/// <summary>Moves past one item, in a body already validated.</summary>");
                w.Open("internal static void SkipItem(ref " + Rt + ".PgSpanReader r)");
                EmitWalk(w, m, children, Mode.Skip, "g_", 1, new Dictionary<string, string>());
                w.Close();
                w.Line();

                w.Line("/// <summary>A zero-copy view of one " + group.GroupName + ".</summary>");
                w.Open("public readonly ref struct View");
                w.Line("private readonly " + Span + " _item;");
                w.Line();
                w.Line("internal View(" + Span + " item) => _item = item;");
                w.Line();
                w.Line("/// <summary>The item's bytes.</summary>");
                w.Line("public " + Span + " Bytes => _item;");
                w.Line();
                EmitAccessors(w, m, children, "_item", "0", lastEndsSpan: false);
                w.Close();
                w.Line();

                w.Line("/// <summary>The items of a received list, read in place.</summary>");
                w.Open("public readonly ref struct List");
                w.Line("private readonly " + Span + " _items;");
                w.Line("private readonly int _count;");
                w.Line();
                w.Line("internal List(" + Span + " items, int count)");
                w.Line("{");
                w.Line("    _items = items;");
                w.Line("    _count = count;");
                w.Line("}");
                w.Line();
                w.Line("/// <summary>The number of items.</summary>");
                w.Open("public int Count");
                w.Open("get");
                w.Open("if (_count >= 0)");
                w.Line("return _count;");
                w.Close();
                w.Line("int n = 0;");
                w.Open("foreach (View _ in this)");
                w.Line("n++;");
                w.Close();
                w.Line("return n;");
                w.Close();
                w.Close();
                w.Line();
                w.Line("/// <summary>Enumerates the items.</summary>");
                w.Line("public Enumerator GetEnumerator() => new Enumerator(_items);");
                w.Line();
                w.Line("/// <summary>Enumerates the items of a <see cref=\"List\"/>.</summary>");
                w.Open("public ref struct Enumerator");
                w.Line("private readonly " + Span + " _items;");
                w.Line("private int _position;");
                w.Line("private View _current;");
                w.Line();
                w.Line("internal Enumerator(" + Span + " items)");
                w.Line("{");
                w.Line("    _items = items;");
                w.Line("    _position = 0;");
                w.Line("    _current = default;");
                w.Line("}");
                w.Line();
                w.Line("/// <summary>The current item.</summary>");
                w.Line("public View Current => _current;");
                w.Line();
                w.Line("/// <summary>Moves to the next item.</summary>");
                w.Open("public bool MoveNext()");
                w.Open("if (_position >= _items.Length)");
                w.Line("return false;");
                w.Close();
                w.Line("var r = new " + Rt + ".PgSpanReader(_items.Slice(_position), MessageName, 0);");
                w.Line("SkipItem(ref r);");
                w.Line("_current = new View(_items.Slice(_position, r.Position));");
                w.Line("_position += r.Position;");
                w.Line("return true;");
                w.Close();
                w.Close();
                w.Close();
                w.Line();
            }
        }
    }
}

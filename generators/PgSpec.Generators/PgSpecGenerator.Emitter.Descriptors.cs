using System.Collections.Generic;
using System.Linq;
using PgSpec.Generators.Model;

namespace PgSpec.Generators
{
    public sealed partial class PgSpecGenerator
    {
        internal static partial class Emitter
        {
            /// <summary>The spec as data: what tools, tests and fuzzers derive their work from.</summary>
            private static string EmitDescriptors(ProtocolSpec spec)
            {
                var w = new IndentedWriter();
                w.Line(Header.TrimEnd('\n'));
                w.Line();
                w.Open("namespace " + spec.Namespace);
                w.Line("/// <summary>Every message of the specs, as data.</summary>");
                w.Open("public static partial class PgProtocolSpec");
                w.Line("/// <summary>The messages, in name order.</summary>");
                w.Line("public static global::System.Collections.Generic.IReadOnlyList<" + Rt + ".PgMessageDescriptor> Messages { get; } = new " + Rt + ".PgMessageDescriptor[]");
                w.Line("{");
                w.Indent();
                foreach (MessageSpec m in spec.Messages)
                {
                    w.Line("new " + Rt + ".PgMessageDescriptor");
                    w.Line("{");
                    w.Indent();
                    w.Line("Name = " + Lit(m.Name) + ",");
                    w.Line("Frontend = " + Bool(m.Direction != Direction.Backend) + ",");
                    w.Line("Backend = " + Bool(m.Direction != Direction.Frontend) + ",");
                    w.Line("TypeByte = " + Int(m.TypeByte) + ",");
                    w.Line("MaxLength = " + Int(m.MaxLength) + ",");
                    w.Line("ByContext = " + Bool(m.ByContext) + ",");
                    w.Line("Untraced = " + Bool(m.Untraced) + ",");
                    w.Line("MessageType = typeof(" + m.Name + "),");
                    w.Line("Source = " + Lit(FileName(m.Path) + ":" + Int(m.Line)) + ",");
                    w.Line("Fields = new " + Rt + ".PgFieldDescriptor[]");
                    w.Line("{");
                    w.Indent();
                    foreach (FieldSpec f in m.Fields.Skip(m.TypeByte >= 0 ? 2 : 1))
                    {
                        EmitFieldDescriptor(w, f);
                    }

                    w.Outdent();
                    w.Line("},");
                    w.Outdent();
                    w.Line("},");
                }

                w.Outdent();
                w.Line("};");
                w.Line();
                w.Line("/// <summary>The default limits of these messages' length words, for framing and encoding.</summary>");
                w.Line(spec.Namespace == ProtocolNamespace
                    ? "public static " + Rt + ".PgLimits Limits => " + Rt + ".PgLimits.Default;"
                    : "public static " + Rt + ".PgLimits Limits { get; } = " + Rt + ".PgLimits.Create(static (direction, typeByte) => direction == " + Rt + ".PgDirection.Frontend ? FrontendMessages.DefaultMaxLength(typeByte) : BackendMessages.DefaultMaxLength(typeByte), FrontendMessages.DefaultMaxStartupPacketLength);");
                w.Close();
                w.Close();
                return w.ToString();
            }

            private static void EmitFieldDescriptor(IndentedWriter w, FieldSpec f)
            {
                string kind;
                switch (f.Kind)
                {
                    case FieldKind.Scalar:
                        kind = f.Role == FieldRole.Count ? "Count" : f.Role == FieldRole.ValueLength ? "ValueLength" : "Scalar";
                        break;
                    default:
                        kind = f.Kind.ToString();
                        break;
                }

                var parts = new List<string>
                {
                    "Name = " + Lit(f.Name),
                    "Kind = " + Rt + ".PgFieldKind." + kind,
                    "WireType = " + Lit(f.Type == WireType.None ? "Group" : f.Type.ToString()),
                };
                if (f.Literal.HasValue)
                {
                    parts.Add("Literal = " + Int(f.Literal.Value));
                }

                if (f.FixedSize > 0)
                {
                    parts.Add("FixedSize = " + Int(f.FixedSize));
                }

                if (f.Nullable)
                {
                    parts.Add("Nullable = true");
                }

                if (f.Oid)
                {
                    parts.Add("Oid = true");
                }

                if (f.CountField is not null)
                {
                    parts.Add("CountField = " + Lit(f.CountField));
                }

                if (f.Terminated)
                {
                    parts.Add("Terminated = true");
                }

                if (f.EnumName is not null)
                {
                    parts.Add("EnumName = " + Lit(f.EnumName));
                    parts.Add("EnumValues = new long[] { " + string.Join(", ", f.EnumValues.Select(v => Int(v))) + " }");
                    parts.Add("EnumNames = new string[] { " + string.Join(", ", f.EnumNames.Select(Lit)) + " }");
                }

                if (f.HasRange)
                {
                    parts.Add("Range = (" + Int(f.RangeMin) + "L, " + Int(f.RangeMax) + "L)");
                }

                if (f.HasVersionSizes)
                {
                    parts.Add("VersionSizes = (" + Int(f.MinSize30) + ", " + Int(f.MaxSize30) + ", " + Int(f.MinSize32) + ", " + Int(f.MaxSize32) + ")");
                }

                if (f.IsConditional)
                {
                    parts.Add("Condition = " + Lit(ConditionText(f)));
                }

                if (f.PartName is not null)
                {
                    parts.Add("PartName = " + Lit(f.PartName));
                }

                if (f.Kind == FieldKind.Array)
                {
                    parts.Add("ElementKind = " + Rt + ".PgFieldKind." + (f.GroupName is not null ? "Array" : f.ElementKind.ToString()));
                }

                if (f.GroupName is null)
                {
                    w.Line("new " + Rt + ".PgFieldDescriptor { " + string.Join(", ", parts) + " },");
                    return;
                }

                parts.Add("GroupName = " + Lit(f.GroupName));
                w.Line("new " + Rt + ".PgFieldDescriptor");
                w.Line("{");
                w.Indent();
                foreach (string part in parts)
                {
                    w.Line(part + ",");
                }

                w.Line("Children = new " + Rt + ".PgFieldDescriptor[]");
                w.Line("{");
                w.Indent();
                foreach (FieldSpec child in f.Children)
                {
                    EmitFieldDescriptor(w, child);
                }

                w.Outdent();
                w.Line("},");
                w.Outdent();
                w.Line("},");
            }
        }
    }
}

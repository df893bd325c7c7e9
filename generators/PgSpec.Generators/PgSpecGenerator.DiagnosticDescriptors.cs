using Microsoft.CodeAnalysis;

namespace PgSpec.Generators
{
    public sealed partial class PgSpecGenerator
    {
        internal static class DiagnosticDescriptors
        {
            private const string Category = "PgSpec";

            public static readonly DiagnosticDescriptor Syntax = Create("PGSPEC001", "Spec line cannot be read", "{0}");
            public static readonly DiagnosticDescriptor UnknownType = Create("PGSPEC002", "Unknown field type", "{0}");
            public static readonly DiagnosticDescriptor UnknownReference = Create("PGSPEC003", "Reference to no earlier field", "{0}");
            public static readonly DiagnosticDescriptor DuplicateName = Create("PGSPEC004", "Name defined twice", "{0}");
            public static readonly DiagnosticDescriptor AmbiguousTypeByte = Create("PGSPEC005", "Type byte shared without a discriminator", "{0}");
            public static readonly DiagnosticDescriptor MisplacedRest = Create("PGSPEC006", "Byten must be the last field", "{0}");
            public static readonly DiagnosticDescriptor BadLiteral = Create("PGSPEC007", "Invalid literal", "{0}");
            public static readonly DiagnosticDescriptor BadHeader = Create("PGSPEC008", "Invalid message header or framing fields", "{0}");
            public static readonly DiagnosticDescriptor UnknownEnum = Create("PGSPEC009", "Invalid enum", "{0}");
            public static readonly DiagnosticDescriptor BadAttribute = Create("PGSPEC010", "Invalid field attribute", "{0}");
            public static readonly DiagnosticDescriptor BadTerminator = Create("PGSPEC011", "Invalid terminated list", "{0}");
            public static readonly DiagnosticDescriptor UnusedField = Create("PGSPEC012", "Count or length field used by nothing", "{0}");
            public static readonly DiagnosticDescriptor BadFlow = Create("PGSPEC015", "Invalid flow option", "{0}");
            public static readonly DiagnosticDescriptor MissingRuntime = Create("PGSPEC013", "PgSpec.Protocol is not referenced", "The code generated from the specs (namespace {0}) is built on PgSpec.Protocol, which this project does not reference: add <PackageReference Include=\"PgSpec.Protocol\" /> beside PgSpec.Generators");
            public static readonly DiagnosticDescriptor OutdatedRuntime = Create("PGSPEC016", "PgSpec.Protocol is older than PgSpec.Generators", "The code generated from the specs (namespace {0}) calls parts of PgSpec.Protocol that the referenced PgSpec.Protocol does not have: it is older than PgSpec.Generators; reference the same version of both packages");
            public static readonly DiagnosticDescriptor ProtocolNamespaceTaken = Create("PGSPEC014", "The namespace PgSpec.Protocol is the protocol's own", "The namespace {0} belongs to PgSpec.Protocol's own assembly, whose types the code generated from the specs would clash with: generate it into a namespace of your own (set <PgSpecNamespace> to another namespace than {0}, or leave it out for the project's RootNamespace)");

            private static DiagnosticDescriptor Create(string id, string title, string format)
                => new DiagnosticDescriptor(id, title, format, Category, DiagnosticSeverity.Error, isEnabledByDefault: true);

            public static DiagnosticDescriptor? Find(string id)
            {
                switch (id)
                {
                    case "PGSPEC001": return Syntax;
                    case "PGSPEC002": return UnknownType;
                    case "PGSPEC003": return UnknownReference;
                    case "PGSPEC004": return DuplicateName;
                    case "PGSPEC005": return AmbiguousTypeByte;
                    case "PGSPEC006": return MisplacedRest;
                    case "PGSPEC007": return BadLiteral;
                    case "PGSPEC008": return BadHeader;
                    case "PGSPEC009": return UnknownEnum;
                    case "PGSPEC010": return BadAttribute;
                    case "PGSPEC011": return BadTerminator;
                    case "PGSPEC012": return UnusedField;
                    case "PGSPEC013": return MissingRuntime;
                    case "PGSPEC014": return ProtocolNamespaceTaken;
                    case "PGSPEC015": return BadFlow;
                    case "PGSPEC016": return OutdatedRuntime;
                    default: return null;
                }
            }
        }
    }
}

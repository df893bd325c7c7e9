using System;
using System.Collections.Immutable;
using System.IO;
using System.Linq;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.Diagnostics;
using Microsoft.CodeAnalysis.Text;
using PgSpec.Generators.Model;

namespace PgSpec.Generators
{
    /// <summary>
    /// Turns the protocol specs (AdditionalFiles marked PgSpecFile="true", spec/**/*.txt) into message types,
    /// codecs, dispatchers and trace formatters.
    /// </summary>
    [Generator(LanguageNames.CSharp)]
    public sealed partial class PgSpecGenerator : IIncrementalGenerator
    {
        public const string ParseStep = "PgSpec.Parse";
        public const string ResolveStep = "PgSpec.Resolve";
        public const string MessageStep = "PgSpec.Message";

        /// <summary>The namespace of the protocol itself, whose build alone generates the runtime's message types.</summary>
        internal const string ProtocolNamespace = "PgSpec.Protocol";

        /// <summary>
        /// The item metadata that marks an AdditionalFiles item as a spec (PgSpecFile="true"), as the
        /// compiler passes it on (CompilerVisibleItemMetadata).
        /// </summary>
        internal const string SpecFileMetadata = "build_metadata.AdditionalFiles.PgSpecFile";

        /// <summary>A type of PgSpec.Protocol's runtime: where it is tells the protocol's own build from a user's.</summary>
        private const string RuntimeMarker = ProtocolNamespace + ".PgLimits";

        /// <summary>
        /// The newest part of the runtime the generated code calls (type and member): a referenced
        /// PgSpec.Protocol without it is older than this generator.
        /// </summary>
        private const string NewestRuntimeType = ProtocolNamespace + ".PgSpanReader";

        private const string NewestRuntimeMember = "SkipValues";

        /// <summary>What the code generated for families (sub-messages carried in other messages) needs of the runtime.</summary>
        private const string FamilyRuntimeType = ProtocolNamespace + ".IPgSubMessage";

        /// <summary>Where the compilation finds PgSpec.Protocol's runtime.</summary>
        private enum Runtime
        {
            /// <summary>Nowhere: a user's project that does not reference PgSpec.Protocol.</summary>
            Missing,

            /// <summary>In a referenced assembly: a user's project.</summary>
            Referenced,

            /// <summary>In a referenced assembly older than this generator: the generated code would not compile.</summary>
            Outdated,

            /// <summary>In a referenced assembly older than the families (no IPgSubMessage): enough for specs without one.</summary>
            ReferencedWithoutFamilies,

            /// <summary>Declared in source: PgSpec.Protocol's own build.</summary>
            InSource,
        }

        public void Initialize(IncrementalGeneratorInitializationContext context)
        {
            // spec text -> one model per file. A spec is an additional file the build marks as one; that
            // is checked before parsing, so that new options re-parse no file that stays a spec.
            IncrementalValuesProvider<SpecFile> files = context.AdditionalTextsProvider
                .Combine(context.AnalyzerConfigOptionsProvider)
                .Select(static (pair, _) => (Text: pair.Left, IsSpec: IsSpecFile(pair.Right.GetOptions(pair.Left))))
                .Where(static file => file.IsSpec)
                .Select(static (file, ct) => Parser.ParseFile(file.Text.Path, file.Text.GetText(ct), ct))
                .WithTrackingName(ParseStep);

            // The namespace of the generated types: PgSpecNamespace, else the project's root namespace.
            // Only PgSpec.Protocol's own build generates into PgSpec.Protocol (the protocol itself);
            // any other namespace gets a message set of its own, beside the protocol's.
            IncrementalValueProvider<string> ns = context.AnalyzerConfigOptionsProvider
                .Select(static (options, _) => options.GlobalOptions.TryGetValue("build_property.PgSpecNamespace", out string? value) && !string.IsNullOrWhiteSpace(value)
                    ? value.Trim()
                    : options.GlobalOptions.TryGetValue("build_property.RootNamespace", out string? root) && !string.IsNullOrWhiteSpace(root)
                        ? root.Trim()
                        : "PgSpec.Generated");

            // every file -> one checked protocol
            IncrementalValueProvider<ProtocolSpec> protocol = files.Collect()
                .Combine(ns)
                .Select(static (pair, ct) => Resolver.Resolve(pair.Left, pair.Right, ct))
                .WithTrackingName(ResolveStep);

            // protocol -> one value per message, so unchanged messages stay cached
            IncrementalValuesProvider<ResolvedMessage> messages = protocol
                .SelectMany(static (spec, _) => Resolver.PerMessage(spec))
                .WithTrackingName(MessageStep);

            // The generated code is built on PgSpec.Protocol's runtime: a user's project references it,
            // the protocol's own build has it in source. A small value, equal from one compilation to
            // the next, so that typing code re-runs nothing downstream.
            IncrementalValueProvider<Runtime> specRuntime = context.CompilationProvider
                .Select(static (compilation, _) => FindRuntime(compilation));

            // A spec with a family needs a runtime that has the families' part: an older one is PGSPEC016.
            IncrementalValueProvider<Runtime> runtime = specRuntime
                .Combine(protocol.Select(static (spec, _) => spec.Families.Count > 0))
                .Select(static (pair, _) => pair.Left == Runtime.ReferencedWithoutFamilies ? (pair.Right ? Runtime.Outdated : Runtime.Referenced) : pair.Left);

            context.RegisterSourceOutput(protocol.Combine(runtime), static (spc, pair) =>
            {
                ProtocolSpec spec = pair.Left;
                foreach (DiagnosticInfo info in spec.Diagnostics)
                {
                    spc.ReportDiagnostic(ToDiagnostic(info));
                }

                if (spec.Diagnostics.Count > 0)
                {
                    return;
                }

                // PgSpec.Protocol's runtime names its generated types, specs or not; a user's project
                // without a message, an enum or a family gets nothing (and needs nothing).
                bool protocolBuild = spec.Namespace == ProtocolNamespace && pair.Right == Runtime.InSource;
                if (!protocolBuild && spec.Messages.Count == 0 && spec.Enums.Count == 0 && spec.Families.Count == 0)
                {
                    return;
                }

                // One clear error instead of hundreds from code that cannot compile.
                DiagnosticDescriptor? blocker = Blocker(spec.Namespace, pair.Right);
                if (blocker is not null)
                {
                    spc.ReportDiagnostic(Diagnostic.Create(blocker, Location.None, spec.Namespace));
                    return;
                }

                foreach ((string name, string source) in Emitter.EmitProtocol(spec).Concat(Emitter.EmitFamilies(spec)))
                {
                    spc.AddSource(name, SourceText.From(source, System.Text.Encoding.UTF8));
                }
            });

            context.RegisterSourceOutput(messages.Combine(runtime), static (spc, pair) =>
            {
                ResolvedMessage message = pair.Left;
                if (Blocker(message.Namespace, pair.Right) is not null)
                {
                    return;
                }

                spc.AddSource(message.Message.Name + ".g.cs", SourceText.From(Emitter.EmitMessage(message), System.Text.Encoding.UTF8));
            });
        }

        private static Runtime FindRuntime(Compilation compilation)
            => compilation.Assembly.GetTypeByMetadataName(RuntimeMarker) is not null ? Runtime.InSource
                : compilation.GetTypesByMetadataName(RuntimeMarker).IsEmpty ? Runtime.Missing
                : !System.Linq.Enumerable.Any(compilation.GetTypesByMetadataName(NewestRuntimeType), t => !t.GetMembers(NewestRuntimeMember).IsEmpty) ? Runtime.Outdated
                : compilation.GetTypesByMetadataName(FamilyRuntimeType).IsEmpty ? Runtime.ReferencedWithoutFamilies
                : Runtime.Referenced;

        /// <summary>
        /// Why code generated into <paramref name="ns"/> could not compile, or null: only PgSpec.Protocol's
        /// own build generates into its namespace, and any other needs the runtime.
        /// </summary>
        private static DiagnosticDescriptor? Blocker(string ns, Runtime runtime)
            => ns == ProtocolNamespace
                ? runtime == Runtime.InSource ? null : DiagnosticDescriptors.ProtocolNamespaceTaken
                : runtime == Runtime.Missing ? DiagnosticDescriptors.MissingRuntime
                : runtime == Runtime.Outdated ? DiagnosticDescriptors.OutdatedRuntime : null;

        /// <summary>Whether the build marks an additional file as a spec: PgSpecFile="true" (the buildTransitive targets mark spec/**/*.txt).</summary>
        internal static bool IsSpecFile(AnalyzerConfigOptions options)
            => options.TryGetValue(SpecFileMetadata, out string? value)
            && string.Equals(value.Trim(), "true", StringComparison.OrdinalIgnoreCase);

        private static Diagnostic ToDiagnostic(DiagnosticInfo info)
        {
            DiagnosticDescriptor descriptor = DiagnosticDescriptors.Find(info.Id) ?? DiagnosticDescriptors.Syntax;
            var start = new LinePosition(Math.Max(0, info.Line - 1), Math.Max(0, info.Column - 1));
            var end = new LinePosition(start.Line, start.Character + Math.Max(0, info.Length));
            Location location = Location.Create(info.Path, new TextSpan(0, 0), new LinePositionSpan(start, end));
            return Diagnostic.Create(descriptor, location, info.Message);
        }
    }
}

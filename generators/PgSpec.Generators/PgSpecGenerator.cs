using System;
using System.Collections.Immutable;
using System.IO;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.Text;
using PgSpec.Generators.Model;

namespace PgSpec.Generators
{
    /// <summary>
    /// Turns the protocol specs (spec/*.txt, passed as AdditionalFiles) into message types,
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

        public void Initialize(IncrementalGeneratorInitializationContext context)
        {
            // spec text -> one model per file
            IncrementalValuesProvider<SpecFile> files = context.AdditionalTextsProvider
                .Where(static text => IsSpecFile(text.Path))
                .Select(static (text, ct) => Parser.ParseFile(text.Path, text.GetText(ct), ct))
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

            // A message set of a user's own is built on PgSpec.Protocol's runtime: without it, one
            // clear error instead of hundreds about missing types.
            IncrementalValueProvider<bool> runtime = context.CompilationProvider
                .Select(static (compilation, _) => compilation.GetTypeByMetadataName(ProtocolNamespace + ".PgLimits") is not null);

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

                if (!HasRuntime(spec.Namespace, pair.Right) && spec.Messages.Count > 0)
                {
                    spc.ReportDiagnostic(Diagnostic.Create(DiagnosticDescriptors.MissingRuntime, Location.None, spec.Namespace));
                    return;
                }

                foreach ((string name, string source) in Emitter.EmitProtocol(spec))
                {
                    spc.AddSource(name, SourceText.From(source, System.Text.Encoding.UTF8));
                }
            });

            context.RegisterSourceOutput(messages.Combine(runtime), static (spc, pair) =>
            {
                ResolvedMessage message = pair.Left;
                if (!HasRuntime(message.Namespace, pair.Right))
                {
                    return;
                }

                spc.AddSource(message.Message.Name + ".g.cs", SourceText.From(Emitter.EmitMessage(message), System.Text.Encoding.UTF8));
            });
        }

        /// <summary>Whether the generated code can compile: PgSpec.Protocol's own build has its runtime in source, any other needs the package.</summary>
        private static bool HasRuntime(string ns, bool runtimeReferenced) => runtimeReferenced || ns == ProtocolNamespace;

        internal static bool IsSpecFile(string path)
        {
            string normalized = path.Replace('\\', '/');
            return normalized.EndsWith(".txt", StringComparison.OrdinalIgnoreCase)
                && normalized.IndexOf("/spec/", StringComparison.OrdinalIgnoreCase) >= 0
                && !normalized.EndsWith("/README.txt", StringComparison.OrdinalIgnoreCase);
        }

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

using System.Collections;
using System.Collections.Immutable;
using System.Reflection;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;

namespace PgSpec.Generators.Tests;

/// <summary>
/// The pipeline caches per file and per message: editing one spec re-parses that file only and
/// re-emits only the messages whose model changed.
/// </summary>
public class IncrementalTests
{
    private const string EditedFile = "query.txt";
    private const string EditedMessage = "Query";

    private static readonly IncrementalStepRunReason[] s_reused = [IncrementalStepRunReason.Cached, IncrementalStepRunReason.Unchanged];

    [Fact]
    public void ParseStep_OneSpecFileEdited_OtherFilesAreCached()
    {
        (GeneratorRunResult result, _) = RunEditingQueryFieldName();

        var outputs = StepOutputs(result, PgSpecGenerator.ParseStep).ToArray();
        Assert.Equal(GeneratorHarness.LoadRealSpecs().Length, outputs.Length);
        foreach ((object value, IncrementalStepRunReason reason) in outputs)
        {
            string path = (string)Property(value, "Path");
            if (Path.GetFileName(path) == EditedFile)
            {
                Assert.Equal(IncrementalStepRunReason.Modified, reason);
            }
            else
            {
                Assert.True(s_reused.Contains(reason), $"{path} was not edited, but its parse step ran with reason {reason}");
            }
        }
    }

    [Fact]
    public void MessageStep_OneMessageEdited_OnlyThatMessageIsModified()
    {
        (GeneratorRunResult result, ImmutableArray<string> messagesInEditedFile) = RunEditingQueryFieldName();

        var outputs = StepOutputs(result, PgSpecGenerator.MessageStep).ToArray();
        Assert.True(outputs.Length >= 50, "expected one output per message, found " + outputs.Length);
        Assert.Contains(EditedMessage, messagesInEditedFile);
        Assert.True(messagesInEditedFile.Length > 1, "the edited file should hold other messages too");

        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach ((object value, IncrementalStepRunReason reason) in outputs)
        {
            string name = (string)Property(Property(value, "Message"), "Name");
            Assert.True(seen.Add(name), name + " has two outputs");
            if (name == EditedMessage)
            {
                Assert.Equal(IncrementalStepRunReason.Modified, reason);
            }
            else
            {
                // The edit keeps every line where it was, so even the edited file's other messages are reused.
                string where = messagesInEditedFile.Contains(name) ? "in the edited file" : "in another file";
                Assert.True(s_reused.Contains(reason), $"{name} ({where}) did not change, but its message step ran with reason {reason}");
            }
        }

        Assert.Contains(EditedMessage, seen);
    }

    [Fact]
    public void Generator_CommentAddedAtEndOfSpec_ReusesEveryMessage()
    {
        ImmutableArray<AdditionalText> specs = GeneratorHarness.LoadRealSpecs();
        GeneratorDriver driver = GeneratorHarness.CreateDriver(specs, trackSteps: true);
        driver = driver.RunGenerators(GeneratorHarness.ProtocolCompilation());

        AdditionalText original = specs.Single(text => Path.GetFileName(text.Path) == EditedFile);
        var edited = new InMemoryAdditionalText(original.Path, original.GetText()!.ToString() + "\n# A trailing remark documents nothing.\n");
        driver = driver.ReplaceAdditionalText(original, edited).RunGenerators(GeneratorHarness.ProtocolCompilation());
        GeneratorRunResult result = Assert.Single(driver.GetRunResult().Results);

        (object parsed, IncrementalStepRunReason parseReason) = Assert.Single(
            StepOutputs(result, PgSpecGenerator.ParseStep),
            output => Path.GetFileName((string)Property(output.Value, "Path")) == EditedFile);
        Assert.NotNull(parsed);
        Assert.Equal(IncrementalStepRunReason.Unchanged, parseReason);

        var messages = StepOutputs(result, PgSpecGenerator.MessageStep).ToArray();
        Assert.NotEmpty(messages);
        Assert.All(messages, output => Assert.Contains(output.Reason, s_reused));
    }

    [Fact]
    public void Generator_CSharpCodeEdited_ReusesEveryStep()
    {
        // Of the compilation the generator reads only where PgSpec.Protocol's runtime is, a small
        // value that typing code leaves equal: no spec is parsed, resolved or emitted again.
        ImmutableArray<AdditionalText> specs = GeneratorHarness.LoadRealSpecs();
        GeneratorDriver driver = GeneratorHarness.CreateDriver(specs, trackSteps: true);
        CSharpCompilation compilation = GeneratorHarness.ProtocolCompilation();
        driver = driver.RunGenerators(compilation);

        compilation = compilation.AddSyntaxTrees(CSharpSyntaxTree.ParseText("namespace PgSpec.Protocol { internal static class Typed { } }"));
        driver = driver.RunGenerators(compilation);
        GeneratorRunResult result = Assert.Single(driver.GetRunResult().Results);

        Assert.True(result.Diagnostics.IsEmpty, GeneratorHarness.Describe(result.Diagnostics));
        foreach (string step in new[] { PgSpecGenerator.ParseStep, PgSpecGenerator.ResolveStep, PgSpecGenerator.MessageStep })
        {
            var outputs = StepOutputs(result, step).ToArray();
            Assert.NotEmpty(outputs);
            Assert.All(outputs, output => Assert.True(s_reused.Contains(output.Reason), $"{step} ran again with reason {output.Reason} after a C# edit"));
        }
    }

    [Fact]
    public void TrackedSteps_RealSpecs_HoldNoRoslynObjects()
    {
        (GeneratorRunResult result, _) = RunEditingQueryFieldName();

        int checkedValues = 0;
        foreach (string step in new[] { PgSpecGenerator.ParseStep, PgSpecGenerator.ResolveStep, PgSpecGenerator.MessageStep })
        {
            foreach ((object value, _) in StepOutputs(result, step))
            {
                AssertNoRoslynObjects(value, step, new HashSet<object>(ReferenceEqualityComparer.Instance));
                checkedValues++;
            }
        }

        Assert.True(checkedValues > 50, "expected outputs for every file and message, found " + checkedValues);
    }

    [Fact]
    public void ModelTypes_Fields_AreNotRoslynTypes()
    {
        // The cached models compare by value and must not root compilations: no symbol, node or text.
        Type[] modelTypes = typeof(PgSpecGenerator).Assembly.GetTypes()
            .Where(type => type.Namespace == "PgSpec.Generators.Model")
            .ToArray();
        Assert.Contains(modelTypes, type => type.Name == "SpecFile");
        Assert.Contains(modelTypes, type => type.Name == "ResolvedMessage");

        foreach (Type type in modelTypes)
        {
            foreach (FieldInfo field in type.GetFields(BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic))
            {
                Assert.False(IsRoslynType(field.FieldType), $"{type.Name}.{field.Name} is a {field.FieldType}");
                foreach (Type argument in field.FieldType.IsGenericType ? field.FieldType.GetGenericArguments() : [])
                {
                    Assert.False(IsRoslynType(argument), $"{type.Name}.{field.Name} holds {argument}");
                }
            }
        }
    }

    /// <summary>Runs the real specs, then again with one field of Query renamed (every line stays where it was).</summary>
    private static (GeneratorRunResult Result, ImmutableArray<string> MessagesInEditedFile) RunEditingQueryFieldName()
    {
        ImmutableArray<AdditionalText> specs = GeneratorHarness.LoadRealSpecs();
        GeneratorDriver driver = GeneratorHarness.CreateDriver(specs, trackSteps: true);
        driver = driver.RunGenerators(GeneratorHarness.ProtocolCompilation());

        GeneratorRunResult first = Assert.Single(driver.GetRunResult().Results);
        Assert.True(first.Diagnostics.IsEmpty, GeneratorHarness.Describe(first.Diagnostics));
        ImmutableArray<string> messagesInEditedFile = StepOutputs(first, PgSpecGenerator.MessageStep)
            .Select(output => Property(output.Value, "Message"))
            .Where(message => Path.GetFileName((string)Property(message, "Path")) == EditedFile)
            .Select(message => (string)Property(message, "Name"))
            .ToImmutableArray();

        AdditionalText original = specs.Single(text => Path.GetFileName(text.Path) == EditedFile);
        string text = original.GetText()!.ToString();
        const string Field = "    String queryString\n";
        int at = text.IndexOf("Query (F)", StringComparison.Ordinal);
        Assert.True(at >= 0, "query.txt no longer defines Query; pick another message to edit");
        int fieldAt = text.IndexOf(Field, at, StringComparison.Ordinal);
        Assert.True(fieldAt >= 0, "Query no longer has 'String queryString'; pick another field to rename");
        string edited = text.Remove(fieldAt, Field.Length).Insert(fieldAt, "    String sqlText\n");

        driver = driver.ReplaceAdditionalText(original, new InMemoryAdditionalText(original.Path, edited));
        driver = driver.RunGenerators(GeneratorHarness.ProtocolCompilation());
        GeneratorRunResult second = Assert.Single(driver.GetRunResult().Results);
        Assert.True(second.Diagnostics.IsEmpty, GeneratorHarness.Describe(second.Diagnostics));
        Assert.Contains("SqlText", second.GeneratedSources.Single(source => source.HintName == EditedMessage + ".g.cs").SourceText.ToString(), StringComparison.Ordinal);
        return (second, messagesInEditedFile);
    }

    private static IEnumerable<(object Value, IncrementalStepRunReason Reason)> StepOutputs(GeneratorRunResult result, string step)
    {
        Assert.True(result.TrackedSteps.TryGetValue(step, out ImmutableArray<IncrementalGeneratorRunStep> runs), "no tracked step named " + step);
        return runs.SelectMany(run => run.Outputs);
    }

    private static object Property(object value, string name)
    {
        PropertyInfo? property = value.GetType().GetProperty(name, BindingFlags.Instance | BindingFlags.Public);
        Assert.True(property is not null, $"{value.GetType().Name} has no property {name}");
        return property.GetValue(value) ?? throw new InvalidOperationException($"{value.GetType().Name}.{name} is null");
    }

    private static bool IsRoslynType(Type type)
        => type.Assembly == typeof(ISymbol).Assembly
        || type.Assembly == typeof(Microsoft.CodeAnalysis.CSharp.CSharpCompilation).Assembly
        || typeof(ISymbol).IsAssignableFrom(type)
        || typeof(SyntaxNode).IsAssignableFrom(type)
        || typeof(Microsoft.CodeAnalysis.Text.SourceText).IsAssignableFrom(type);

    /// <summary>Walks an object graph (fields and enumerated items) and fails on any Roslyn object.</summary>
    private static void AssertNoRoslynObjects(object? value, string path, HashSet<object> visited)
    {
        if (value is null || value is string || value is Type)
        {
            return;
        }

        Type type = value.GetType();
        Assert.False(IsRoslynType(type), $"{path} is a {type.FullName}");
        Assert.False(value is ISymbol or SyntaxNode or Microsoft.CodeAnalysis.Text.SourceText or Compilation or SyntaxTree or SemanticModel, $"{path} is a {type.FullName}");
        if (type.IsPrimitive || type.IsEnum || (!type.IsValueType && !visited.Add(value)))
        {
            return;
        }

        if (value is IEnumerable items)
        {
            int index = 0;
            foreach (object? item in items)
            {
                AssertNoRoslynObjects(item, path + "[" + index++ + "]", visited);
            }

            return;
        }

        foreach (FieldInfo field in type.GetFields(BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic))
        {
            AssertNoRoslynObjects(field.GetValue(value), path + "." + field.Name, visited);
        }
    }
}

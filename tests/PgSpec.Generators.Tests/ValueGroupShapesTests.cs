using System.Collections.Immutable;
using Microsoft.CodeAnalysis;

namespace PgSpec.Generators.Tests;

/// <summary>
/// A user's spec may hold lists of values (an Int32 length and Byten) of any shape: the code
/// generated for them, whose validation checks each list in one call, compiles in the user's project.
/// </summary>
public class ValueGroupShapesTests
{
    [Fact]
    public void ValueLists_NotNullable_Several_Nested_InATerminatedList_CompileAndAreCheckedInOneCall()
    {
        string spec = """
            Pairs (F & B) max 100000
                Byte1('x')
                Int32 length
                Int16 firstCount
                FirstItem[firstCount] first
                    Int32 firstLength
                    Byten(firstLength) firstValue
                Int32 secondCount
                SecondItem[secondCount] second
                    Int32 secondLength nullable
                    Byten(secondLength) secondValue
                Int16 outerCount
                OuterItem[outerCount] outer
                    Int16 innerCount
                    InnerItem[innerCount] inner
                        Int32 innerLength nullable
                        Byten(innerLength) innerValue
                    String tag
                TaggedItem[] tagged until 0
                    String key
                    Int16 valueCount
                    TaggedEntry[valueCount] values
                        Int32 taggedLength
                        Byten(taggedLength) taggedValue
                String trailer
            """;

        GeneratorRunResult result = GeneratorHarness.RunInto("Acme.Values", [GeneratorHarness.Spec("values", spec)]);
        Assert.True(result.Diagnostics.IsEmpty, GeneratorHarness.Describe(result.Diagnostics));
        ImmutableArray<KeyValuePair<string, string>> sources = GeneratorHarness.Sources(result);
        string pairs = sources.Single(source => source.Key == "Pairs.g.cs").Value;
        Assert.Contains("r.SkipValues(\"firstLength\", f_firstCount, false)", pairs, StringComparison.Ordinal);
        Assert.Contains("r.SkipValues(\"secondLength\", f_secondCount, true)", pairs, StringComparison.Ordinal);
        Assert.Contains("r.SkipValues(\"innerLength\", g1_innerCount, true)", pairs, StringComparison.Ordinal);
        Assert.Contains("r.SkipValues(\"taggedLength\", g1_valueCount, false)", pairs, StringComparison.Ordinal);

        Compilation compilation = CompilationHarness.ConsumerWith(sources);
        var problems = CompilationHarness.Problems(compilation);
        Assert.True(problems.IsEmpty, CompilationHarness.Describe(problems));
    }
}

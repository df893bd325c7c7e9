using Microsoft.CodeAnalysis;

namespace PgSpec.Generators.Tests;

/// <summary>
/// Every kind of spec mistake is a compiler error at its file and line, and a spec with
/// errors generates nothing (so that no half-built protocol compiles).
/// </summary>
public class DiagnosticTests
{
    [Fact]
    public void IndentedLineWithoutHeader_ReportsPgSpec001AtThatLine()
    {
        string spec = """
            # Nothing above the field owns it.
                Int32 orphan
            """;

        AssertError("PGSPEC001", "orphan", spec, line: 2);
    }

    [Fact]
    public void FieldIndentedLessThanTheFieldsAbove_ReportsPgSpec001AtItsColumn()
    {
        // One column short of the other fields: an error, not the end of Other's fields.
        string spec = """
            Other (F)
                Byte1('o')
                Int32 length
                String a
               String b
                String c
            """;

        Diagnostic diagnostic = AssertError("PGSPEC001", "indent", spec, line: 5);
        Assert.Equal(4, ColumnOf(diagnostic));
    }

    [Fact]
    public void IndentedLineAfterBlankLine_LessThanTheFieldsAbove_ReportsPgSpec001AtItsColumn()
    {
        string spec = """
            Other (F)
                Byte1('o')
                Int32 length
                String a

              String b
            """;

        Diagnostic diagnostic = AssertError("PGSPEC001", "indent", spec, line: 6);
        Assert.Equal(3, ColumnOf(diagnostic));
    }

    [Fact]
    public void FieldIndentedLessThanItsGroupsFieldsAndTheMessages_ReportsPgSpec001AtItsColumn()
    {
        string spec = """
            RowDescription (B)
                Byte1('T')
                Int32 length
                Int16 fieldCount
                Field[fieldCount] fields
                    String name
                    Int32 tableOid
               Int16 trailer
            """;

        Diagnostic diagnostic = AssertError("PGSPEC001", "indent", spec, line: 8);
        Assert.Equal(4, ColumnOf(diagnostic));
    }

    [Fact]
    public void FieldsIndentedDeeperThanAFieldOrBetweenAGroupsFieldsAndTheMessages_ReportPgSpec001AtTheirColumns()
    {
        string spec = """
            RowDescription (B)
                Byte1('T')
                Int32 length
                Int16 fieldCount
                Field[fieldCount] fields
                    String name
                      Int32 tableOid
                  Int16 trailer
            """;

        GeneratorRunResult result = GeneratorHarness.Run(GeneratorHarness.Spec("indent", spec));

        Assert.Equal(["PGSPEC001 7:11", "PGSPEC001 8:7"], result.Diagnostics.Select(d => d.Id + " " + (d.Location.GetLineSpan().StartLinePosition.Line + 1) + ":" + ColumnOf(d)));
        Assert.Contains("group 'Field'", result.Diagnostics[1].GetMessage(System.Globalization.CultureInfo.InvariantCulture), StringComparison.Ordinal);
        Assert.Empty(result.GeneratedSources);
    }

    [Fact]
    public void HeaderThatIsNeitherMessageNorEnum_ReportsPgSpec001AtTheHeader()
    {
        string spec = """
            Query (F)
                Byte1('Q')
                Int32 length
                String queryString

            Query has no direction
                Int32 length
            """;

        AssertError("PGSPEC001", "header", spec, line: 6);
    }

    [Fact]
    public void UnknownFieldType_ReportsPgSpec002AtTheField()
    {
        string spec = """
            Query (F)
                Byte1('Q')
                Int32 length
                Strin queryString
            """;

        AssertError("PGSPEC002", "types", spec, line: 4);
    }

    [Fact]
    public void FieldTypeThatIsNoTypeName_ReportsPgSpec002AtTheField()
    {
        string spec = """
            Query (F)
                Byte1('Q')
                Int32 length
                string queryString
            """;

        AssertError("PGSPEC002", "types", spec, line: 4);
    }

    [Fact]
    public void EnumFieldNamingNoEnum_ReportsPgSpec002AtTheField()
    {
        string enums = """
            enum StatementOrPortal : Byte1
                'S' Statement
                'P' Portal
            """;
        string messages = """
            # Close: the enum is misspelled.
            Close (F)
                Byte1('C')
                Int32 length
                StatementOrPortl kind
                String name
            """;

        AssertError("PGSPEC002", "messages", [GeneratorHarness.Spec("enums", enums), GeneratorHarness.Spec("messages", messages)], line: 5);
    }

    [Fact]
    public void CountNamingNoField_ReportsPgSpec003AtTheList()
    {
        string spec = """
            NegotiateProtocolVersion (B)
                Byte1('v')
                Int32 length
                Int32 newestProtocolVersion
                Int32 optionCount
                String[optionCnt] options
            """;

        AssertError("PGSPEC003", "counts", spec, line: 6);
    }

    [Fact]
    public void SizedBytesNotAfterItsLength_ReportsPgSpec003AtTheBytes()
    {
        string spec = """
            FunctionCallResponse (B)
                Byte1('V')
                Int32 length
                Int32 resultLength
                Int16 padding
                Byten(resultLength) result
            """;

        AssertError("PGSPEC003", "sizes", spec, line: 6);
    }

    [Fact]
    public void MessageNameDefinedInTwoFiles_ReportsPgSpec004AtTheSecondDefinition()
    {
        string first = """
            Query (F)
                Byte1('Q')
                Int32 length
                String queryString
            """;
        string second = """
            Sync (F)
                Byte1('S')
                Int32(4) length

            Query (F)
                Byte1('Q')
                Int32 length
                String sql
            """;

        AssertError("PGSPEC004", "b", [GeneratorHarness.Spec("a", first), GeneratorHarness.Spec("b", second)], line: 5);
    }

    [Theory]
    [InlineData("FrontendMessageKind")] // the kinds enums
    [InlineData("BackendMessageKind")]
    [InlineData("IFrontendMessage")] // the interfaces of a user's message set
    [InlineData("IBackendMessage")]
    [InlineData("FrontendMessages")] // the dispatchers
    [InlineData("BackendMessages")]
    [InlineData("PgProtocolSpec")] // descriptors and limits
    [InlineData("ProtocolDictionary")]
    [InlineData("Enums")] // files of their own: Enums.g.cs, MessageInterfaces.g.cs
    [InlineData("MessageInterfaces")]
    [InlineData("ENUMS")] // file names differ in case only
    [InlineData("Unknown")] // the kinds' member for what no spec defines
    [InlineData("Classify")] // dispatcher members, which name message types from inside
    [InlineData("NameOf")]
    [InlineData("All")]
    [InlineData("DefaultUnknownMaxLength")]
    [InlineData("View")] // members of every message class
    [InlineData("Encode")]
    [InlineData("TryDecode")]
    [InlineData("Trace")]
    [InlineData("MessageName")]
    [InlineData("BackendKind")]
    public void MessageNamedLikeANameTheGeneratorUses_ReportsPgSpec004AtTheHeader(string name)
    {
        string spec = $"""
            # A blank line, then the message.

            {name} (F) max 1000
                Byte1('h')
                Int32 length
                String text
            """;

        Diagnostic diagnostic = AssertError("PGSPEC004", "names", spec, line: 3);
        Assert.Contains("'" + name + "'", diagnostic.GetMessage(System.Globalization.CultureInfo.InvariantCulture), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("FrontendMessageKind")]
    [InlineData("IBackendMessage")]
    [InlineData("BackendMessages")]
    [InlineData("PgProtocolSpec")]
    [InlineData("ProtocolDictionary")]
    [InlineData("View")] // nested in every message and group, where fields name their enum
    [InlineData("List")]
    public void EnumNamedLikeATypeTheGeneratorDeclares_ReportsPgSpec004AtTheHeader(string name)
    {
        string spec = $"""
            enum {name} : Byte1
                'A' Active
                'P' Paused
            """;

        AssertError("PGSPEC004", "names", spec, line: 1);
    }

    [Theory]
    [InlineData("All")] // the list of every value
    [InlineData("SaslMechanism")] // the class itself
    [InlineData("ToString")] // a member of object
    public void StringEnumMemberNamedLikeAMemberOfItsClass_ReportsPgSpec004AtTheMember(string name)
    {
        string spec = $"""
            enum SaslMechanism : String
                "SCRAM-SHA-256" ScramSha256
                "OTHER" {name}
            """;

        Diagnostic diagnostic = AssertError("PGSPEC004", "names", spec, line: 3);
        Assert.Equal(13, ColumnOf(diagnostic));
    }

    [Fact]
    public void EveryNameGeneratedBesideTheMessages_IsReservedForMessagesAndEnums()
    {
        // What the generator declares is read from its output (a user's set, with messages both ways,
        // typed, coded and untyped), so that a type, file or dispatcher member added later is covered.
        string spec = """
            Hello (F) max 1000
                Byte1('h')
                Int32 length
                String greeting

            Hi (B) max 1000
                Byte1('R')
                Int32 length
                Int32(1) code

            Bye (B) max 1000
                Byte1('R')
                Int32 length
                Int32(2) code

            Knock (F) max 1000
                Int32(8) length
                Int32(1234) knockCode
            """;
        GeneratorRunResult result = GeneratorHarness.RunInto("Acme.Names", [GeneratorHarness.Spec("names", spec)]);
        Assert.True(result.Diagnostics.IsEmpty, GeneratorHarness.Describe(result.Diagnostics));
        string[] messages = ["Hello", "Hi", "Bye", "Knock"];

        var files = new SortedSet<string>(StringComparer.Ordinal);
        var types = new SortedSet<string>(StringComparer.Ordinal);
        var members = new SortedSet<string>(StringComparer.Ordinal);
        foreach (GeneratedSourceResult source in result.GeneratedSources)
        {
            string file = source.HintName[..^".g.cs".Length];
            if (messages.Contains(file))
            {
                continue;
            }

            files.Add(file);
            SyntaxNode root = source.SyntaxTree.GetRoot();
            foreach (var type in root.DescendantNodes().OfType<Microsoft.CodeAnalysis.CSharp.Syntax.BaseTypeDeclarationSyntax>())
            {
                types.Add(type.Identifier.ValueText);
                if (type.Identifier.ValueText is "FrontendMessages" or "BackendMessages")
                {
                    members.UnionWith(((Microsoft.CodeAnalysis.CSharp.Syntax.TypeDeclarationSyntax)type).Members.Select(MemberName));
                }
                else if (type is Microsoft.CodeAnalysis.CSharp.Syntax.EnumDeclarationSyntax kinds)
                {
                    members.UnionWith(kinds.Members.Select(member => member.Identifier.ValueText).Except(messages));
                }
            }
        }

        Assert.Contains("MessageInterfaces", files);
        Assert.Contains("IFrontendMessage", types);
        Assert.Contains("Unknown", members);
        Assert.Contains("ClassifyStartup", members);

        foreach (string name in files.Concat(types).Concat(members).Distinct())
        {
            AssertReserved(name + " (F) max 1000\n    Byte1('h')\n    Int32 length\n    String text\n", name);
        }

        foreach (string name in types)
        {
            AssertReserved("enum " + name + " : Byte1\n    'A' Active\n", name);
        }

        static void AssertReserved(string spec, string name)
        {
            GeneratorRunResult result = GeneratorHarness.Run(GeneratorHarness.Spec("names", spec));
            Assert.True(result.Diagnostics.Any(d => d.Id == "PGSPEC004"), $"'{name}' is generated beside the messages, but a spec may use it: {GeneratorHarness.Describe(result.Diagnostics)}");
        }

        static string MemberName(Microsoft.CodeAnalysis.CSharp.Syntax.MemberDeclarationSyntax member)
            => member switch
            {
                Microsoft.CodeAnalysis.CSharp.Syntax.MethodDeclarationSyntax method => method.Identifier.ValueText,
                Microsoft.CodeAnalysis.CSharp.Syntax.PropertyDeclarationSyntax property => property.Identifier.ValueText,
                Microsoft.CodeAnalysis.CSharp.Syntax.FieldDeclarationSyntax field => field.Declaration.Variables.Single().Identifier.ValueText,
                _ => throw new InvalidOperationException("a dispatcher member of a new kind: " + member.Kind()),
            };
    }

    [Fact]
    public void MessageNamesDifferingInCaseOnly_ReportsPgSpec004AtTheSecond()
    {
        // Two types, but one generated file name: the file system may not tell them apart.
        string first = """
            Query (F)
                Byte1('Q')
                Int32 length
                String queryString
            """;
        string second = """
            QUERY (F)
                Byte1('q')
                Int32 length
                String sql
            """;

        AssertError("PGSPEC004", "b", [GeneratorHarness.Spec("a", first), GeneratorHarness.Spec("b", second)], line: 1);
    }

    [Fact]
    public void MessageNameStartingLowerCase_ReportsPgSpec008AtTheHeader()
    {
        // It names a C# type, and lower-case names meet keywords and the dispatchers' parameters (body, kind, context).
        string spec = """
            body (F)
                Byte1('h')
                Int32 length
                String text
            """;

        AssertError("PGSPEC008", "names", spec, line: 1);
    }

    [Fact]
    public void EnumNameStartingLowerCase_ReportsPgSpec009AtTheHeader()
    {
        string spec = """
            enum int : Byte1
                'A' Active
            """;

        AssertError("PGSPEC009", "names", spec, line: 1);
    }

    [Fact]
    public void FieldNameUsedTwice_ReportsPgSpec004AtTheSecondField()
    {
        string spec = """
            ParameterStatus (B)
                Byte1('S')
                Int32 length
                String name
                String name
            """;

        AssertError("PGSPEC004", "fields", spec, line: 5);
    }

    [Fact]
    public void TwoMessagesShareTypeByteWithoutDiscriminator_ReportsPgSpec005AtTheSecond()
    {
        string spec = """
            Query (F)
                Byte1('Q')
                Int32 length
                String queryString

            # Same type byte, same direction, no code and no by-context.
            QueryAgain (F)
                Byte1('Q')
                Int32 length
                String text
            """;

        AssertError("PGSPEC005", "bytes", spec, line: 7);
    }

    [Fact]
    public void FieldNamedLikeGeneratedMember_ReportsPgSpec004AtTheField()
    {
        string spec = """
            ParameterStatus (B)
                Byte1('S')
                Int32 length
                String name
                String toString
            """;

        AssertError("PGSPEC004", "fields", spec, line: 5);
    }

    [Fact]
    public void GroupFieldNamedLikeGroupMember_ReportsPgSpec004AtTheField()
    {
        string spec = """
            RowDescription (B)
                Byte1('T')
                Int32 length
                Int16 fieldCount
                Field[fieldCount] fields
                    String name
                    Byte4 bytes
            """;

        AssertError("PGSPEC004", "groups", spec, line: 7);
    }

    [Fact]
    public void GroupNamedLikeFieldProperty_ReportsPgSpec004AtTheGroup()
    {
        // The group's class and the property of 'items' would both be named Items.
        string spec = """
            RowDescription (B)
                Byte1('T')
                Int32 length
                Int16 count
                Items[count] items
                    String name
            """;

        AssertError("PGSPEC004", "groups", spec, line: 5);
    }

    [Fact]
    public void SameGroupNameAtTwoDepths_ReportsPgSpec004AtTheSecondGroup()
    {
        // Every group is a class nested in the message's class, however deep it is written.
        string spec = """
            Catalog (B)
                Byte1('t')
                Int32 length
                Int16 entryCount
                Entry[entryCount] entries
                    String name
                    Int16 partCount
                    Entry[partCount] parts
                        String text
            """;

        AssertError("PGSPEC004", "groups", spec, line: 8);
    }

    [Fact]
    public void SameTypeByteInOppositeDirections_ReportsNothing()
    {
        // 'D' is Describe from the frontend and DataRow from the backend: that is no conflict.
        string spec = """
            Describe (F)
                Byte1('D')
                Int32 length
                String name

            DataRowLike (B)
                Byte1('D')
                Int32 length
                String value
            """;

        GeneratorRunResult result = GeneratorHarness.Run(GeneratorHarness.Spec("bytes", spec));
        Assert.Null(result.Exception);
        Assert.True(result.Diagnostics.IsEmpty, GeneratorHarness.Describe(result.Diagnostics));
        Assert.Contains(result.GeneratedSources, source => source.HintName == "DataRowLike.g.cs");
    }

    [Fact]
    public void RestBytesBeforeAnotherField_ReportsPgSpec006AtTheBytes()
    {
        string spec = """
            CopyData (F & B)
                Byte1('d')
                Int32 length
                Byten data
                Int32 trailer
            """;

        AssertError("PGSPEC006", "copy", spec, line: 4);
    }

    [Fact]
    public void LiteralTooLargeForItsType_ReportsPgSpec007AtTheField()
    {
        string spec = """
            AuthenticationOk (B)
                Byte1('R')
                Int32 length
                Int16(70000) code
            """;

        AssertError("PGSPEC007", "literals", spec, line: 4);
    }

    [Fact]
    public void Int32LiteralAboveIntMax_ReportsPgSpec007AtTheField()
    {
        string spec = """
            AuthenticationOk (B)
                Byte1('R')
                Int32 length
                Int32(4294967295) code
            """;

        AssertError("PGSPEC007", "literals", spec, line: 4);
    }

    [Fact]
    public void Int8EnumValueAbove127_ReportsPgSpec007AtTheMember()
    {
        string spec = """
            enum CopyFormat : Int8
                0 Text
                200 Binary
            """;

        AssertError("PGSPEC007", "enums", spec, line: 3);
    }

    [Fact]
    public void UnknownMessageOption_ReportsPgSpec008AtTheHeader()
    {
        string spec = """
            # The option is misspelled.
            Query (F) fast
                Byte1('Q')
                Int32 length
                String queryString
            """;

        AssertError("PGSPEC008", "headers", spec, line: 2);
    }

    [Fact]
    public void MessageWithoutLengthWord_ReportsPgSpec008AtTheHeader()
    {
        string spec = """
            Sync (F)
                Byte1('S')
                String note
            """;

        AssertError("PGSPEC008", "headers", spec, line: 1);
    }

    [Fact]
    public void SecondLengthWord_ReportsPgSpec008AtTheSecondLength()
    {
        string spec = """
            CommandComplete (B)
                Byte1('C')
                Int32 length
                Int32 length
                String commandTag
            """;

        AssertError("PGSPEC008", "headers", spec, line: 4);
    }

    [Fact]
    public void UntypedCodeRangeBeyondInt32_ReportsPgSpec008AtTheCode()
    {
        string spec = """
            StartupMessage (F)
                Int32 length
                Int32 protocolVersion range 196608..4294967295
                String[] parameters until 0
            """;

        AssertError("PGSPEC008", "startup", spec, line: 3);
    }

    [Fact]
    public void EnumOnAnInt16_ReportsPgSpec009AtTheEnum()
    {
        string spec = """
            # Enums are one byte wide.
            enum FormatCode : Int16
                0 Text
                1 Binary
            """;

        AssertError("PGSPEC009", "enums", spec, line: 2);
    }

    [Fact]
    public void EnumMemberWithoutName_ReportsPgSpec009AtTheMember()
    {
        string spec = """
            enum TransactionStatus : Byte1
                'I' Idle
                'T'
            """;

        AssertError("PGSPEC009", "enums", spec, line: 3);
    }

    [Fact]
    public void UnknownAttribute_ReportsPgSpec010AtTheField()
    {
        string spec = """
            BackendKeyData (B)
                Byte1('K')
                Int32 length
                Int32 processId secret
                Byten secretKey
            """;

        AssertError("PGSPEC010", "attributes", spec, line: 4);
    }

    [Fact]
    public void NullableOnAString_ReportsPgSpec010AtTheField()
    {
        string spec = """
            ParameterStatus (B)
                Byte1('S')
                Int32 length
                String name
                String value nullable
            """;

        AssertError("PGSPEC010", "attributes", spec, line: 5);
    }

    [Fact]
    public void RangeOnAString_ReportsPgSpec010AtTheField()
    {
        string spec = """
            ParameterStatus (B)
                Byte1('S')
                Int32 length
                String name range 1..10
                String value
            """;

        AssertError("PGSPEC010", "attributes", spec, line: 4);
    }

    [Fact]
    public void TerminatedListWhoseItemsCanStartWithZero_ReportsPgSpec011AtTheList()
    {
        string spec = """
            StartupMessage (F)
                Int32 length
                Int32 protocolVersion range 196608..262143
                Parameter[] parameters until 0
                    Int16 key
                    String value
            """;

        AssertError("PGSPEC011", "startup", spec, line: 4);
    }

    [Fact]
    public void ListWithNeitherCountNorTerminator_ReportsPgSpec011AtTheList()
    {
        string spec = """
            NegotiateProtocolVersion (B)
                Byte1('v')
                Int32 length
                Int32 newestProtocolVersion
                String[] options
            """;

        AssertError("PGSPEC011", "lists", spec, line: 5);
    }

    [Fact]
    public void NullableLengthThatSizesNothing_ReportsPgSpec012AtTheLength()
    {
        string spec = """
            FunctionCallResponse (B)
                Byte1('V')
                Int32 length
                Int32 resultLength nullable
                Int32 result
            """;

        AssertError("PGSPEC012", "nullable", spec, line: 4);
    }

    [Fact]
    public void AnsweredBy_NamingNoByContextFrontendMessage_ReportsPgSpec008AtTheRequest()
    {
        string spec = """
            Ask (B) max 100 answered-by Reply
                Byte1('a')
                Int32 length

            Reply (F) max 100
                Byte1('r')
                Int32 length
            """;

        Diagnostic diagnostic = AssertError("PGSPEC008", "answers", spec, line: 1);
        Assert.Contains("'answered-by Reply', which is no frontend message marked 'by-context'", diagnostic.GetMessage(System.Globalization.CultureInfo.InvariantCulture), StringComparison.Ordinal);
    }

    [Fact]
    public void AnsweredBy_OnAFrontendMessage_ReportsPgSpec008()
    {
        string spec = """
            Ask (F) max 100 answered-by Reply
                Byte1('a')
                Int32 length

            Reply (F) max 100 by-context
                Byte1('p')
                Int32 length
            """;

        Diagnostic diagnostic = AssertError("PGSPEC008", "answers", spec, line: 1);
        Assert.Contains("only a backend message is 'answered-by'", diagnostic.GetMessage(System.Globalization.CultureInfo.InvariantCulture), StringComparison.Ordinal);
    }

    [Fact]
    public void FlowOption_NamingNoPhase_ReportsPgSpec015AtTheHeader()
    {
        string spec = """
            Ask (F) max 100 in Normal, Copying
                Byte1('a')
                Int32 length
            """;

        Diagnostic diagnostic = AssertError("PGSPEC015", "phases", spec, line: 1);
        Assert.Contains("'Copying' is not a phase", diagnostic.GetMessage(System.Globalization.CultureInfo.InvariantCulture), StringComparison.Ordinal);
    }

    [Fact]
    public void FlowLine_NamingNoPhase_ReportsPgSpec015AtThatLine()
    {
        string spec = """
            Both (F & B) max 100
                (F) in Normal
                (B) in Normal enters Elsewhere
                Byte1('b')
                Int32 length
            """;

        Diagnostic diagnostic = AssertError("PGSPEC015", "flowline", spec, line: 3);
        Assert.Contains("'enters' expects a phase", diagnostic.GetMessage(System.Globalization.CultureInfo.InvariantCulture), StringComparison.Ordinal);
        Assert.Equal(5, ColumnOf(diagnostic));
    }

    [Theory]
    [InlineData("in Normal,", "an empty item")]
    [InlineData("in", "expects a list of phases")]
    [InlineData("in Normal, Normal", "lists 'Normal' twice")]
    [InlineData("in Normal ignored-in CopyIn, Normal", "twice in 'in' and 'ignored-in'")]
    [InlineData("in CopyIn enters Normal from CopyOut", "'in' does not list 'CopyOut'")]
    [InlineData("in CopyIn enters Normal enters CopyOut from CopyIn", "already enters a phase whatever the phase")]
    [InlineData("in CopyIn enters CopyOut from CopyIn enters Normal", "has another phase change")]
    [InlineData("in CopyIn, CopyBoth enters Normal from CopyIn enters CopyOut from CopyIn", "two phase changes from 'CopyIn'")]
    [InlineData("in CopyIn enters CopyIn from CopyIn", "two different phases")]
    [InlineData("(B) in Normal", "which does not send")]
    public void MalformedFlowOption_ReportsPgSpec015(string options, string expected)
    {
        string spec = $"""
            Ask (F) max 100 {options}
                Byte1('a')
                Int32 length
            """;

        Diagnostic diagnostic = AssertError("PGSPEC015", "flow", spec, line: 1);
        Assert.Contains(expected, diagnostic.GetMessage(System.Globalization.CultureInfo.InvariantCulture), StringComparison.Ordinal);
    }

    [Fact]
    public void FlowOption_OnAMessageBothSidesSend_WithoutSayingWhose_ReportsPgSpec015()
    {
        string spec = """
            Both (F & B) max 100 in Normal
                Byte1('b')
                Int32 length
            """;

        Diagnostic diagnostic = AssertError("PGSPEC015", "whose", spec, line: 1);
        Assert.Contains("say whose flow it is with '(F)' or '(B)'", diagnostic.GetMessage(System.Globalization.CultureInfo.InvariantCulture), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("extended")]
    [InlineData("ends-error-skip")]
    public void ExtendedQueryRule_OnABackendMessage_ReportsPgSpec015(string option)
    {
        string spec = $"""
            Answer (B) max 100 in Normal {option}
                Byte1('a')
                Int32 length
            """;

        Diagnostic diagnostic = AssertError("PGSPEC015", "extended", spec, line: 1);
        Assert.Contains("a rule of the frontend's messages", diagnostic.GetMessage(System.Globalization.CultureInfo.InvariantCulture), StringComparison.Ordinal);
    }

    [Fact]
    public void FlowLine_AmongTheFields_ReportsPgSpec015AtThatLine()
    {
        string spec = """
            Ask (F) max 100
                Byte1('a')
                (F) in Normal
                Int32 length
            """;

        Diagnostic diagnostic = AssertError("PGSPEC015", "misplaced", spec, line: 3);
        Assert.Contains("right below the message header", diagnostic.GetMessage(System.Globalization.CultureInfo.InvariantCulture), StringComparison.Ordinal);
    }

    [Fact]
    public void UnknownOption_OnAFlowLine_ReportsPgSpec008AtThatLine()
    {
        string spec = """
            Ping (F & B) max 100
                (F) in Normal, CopyIn  ignored-in CopyOut  extended
                (B) in Normal  ends-errors
                Byte1('!')
                Int32(4) length
            """;

        Diagnostic diagnostic = AssertError("PGSPEC008", "unknown", spec, line: 3);
        Assert.Contains("Unknown message option 'ends-errors'", diagnostic.GetMessage(System.Globalization.CultureInfo.InvariantCulture), StringComparison.Ordinal);
    }

    private static Diagnostic AssertError(string id, string fileName, string spec, int line)
        => AssertError(id, fileName, [GeneratorHarness.Spec(fileName, spec)], line);

    /// <summary>The files give exactly one diagnostic: an error with this id, in this file, at this 1-based line.</summary>
    private static Diagnostic AssertError(string id, string fileName, AdditionalText[] files, int line)
    {
        GeneratorRunResult result = GeneratorHarness.Run(files);
        Assert.Null(result.Exception);

        Diagnostic diagnostic = Assert.Single(result.Diagnostics);
        string described = GeneratorHarness.Describe(result.Diagnostics);
        Assert.True(id == diagnostic.Id, $"expected {id}, got: {described}");
        Assert.Equal(DiagnosticSeverity.Error, diagnostic.Severity);

        FileLinePositionSpan span = diagnostic.Location.GetLineSpan();
        Assert.Equal(files.Single(file => file.Path.EndsWith("/" + fileName + ".txt", StringComparison.Ordinal)).Path, span.Path);
        Assert.True(line == span.StartLinePosition.Line + 1, $"expected line {line}, got: {described}");
        Assert.False(string.IsNullOrWhiteSpace(diagnostic.GetMessage(System.Globalization.CultureInfo.InvariantCulture)));

        // Nothing is generated from a protocol with errors.
        Assert.Empty(result.GeneratedSources);
        return diagnostic;
    }

    /// <summary>The 1-based column where the diagnostic starts.</summary>
    private static int ColumnOf(Diagnostic diagnostic) => diagnostic.Location.GetLineSpan().StartLinePosition.Character + 1;
}

using System.Globalization;

namespace PgSpec.Cli;

/// <summary>An input that cannot be read or is not in the form asked for (exit code 2).</summary>
internal sealed class InputException : Exception
{
    public InputException(string message)
        : base(message)
    {
    }
}

/// <summary>Reads the byte streams to decode: whole files or standard input, raw or hex.</summary>
internal static class InputFiles
{
    /// <summary>Reads <paramref name="path"/> ('-' is <paramref name="stdin"/>), and decodes hex text if asked.</summary>
    public static byte[] Read(string path, Stream stdin, bool hex)
    {
        byte[] bytes;
        string name = path == "-" ? "standard input" : "'" + path + "'";
        try
        {
            if (path == "-")
            {
                using var buffer = new MemoryStream();
                stdin.CopyTo(buffer);
                bytes = buffer.ToArray();
            }
            else
            {
                bytes = File.ReadAllBytes(path);
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or NotSupportedException or ArgumentException or System.Security.SecurityException)
        {
            throw new InputException($"cannot read {name}: {Reason(path, e)}");
        }

        return hex ? FromHex(bytes, name) : bytes;
    }

    /// <summary>Why a file cannot be opened, in the words of the system's tools rather than .NET's.</summary>
    private static string Reason(string path, Exception e) => e switch
    {
        // Opening a directory fails with "access denied" on Linux.
        UnauthorizedAccessException or IOException when Directory.Exists(path) => "it is a directory",
        FileNotFoundException or DirectoryNotFoundException => "no such file or directory",
        _ => e.Message,
    };

    /// <summary>Decodes hex text; whitespace anywhere is ignored, anything else that is not a hex digit is an error.</summary>
    public static byte[] FromHex(ReadOnlySpan<byte> text, string name)
    {
        var result = new byte[text.Length / 2];
        int count = 0;
        int high = -1;
        int line = 1;
        int column = 0;
        foreach (byte c in text)
        {
            column++;
            if (c == (byte)'\n')
            {
                line++;
                column = 0;
                continue;
            }

            if (c is (byte)' ' or (byte)'\t' or (byte)'\r' or (byte)'\v' or (byte)'\f')
            {
                continue;
            }

            int digit = c switch
            {
                >= (byte)'0' and <= (byte)'9' => c - '0',
                >= (byte)'a' and <= (byte)'f' => c - 'a' + 10,
                >= (byte)'A' and <= (byte)'F' => c - 'A' + 10,
                _ => -1,
            };
            if (digit < 0)
            {
                string shown = c is >= 0x21 and < 0x7f ? "'" + (char)c + "'" : "byte 0x" + c.ToString("x2", CultureInfo.InvariantCulture);
                throw new InputException($"{name} is not hex: {shown} at line {line}, column {column} is not a hex digit (only 0-9, a-f, A-F and whitespace are allowed)");
            }

            if (high < 0)
            {
                high = digit;
            }
            else
            {
                result[count++] = (byte)((high << 4) | digit);
                high = -1;
            }
        }

        if (high >= 0)
        {
            throw new InputException($"{name} is not hex: it has an odd number of hex digits ({(2 * count) + 1})");
        }

        return result.AsSpan(0, count).ToArray();
    }
}

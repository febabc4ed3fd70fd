using System.Globalization;
using System.Text;

namespace Snapshot.Nbd;

/// <summary>
/// Text from clients made safe for the log (and for the replies that carry the same message): an export name or a
/// metadata context query is quoted into a message only through <see cref="Client"/>, which escapes every control
/// character (so a CR, an ESC sequence or a line separator can neither forge a log line nor drive a terminal) and
/// backslash, and keeps at most <see cref="MaxClientChars"/> characters with a marker saying how long the text was.
/// The log lines that carry free text also pass it through <see cref="Escape"/>, so no control character reaches the
/// log from any source.
/// </summary>
internal static class NbdLogText
{
    /// <summary>Most characters of one client-supplied string kept in a message.</summary>
    public const int MaxClientChars = 256;

    /// <summary>
    /// <paramref name="text"/> from a client, for a message: control characters and backslash escaped (<c>\r</c>,
    /// <c>\n</c>, <c>\t</c>, <c>\\</c>, otherwise <c>\xNN</c> or <c>\u{NNNN}</c>), cut after <see cref="MaxClientChars"/>
    /// characters with <c>...[cut: N characters]</c>.
    /// </summary>
    public static string Client(string text)
    {
        int keep = text.Length;
        if (keep > MaxClientChars)
        {
            keep = MaxClientChars;
            if (char.IsHighSurrogate(text[keep - 1])) keep--; // never half a character
        }
        var b = new StringBuilder(keep + 16);
        Append(b, text.AsSpan(0, keep), backslash: true);
        if (keep < text.Length) b.Append(CultureInfo.InvariantCulture, $"...[cut: {text.Length} characters]");
        return b.ToString();
    }

    /// <summary><paramref name="text"/> with its control characters escaped; the same string when it has none.</summary>
    public static string Escape(string text)
    {
        int i = 0;
        while (i < text.Length && !NeedsEscape(text[i])) i++;
        if (i == text.Length) return text;
        var b = new StringBuilder(text.Length + 16);
        b.Append(text, 0, i);
        Append(b, text.AsSpan(i), backslash: false);
        return b.ToString();
    }

    /// <summary>C0 and C1 controls, DEL, and the Unicode line and paragraph separators.</summary>
    private static bool NeedsEscape(char c) => char.IsControl(c) || c is '\u2028' or '\u2029';

    private static void Append(StringBuilder b, ReadOnlySpan<char> text, bool backslash)
    {
        foreach (char c in text)
        {
            switch (c)
            {
                case '\r': b.Append("\\r"); break;
                case '\n': b.Append("\\n"); break;
                case '\t': b.Append("\\t"); break;
                case '\\' when backslash: b.Append("\\\\"); break;
                default:
                    if (!NeedsEscape(c)) b.Append(c);
                    else if (c <= '\u00ff') b.Append(CultureInfo.InvariantCulture, $"\\x{(int)c:x2}");
                    else b.Append(CultureInfo.InvariantCulture, $"\\u{{{(int)c:x4}}}");
                    break;
            }
        }
    }
}

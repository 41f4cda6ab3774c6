using System.Globalization;
using System.Text;

namespace Bert.Text;

/// <summary>BERT's accent stripping without ICU: each character replaced by its canonical decomposition (NFD) with the
/// nonspacing marks (Mn) dropped, as transformers' <c>BasicTokenizer._run_strip_accents</c> does (é → e, ñ → n,
/// Hangul syllables → their jamo, a lone combining mark → nothing).
/// <para>.NET's <c>string.Normalize</c> needs ICU and does nothing under InvariantGlobalization, which the `bert`
/// command runs with (the GPU machine may have no ICU): there "café" stayed "café", [UNK] in bert-base-uncased. The
/// decompositions come from <c>Accents.Table.cs</c> (scripts/accents.py), the Mn category from .NET's own tables,
/// the Hangul syllables from Unicode's formula; so every machine strips alike.</para></summary>
public static partial class Accents
{
    const int HangulBase = 0xAC00, HangulCount = 11172, JamoL = 0x1100, JamoV = 0x1161, JamoT = 0x11A7, VCount = 21, TCount = 28;

    /// <summary><paramref name="text"/> with its accents stripped; the same string (nothing allocated) when nothing
    /// changes.</summary>
    public static string Strip(string text)
    {
        StringBuilder? sb = null;
        Span<char> stripped = stackalloc char[MaxStripped];
        for (int i = 0; i < text.Length;)
        {
            // Nothing below U+00C0 decomposes or is Mn; an unpaired surrogate stays.
            if (text[i] < 0xC0 || !Rune.TryGetRuneAt(text, i, out Rune r)) { sb?.Append(text[i]); i++; continue; }
            int used = r.Utf16SequenceLength, n = Stripped(r, stripped);
            if (n < 0) sb?.Append(text, i, used);
            else (sb ??= new StringBuilder(text.Length + 8).Append(text, 0, i)).Append(stripped[..n]);
            i += used;
        }
        return sb?.ToString() ?? text;
    }

    /// <summary>Most UTF-16 units a character strips to (a table entry's, or a Hangul syllable's three jamo).</summary>
    const int MaxStripped = 8;

    /// <summary>Writes <paramref name="r"/> stripped into <paramref name="dest"/> and returns its length, or -1 when that
    /// is <paramref name="r"/> itself.</summary>
    static int Stripped(Rune r, Span<char> dest)
    {
        int c = r.Value;
        if (Rune.GetUnicodeCategory(r) == UnicodeCategory.NonSpacingMark) return 0;
        if (c - HangulBase is >= 0 and < HangulCount and int s)
        {
            dest[0] = (char)(JamoL + s / (VCount * TCount));
            dest[1] = (char)(JamoV + s % (VCount * TCount) / TCount);
            if (s % TCount == 0) return 2;
            dest[2] = (char)(JamoT + s % TCount);
            return 3;
        }
        int k = Array.BinarySearch(Keys, c);
        if (k < 0) return -1;
        int from = k == 0 ? 0 : Ends[k - 1];
        for (int u = from; u < Ends[k]; u++) dest[u - from] = (char)Units[u];
        return Ends[k] - from;
    }
}

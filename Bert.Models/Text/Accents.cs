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
        int first = 0;
        while (first < text.Length)
        {
            if (text[first] < 0xC0) { first++; continue; }                  // nothing below U+00C0 decomposes or is Mn
            if (!Rune.TryGetRuneAt(text, first, out Rune r)) { first++; continue; }   // an unpaired surrogate stays
            if (Changes(r)) break;
            first += r.Utf16SequenceLength;
        }
        if (first == text.Length) return text;
        var sb = new StringBuilder(text.Length + 8).Append(text, 0, first);
        for (int i = first; i < text.Length;)
        {
            if (text[i] < 0xC0 || !Rune.TryGetRuneAt(text, i, out Rune r)) { sb.Append(text[i++]); continue; }
            int used = r.Utf16SequenceLength;
            if (!Append(sb, r)) sb.Append(text, i, used);
            i += used;
        }
        return sb.ToString();
    }

    static bool Changes(Rune r) => Rune.GetUnicodeCategory(r) == UnicodeCategory.NonSpacingMark
        || r.Value - HangulBase is >= 0 and < HangulCount || Array.BinarySearch(Keys, r.Value) >= 0;

    /// <summary>Appends <paramref name="r"/> stripped when that differs from <paramref name="r"/> (then true); else
    /// appends nothing and returns false.</summary>
    static bool Append(StringBuilder sb, Rune r)
    {
        int c = r.Value;
        if (Rune.GetUnicodeCategory(r) == UnicodeCategory.NonSpacingMark) return true;
        if (c - HangulBase is >= 0 and < HangulCount and int s)
        {
            sb.Append((char)(JamoL + s / (VCount * TCount))).Append((char)(JamoV + s % (VCount * TCount) / TCount));
            if (s % TCount != 0) sb.Append((char)(JamoT + s % TCount));
            return true;
        }
        int k = Array.BinarySearch(Keys, c);
        if (k < 0) return false;
        for (int u = k == 0 ? 0 : Ends[k - 1]; u < Ends[k]; u++) sb.Append((char)Units[u]);
        return true;
    }
}

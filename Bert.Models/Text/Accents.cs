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

    /// <summary><paramref name="text"/> with its accents stripped; the same string when nothing changes.</summary>
    public static string Strip(string text)
    {
        int first = 0;
        while (first < text.Length && text[first] < 0xC0) first++;     // nothing below U+00C0 decomposes or is Mn
        if (first == text.Length) return text;
        var sb = new StringBuilder(text.Length).Append(text, 0, first);
        bool changed = false;
        for (int i = first; i < text.Length;)
        {
            if (text[i] < 0xC0) { sb.Append(text[i++]); continue; }
            if (!Rune.TryGetRuneAt(text, i, out Rune r)) { sb.Append(text[i++]); continue; }   // an unpaired surrogate stays
            i += r.Utf16SequenceLength;
            changed |= Append(sb, r);
        }
        return changed ? sb.ToString() : text;
    }

    /// <summary>Appends <paramref name="r"/> stripped; false when that is <paramref name="r"/> itself.</summary>
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
        if (k < 0)
        {
            if (r.IsBmp) sb.Append((char)c);
            else sb.Append(r.ToString());
            return false;
        }
        for (int u = k == 0 ? 0 : Ends[k - 1]; u < Ends[k]; u++) sb.Append((char)Units[u]);
        return true;
    }
}

using System.Text;

namespace Bert.Text;

/// <summary>BERT's accent stripping without ICU, as Hugging Face's fast BertNormalizer does it: each character replaced
/// by its canonical decomposition (NFD) with the nonspacing marks (Mn) dropped (é → e, ñ → n, Hangul syllables → their
/// jamo, a lone combining mark → nothing), by the library's own tables (<see cref="HfUnicode"/>: its Mn is an older
/// Unicode's, so a mark added since stays, as there).
/// <para>.NET's <c>string.Normalize</c> needs ICU and does nothing under InvariantGlobalization, which the `bert`
/// command runs with (the GPU machine may have no ICU): there "café" stayed "café", [UNK] in bert-base-uncased. The
/// tables travel with the code, so every machine strips alike.</para></summary>
public static class Accents
{
    /// <summary><paramref name="text"/> with its accents stripped; the same string (nothing allocated) when nothing
    /// changes.</summary>
    public static string Strip(string text)
    {
        StringBuilder? sb = null;
        Span<char> stripped = stackalloc char[HfUnicode.MaxForm];
        for (int i = 0; i < text.Length;)
        {
            // Nothing below U+00C0 decomposes or is Mn; an unpaired surrogate stays.
            if (text[i] < 0xC0 || !Rune.TryGetRuneAt(text, i, out Rune r)) { sb?.Append(text[i]); i++; continue; }
            int used = r.Utf16SequenceLength, n = HfUnicode.Strip(r.Value, stripped);
            if (n < 0) sb?.Append(text, i, used);
            else (sb ??= new StringBuilder(text.Length + 8).Append(text, 0, i)).Append(stripped[..n]);
            i += used;
        }
        return sb?.ToString() ?? text;
    }
}

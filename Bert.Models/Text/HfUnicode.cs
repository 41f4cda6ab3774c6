namespace Bert.Text;

/// <summary>How Hugging Face's fast BERT tokenizer (the Rust tokenizers library behind transformers' BertTokenizerFast,
/// AutoTokenizer's default) classifies each character: what its BertNormalizer drops, spaces, strips and lower-cases, and
/// where its BertPreTokenizer splits. Read from the library itself for every code point by scripts/hf_unicode.cjs
/// (<c>HfUnicode.Table.cs</c>), because its tables are not .NET's: punctuation, Mn and Cc/Cf/Co come from an old Unicode
/// (the unicode_categories crate). With .NET 10's Unicode data instead, 618 code points tokenized otherwise under
/// bert-base-uncased (marks and punctuation added since, a few reclassified). Using its answers, and no Unicode data of .NET's, the tokenizer gives the library's
/// ids for every character, and the same ids under every .NET version and with or without ICU.
/// <para>Lookups: a flag byte per BMP character (64 KiB, built once from the tables), a binary search above.</para></summary>
internal static partial class HfUnicode
{
    const byte Dropped = 1, Space = 2, Ideograph = 4, Punctuation = 8, Separator = 16, Stripped = 32, Lowered = 64;

    static readonly byte[] Bmp = BuildBmp();

    static byte[] BuildBmp()
    {
        var flags = new byte[0x10000];
        void Ranges(ReadOnlySpan<int> r, byte flag)
        {
            for (int i = 0; i < r.Length; i += 2)
                for (int c = r[i]; c <= Math.Min(r[i + 1], 0xFFFF); c++) flags[c] |= flag;
        }
        void Keys(ReadOnlySpan<int> keys, byte flag)
        {
            foreach (int c in keys)
                if (c <= 0xFFFF) flags[c] |= flag;
        }
        Ranges(DroppedRanges, Dropped);
        Ranges(SpaceRanges, Space);
        Ranges(IdeographRanges, Ideograph);
        Ranges(PunctuationRanges, Punctuation);
        Ranges(SeparatorRanges, Separator);
        Keys(StripKeys, Stripped);
        Keys(LowerKeys, Lowered);
        for (int c = HangulBase; c < HangulBase + HangulCount; c++) flags[c] |= Stripped;
        return flags;
    }

    static bool Is(int c, byte flag, ReadOnlySpan<int> ranges)
    {
        if (c <= 0xFFFF) return (Bmp[c] & flag) != 0;
        int lo = 0, hi = ranges.Length / 2 - 1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >>> 1;
            if (c < ranges[2 * mid]) hi = mid - 1;
            else if (c > ranges[2 * mid + 1]) lo = mid + 1;
            else return true;
        }
        return false;
    }

    /// <summary>clean_text removes it: U+0000, U+FFFD, and the library's Cc, Cf and Co but tab, LF and CR.</summary>
    public static bool IsDropped(int c) => Is(c, Dropped, DroppedRanges);

    /// <summary>clean_text turns it into a space: tab, LF, CR, and the whitespace it keeps (Zs, U+2028, U+2029).</summary>
    public static bool IsSpace(int c) => Is(c, Space, SpaceRanges);

    /// <summary>handle_chinese_chars puts a space on each side: the CJK ideographs (extension E from U+2B920).</summary>
    public static bool IsIdeograph(int c) => Is(c, Ideograph, IdeographRanges);

    /// <summary>BertPreTokenizer makes it a word of its own: ASCII punctuation and the library's P*.</summary>
    public static bool IsPunctuation(int c) => Is(c, Punctuation, PunctuationRanges);

    /// <summary>BertPreTokenizer splits at it and drops it (Rust's char::is_whitespace).</summary>
    public static bool IsSeparator(int c) => Is(c, Separator, SeparatorRanges);

    const int HangulBase = 0xAC00, HangulCount = 11172, JamoL = 0x1100, JamoV = 0x1161, JamoT = 0x11A7, VCount = 21, TCount = 28;

    /// <summary>Most UTF-16 units a character strips or lower-cases to.</summary>
    public const int MaxForm = 8;

    /// <summary>strip_accents of one character (NFD without its Mn characters; a Hangul syllable's jamo) into
    /// <paramref name="dest"/> (at least <see cref="MaxForm"/> long): its length, or -1 when it is the character itself.</summary>
    public static int Strip(int c, Span<char> dest)
    {
        if (c <= 0xFFFF && (Bmp[c] & Stripped) == 0) return -1;
        if (c - HangulBase is >= 0 and < HangulCount and int s)
        {
            dest[0] = (char)(JamoL + s / (VCount * TCount));
            dest[1] = (char)(JamoV + s % (VCount * TCount) / TCount);
            if (s % TCount == 0) return 2;
            dest[2] = (char)(JamoT + s % TCount);
            return 3;
        }
        return Form(c, StripKeys, StripEnds, StripUnits, dest);
    }

    /// <summary>lowercase of one character (Rust's char::to_lowercase: İ becomes "i̇") into <paramref name="dest"/>: its
    /// length, or -1 when it is the character itself.</summary>
    public static int Lower(int c, Span<char> dest) =>
        c <= 0xFFFF && (Bmp[c] & Lowered) == 0 ? -1 : Form(c, LowerKeys, LowerEnds, LowerUnits, dest);

    static int Form(int c, ReadOnlySpan<int> keys, ReadOnlySpan<ushort> ends, ReadOnlySpan<ushort> units, Span<char> dest)
    {
        int k = keys.BinarySearch(c);
        if (k < 0) return -1;
        int from = k == 0 ? 0 : ends[k - 1];
        for (int u = from; u < ends[k]; u++) dest[u - from] = (char)units[u];
        return ends[k] - from;
    }
}

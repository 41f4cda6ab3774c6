// Writes Bert.Models/Text/HfUnicode.Table.cs and Bert.Tests/Text/HfTokenizerCases.txt from Hugging Face's tokenizers
// library (Rust, the library transformers' BertTokenizerFast runs; npm's `tokenizers` is its Node binding).
//
// The fast BertNormalizer and BertPreTokenizer classify characters with tables of their own: the unicode_categories
// crate (an old Unicode) for punctuation, Mn and Cc/Cf/Co, the unicode-normalization-alignments crate for NFD, and
// Rust's std for lower case and whitespace. So they differ from .NET's (and ICU's) current Unicode on some hundreds of
// characters. This script asks the library itself, for every code point, what each step does with it:
//   clean_text      dropped, turned into a space, or kept          (the string "a" + c + "b")
//   handle_chinese  spaced as a CJK ideograph, or kept
//   strip_accents   what it becomes (a Mn character becomes nothing, a decomposable one its base)
//   lowercase       what it becomes
//   BertPreTokenizer  a word of its own (punctuation), a separator (whitespace), or part of its word
// and writes the answers as tables that Bert.Text.HfUnicode reads; the tokenizer then uses no Unicode data of .NET's.
// The cases file holds, for every character where the library differs from Node's ICU (Unicode of this Node) and for a
// sample of the others, the library's ids of "a{c}b {c} A{c}B" under bert-base-uncased, lower-cased and accents stripped,
// and with neither: HfTokenizerTests compares the tokenizer with them.
//   usage: bash scripts/hf_unicode.sh   (installs tokenizers@0.23.2 from npm into a temporary folder and runs this)
'use strict';
const fs = require('fs');
const path = require('path');
const tk = require('tokenizers');
const { bertNormalizer, bertPreTokenizer, Tokenizer, WordPiece, bertProcessing } = tk;
const version = require('tokenizers/package.json').version;
const root = path.join(__dirname, '..');

const norm = (o) => bertNormalizer(Object.assign({ cleanText: false, handleChineseChars: false, stripAccents: false, lowercase: false }, o));
const clean = norm({ cleanText: true }), cjk = norm({ handleChineseChars: true }), strip = norm({ stripAccents: true }), lower = norm({ lowercase: true });
const pre = bertPreTokenizer();
const drop = [], space = [], ideograph = [], punct = [], separator = [], stripMap = [], lowerMap = [];
for (let c = 0; c <= 0x10FFFF; c++) {
  if (c >= 0xD800 && c <= 0xDFFF) continue;
  const ch = String.fromCodePoint(c);
  const cl = clean.normalizeString('a' + ch + 'b');
  if (cl === 'ab') drop.push(c); else if (cl === 'a b') space.push(c);
  else if (cl !== 'a' + ch + 'b') throw new Error(`clean_text turned U+${c.toString(16)} into ${JSON.stringify(cl)}`);
  const cj = cjk.normalizeString(ch);
  if (cj === ' ' + ch + ' ') ideograph.push(c); else if (cj !== ch) throw new Error(`handle_chinese_chars: U+${c.toString(16)}`);
  const st = strip.normalizeString(ch);
  const hangul = c >= 0xAC00 && c <= 0xD7A3;
  if (hangul && st !== ch.normalize('NFD')) throw new Error(`strip_accents: Hangul U+${c.toString(16)} is not its jamo`);
  if (st !== ch && !hangul) stripMap.push([c, st]);
  const lo = lower.normalizeString(ch);
  if (lo !== ch) lowerMap.push([c, lo]);
  const p = pre.preTokenizeString('a' + ch + 'b').map((x) => x[0]);
  if (p.length === 3 && p[1] === ch) punct.push(c);
  else if (p.length === 2 && p[0] === 'a' && p[1] === 'b') separator.push(c);
  else if (!(p.length === 1 && p[0] === 'a' + ch + 'b')) throw new Error(`BertPreTokenizer split U+${c.toString(16)}: ${JSON.stringify(p)}`);
}
// What clean_text leaves of a separator is a space (it turns whitespace into spaces first), so the pre-tokenizer's
// whitespace only matters for what clean_text keeps; check that they agree there.
for (const c of separator) if (!drop.includes(c) && !space.includes(c)) throw new Error(`U+${c.toString(16)} separates words but clean_text keeps it`);

const ranges = (list) => {
  const out = [];
  for (const c of list) {
    if (out.length && out[out.length - 1][1] === c - 1) out[out.length - 1][1] = c; else out.push([c, c]);
  }
  return out;
};
const hex = (v) => '0x' + v.toString(16).toUpperCase();
const rows = (items, per) => {
  const lines = [];
  for (let i = 0; i < items.length; i += per) lines.push('        ' + items.slice(i, i + per).join(', ') + ',');
  return lines.join('\n');
};
const rangeTable = (name, doc, list) => {
  const r = ranges(list);
  return `    /// <summary>${doc} (${list.length} characters): first and last of each run, ascending.</summary>\n` +
    `    static ReadOnlySpan<int> ${name} =>\n    [\n${rows(r.map(([a, b]) => `${hex(a)}, ${hex(b)}`), 6)}\n    ];\n`;
};
const utf16 = (s) => Array.from({ length: s.length }, (_, i) => s.charCodeAt(i));
const mapTable = (name, doc, map) => {
  const keys = [], ends = [], units = [];
  for (const [c, s] of map) {
    if (s.length > 8) throw new Error(`U+${c.toString(16)} becomes ${s.length} UTF-16 units, more than HfUnicode.MaxForm`);
    keys.push(c); units.push(...utf16(s)); ends.push(units.length);
  }
  return `    /// <summary>${doc} (${map.length} characters), ascending.</summary>\n` +
    `    static ReadOnlySpan<int> ${name}Keys =>\n    [\n${rows(keys.map(hex), 12)}\n    ];\n\n` +
    `    /// <summary>End of each of <see cref="${name}Keys"/>' forms in <see cref="${name}Units"/> (it starts where the previous one ends).</summary>\n` +
    `    static ReadOnlySpan<ushort> ${name}Ends =>\n    [\n${rows(ends.map(String), 16)}\n    ];\n\n` +
    `    /// <summary>The forms, UTF-16 code units one after the other.</summary>\n` +
    `    static ReadOnlySpan<ushort> ${name}Units =>\n    [\n${rows(units.map(hex), 12)}\n    ];\n`;
};
const cs = `// <auto-generated>
// Written by scripts/hf_unicode.cjs from Hugging Face's tokenizers ${version} (npm), asked for every code point: do not
// edit; rerun the script (bash scripts/hf_unicode.sh).
// </auto-generated>
namespace Bert.Text;

internal static partial class HfUnicode
{
    /// <summary>The library and version the tables were read from.</summary>
    public const string Source = "Hugging Face tokenizers ${version}";

${rangeTable('DroppedRanges', "What BertNormalizer's clean_text removes (U+0000, U+FFFD, and its Cc, Cf and Co but tab, LF and CR)", drop)}
${rangeTable('SpaceRanges', "What clean_text turns into a space (tab, LF, CR and Rust's other whitespace it keeps)", space)}
${rangeTable('IdeographRanges', 'What handle_chinese_chars puts spaces around', ideograph)}
${rangeTable('SeparatorRanges', "What BertPreTokenizer splits words at and drops (Rust's char::is_whitespace)", separator)}
${rangeTable('PunctuationRanges', "What BertPreTokenizer makes a word of its own (ASCII punctuation and its Unicode P*)", punct)}
${mapTable('Strip', 'What strip_accents changes, but the Hangul syllables (their jamo, by formula): NFD without its Mn characters', stripMap)}
${mapTable('Lower', 'What lowercase changes, character by character (Rust char::to_lowercase)', lowerMap)}}
`;
fs.writeFileSync(path.join(root, 'Bert.Models', 'Text', 'HfUnicode.Table.cs'), cs);

// The cases: where the library and Node's ICU differ, and every 509th other code point.
const isIcuPunct = (ch) => /^[\p{P}\u0021-\u002F\u003A-\u0040\u005B-\u0060\u007B-\u007E]$/u.test(ch);
const isIcuDrop = (ch, c) => c === 0 || c === 0xFFFD || (!/^[\t\n\r]$/.test(ch) && /^[\p{Cc}\p{Cf}\p{Co}]$/u.test(ch));
const icuStrip = (ch) => ch.normalize('NFD').replace(/\p{Mn}/gu, '');
const sets = { drop: new Set(drop), punct: new Set(punct) };
const stripOf = new Map(stripMap), lowerOf = new Map(lowerMap);
const cases = [];
for (let c = 0x20; c <= 0x10FFFF; c++) {
  if ((c >= 0xD800 && c <= 0xDFFF) || space.includes(c)) continue;
  const ch = String.fromCodePoint(c);
  const hfStrip = c >= 0xAC00 && c <= 0xD7A3 ? ch.normalize('NFD') : (stripOf.get(c) ?? ch);
  const differs = sets.punct.has(c) !== isIcuPunct(ch) || sets.drop.has(c) !== isIcuDrop(ch, c)
    || hfStrip !== icuStrip(ch) || (lowerOf.get(c) ?? ch) !== ch.toLowerCase();
  if (differs || c % 509 === 0) cases.push(c);
}
const vocab = {};
fs.readFileSync(path.join(root, 'Bert.Models', 'Resources', 'vocab.txt'), 'utf8').split('\n').forEach((t, i) => { if (t) vocab[t] = i; });
const make = (lc) => {
  const t = new Tokenizer(WordPiece.init(vocab, { unkToken: '[UNK]', continuingSubwordPrefix: '##', maxInputCharsPerWord: 100 }));
  t.setNormalizer(bertNormalizer({ cleanText: true, handleChineseChars: true, lowercase: lc, stripAccents: lc }));
  t.setPreTokenizer(bertPreTokenizer());
  t.setPostProcessor(bertProcessing(['[SEP]', vocab['[SEP]']], ['[CLS]', vocab['[CLS]']]));
  return t;
};
(async () => {
  const text = (c) => { const ch = String.fromCodePoint(c); return `a${ch}b ${ch} A${ch}B`; };
  const uncased = await make(true).encodeBatch(cases.map(text));
  const cased = await make(false).encodeBatch(cases.map(text));
  const units = (s) => utf16(s).map((u) => u.toString(16).toUpperCase()).join(' ');
  const uncasedNorm = bertNormalizer({ cleanText: true, handleChineseChars: true, lowercase: true, stripAccents: true });
  const out = [`# Hugging Face tokenizers ${version} (npm), written by scripts/hf_unicode.cjs: for each code point c, the ids of`,
    '# "a{c}b {c} A{c}B" under bert-base-uncased\'s vocabulary, lower-cased with accents stripped, then with neither; that',
    '# text normalized (lower-cased, accents stripped) and c with its accents stripped, as UTF-16 code units in hex.',
    '# The characters where the library differs from ICU (Unicode of Node ' + process.versions.icu + ', ' + process.versions.unicode + '), and every 509th other.'];
  cases.forEach((c, i) => out.push(`${c.toString(16).toUpperCase()}\t${Array.from(uncased[i].getIds()).join(' ')}\t${Array.from(cased[i].getIds()).join(' ')}` +
    `\t${units(uncasedNorm.normalizeString(text(c)))}\t${units(strip.normalizeString(String.fromCodePoint(c)))}`));
  fs.writeFileSync(path.join(root, 'Bert.Tests', 'Text', 'HfTokenizerCases.txt'), out.join('\n') + '\n');
  console.log(`tokenizers ${version}: dropped ${drop.length}, spaces ${space.length}, ideographs ${ideograph.length}, punctuation ${punct.length}, ` +
    `strip ${stripMap.length} (+ 11172 Hangul), lower ${lowerMap.length}; ${cases.length} cases (Node ICU ${process.versions.icu}, Unicode ${process.versions.unicode})`);
})();

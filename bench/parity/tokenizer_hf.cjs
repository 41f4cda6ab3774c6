// Hugging Face's tokenizers library (Rust, through its Node bindings: npm's `tokenizers`, the library transformers'
// BertTokenizerFast runs) as the reference for `bert tokenize --output ids`. Reads texts on stdin, one per line; prints
// [CLS] ids [SEP] per line (a blank line for a blank line), as tokenizer_ref.py does.
//   node tokenizer_hf.cjs --json DIR/tokenizer.json          the file `bert` wrote, loaded as transformers would
//   node tokenizer_hf.cjs --vocab vocab.txt [--cased] [--keep-accents|--strip-accents]
//                                                           the tokenizer transformers builds from a vocab.txt
//                                                           (BertNormalizer, BertPreTokenizer, WordPiece, [CLS]/[SEP])
// --pairs: each line is "first<TAB>second", printed as its ids, a tab, and its type ids.
// NODE_PATH must reach the `tokenizers` package (tokenizer.sh installs it).
const fs = require('fs');
const { Tokenizer, WordPiece, bertNormalizer, bertPreTokenizer, bertProcessing } = require('tokenizers');
const args = process.argv.slice(2);
const arg = (name) => { const i = args.indexOf(name); return i < 0 ? null : args[i + 1]; };
let tokenizer;
if (arg('--json')) {
  tokenizer = Tokenizer.fromFile(arg('--json'));
} else {
  const tokens = fs.readFileSync(arg('--vocab'), 'utf8').split('\n');
  if (tokens[tokens.length - 1] === '') tokens.pop();
  const vocab = {};
  tokens.forEach((t, i) => { vocab[t] = i; });
  const lower = !args.includes('--cased');
  tokenizer = new Tokenizer(WordPiece.init(vocab, { unkToken: '[UNK]', continuingSubwordPrefix: '##', maxInputCharsPerWord: 100 }));
  const strip = args.includes('--strip-accents') || (lower && !args.includes('--keep-accents'));
  tokenizer.setNormalizer(bertNormalizer({ cleanText: true, handleChineseChars: true, lowercase: lower, stripAccents: strip }));
  tokenizer.setPreTokenizer(bertPreTokenizer());
  tokenizer.setPostProcessor(bertProcessing(['[SEP]', vocab['[SEP]']], ['[CLS]', vocab['[CLS]']]));
  tokenizer.addSpecialTokens(['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]']);
}
(async () => {
  const lines = fs.readFileSync(0, 'utf8').split('\n');
  const out = [];
  for (let i = 0; i < lines.length; i += 1000) {
    const batch = lines.slice(i, i + 1000);
    const pairs = args.includes('--pairs');
    const inputs = batch.map((l) => (l.trim() === '' ? 'x' : l)).map((l) => (pairs ? [l.split('\t')[0], l.split('\t').slice(1).join('\t')] : l));
    const enc = pairs ? await Promise.all(inputs.map(([a, b]) => tokenizer.encode(a, b))) : await tokenizer.encodeBatch(inputs);
    batch.forEach((l, k) => out.push(l.trim() === '' ? ''
      : Array.from(enc[k].getIds()).join(' ') + (pairs ? '\t' + Array.from(enc[k].getTypeIds()).join(' ') : '')));
  }
  process.stdout.write(out.join('\n'));
})();

#!/usr/bin/env bash
# Tokenizer parity: `bert tokenize --output ids` against Hugging Face's tokenizers library (Rust, the library behind
# transformers' BertTokenizerFast, through npm's `tokenizers` binding: tokenizer_hf.cjs), against an independent BERT
# tokenizer (tokenizer_ref.py, Python's unicodedata) and, where transformers is installed, its BertTokenizerFast.
# Texts: every embedded text (English corpus, the four English sets, the Portuguese novels and tweets: about 100 000
# lines) plus a line of hard cases, and a sweep of every code point (each inside a word and alone, 32 to a line).
# With the library: bert-base-uncased's vocab.txt under the four normalizations (lower case and accents stripped, cased,
# lower case only, accents stripped only), the tokenizer.json that `bert vocab` writes for three vocabularies learnt
# here (English uncased, Portuguese cased, English lower-cased with accents kept) loaded as transformers loads it, and
# 3000 sentence pairs with their type ids.
#   usage: bench/parity/tokenizer.sh     env: BERT (default: dotnet run …; the published file on the GPU machine), PYTHON,
#          TOKENIZERS_NODE (a node_modules folder holding `tokenizers`; default: npm installs tokenizers@0.23.2 into a
#          temporary folder; skipped, saying so, without node and npm)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
BERT=${BERT:-"dotnet run --project $root/Bert.Models -c Release --"}
PYTHON=${PYTHON:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
res=$root/Bert.Models/Resources
{
  cat "$res"/wikitext-2-raw.test.raw "$res"/tinyshakespeare.txt "$res"/stsa.binary.* "$res"/*_labelled.txt "$res"/pt-machado-*.txt "$res"/pt-tweets-*_text.txt
  printf '\nCafé naïve 한국어 İstanbul ΣΟΦΙΑΣ x\xcc\x81 ﬁ 豈 ǅ Ⅻ ⓐⒶ a\xe2\x80\x8bb $5 1+1=2 x😀y 中文 tab\there x\xcd\xb8y p\xee\x80\x81q \xf0\xab\xa0\xa0z \xf0\xab\xa4\xa0z\n'
} > "$work/texts.txt"
"$PYTHON" - "$work" <<'PY'
import random, sys
w = sys.argv[1]
# Every code point but the surrogates and the line breaks, as "a{c}b {c}", 32 to a line.
skip = {0x0A, 0x0B, 0x0C, 0x0D, 0x1C, 0x1D, 0x1E, 0x85, 0x2028, 0x2029}
cps = [c for c in range(0x20, 0x110000) if not 0xD800 <= c <= 0xDFFF and c not in skip]
with open(f'{w}/sweep.txt', 'w', encoding='utf-8') as f:
    for i in range(0, len(cps), 32):
        f.write(' '.join(f'a{chr(c)}b {chr(c)}' for c in cps[i:i + 32]) + '\n')
random.seed(1)
lines = [l for l in open(f'{w}/texts.txt', encoding='utf-8').read().split('\n') if l.strip() and '\t' not in l]
with open(f'{w}/pairs.txt', 'w', encoding='utf-8') as f:
    for _ in range(3000):
        f.write(random.choice(lines)[:300] + '\t' + random.choice(lines)[:300] + '\n')
PY
echo "$(grep -c '' "$work/texts.txt") lines of text, $(grep -c '' "$work/sweep.txt") of code points, 3000 pairs; $($PYTHON -c 'import sys, unicodedata; print("Python", sys.version.split()[0], "unicodedata", unicodedata.unidata_version)')"
status=0
compare() {   # ours reference name texts
  "$PYTHON" - "$1" "$2" "$4" "$3" <<'PY' || status=1
import sys
ours = open(sys.argv[1]).read().rstrip('\n').split('\n'); ref = open(sys.argv[2]).read().rstrip('\n').split('\n'); texts = open(sys.argv[3], encoding='utf-8').read().split('\n')
n = max(len(ours), len(ref)); bad = [i for i in range(n) if i >= len(ours) or i >= len(ref) or ours[i] != ref[i]]
print(f"{sys.argv[4]}: {n - len(bad)} of {n} lines the same" + ("" if not bad else f"; first differences: " + "; ".join(f"line {i + 1} {texts[i][:60]!r}" for i in bad[:5])))
sys.exit(1 if bad else 0)
PY
}
ours() {   # input output [bert tokenize options]
  local input=$1 output=$2; shift 2
  $BERT tokenize --output ids --max-len 1000000 "$@" < "$input" > "$output"
}
ours "$work/texts.txt" "$work/ours.txt"
"$PYTHON" "$here/tokenizer_ref.py" "$res/vocab.txt" < "$work/texts.txt" > "$work/ref.txt"
compare "$work/ours.txt" "$work/ref.txt" "texts, bert-base-uncased: reference (tokenizer_ref.py)" "$work/texts.txt"
if "$PYTHON" -c 'import transformers' >/dev/null 2>&1; then
  tv=$("$PYTHON" -c 'import transformers; print(transformers.__version__)')
  "$PYTHON" "$here/tokenizer_ref.py" "$res/vocab.txt" --hf < "$work/texts.txt" > "$work/hf.txt"
  compare "$work/ours.txt" "$work/hf.txt" "texts, bert-base-uncased: transformers $tv BertTokenizerFast" "$work/texts.txt"
  ours "$work/sweep.txt" "$work/o.txt"
  "$PYTHON" "$here/tokenizer_ref.py" "$res/vocab.txt" --hf < "$work/sweep.txt" > "$work/hf.txt"
  compare "$work/o.txt" "$work/hf.txt" "sweep, bert-base-uncased: transformers $tv BertTokenizerFast" "$work/sweep.txt"
else
  echo "transformers is not installed here: its BertTokenizerFast not compared"
fi

node_modules=${TOKENIZERS_NODE:-}
if [ -z "$node_modules" ] && command -v node >/dev/null && command -v npm >/dev/null; then
  timeout 90 npm install --silent --no-audit --no-fund --fetch-retries=0 --fetch-timeout=20000 --prefix "$work/node" tokenizers@0.23.2 >/dev/null 2>&1 \
    && node_modules=$work/node/node_modules \
    || echo "npm could not install tokenizers@0.23.2 (no registry?): Hugging Face's tokenizers library not compared"
fi
if [ -n "$node_modules" ]; then
  hf() { NODE_PATH="$node_modules" node "$here/tokenizer_hf.cjs" "$@"; }
  echo "Hugging Face tokenizers $(NODE_PATH="$node_modules" node -p 'require("tokenizers/package.json").version') (Rust, npm binding), node $(node --version)"
  # bert-base-uncased's vocab.txt under each normalization: ours from a folder with that tokenizer_config.json.
  for combo in "true true" "false false --cased" "true false --keep-accents" "false true --cased --strip-accents"; do
    set -- $combo
    d=$work/base_$1_$2; mkdir -p "$d"; cp "$res/vocab.txt" "$d/"
    printf '{"do_lower_case": %s, "strip_accents": %s}\n' "$1" "$2" > "$d/tokenizer_config.json"
    name="lower case $1, strip accents $2"; shift 2
    for t in texts sweep; do
      ours "$work/$t.txt" "$work/o.txt" --vocab "$d"
      hf --vocab "$res/vocab.txt" "$@" < "$work/$t.txt" > "$work/r.txt"
      compare "$work/o.txt" "$work/r.txt" "$t, bert-base-uncased, $name: tokenizers" "$work/$t.txt"
    done
  done
  # The tokenizer.json we write, for vocabularies learnt here, loaded by the library.
  $BERT vocab --corpus english --size 4000 --out "$work/v_en" > /dev/null
  $BERT vocab --lang pt --out "$work/v_pt" > /dev/null
  $BERT vocab --corpus english --size 3000 --keep-accents --out "$work/v_ka" > /dev/null
  for v in en pt ka; do
    for t in texts sweep; do
      ours "$work/$t.txt" "$work/o.txt" --vocab "$work/v_$v"
      hf --json "$work/v_$v/tokenizer.json" < "$work/$t.txt" > "$work/r.txt"
      compare "$work/o.txt" "$work/r.txt" "$t, our tokenizer.json ($v vocabulary learnt by bert vocab): tokenizers" "$work/$t.txt"
    done
  done
  $BERT tokenize --pairs --vocab "$work/v_pt" --output json --max-len 1000000 < "$work/pairs.txt" \
    | "$PYTHON" -c 'import sys, json
for l in sys.stdin:
    o = json.loads(l); print(" ".join(map(str, o["ids"])) + "\t" + " ".join(map(str, o["type_ids"])))' > "$work/o.txt"
  hf --json "$work/v_pt/tokenizer.json" --pairs < "$work/pairs.txt" > "$work/r.txt"
  compare "$work/o.txt" "$work/r.txt" "sentence pairs with type ids, our tokenizer.json (pt): tokenizers" "$work/pairs.txt"
else
  echo "node and npm are not here: Hugging Face's tokenizers library not compared"
fi
exit $status

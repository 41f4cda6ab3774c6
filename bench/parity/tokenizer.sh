#!/usr/bin/env bash
# Tokenizer parity: `bert tokenize --output ids` against an independent BERT tokenizer (tokenizer_ref.py, Python's
# unicodedata) and, where transformers is installed, against its BertTokenizerFast, on every embedded text (English
# corpus, the four English sets, the Portuguese novels and tweets: about 100 000 lines) plus a line of hard cases.
#   usage: bench/parity/tokenizer.sh     env: BERT (default: dotnet run …; the published file on the GPU machine), PYTHON
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
BERT=${BERT:-"dotnet run --project $root/Bert.Models -c Release --"}
PYTHON=${PYTHON:-python3}
work=$(mktemp -d)
res=$root/Bert.Models/Resources
{
  cat "$res"/wikitext-2-raw.test.raw "$res"/tinyshakespeare.txt "$res"/stsa.binary.* "$res"/*_labelled.txt "$res"/pt-machado-*.txt "$res"/pt-tweets-*_text.txt
  printf '\nCafé naïve 한국어 İstanbul ΣΟΦΙΑΣ x\xcc\x81 ﬁ 豈 ǅ Ⅻ ⓐⒶ a\xe2\x80\x8bb $5 1+1=2 x😀y 中文 tab\there x\xcd\xb8y p\xee\x80\x81q \xf0\xab\xa0\xa0z \xf0\xab\xa4\xa0z\n'
} > "$work/texts.txt"
echo "$(grep -c '' "$work/texts.txt") lines; $($PYTHON -c 'import sys, unicodedata; print("Python", sys.version.split()[0], "unicodedata", unicodedata.unidata_version)')"
$BERT tokenize --output ids --max-len 1000000 < "$work/texts.txt" > "$work/ours.txt"
status=0
compare() {
  "$PYTHON" - "$work/ours.txt" "$1" "$work/texts.txt" "$2" <<'PY' || status=1
import sys
ours = open(sys.argv[1]).read().split('\n'); ref = open(sys.argv[2]).read().split('\n'); texts = open(sys.argv[3], encoding='utf-8').read().split('\n')
n = min(len(ours), len(ref)); bad = [i for i in range(n) if ours[i] != ref[i]]
print(f"{sys.argv[4]}: {n - len(bad)} of {n} lines the same ids" + ("" if not bad else f"; first differences: " + "; ".join(f"line {i + 1} {texts[i][:60]!r}" for i in bad[:5])))
sys.exit(1 if bad else 0)
PY
}
"$PYTHON" "$here/tokenizer_ref.py" "$res/vocab.txt" < "$work/texts.txt" > "$work/ref.txt"
compare "$work/ref.txt" "reference (tokenizer_ref.py)"
if "$PYTHON" -c 'import transformers' >/dev/null 2>&1; then
  "$PYTHON" "$here/tokenizer_ref.py" "$res/vocab.txt" --hf < "$work/texts.txt" > "$work/hf.txt"
  compare "$work/hf.txt" "transformers $("$PYTHON" -c 'import transformers; print(transformers.__version__)') BertTokenizerFast"
else
  echo "transformers is not installed here: compared with the reference only"
fi
rm -rf "$work"
exit $status

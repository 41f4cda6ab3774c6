# A reference for `bert tokenize --output ids`: BERT's uncased tokenization (clean the text, space the CJK ideographs,
# split on whitespace, strip accents (NFD without Mn) then lower-case each character, split off punctuation, greedy
# longest-match-first word pieces), written from the algorithm of Google's tokenization.py with Python's unicodedata,
# where the two differ as transformers' fast tokenizer does it (BertTokenizerFast, the default): strip then lower-case,
# characters dropped only when Cc, Cf or Co (tokenization.py: any C*), CJK extension E from U+2B920 (tokenization.py:
# U+2B820). Reads texts on stdin, one per line; prints [CLS] ids [SEP] per
# line (a blank line for a blank line). With --hf, uses transformers' BertTokenizerFast on the same vocabulary instead.
#   usage: python3 tokenizer_ref.py VOCAB.txt [--hf] < texts > ids
import sys, unicodedata
if '--hf' in sys.argv:
    from transformers import BertTokenizerFast
    hf = BertTokenizerFast(vocab_file=sys.argv[1], do_lower_case=True)
    for line in sys.stdin.read().split('\n'):
        print('' if line.strip() == '' else ' '.join(map(str, hf(line)['input_ids'])))
    sys.exit(0)
vocab = {t.rstrip('\n'): i for i, t in enumerate(open(sys.argv[1], encoding='utf-8'))}
def is_ws(c): return c in ' \t\n\r' or unicodedata.category(c) == 'Zs'
def is_ctrl(c): return c not in '\t\n\r' and unicodedata.category(c) in ('Cc', 'Cf', 'Co')
def is_punc(c):
    cp = ord(c)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126: return True
    return unicodedata.category(c).startswith('P')
def is_cjk(cp):
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF or 0x2A700 <= cp <= 0x2B73F
            or 0x2B740 <= cp <= 0x2B81F or 0x2B920 <= cp <= 0x2CEAF or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)
def basic(text):
    out = []
    for c in text:
        cp = ord(c)
        if cp == 0 or cp == 0xFFFD or is_ctrl(c): continue
        out.append(' ' if is_ws(c) else c)
    text = ''.join(out)
    text = ''.join(f' {c} ' if is_cjk(ord(c)) else c for c in text)
    toks = []
    for tok in text.split():
        tok = ''.join(c for c in unicodedata.normalize('NFD', tok) if unicodedata.category(c) != 'Mn')  # fast tokenizer order: strip, then lower
        tok = ''.join(c.lower() for c in tok)   # per character (Rust's char::to_lowercase)
        cur = ''
        for c in tok:
            if is_punc(c):
                if cur: toks.append(cur); cur = ''
                toks.append(c)
            else: cur += c
        if cur: toks.append(cur)
    return toks
def wordpiece(tok):
    if len(tok) > 100: return [vocab['[UNK]']]
    out, start = [], 0
    while start < len(tok):
        end, cur = len(tok), None
        while start < end:
            s = tok[start:end]
            if start > 0: s = '##' + s
            if s in vocab: cur = vocab[s]; break
            end -= 1
        if cur is None: return [vocab['[UNK]']]
        out.append(cur); start = end
    return out
for line in sys.stdin.read().split('\n'):
    if line.strip() == '': print(''); continue
    ids = [vocab['[CLS]']] + [i for t in basic(line) for i in wordpiece(t)] + [vocab['[SEP]']]
    print(' '.join(map(str, ids)))

"""Weight files as transformers and torch write them, read by `bert`, and ours read by transformers (PARTS=formats in
bench/gpu/run.sh; needs torch and transformers, which the GPU machine has; runs on the CPU in about 15 s).

A BertForSequenceClassification of BERT-Nano's sizes (hidden 32, 2 layers, 4 heads, 3 labels; declared as
BertNanoClassifier), its classifier scaled so that the three probabilities differ, saved as
  safetensors      save_pretrained(dir)                                  (model.safetensors)
  torch-zip        torch.save(state_dict) as pytorch_model.bin            (the current torch's zip format)
  torch-legacy     the same with _use_new_zipfile_serialization=False     (torch < 1.6's format, as old Hub repositories)
  sharded          save_pretrained(dir, max_shard_size="100KB")          (model.safetensors.index.json + shards)
  torch-sharded    pytorch_model.bin.index.json + torch shards, as transformers 4 wrote them
then, for each, `bert predict --model dir TEXT` must give transformers' label and probability (to its 3 printed digits).
Last, `bert export --hf` of the safetensors folder in f32 and bf16 must load in transformers'
AutoModelForSequenceClassification and AutoTokenizer and give the same probabilities (bf16: to 2e-2).
Then a BertForQuestionAnswering of the same sizes (declared as BertNanoQuestionAnswering): `bert predict` with its
save_pretrained folder must give the span transformers' start and end logits give (the best of at most 30 pieces inside
the context, start × end probability, the text cut by the fast tokenizer's offsets), and `bert export --hf` of it must
load in AutoModelForQuestionAnswering with the same logits.
Prints a line per check and `formats: N of M passed`; exits 1 when any failed.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

import torch
from transformers import (AutoModelForQuestionAnswering, AutoModelForSequenceClassification, AutoTokenizer, BertConfig,
                          BertForQuestionAnswering, BertForSequenceClassification)

TEXT = "a really great film, the actors were wonderful"


# Texts whose characters the fast tokenizer's own Unicode tables classify (accents, CJK, a mark and punctuation newer
# than those tables, a control, emoji, a long emoji word), for the export's tokenizer.json.
HARD = ["Café naïve 한국어 İstanbul ΣΟΦΙΑΣ x\u0301 ﬁ 豈 ǅ Ⅻ ⓐⒶ a\u200bb $5 1+1=2 x😀y 中文 tab\there",
        "a\u061db a\u07fdb a\u0890b a\u166db \U0002b820z \U0002b920z p\ue001q", "😀" * 60 + " ok", "The [MASK] is [SEP] here."]


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.abspath(os.path.join(here, "..", ".."))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bert", default=os.path.join(root, "publish", "bert"))
    ap.add_argument("--vocab", default=os.path.join(root, "Bert.Models", "Resources", "vocab.txt"))
    a = ap.parse_args()

    torch.manual_seed(0)
    labels = {0: "neg", 1: "pos", 2: "other"}
    cfg = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                     max_position_embeddings=64, type_vocab_size=2, hidden_act="gelu", num_labels=3, id2label=labels,
                     label2id={v: k for k, v in labels.items()})
    model = BertForSequenceClassification(cfg).eval()
    with torch.no_grad():
        model.classifier.weight.mul_(60.0)
    work = tempfile.mkdtemp(prefix="bert-formats-")
    tokdir = os.path.join(work, "tokenizer")
    os.makedirs(tokdir)
    shutil.copyfile(a.vocab, os.path.join(tokdir, "vocab.txt"))
    with open(os.path.join(tokdir, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "BertTokenizer", "do_lower_case": True}, f)
    tok = AutoTokenizer.from_pretrained(tokdir)
    enc = tok(TEXT, return_tensors="pt")
    with torch.no_grad():
        probs = model(**enc).logits.softmax(-1)[0]
    want = (labels[int(probs.argmax())], float(probs.max()))
    print(f"transformers: {want[0]} {want[1]:.5f} (probabilities {', '.join(f'{p:.4f}' for p in probs.tolist())})")

    results = []

    def check(name, ok, detail):
        results.append(ok)
        print(f"{'PASS' if ok else 'FAIL'} {name}: {detail}")

    def predict(folder):
        r = subprocess.run([a.bert, "predict", "--model", folder, TEXT], capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            return None, (r.stderr.strip() or r.stdout.strip())[-400:]
        label, p, _ = r.stdout.strip().splitlines()[-1].split("\t", 2)
        return (label, float(p)), r.stderr.strip().splitlines()[0] if r.stderr.strip() else ""

    def same(got, ref, tol):
        return got is not None and got[0] == ref[0] and abs(got[1] - ref[1]) <= tol

    state = {k: v.contiguous() for k, v in model.state_dict().items()}

    def folder(name):
        d = os.path.join(work, name)
        os.makedirs(d, exist_ok=True)
        cfg.save_pretrained(d)
        tok.save_pretrained(d)   # as this transformers saves it: tokenizer.json, with or without vocab.txt (bert reads either)
        return d

    d = folder("safetensors")
    model.save_pretrained(d)
    formats = {"safetensors": d}
    d = folder("torch-zip")
    torch.save(state, os.path.join(d, "pytorch_model.bin"))
    formats["torch-zip"] = d
    d = folder("torch-legacy")
    try:
        torch.save(state, os.path.join(d, "pytorch_model.bin"), _use_new_zipfile_serialization=False)
        formats["torch-legacy"] = d
    except Exception as e:  # a torch that no longer writes it
        check("torch-legacy (torch.save)", False, f"could not write it: {e}")
    d = folder("sharded")
    try:
        model.save_pretrained(d, max_shard_size="100KB")
        if not os.path.exists(os.path.join(d, "model.safetensors.index.json")):
            raise RuntimeError(f"save_pretrained wrote no index: {sorted(os.listdir(d))}")
        formats["sharded"] = d
    except Exception as e:  # a transformers that shards otherwise: say so, do not stop
        check("sharded (save_pretrained)", False, f"could not write it: {e}")
    d = folder("torch-sharded")
    names = list(state)
    weight_map = {}
    for s, part in enumerate((names[: len(names) // 2], names[len(names) // 2:])):
        file = f"pytorch_model-0000{s + 1}-of-00002.bin"
        torch.save({n: state[n] for n in part}, os.path.join(d, file))
        weight_map.update({n: file for n in part})
    with open(os.path.join(d, "pytorch_model.bin.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": sum(t.numel() * 4 for t in state.values())}, "weight_map": weight_map}, f)
    formats["torch-sharded"] = d

    for name, d in formats.items():
        got, said = predict(d)
        check(f"bert predict, {name}", same(got, want, 6e-4), f"{got} ({said})")

    for dtype, tol in (("f32", 1e-5), ("bf16", 2e-2)):
        out = os.path.join(work, f"export-{dtype}")
        r = subprocess.run([a.bert, "export", "--hf", out, "--model", formats["safetensors"], "--dtype", dtype], capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            check(f"bert export --hf --dtype {dtype}", False, r.stderr.strip()[-400:])
            continue
        theirs = AutoModelForSequenceClassification.from_pretrained(out).float().eval()
        their_tok = AutoTokenizer.from_pretrained(out)
        same_ids = their_tok(TEXT)["input_ids"] == enc["input_ids"][0].tolist()
        with torch.no_grad():
            p = theirs(**their_tok(TEXT, return_tensors="pt")).logits.softmax(-1)[0]
        diff = float((p - probs).abs().max())
        names_kept = theirs.config.id2label == labels
        check(f"transformers loads bert export --hf --dtype {dtype}", same_ids and names_kept and diff <= tol,
              f"tokens {'same' if same_ids else 'DIFFER'}, id2label {'kept' if names_kept else theirs.config.id2label}, probabilities within {diff:.2e} (limit {tol:g})")
        # The tokenizer.json the export wrote, as AutoTokenizer loads it (the fast tokenizer), against `bert tokenize`.
        r = subprocess.run([a.bert, "tokenize", "--model", out, "--output", "ids", "--max-len", "512"], input="\n".join(HARD) + "\n",
                           capture_output=True, text=True, timeout=120)
        ours = [list(map(int, l.split())) for l in r.stdout.strip("\n").split("\n")] if r.returncode == 0 else None
        theirs_ids = their_tok(HARD, truncation=True, max_length=512)["input_ids"]
        check(f"AutoTokenizer on bert export --hf --dtype {dtype} (its tokenizer.json)", their_tok.is_fast and ours == theirs_ids,
              f"fast: {their_tok.is_fast}; {sum(x == y for x, y in zip(ours or [], theirs_ids))} of {len(HARD)} texts the same ids" + ("" if r.returncode == 0 else f"; bert tokenize: {r.stderr.strip()[-300:]}"))

    # Extractive question answering: transformers' span against `bert predict`, and our export read back.
    question, context = "Who wrote the old book?", "The old book was written by a man who lived near the river in the north."
    qcfg = BertConfig(**{k: v for k, v in cfg.to_dict().items() if k not in ("id2label", "label2id", "num_labels", "architectures")})
    qa = BertForQuestionAnswering(qcfg).eval()
    with torch.no_grad():
        qa.qa_outputs.weight.mul_(40.0)
    qenc = tok(question, context, return_tensors="pt", return_offsets_mapping=True)
    offsets = qenc.pop("offset_mapping")[0].tolist()
    with torch.no_grad():
        out = qa(**qenc)
    ps, pe = out.start_logits[0].softmax(-1), out.end_logits[0].softmax(-1)
    ctx = [i for i, s in enumerate(qenc.sequence_ids(0)) if s == 1]
    best = max(((float(ps[i] * pe[j]), i, j) for i in ctx for j in ctx if i <= j < i + 30), key=lambda x: x[0])
    span = context[offsets[best[1]][0]:offsets[best[2]][1]]
    print(f"transformers QA: '{span}' {best[0]:.5f}")
    qdir = folder("qa")
    qa.save_pretrained(qdir)
    r = subprocess.run([a.bert, "predict", "--model", qdir, f"{question}\t{context}"], capture_output=True, text=True, timeout=120)
    got = r.stdout.strip().splitlines()[-1].split("\t") if r.returncode == 0 else None
    check("bert predict, BertForQuestionAnswering (safetensors)", got is not None and got[0] == span and abs(float(got[1]) - best[0]) <= 6e-4,
          f"{got[:2] if got else (r.stderr.strip() or r.stdout.strip())[-400:]}")
    out_dir = os.path.join(work, "export-qa")
    r = subprocess.run([a.bert, "export", "--hf", out_dir, "--model", qdir], capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        check("bert export --hf, question answering", False, r.stderr.strip()[-400:])
    else:
        theirs = AutoModelForQuestionAnswering.from_pretrained(out_dir).float().eval()
        with torch.no_grad():
            o2 = theirs(**qenc)
        diff = max(float((o2.start_logits - out.start_logits).abs().max()), float((o2.end_logits - out.end_logits).abs().max()))
        check("transformers loads bert export --hf, question answering", type(theirs).__name__ == "BertForQuestionAnswering" and diff <= 1e-5,
              f"{type(theirs).__name__}, start and end logits within {diff:.2e}")

    print(f"formats: {sum(results)} of {len(results)} passed")
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()

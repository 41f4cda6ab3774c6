#!/usr/bin/env python3
"""Parity of a Bert checkpoint with Hugging Face transformers.

    python parity.py CHECKPOINT_DIR BATCH.json [--tol 1e-4] [--grad-tol 1e-3] [--double] [--reference transformers|torch]

`bert parity-batch CHECKPOINT_DIR --out DIR` writes DIR/batch.json and DIR/gradients.safetensors for it.

CHECKPOINT_DIR is what Bert.Runtime.Checkpoints.Checkpoint.Save wrote (model.safetensors + config.json) for a
pre-training model (BertForPreTraining). BATCH.json holds one batch and what our model computed for it in
inference mode (no dropout):

    {
      "input_ids":        [[int, ...], ...],   # (B, T) token ids           -> our input "ids"
      "token_type_ids":   [[int, ...], ...],   # (B, T) segment ids         -> "types"
      "attention_mask":   [[int, ...], ...],   # (B, T) 1 keep, 0 padding   -> "mask"
      "masked_positions": [int, ...],          # (G) rows of the flattened (B*T) sequence -> "masked"
      "mlm_labels":       [int, ...],          # (G) token ids, -100 = ignored -> "mlmLabels"
      "nsp_labels":       [int, ...],          # (B) 0 = is next, 1 = random  -> "nspLabels"
      "loss":             float,               # our output: mean MLM cross-entropy + mean NSP cross-entropy
      "mlm_logits":       [[float, ...], ...], # optional (G, V): our MLM logits at the masked positions
      "nsp_logits":       [[float, ...], ...]  # optional (B, 2): our NSP logits
    }

Loads the checkpoint with transformers' BertForPreTraining.from_pretrained(dir) (--reference transformers, the
default) or with the plain-PyTorch BERT in torch_bert.py beside this script (--reference torch: for a machine with
torch but no transformers), runs the batch in eval mode (in float64 with --double, to take the reference's own
float32 rounding out of the comparison), and prints, for the MLM logits, the NSP logits and the loss, the max
relative difference: max |ours - theirs| / max |theirs| over the tensor (a relative error per element means nothing
for logits near zero). When gradients.safetensors lies beside BATCH.json, it also back-propagates the same loss and
compares every parameter's gradient the same way (against --grad-tol, default 1e-3); a gradient that is zero in
exact arithmetic (the attention key bias: softmax ignores a constant added to every score) is only required to be
negligible in both. Exits 1 when any difference exceeds its tolerance, 2 when the checkpoint or batch cannot be used.
"""

import argparse
import json
import sys


def max_rel(ours, theirs):
    import torch

    ours = torch.as_tensor(ours, dtype=torch.float64)
    theirs = theirs.detach().to(torch.float64).cpu()
    if ours.shape != theirs.shape:
        raise SystemExit(f"shape mismatch: ours {tuple(ours.shape)} vs transformers {tuple(theirs.shape)}")
    scale = theirs.abs().max().item() if theirs.numel() else 0.0
    diff = (ours - theirs).abs().max().item() if theirs.numel() else 0.0
    return diff / max(scale, 1e-30), diff


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", help="directory with model.safetensors and config.json")
    ap.add_argument("batch", help="BATCH.json with inputs, our loss and (optionally) our logits")
    ap.add_argument("--tol", type=float, default=1e-4, help="largest accepted relative difference (default 1e-4)")
    ap.add_argument("--grad-tol", type=float, default=1e-3, help="largest accepted relative gradient difference (default 1e-3)")
    ap.add_argument("--double", action="store_true", help="run the reference in float64")
    ap.add_argument("--reference", choices=["transformers", "torch"], default="transformers",
                    help="transformers' BertForPreTraining (default) or the plain-PyTorch BERT in torch_bert.py")
    args = ap.parse_args()

    import os
    import torch
    import torch.nn.functional as F
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))   # torch_bert.py beside this script

    try:
        with open(args.batch, encoding="utf-8") as f:
            batch = json.load(f)
        ids = torch.tensor(batch["input_ids"], dtype=torch.long)
        types = torch.tensor(batch["token_type_ids"], dtype=torch.long)
        mask = torch.tensor(batch["attention_mask"], dtype=torch.long)
        masked = torch.tensor(batch["masked_positions"], dtype=torch.long)
        mlm_labels = torch.tensor(batch["mlm_labels"], dtype=torch.long)
        nsp_labels = torch.tensor(batch["nsp_labels"], dtype=torch.long)
        our_loss = float(batch["loss"])
    except (OSError, KeyError, ValueError, TypeError) as e:
        print(f"{args.batch}: cannot read the batch ({e}); see the format in this script's docstring.", file=sys.stderr)
        return 2
    if ids.dim() != 2 or types.shape != ids.shape or mask.shape != ids.shape:
        print(f"{args.batch}: input_ids, token_type_ids and attention_mask must be (B, T) of one shape.", file=sys.stderr)
        return 2
    B, T = ids.shape
    if masked.shape != mlm_labels.shape or nsp_labels.shape != (B,):
        print(f"{args.batch}: masked_positions and mlm_labels must have one length (G), nsp_labels length B = {B}.", file=sys.stderr)
        return 2

    try:
        if args.reference == "transformers":
            from transformers import BertForPreTraining
            model = BertForPreTraining.from_pretrained(args.checkpoint)
            named = list(model.named_parameters())
        else:
            import torch_bert
            model = torch_bert.load(args.checkpoint)
            named = model.hf_named_parameters()
    except Exception as e:  # several types for a bad directory
        print(f"{args.checkpoint}: {args.reference} cannot load it ({e}).", file=sys.stderr)
        return 2
    model.eval()
    if args.double:
        model = model.double()
    grads_path = os.path.join(os.path.dirname(os.path.abspath(args.batch)), "gradients.safetensors")
    want_grads = os.path.exists(grads_path)

    with torch.set_grad_enabled(want_grads):
        if args.reference == "transformers":
            out = model(input_ids=ids, token_type_ids=types, attention_mask=mask)
            prediction_logits, seq_logits = out.prediction_logits, out.seq_relationship_logits
        else:
            prediction_logits, seq_logits = model(ids, types, mask)
        vocab = prediction_logits.shape[-1]
        mlm_logits = prediction_logits.reshape(B * T, vocab)[masked]              # (G, V) at the gathered rows
        nsp_logits = seq_logits                                                    # (B, 2)
        ml = mlm_logits.double()
        counted = (mlm_labels != -100).sum().item()
        # Our CrossEntropy: mean over the rows that count, 0 when none does (torch would give NaN).
        mlm_loss = F.cross_entropy(ml, mlm_labels, ignore_index=-100, reduction="sum") / counted if counted else ml.new_zeros(())
        nsp_counted = (nsp_labels != -100).sum().item()
        nsp_loss = F.cross_entropy(nsp_logits.double(), nsp_labels, ignore_index=-100) if nsp_counted else ml.new_zeros(())
        loss = mlm_loss + nsp_loss
        if want_grads:
            loss.backward()

    results = []
    if "mlm_logits" in batch:
        results.append(("MLM logits", *max_rel(batch["mlm_logits"], mlm_logits)))
    if "nsp_logits" in batch:
        results.append(("NSP logits", *max_rel(batch["nsp_logits"], nsp_logits)))
    results.append(("loss", *max_rel(our_loss, loss)))

    print(f"checkpoint {args.checkpoint}, batch B={B} T={T} G={masked.numel()}, {args.reference} in "
          f"{'float64' if args.double else 'float32'}; loss ours {our_loss:.8g} vs {args.reference} {loss.item():.8g}")
    worst, failed = 0.0, False
    for name, rel, diff in results:
        flag = "ok" if rel <= args.tol else "FAIL"
        print(f"  {name:<10} max relative difference {rel:.3e} (max abs {diff:.3e})  {flag}")
        worst = max(worst, rel)
    failed |= worst > args.tol

    if want_grads:
        from torch_bert import read_safetensors
        ours = read_safetensors(grads_path)
        theirs = {}
        for n, p in named:
            if p.grad is not None:
                theirs[n] = p.grad
        # transformers may name the tied output bias after the decoder
        if "cls.predictions.bias" not in theirs and "cls.predictions.decoder.bias" in theirs:
            theirs["cls.predictions.bias"] = theirs["cls.predictions.decoder.bias"]
        largest = max(t.abs().max().item() for t in theirs.values())
        gworst, gname, checked, negligible = 0.0, "", 0, []
        for n, g in ours.items():
            key = n if n in theirs else ("bert." + n if "bert." + n in theirs else None)
            if key is None:
                if g.abs().max().item() > 0:
                    print(f"  gradient {n}: {args.reference} has no gradient for it but ours is not zero  FAIL")
                    failed = True
                continue
            t = theirs[key]
            if t.abs().max().item() <= 1e-6 * largest:
                negligible.append(n)
                if g.abs().max().item() > 1e-5 * largest:
                    print(f"  gradient {n}: zero in {args.reference} but ours reaches {g.abs().max().item():.3e}  FAIL")
                    failed = True
                continue
            rel, _ = max_rel(g, t)
            checked += 1
            if rel > gworst:
                gworst, gname = rel, n
        flag = "ok" if gworst <= args.grad_tol else "FAIL"
        print(f"  gradients  {checked} tensors: max relative difference {gworst:.3e} ({gname})  {flag}"
              + (f"; {len(negligible)} negligible in both (e.g. {negligible[0]})" if negligible else ""))
        failed |= gworst > args.grad_tol
    if failed:
        print("FAIL: a difference is above its tolerance")
        return 1
    print(f"OK: outputs within {args.tol:g}" + (f", gradients within {args.grad_tol:g}" if want_grads else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())

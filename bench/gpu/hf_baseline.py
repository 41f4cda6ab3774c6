#!/usr/bin/env python3
"""Hugging Face baselines on the GPU machine (issue 4): BERT-Base pre-training step and inference, T = 128.

    python3 bench/gpu/hf_baseline.py [--batches 64,128,256] [--steps 20] [--json OUT.json]

Times transformers' BertForPreTraining (random BERT-Base weights, masked LM on 15 % of the tokens + next sentence),
bf16 autocast with fp32 master weights and fused AdamW, eager (SDPA attention) and under torch.compile; then
inference latency at batch 1 and throughput at batch 64 (bf16, eager and compiled). Prints sequences/s and MFU with
the FLOPs per token our `Catalog.FlopsPerToken` uses, 6·N + 12·L·T·C + 6·(C² + C·V)·f with N the encoder's weights
and f = 0.15, against the card's dense bf16 peak (989 TFLOP/s for an H100 SXM; --peak to change). These are the
numbers our CUDA backend has to beat; they are measured in the same run as ours when that backend is there.
"""
import argparse, json

import torch


def flops_per_token(cfg, seq, f=0.15):
    L, C, V, I = cfg.num_hidden_layers, cfg.hidden_size, cfg.vocab_size, cfg.intermediate_size
    n = L * (4 * C * C + 4 * C + 2 * C * I + I + C + 4 * C)   # attention, FFN and LayerNorm weights of the encoder
    return 6 * n + 12 * L * seq * C + 6 * (C * C + C * V) * f


def timed(fn, steps, warmup=5):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(steps):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / 1000 / steps


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", default="64,128,256")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--peak", type=float, default=989e12, help="dense bf16 FLOP/s of the card")
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--json")
    args = ap.parse_args()
    import transformers
    from transformers import BertConfig, BertForPreTraining

    dev = torch.device("cuda")
    props = torch.cuda.get_device_properties(dev)
    print(f"{props.name}, {props.total_memory / 2**30:.0f} GiB; torch {torch.__version__}, transformers {transformers.__version__}, CUDA {torch.version.cuda}")
    cfg = BertConfig()   # BERT-Base: 12 layers, 768 hidden, 12 heads, vocab 30522
    T = args.seq
    fpt = flops_per_token(cfg, T)
    results = {"device": props.name, "torch": torch.__version__, "transformers": transformers.__version__, "train": [], "infer": []}

    def batch(B):
        g = torch.Generator(device=dev).manual_seed(0)
        ids = torch.randint(1000, cfg.vocab_size, (B, T), device=dev, generator=g)
        labels = torch.full_like(ids, -100)
        chosen = torch.rand(B, T, device=dev, generator=g) < 0.15
        labels[chosen] = ids[chosen]
        ids = ids.masked_fill(chosen, 103)
        return ids, torch.zeros_like(ids), torch.ones_like(ids), labels, torch.randint(0, 2, (B,), device=dev, generator=g)

    modes = ["eager"] + ([] if args.no_compile else ["compile"])
    for mode in modes:
        torch.manual_seed(0)
        model = BertForPreTraining(cfg).to(dev).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.01, fused=True)
        fwd = torch.compile(model) if mode == "compile" else model
        for B in [int(b) for b in args.batches.split(",")]:
            ids, types, mask, labels, nsp = batch(B)

            def step():
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    loss = fwd(input_ids=ids, token_type_ids=types, attention_mask=mask, labels=labels, next_sentence_label=nsp).loss
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                opt.zero_grad(set_to_none=True)

            try:
                s = timed(step, args.steps)
            except torch.OutOfMemoryError:
                print(f"  train {mode:7s} B={B}: out of memory")
                torch.cuda.empty_cache()
                continue
            seqs = B / s
            mfu = seqs * T * fpt / args.peak
            print(f"  train {mode:7s} B={B:4d} T={T}: {s * 1000:8.2f} ms/step  {seqs:9.1f} seq/s  MFU {mfu:6.1%}")
            results["train"].append({"mode": mode, "batch": B, "step_ms": s * 1000, "seq_per_s": seqs, "mfu": mfu})
        del model, opt, fwd
        torch.cuda.empty_cache()

    for mode in modes:
        model = BertForPreTraining(cfg).to(dev).eval().to(torch.bfloat16)
        fwd = torch.compile(model) if mode == "compile" else model
        for B in (1, 64):
            ids, types, mask, _, _ = batch(B)
            with torch.no_grad():
                s = timed(lambda: fwd(input_ids=ids, token_type_ids=types, attention_mask=mask), max(args.steps, 50))
            print(f"  infer {mode:7s} B={B:4d} T={T}: {s * 1000:8.3f} ms  {B / s:9.1f} seq/s")
            results["infer"].append({"mode": mode, "batch": B, "ms": s * 1000, "seq_per_s": B / s})
        del model, fwd
        torch.cuda.empty_cache()
    # Sequence classification (the fine-tuned product's forward): encoder + pooler + 2-way head.
    from transformers import BertForSequenceClassification
    for mode in modes:
        model = BertForSequenceClassification(cfg).to(dev).eval().to(torch.bfloat16)
        fwd = torch.compile(model) if mode == "compile" else model
        for B in (1, 64):
            ids, types, mask, _, _ = batch(B)
            with torch.no_grad():
                s = timed(lambda: fwd(input_ids=ids, token_type_ids=types, attention_mask=mask), max(args.steps, 50))
            print(f"  classify {mode:7s} B={B:4d} T={T}: {s * 1000:8.3f} ms  {B / s:9.1f} seq/s")
            results["infer"].append({"mode": mode, "head": "classifier", "batch": B, "ms": s * 1000, "seq_per_s": B / s})
        del model, fwd
        torch.cuda.empty_cache()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()

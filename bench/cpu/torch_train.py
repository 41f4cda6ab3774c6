"""The PyTorch baseline of `bench/cpu/run.sh --torch`: one BERT pre-training step on the CPU as the Python stack takes it
(forward with dropout 0.1 where BertForPreTraining has it, masked-LM + next-sentence cross-entropy, backward, torch's
AdamW), timed in this process; prints `ms_per_step=...` (the median of --steps after two warm-up steps) and the threads.

    python3 bench/cpu/torch_train.py --size mini --batch 32 --steps 5 --mlm all|masked

--mlm all: the masked-LM head over every position, as transformers' BertForPreTraining computes it (its logits are B·T·V);
--mlm masked: over the masked positions only (the ~15 % that have labels), as Bert and optimized Python setups do.
Any torch >= 1.10; no transformers needed (the encoder is bench/parity/torch_bert.py's, written from the paper).
"""

import argparse
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "parity"))
import torch_bert  # noqa: E402

SIZES = {"mini": (256, 4, 4), "base": (768, 12, 12)}


class Trained(torch_bert.BertForPreTraining):
    """torch_bert's BERT with BertForPreTraining's dropout (embeddings, attention probabilities, both sublayer outputs)."""

    def __init__(self, cfg, p=0.1):
        super().__init__(cfg)
        self.p = p

    def layer(self, layer, x, bias):
        b, t, c = x.shape
        d = c // layer.heads

        def split(y):
            return y.view(b, t, layer.heads, d).transpose(1, 2)

        scores = split(layer.q(x)) @ split(layer.k(x)).transpose(-1, -2) / d ** 0.5 + bias
        probs = F.dropout(scores.softmax(-1), self.p, self.training)
        ctx = (probs @ split(layer.v(x))).transpose(1, 2).reshape(b, t, c)
        x = layer.ln1(x + F.dropout(layer.o(ctx), self.p, self.training))
        return layer.ln2(x + F.dropout(layer.out(F.gelu(layer.i(x))), self.p, self.training))

    def forward(self, ids, types, mask, rows=None):
        t = ids.shape[1]
        x = self.emb_ln(self.word(ids) + self.position(torch.arange(t))[None] + self.token_type(types))
        x = F.dropout(x, self.p, self.training)
        bias = (1.0 - mask[:, None, None, :].to(x.dtype)) * torch.finfo(x.dtype).min
        for layer in self.layers:
            x = self.layer(layer, x, bias)
        y = x if rows is None else x[rows]
        h = self.transform_ln(F.gelu(self.transform(y)))
        return h @ self.word.weight.t() + self.output_bias, self.nsp(torch.tanh(self.pooler(x[:, 0])))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", choices=SIZES, default="mini")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--mlm", choices=["all", "masked"], default="all")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    c, layers, heads = SIZES[a.size]
    v = 30522
    model = Trained(dict(hidden_size=c, vocab_size=v, num_hidden_layers=layers, num_attention_heads=heads,
                         intermediate_size=4 * c, max_position_embeddings=512, type_vocab_size=2)).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    b, t = a.batch, a.seq
    ids = torch.randint(0, v, (b, t))
    types = (torch.arange(t) >= t // 2).long().expand(b, t)
    mask = torch.ones(b, t)
    rows = torch.rand(b, t) < 0.15
    labels = torch.where(rows, ids, torch.full_like(ids, -100))
    nsp = torch.randint(0, 2, (b,))

    def step():
        opt.zero_grad(set_to_none=True)
        if a.mlm == "all":
            mlm, n = model(ids, types, mask)
            loss = F.cross_entropy(mlm.view(-1, v), labels.view(-1), ignore_index=-100)
        else:
            mlm, n = model(ids, types, mask, rows)
            loss = F.cross_entropy(mlm, labels[rows])
        (loss + F.cross_entropy(n, nsp)).backward()
        opt.step()

    for _ in range(2):
        step()
    times = []
    for _ in range(a.steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, masked rows {int(rows.sum())}")
    print(f"ms_per_step={statistics.median(times) * 1000:.1f}")


if __name__ == "__main__":
    main()

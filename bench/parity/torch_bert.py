"""BERT for pre-training in plain PyTorch, written from the paper and Hugging Face's tensor names: a second,
independent implementation to replay a Bert checkpoint where `transformers` is not installed (any torch >= 1.10).

    model = load("CHECKPOINT_DIR")             # config.json + model.safetensors as Bert writes them
    mlm_logits, nsp_logits = model(ids, types, mask)   # (B, T, V), (B, 2)
    model.hf_named_parameters()                # [(hf name, parameter)], e.g. "bert.encoder.layer.0.attention.self.query.weight"

Post-LayerNorm encoder, GELU (erf), additive attention mask, masked-LM head tied to the word embeddings plus an output
bias, pooler (first token, dense, tanh) and a two-way next-sentence output, as in BertForPreTraining.
"""

import json
import math
import struct

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

_DTYPES = {"F32": np.float32, "F64": np.float64, "F16": np.float16}


def read_safetensors(path):
    """{name: float32 tensor} from a .safetensors file (F32, F64, F16 or BF16), without the safetensors package."""
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    base = 8 + n
    out = {}
    for name, v in header.items():
        if name == "__metadata__":
            continue
        start, end = v["data_offsets"]
        raw = blob[base + start: base + end]
        if v["dtype"] == "BF16":
            a = (np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
        elif v["dtype"] in _DTYPES:
            a = np.frombuffer(raw, dtype=_DTYPES[v["dtype"]]).astype(np.float32)
        else:
            raise ValueError(f"{path}: tensor {name} has dtype {v['dtype']}, which this reader does not convert")
        out[name] = torch.from_numpy(a.reshape(v["shape"]).copy())
    return out


class Layer(nn.Module):
    def __init__(self, c, heads, ffn, eps):
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.o = (nn.Linear(c, c) for _ in range(4))
        self.ln1 = nn.LayerNorm(c, eps=eps)
        self.i = nn.Linear(c, ffn)
        self.out = nn.Linear(ffn, c)
        self.ln2 = nn.LayerNorm(c, eps=eps)

    def forward(self, x, bias):
        b, t, c = x.shape
        d = c // self.heads

        def split(y):
            return y.view(b, t, self.heads, d).transpose(1, 2)

        scores = split(self.q(x)) @ split(self.k(x)).transpose(-1, -2) / math.sqrt(d) + bias
        ctx = (scores.softmax(-1) @ split(self.v(x))).transpose(1, 2).reshape(b, t, c)
        x = self.ln1(x + self.o(ctx))
        return self.ln2(x + self.out(F.gelu(self.i(x))))


class BertForPreTraining(nn.Module):
    """Inference-mode BERT (no dropout): the parity check compares outputs and gradients without it."""

    def __init__(self, cfg):
        super().__init__()
        c, v, eps = cfg["hidden_size"], cfg["vocab_size"], cfg.get("layer_norm_eps", 1e-12)
        if cfg.get("hidden_act", "gelu") != "gelu":
            raise ValueError(f"hidden_act {cfg['hidden_act']} is not the erf GELU this reference implements")
        self.word = nn.Embedding(v, c)
        self.position = nn.Embedding(cfg["max_position_embeddings"], c)
        self.token_type = nn.Embedding(cfg["type_vocab_size"], c)
        self.emb_ln = nn.LayerNorm(c, eps=eps)
        self.layers = nn.ModuleList(Layer(c, cfg["num_attention_heads"], cfg["intermediate_size"], eps) for _ in range(cfg["num_hidden_layers"]))
        self.pooler = nn.Linear(c, c)
        self.transform = nn.Linear(c, c)
        self.transform_ln = nn.LayerNorm(c, eps=eps)
        self.output_bias = nn.Parameter(torch.zeros(v))
        self.nsp = nn.Linear(c, 2)

    def forward(self, ids, types, mask):
        t = ids.shape[1]
        x = self.emb_ln(self.word(ids) + self.position(torch.arange(t, device=ids.device))[None] + self.token_type(types))
        bias = (1.0 - mask[:, None, None, :].to(x.dtype)) * torch.finfo(x.dtype).min
        for layer in self.layers:
            x = layer(x, bias)
        h = self.transform_ln(F.gelu(self.transform(x)))
        mlm = h @ self.word.weight.t() + self.output_bias
        nsp = self.nsp(torch.tanh(self.pooler(x[:, 0])))
        return mlm, nsp

    def hf_names(self):
        """Our attribute path -> the Hugging Face tensor name."""
        names = {
            "word.weight": "bert.embeddings.word_embeddings.weight", "position.weight": "bert.embeddings.position_embeddings.weight",
            "token_type.weight": "bert.embeddings.token_type_embeddings.weight", "emb_ln.weight": "bert.embeddings.LayerNorm.weight",
            "emb_ln.bias": "bert.embeddings.LayerNorm.bias", "pooler.weight": "bert.pooler.dense.weight", "pooler.bias": "bert.pooler.dense.bias",
            "transform.weight": "cls.predictions.transform.dense.weight", "transform.bias": "cls.predictions.transform.dense.bias",
            "transform_ln.weight": "cls.predictions.transform.LayerNorm.weight", "transform_ln.bias": "cls.predictions.transform.LayerNorm.bias",
            "output_bias": "cls.predictions.bias", "nsp.weight": "cls.seq_relationship.weight", "nsp.bias": "cls.seq_relationship.bias",
        }
        parts = [("q", "attention.self.query"), ("k", "attention.self.key"), ("v", "attention.self.value"), ("o", "attention.output.dense"),
                 ("ln1", "attention.output.LayerNorm"), ("i", "intermediate.dense"), ("out", "output.dense"), ("ln2", "output.LayerNorm")]
        for n in range(len(self.layers)):
            for ours, hf in parts:
                for w in ("weight", "bias"):
                    names[f"layers.{n}.{ours}.{w}"] = f"bert.encoder.layer.{n}.{hf}.{w}"
        return names

    def hf_named_parameters(self):
        names = self.hf_names()
        return [(names[n], p) for n, p in self.named_parameters()]


def load(checkpoint_dir):
    with open(f"{checkpoint_dir}/config.json", encoding="utf-8") as f:
        cfg = json.load(f)
    model = BertForPreTraining(cfg)
    tensors = read_safetensors(f"{checkpoint_dir}/model.safetensors")

    def find(hf):
        for key in (hf, hf.removeprefix("bert."), hf.replace("LayerNorm.weight", "LayerNorm.gamma"), hf.replace("LayerNorm.bias", "LayerNorm.beta")):
            if key in tensors:
                return tensors[key]
        raise KeyError(f"{checkpoint_dir}/model.safetensors has no tensor {hf}")

    model.load_state_dict({ours: find(hf) for ours, hf in model.hf_names().items()})
    return model.eval()

"""Writes the PyTorch checkpoints that TorchCheckpointTests read, with torch itself (run from this folder):

    apt-get install -y python3-torch && /usr/bin/python3 make_torch_fixtures.py

The tests need only the files (committed); this script says how they were made. Written with torch 1.13.1 (Debian 12).
Every value is a small multiple of 1/4 or an integer, exact in every dtype used, so the tests compute them again.
"""
import collections
import os

import torch


def state():
    a = (torch.arange(6, dtype=torch.float32) * 0.25 - 0.5).reshape(2, 3)
    big = torch.arange(10, dtype=torch.float32) * 0.5
    sd = collections.OrderedDict()
    sd["a.weight"] = a
    sd["a.transposed"] = a.t()                        # a view: the same storage, strides (1, 3)
    sd["slice"] = big[3:7]                           # storage offset 3 in a storage of 10
    sd["half"] = torch.tensor([1.5, -2.0, 0.25, 1024.0], dtype=torch.float16)
    sd["bf16"] = torch.tensor([1.5, -2.0, 3.0], dtype=torch.bfloat16)
    sd["double"] = torch.tensor([[1.0, 2.0], [3.0, -4.5]], dtype=torch.float64)
    sd["ids"] = torch.arange(4).unsqueeze(0)          # int64, as BERT's embeddings.position_ids
    sd["scalar"] = torch.tensor(7.0)
    sd["param"] = torch.nn.Parameter(torch.tensor([0.5, 0.75]))   # pickled by _rebuild_parameter
    return sd


torch.save(state(), "state-zip.bin")
torch.save(state(), "state-legacy.bin", _use_new_zipfile_serialization=False)
# Files that are not a state dict of tensors: a whole module, and a dict with a function in it (which pickle stores as a
# reference to os.system, run by nothing here but by any careless loader's caller).
torch.save(torch.nn.Linear(2, 2), "module.bin")
torch.save({"w": torch.zeros(2), "hook": os.system}, "function.bin")

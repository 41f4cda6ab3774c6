#!/usr/bin/env bash
# The GPU machine's checks, in one run (issue 4). Here first: scripts/publish.sh (writes publish/bert), then
#   device run, carry ["publish"], command: bash bench/gpu/run.sh        (about 5 minutes on an H100)
# (a) parity of a checkpoint we wrote with transformers' BertForPreTraining: logits, loss and every gradient, fp32 and
#     fp64 (bench/parity/run.sh, our side on the CPU); (b) transformers' BERT-Base pre-training step (T=128, bf16,
#     batch 64/128/256), eager and torch.compile, with MFU; (c) its inference at batch 1 and 64. Outputs go to $OUT
#     (or bench/gpu/out) for bench/RESULTS.md. Our CUDA backend's rows join (b) and (c) when `bert --device cuda` runs.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${OUT:-$here/out}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
bert=${BERT:-$root/publish/bert}
[ -x "$bert" ] || { echo "error: $bert is missing; run scripts/publish.sh here and carry publish/." >&2; exit 2; }
{
  date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; uname -m; nproc
  echo "== (a) parity with transformers"
  BERT=$bert WORK=/tmp/bert-parity bash "$root/bench/parity/run.sh"; echo "parity exit $?"
  echo "== (b, c) transformers baselines"
  timeout 420 python3 "$here/hf_baseline.py" --json "$out/hf_baseline.json"; echo "baseline exit $?"
  echo "== ours on the GPU"
  "$bert" pretrain --device cuda --size base --steps 1 --out /tmp/bert-cuda 2>&1 | tail -1
} 2>&1 | tee "$out/gpu.log"

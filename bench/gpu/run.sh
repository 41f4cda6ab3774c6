#!/usr/bin/env bash
# The GPU machine's checks, in one run (issue 4). Here first: scripts/publish.sh (writes publish/bert), then
#   device run, carry ["publish"], command: bash bench/gpu/run.sh
# Parts (PARTS, default all three, in this order):
#   selftest  `bert selftest --device cuda --timing`: cuBLAS, every kernel through whole models against the CPU in double
#             (forward, backward, AdamW, LAMB, determinism, bf16, the flash attention, CUDA graphs, the memory estimate),
#             then BERT-Base pre-training steps timed (fp32, TF32, bf16; bf16 rounded per product as before the kept bf16
#             operands, with LayerNorm's backward in two passes, with cuBLAS rounding, with the flash attention, with both),
#             per-kernel profiles, the product's training loop, inference
#   train     `bert pretrain --device cuda` (BERT-Mini, embedded corpus, TF32), `bert finetune --device cuda --precision bf16`
#             on Amazon, then `bert eval` and `bert predict` with --device cuda
#   demo      (not in the default PARTS) `bert demo --device cuda --pretrain-steps $DEMO_STEPS` (default 25000, ≈ 35× the CPU
#             demo's budget, 2 min 19 s on an H100): the pre-trained-versus-scratch table after far more pre-training (issue 3);
#             DEMO_LANG=pt runs the Portuguese demo instead (issue 6: does GPU pre-training on the novels beat scratch?)
#   hf        transformers' BERT-Base pre-training step (T=128, bf16, eager and torch.compile) and inference, with MFU
#             (HF_ARGS, default: --batches 32,64,256: the issue's 64 to 256, and 32); the baseline our rows are compared with, measured in the same run
#   parity    a checkpoint we wrote, loaded into transformers' BertForPreTraining: logits, loss and every gradient
#   formats   (not in the default PARTS; CPU only, about 15 s) hf_formats.py: a transformers classifier saved as safetensors,
#             as torch's pytorch_model.bin in both formats and sharded both ways, each read by `bert predict` to
#             transformers' own probabilities; and `bert export --hf` (f32, bf16) loaded back by transformers; then
#             bench/parity/tokenizer.sh: `bert tokenize` against transformers' BertTokenizerFast on every embedded text
#             and every code point (and against Hugging Face's tokenizers library itself where npm can install it)
# Outputs go to $OUT (or bench/gpu/out) for bench/RESULTS.md.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${OUT:-$here/out}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
bert=${BERT:-$root/publish/bert}
parts=${PARTS:-selftest train hf parity}
[ -x "$bert" ] || { echo "error: $bert is missing; run scripts/publish.sh here and carry publish/." >&2; exit 2; }
{
  date -u; nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader; uname -m; nproc
  ls /usr/local/cuda/lib64 2>/dev/null | grep -E '^lib(nvrtc|cublas|cublasLt)\.so' | tr '\n' ' '; echo
  for part in $parts; do
    case $part in
      selftest)
        echo "== selftest (ours: CUDA against the CPU, then timing)"
        timeout ${SELFTEST_TIMEOUT:-300} "$bert" selftest --device cuda --timing --batches ${BATCHES:-32,64,256} ${MODELS:+--models $MODELS} --json "$out/selftest.json"; echo "selftest exit $?" ;;
      train)
        echo "== the product's commands on the device: pre-train BERT-Mini, then fine-tune it on Amazon"
        timeout ${TRAIN_TIMEOUT:-150} "$bert" pretrain --size mini --steps ${TRAIN_STEPS:-300} --batch 32 --max-len 128 --lr 1e-3 --objective mlm \
          --output-bias frequencies --device cuda --out /tmp/bert-gpu-mini < /dev/null; echo "pretrain exit $?"
        timeout ${TRAIN_TIMEOUT:-150} "$bert" finetune --data amazon --size mini --from /tmp/bert-gpu-mini --epochs 3 --lr 2e-4 --device cuda \
          --precision bf16 --out /tmp/bert-gpu-ft < /dev/null; echo "finetune exit $?"
        timeout 60 "$bert" eval --model /tmp/bert-gpu-ft/best --data amazon --device cuda < /dev/null; echo "eval exit $?"
        printf 'I love this phone, the battery lasts for days.\nBroke after a week. Terrible.\n' | timeout 60 "$bert" predict --model /tmp/bert-gpu-ft/best --device cuda; echo "predict exit $?" ;;
      demo)
        echo "== the demo (--lang ${DEMO_LANG:-en}) on the device, pre-training ${DEMO_STEPS:-25000} steps (issues 3 and 6: does much more pre-training beat scratch?)"
        timeout ${DEMO_TIMEOUT:-540} "$bert" demo --device cuda --lang ${DEMO_LANG:-en} --pretrain-steps ${DEMO_STEPS:-25000} --runs ${DEMO_RUNS:-3} --out /tmp/bert-gpu-demo-${DEMO_LANG:-en} < /dev/null
        echo "demo exit $?" ;;
      hf)
        echo "== transformers baselines"
        timeout ${HF_TIMEOUT:-240} python3 "$here/hf_baseline.py" ${HF_ARGS:---batches 32,64,256} --json "$out/hf_baseline.json"; echo "baseline exit $?" ;;
      formats)
        echo "== weight files: transformers' and torch's read by bert, bert's exports read by transformers"
        timeout ${FORMATS_TIMEOUT:-120} python3 "$here/hf_formats.py" --bert "$bert"; echo "formats exit $?"
        BERT=$bert timeout 120 bash "$root/bench/parity/tokenizer.sh"; echo "tokenizer exit $?" ;;
      parity)
        echo "== parity with transformers"
        BERT=$bert WORK=/tmp/bert-parity timeout ${PARITY_TIMEOUT:-180} bash "$root/bench/parity/run.sh"; echo "parity exit $?" ;;
    esac
  done
} 2>&1 | tee "$out/gpu.log"

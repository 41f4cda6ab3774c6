#!/usr/bin/env bash
# Parity of Bert with an independent implementation, outputs and gradients: pre-train BERT-Mini briefly (or take
# CHECKPOINT_DIR), write one batch with our loss, logits and gradients (`bert parity-batch`), and replay it in
# transformers' BertForPreTraining when transformers is installed, else in the plain-PyTorch BERT beside this script;
# once in float32 and once in float64.
#   usage: bench/parity/run.sh [CHECKPOINT_DIR]
#   env:   BERT      the bert command (default: dotnet run --project Bert.Models -c Release --; on the GPU machine the
#                    published single file), PYTHON (default python3), REFERENCE (transformers|torch), WORK (scratch folder)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
BERT=${BERT:-"dotnet run --project $root/Bert.Models -c Release --"}
PYTHON=${PYTHON:-python3}
work=${WORK:-$(mktemp -d)}
mkdir -p "$work"
ckpt=${1:-}
if [ -z "$ckpt" ]; then
  ckpt=$work/mini
  $BERT pretrain --size mini --steps 30 --batch 16 --max-len 128 --lr 1e-3 --out "$ckpt" > "$work/pretrain.log"
fi
$BERT parity-batch "$ckpt" --out "$work/batch" --batch 8 --max-len 128
ref=${REFERENCE:-$($PYTHON -c 'import transformers' >/dev/null 2>&1 && echo transformers || echo torch)}
echo "machine: $(uname -m), $(nproc) cores; $($PYTHON -c 'import torch; print("torch", torch.__version__)')"
status=0
"$PYTHON" "$here/parity.py" "$ckpt" "$work/batch/batch.json" --reference "$ref" || status=$?
"$PYTHON" "$here/parity.py" "$ckpt" "$work/batch/batch.json" --reference "$ref" --double || status=$?
exit $status

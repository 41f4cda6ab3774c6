#!/bin/sh
# Runs the CPU benchmark with OpenBLAS left to detect the core itself (the environment may pin OPENBLAS_CORETYPE).
# Usage: bench/cpu/run.sh [--quick | --profile | --latency | --profile-train | --gemm-training | --attention | --torch]   (BERT_BLAS=managed|openblas picks the GEMM backend, as everywhere)
cd "$(dirname "$0")/../.." || exit 1
exec env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE dotnet run -c Release --project bench/cpu -- "$@"

#!/usr/bin/env bash
# Runs the GEMM benchmark (managed SIMD vs OpenBLAS, float). The environment sets OPENBLAS_CORETYPE=Haswell
# (and OPENBLAS_L2_SIZE), which forces OpenBLAS onto its AVX2 kernels; only the benchmark unsets them so that
# OpenBLAS uses the kernels it picks for this CPU (AVX-512 where available).
set -euo pipefail
cd "$(dirname "$0")/../.."
exec env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE dotnet run -c Release --project bench/Gemm -- "$@"

#!/usr/bin/env bash
# One-shot GPU check (issue 15): CUDA tests, dwconv against cuDNN (NCHW, channels_last; fp32, bf16,
# fp16), the proxy training step and a 4-trial search with --gpus-per-trial 0.5, in under 8 minutes
# on one GPU. Writes results/benchmarks/*-cuda-*.json and .md; see benchmarks/gpu_check.py.
#
#   bash benchmarks/gpu_check.sh              # on the GPU machine, from anywhere
#   bash benchmarks/gpu_check.sh --dry-run    # the plan, on any machine
#
# Python packages the GPU machine lacks (it reaches no registry) travel in .whl/: site.tar.xz, packed
# here by `python benchmarks/gpu_carry.py`, and any other wheels; both land in /tmp/site first.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
GPU_MACHINE=$(command -v nvidia-smi || true)  # the carry is built for the GPU machine (x86-64, Python 3.12)
if [ -n "$GPU_MACHINE" ] && [ -f .whl/site.tar.xz ]; then  # benchmarks/gpu_carry.py: Ray, Optuna, fvcore, ...
    mkdir -p /tmp/site && tar -xJf .whl/site.tar.xz -C /tmp/site
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
if [ -n "$GPU_MACHINE" ] && compgen -G ".whl/*.whl" > /dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" benchmarks/gpu_check.py "$@"

#!/usr/bin/env bash
# One prepared GPU check (issue 21): the GPU paths end to end with figures, one result file naming the GPU.
# On a CUDA machine, from the repository root (MNIST is embedded in datasets/; CIFAR-10 goes in ./.gpu-data,
# git-ignored, and must be carried along when a device machine gets a copy of the working tree):
#
#   mkdir -p .gpu-data/cifar10
#   cp "$ADVKIT_DATA"/cifar10/cifar10_test.npz "$ADVKIT_DATA"/cifar10/cifar10_train_1.npz .gpu-data/cifar10/
#   bash bench/gpu_check.sh                 # < 10 min; writes bench/results/gpu_check.json
#
# Without CUDA it runs the same steps at a tiny size on the CPU (bench/results/gpu_check_tiny.json unless
# --out is given). Extra arguments go to bench/gpu_check.py (--tiny, --device, --data-root, --out).
set -euo pipefail
cd "$(dirname "$0")/.."
exec python -m bench.gpu_check "$@"

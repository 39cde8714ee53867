#!/usr/bin/env bash
# GPU check for Kiln (run it on a machine with an NVIDIA GPU and driver; nothing here runs in CI):
#   bash scripts/gpu/check.sh
# 1. builds with --features cuda (CubeCL loads libcuda at run time; no CUDA toolkit needed),
# 2. runs the model-parity, loss and DPO-step tests on the GPU (tests/backend.rs with the cuda
#    backend selected: logits vs the transformers fixtures, losses vs f64 references, a DPO step
#    vs the CPU's),
# 3. prints DPO-step time and MFU for a Llama-3.2-1B-shaped random model (full and LoRA r16, f32)
#    and decode tokens/s at batch 1 and K = 32 (examples/gpu_bench.rs), then the same on
#    SmolLM2-135M's shape.
set -euo pipefail
cd "$(dirname "$0")/../.."
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || {
    echo "check.sh: no NVIDIA GPU visible (nvidia-smi failed)" >&2; exit 1; }
echo "== cargo build --release --features cuda"
cargo build --release --features cuda --example gpu_bench --tests
echo "== GPU parity and loss tests (tests/backend.rs on the cuda backend)"
cargo test --release --features cuda --test backend -- --nocapture
echo "== DPO step / MFU / decode, Llama-3.2-1B shape"
cargo run --release --features cuda --example gpu_bench -- --shape llama3.2-1b --tokens 512
echo "== the same, SmolLM2-135M shape"
cargo run --release --features cuda --example gpu_bench -- --shape smollm2 --tokens 512

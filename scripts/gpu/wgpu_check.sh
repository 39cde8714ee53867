#!/usr/bin/env bash
# wgpu check for Kiln: the GPU code path (CubeCL's kernels, fusion, autotuning) on whatever Vulkan
# device the machine has, Mesa's CPU Vulkan (lavapipe) when it has no GPU:
#   bash scripts/gpu/wgpu_check.sh            # lavapipe (installs mesa-vulkan-drivers if missing)
#   KILN_WGPU_DEVICE=best bash scripts/gpu/wgpu_check.sh   # the best adapter (a real GPU)
# Runs tests/backend.rs with the wgpu backend selected: logits vs the transformers fixtures (with
# left padding), losses vs f64 references, a DPO step vs the CPU's, NaN propagation. Run it after
# every change to model, attention, sampling or loss code; CI only type-checks `--features wgpu`.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [[ "${KILN_WGPU_DEVICE:-cpu}" == cpu ]]; then
    if ! ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1; then
        echo "== installing Mesa's Vulkan drivers (lavapipe)"
        if command -v apt-get >/dev/null; then
            sudo_=""; [[ $(id -u) == 0 ]] || sudo_="sudo"
            $sudo_ apt-get install -y -q mesa-vulkan-drivers || {
                $sudo_ apt-get update -q && $sudo_ apt-get install -y -q mesa-vulkan-drivers; }
        else
            echo "wgpu_check.sh: install Mesa's Vulkan drivers (lavapipe) first" >&2; exit 1
        fi
    fi
    # cubecl-wgpu reads this to pick the CPU adapter instead of the "best" one.
    export CUBECL_WGPU_DEFAULT_DEVICE=Cpu
fi
# One autotune candidate set per shape is enough for a correctness check (it is cached in
# target/ between runs anyway).
export CUBECL_AUTOTUNE_LEVEL="${CUBECL_AUTOTUNE_LEVEL:-minimal}"
echo "== cargo test --features wgpu --test backend"
time cargo test --features wgpu --test backend -- --nocapture --test-threads=1
# With the real model fetched (scripts/real_model/fetch_smollm2.sh), greedy chat on wgpu must give
# transformers' answer.
SMOL=models/SmolLM2-135M-Instruct
if [[ -f "$SMOL/model.safetensors" ]]; then
    echo "== generate on $SMOL (--features wgpu, greedy)"
    answer=$(cargo run -q --features wgpu --example generate -- --model-dir "$SMOL" \
        --prompt "What is the capital of France?" --temperature 0 --max-new-tokens 32 2>/dev/null)
    echo "$answer"
    [[ "$answer" == *"The capital of France is Paris."* ]] || {
        echo "wgpu_check.sh: expected transformers' greedy answer 'The capital of France is Paris.'" >&2
        exit 1; }
else
    echo "== (skipped: generate on SmolLM2; run scripts/real_model/fetch_smollm2.sh first)"
fi

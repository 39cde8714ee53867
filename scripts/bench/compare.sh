#!/usr/bin/env bash
# Kiln vs PyTorch on SmolLM2-135M's shape, one run, one table:
#   bash scripts/bench/compare.sh [--threads N] [--skip-kiln]
# (--skip-kiln reuses the last criterion results under target/criterion and reruns only PyTorch)
# 1. `cargo bench --bench real_shape` (criterion; writes the random weights on first use),
# 2. scripts/bench/torch_real_shape.py on the same weights (PyTorch eager / transformers),
# 3. a table of both medians with Kiln / PyTorch time ratios (and tokens/s for decoding).
# Needs .venv with torch + transformers (+ peft for the LoRA row); see README "Benchmarks".
set -euo pipefail
cd "$(dirname "$0")/../.."
THREADS=2
SKIP_KILN=0
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) THREADS="$2"; shift 2 ;;
    --skip-kiln) SKIP_KILN=1; shift ;;
    *) echo "usage: $0 [--threads N] [--skip-kiln]" >&2; exit 2 ;;
  esac
done
PY="${PY:-.venv/bin/python}"
OUT=target/kiln-bench
mkdir -p "$OUT"
if [ "$SKIP_KILN" = 0 ]; then
  echo "== cargo bench --bench real_shape (Kiln, flex)" >&2
  RAYON_NUM_THREADS="$THREADS" cargo bench --bench real_shape -- --noplot 2>&1 | grep -E "^(smollm2|machine)|time:" >&2
fi
echo "== scripts/bench/torch_real_shape.py (PyTorch $("$PY" -c 'import torch; print(torch.__version__)'))" >&2
"$PY" scripts/bench/torch_real_shape.py --threads "$THREADS" > "$OUT/torch_real_shape.jsonl"
"$PY" - "$OUT/torch_real_shape.jsonl" <<'PY'
import json, os, sys
torch = {r["name"]: r for r in map(json.loads, open(sys.argv[1]))}
def kiln(group, name):
    p = f"target/criterion/{group}/{name}/new/estimates.json"
    return json.load(open(p))["median"]["point_estimate"] / 1e9 if os.path.exists(p) else None
rows = [
    ("DPO step, f32, s", "smollm2_135m", "dpo_step_f32", "dpo_step_f32", None),
    ("DPO step, LoRA r16, s", "smollm2_135m", "dpo_step_lora", "dpo_step_lora", None),
    ("DPO step, PyTorch bf16 autocast, s", None, None, "dpo_step_bf16_amp", None),
    ("reward-model step, f32, s", "smollm2_135m", "rm_step_f32", "rm_step_f32", None),
    ("decode batch 1, tokens/s", "smollm2_135m", "decode_b1", "decode_b1", 64),
    ("decode K = 32, tokens/s", "smollm2_135m", "decode_k32", "decode_k32", 32 * 64),
    ("matmul 2048^3 f32, GFLOP/s", "machine", "matmul_f32_2048", "matmul_f32_2048", "flops"),
    ("matmul 2048^3 bf16, GFLOP/s", "machine", "matmul_bf16_2048", "matmul_bf16_2048", "flops"),
]
print(f"| workload | Kiln (flex) | PyTorch | Kiln / PyTorch |")
print(f"|---|---|---|---|")
for label, group, kname, tname, rate in rows:
    k = kiln(group, kname) if group else None
    t = torch.get(tname, {}).get("seconds")
    if rate == "flops":
        f = 2 * 2048 ** 3 / 1e9
        kv, tv = (f / k if k else None), (f / t if t else None)
        ratio = f"{kv / tv:.2f}x the throughput" if kv and tv else "-"
    elif rate:
        kv, tv = (rate / k if k else None), (rate / t if t else None)
        ratio = f"{kv / tv:.2f}x the throughput" if kv and tv else "-"
    else:
        kv, tv = k, t
        ratio = f"{k / t:.2f}x the time" if k and t else "-"
    fmt = lambda v: "-" if v is None else (f"{v:,.1f}" if v >= 10 else f"{v:.3f}")
    print(f"| {label} | {fmt(kv)} | {fmt(tv)} | {ratio} |")
PY

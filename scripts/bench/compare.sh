#!/usr/bin/env bash
# Kiln vs PyTorch on SmolLM2-135M's shape, one run, one table:
#   bash scripts/bench/compare.sh [--threads N] [--skip-kiln] [--tch]
# (--skip-kiln reuses the last criterion results under target/criterion and reruns only PyTorch;
#  --tch also benches Kiln on the LibTorch backend, `--features tch`, and adds it as a column: it
#  needs a Python whose torch is 2.9.0, TCH_PY=... (default .venv-tch/bin/python), see README)
# 1. `cargo bench --bench real_shape` (criterion; writes the random weights on first use),
# 2. scripts/bench/torch_real_shape.py on the same weights (PyTorch eager / transformers),
# 3. a table of both medians with Kiln / PyTorch time ratios (and tokens/s for decoding).
# Needs .venv with torch + transformers (+ peft for the LoRA row); see README "Benchmarks".
set -euo pipefail
cd "$(dirname "$0")/../.."
THREADS=2
SKIP_KILN=0
TCH=0
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) THREADS="$2"; shift 2 ;;
    --skip-kiln) SKIP_KILN=1; shift ;;
    --tch) TCH=1; shift ;;
    *) echo "usage: $0 [--threads N] [--skip-kiln] [--tch]" >&2; exit 2 ;;
  esac
done
PY="${PY:-.venv/bin/python}"
OUT=target/kiln-bench
mkdir -p "$OUT"
if [ "$SKIP_KILN" = 0 ]; then
  echo "== cargo bench --bench real_shape (Kiln, flex)" >&2
  RAYON_NUM_THREADS="$THREADS" cargo bench --bench real_shape -- --noplot 2>&1 | grep -E "^(smollm2|machine)|time:" >&2
  if [ "$TCH" = 1 ]; then
    TCH_PY="${TCH_PY:-.venv-tch/bin/python}"
    TORCH_LIB="$("$TCH_PY" -c 'import os, torch; assert torch.__version__.startswith("2.9.0"), torch.__version__; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
    echo "== cargo bench --features tch --bench real_shape -- _tch/ (Kiln, libtorch $TORCH_LIB)" >&2
    LIBTORCH_USE_PYTORCH=1 PATH="$(dirname "$TCH_PY"):$PATH" LD_LIBRARY_PATH="$TORCH_LIB:${LD_LIBRARY_PATH:-}" \
      OMP_NUM_THREADS="$THREADS" RAYON_NUM_THREADS="$THREADS" \
      cargo bench --features tch --bench real_shape -- --noplot _tch/ 2>&1 | grep -E "^(smollm2|machine)|time:" >&2
  fi
fi
echo "== scripts/bench/torch_real_shape.py (PyTorch $("$PY" -c 'import torch; print(torch.__version__)'))" >&2
"$PY" scripts/bench/torch_real_shape.py --threads "$THREADS" > "$OUT/torch_real_shape.jsonl"
"$PY" - "$OUT/torch_real_shape.jsonl" "$TCH" <<'PY'
import json, os, sys
torch = {r["name"]: r for r in map(json.loads, open(sys.argv[1]))}
tch = sys.argv[2] == "1"
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
def value(seconds, rate):
    if seconds is None:
        return None
    if rate == "flops":
        return 2 * 2048 ** 3 / 1e9 / seconds
    return rate / seconds if rate else seconds
def ratio(kv, tv, rate):
    if kv is None or tv is None:
        return "-"
    return f"{kv / tv:.2f}x the throughput" if rate else f"{kv / tv:.2f}x the time"
fmt = lambda v: "-" if v is None else (f"{v:,.1f}" if v >= 10 else f"{v:.3f}")
if tch:
    print("| workload | Kiln (flex) | Kiln (tch) | PyTorch | flex / PyTorch | tch / PyTorch |")
    print("|---|---|---|---|---|---|")
else:
    print("| workload | Kiln (flex) | PyTorch | Kiln / PyTorch |")
    print("|---|---|---|---|")
for label, group, kname, tname, rate in rows:
    kv = value(kiln(group, kname) if group else None, rate)
    tv = value(torch.get(tname, {}).get("seconds"), rate)
    if tch:
        cv = value(kiln(group + "_tch", kname) if group else None, rate)
        print(f"| {label} | {fmt(kv)} | {fmt(cv)} | {fmt(tv)} | {ratio(kv, tv, rate)} | {ratio(cv, tv, rate)} |")
    else:
        print(f"| {label} | {fmt(kv)} | {fmt(tv)} | {ratio(kv, tv, rate)} |")
PY

#!/usr/bin/env python3
"""Memory of one DPO step (policy forward + backward + AdamW), computed for Llama shapes.

The README's memory table: the SmolLM2-135M rows are measured with
`cargo run --release -p kiln-train --example dpo_step -- <full|lora|lora-bf16> chunked 3`
(counting global allocator, heap only); this script computes every row the same way from the
model's config, so the measured and computed rows can be compared:

- state that lives across steps: base weights (4 B/param f32, 2 B/param bf16), plus for every
  *trainable* parameter its AdamW moments (8 B/param, f32);
- during the step: one f32 gradient per trainable parameter (4 B/param), plus activations kept for
  backward. Activations are estimated per token and layer as 5*intermediate + 8*hidden +
  2*heads*seq f32 values (the MLP's gate/up/act/product/down inputs, the norms', projections',
  RoPE's and residual inputs, the softmax output), which reproduces the 820 MiB measured for
  SmolLM2-135M's full step within 10 %; LoRA keeps the adapters' inputs too (x1.21 measured), a bf16
  base keeps bf16 copies next to f32 softmax/SiLU values (x1.35 measured).

The DPO reference costs nothing here: the trainers precompute its log-probs (or, with LoRA, run
the same base with the adapters disabled). Batch: 2 pairs x 128 tokens (4 sequences of 128) by
default; pass `--pairs N --seq T` to change it.

No dependencies: `python3 scripts/memory_table.py`.
"""

import argparse

MODELS = {
    # name: (params, hidden, intermediate, layers, heads, kv_heads, head_dim)
    "SmolLM2-135M": (134_515_008, 576, 1536, 30, 9, 3, 64),
    "Llama-3.2-1B": (1_235_814_400, 2048, 8192, 16, 32, 8, 64),
    "Llama-3-8B": (8_030_261_248, 4096, 14336, 32, 32, 8, 128),
}
# Measured on SmolLM2-135M (dpo_step, chunked log-probs): activation factor of each mode
# relative to the full f32 estimate.
ACT_FACTOR = {"full f32": 1.0, "LoRA, f32 base": 1.21, "LoRA, bf16 base": 1.35}
# Activation checkpointing (`kiln::backend::Checkpointed<B>`, burn's BalancedCheckpointing),
# measured on SmolLM2-135M with `KILN_CHECKPOINTING=balanced cargo run --release -p kiln-train
# --example dpo_step -- <full|lora> chunked 3`: the activations it keeps relative to none (full:
# 950 - 513 MiB of gradients vs 1,333 - 513; LoRA: 1,050 - 20 vs 993 - 20). The bf16 base was
# not measured with it: the LoRA f32 factor is used.
CKPT_FACTOR = {"full f32": 0.53, "LoRA, f32 base": 1.06, "LoRA, bf16 base": 1.06}
GIB = 1024**3


def lora_params(hidden, inter, layers, heads, kv_heads, head_dim, rank):
    """LoRA on q,k,v,o,gate,up,down: rank * (in + out) per projection."""
    q = heads * head_dim
    kv = kv_heads * head_dim
    per_layer = (
        (hidden + q) + 2 * (hidden + kv) + (q + hidden) + 3 * (hidden + inter)
    )
    return rank * per_layer * layers


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=2)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument(
        "--gpu-gib",
        type=float,
        default=74.5,
        help="GiB of one GPU, for the 'fits' column (H100 80 GB: 74.5; H200 141 GB: 131.3)",
    )
    args = ap.parse_args()
    tokens = 2 * args.pairs * args.seq

    print(
        f"DPO step, {args.pairs} pairs x {args.seq} tokens, LoRA rank {args.rank} on all seven "
        "projections, chunked log-probs"
    )
    print()
    print(
        "| model | mode | trainable params | bytes / param (state) | resident between steps (GiB) "
        "| + gradients (GiB) | + activations (GiB) | peak (GiB) | peak, checkpointed (GiB) "
        f"| fits {args.gpu_gib:g} GiB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, (params, h, i, layers, heads, kvh, hd) in MODELS.items():
        act_full = tokens * layers * (5 * i + 8 * h + 2 * heads * args.seq) * 4
        adapters = lora_params(h, i, layers, heads, kvh, hd, args.rank)
        for mode, factor in ACT_FACTOR.items():
            if mode == "full f32":
                trainable, base_bytes = params, 4
            else:
                trainable, base_bytes = adapters, 4 if "f32" in mode else 2
            adapter_weights = 0 if mode == "full f32" else 4 * adapters
            resident = base_bytes * params + adapter_weights + 8 * trainable
            grads = 4 * trainable
            act = act_full * factor
            per_param = resident / params
            peak = (resident + grads + act) / GIB
            ckpt = (resident + grads + act * CKPT_FACTOR[mode]) / GIB
            fits = "yes" if peak <= args.gpu_gib else (
                "with checkpointing" if ckpt <= args.gpu_gib else "no"
            )
            print(
                f"| {name} | {mode} | {trainable / 1e6:,.1f} M | {per_param:.2f} | "
                f"{resident / GIB:.2f} | {grads / GIB:.2f} | {act / GIB:.2f} | "
                f"{peak:.2f} | {ckpt:.2f} | {fits} |"
            )


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""PyTorch / transformers side of `cargo bench --bench real_shape` (same workloads, same weights).

Loads the random SmolLM2-135M-shaped checkpoint the Rust bench writes to
target/kiln-bench/smollm2-random/ (run the bench once first), then times, on the CPU with
--threads threads (default 2), median of --runs timed runs after a warm-up:

  dpo_step_f32        DPO (sigmoid, beta 0.1) on 2 pairs x 128 tokens: policy forward + backward on
                      4 rows, AdamW over every weight; reference log-probs precomputed
  dpo_step_bf16_amp   the same under torch.autocast(cpu, bfloat16) (AMX where the CPU has it)
  dpo_step_lora       LoRA r 16 on q,k,v,o,gate,up,down (peft), AdamW on the adapters
  rm_step_f32         one Bradley-Terry step of LlamaForSequenceClassification on 2 pairs
  decode_b1           HF generate, greedy, 64 new tokens after a 32-token prompt, batch 1
  decode_k32          HF generate, 32 samples (num_return_sequences, temperature 1) of 64 tokens
  matmul_f32_2048     torch.mm 2048^3 in f32, and matmul_bf16_2048 in bf16

Prints one JSON object per line: {"name", "seconds"} (decode also "tokens_per_second").

    .venv/bin/python scripts/bench/torch_real_shape.py [--threads 2] [--runs 5]
"""

import argparse
import sys
import json
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from transformers import LlamaForCausalLM, LlamaForSequenceClassification  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SEQ, PROMPT, PAIRS, DECODE_PROMPT, NEW = 128, 64, 2, 32, 64


def ids(row, length, vocab):
    # Same formula as benches/real_shape.rs.
    return [10 + (row * 7919 + t * 104729) % (vocab - 10) for t in range(length)]


def median_time(fn, runs):
    fn()  # warm-up
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def seq_logps(model, input_ids, mask):
    logits = model(input_ids=input_ids).logits[:, :-1].float()
    lp = torch.log_softmax(logits, -1).gather(-1, input_ids[:, 1:, None])[..., 0]
    return (lp * mask[:, 1:]).sum(-1)


def emit(name, seconds, **extra):
    print(json.dumps({"name": name, "seconds": seconds, **extra}), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-dir", default=os.path.join(ROOT, "target/kiln-bench/smollm2-random"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--only", default="", help="comma-separated benchmark names")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    only = set(filter(None, args.only.split(",")))
    want = lambda n: not only or n in only  # noqa: E731

    model = LlamaForCausalLM.from_pretrained(args.model_dir, dtype=torch.float32,
                                             attn_implementation="eager")
    vocab = model.config.vocab_size
    rows = torch.tensor([ids(r, SEQ, vocab) for r in range(2 * PAIRS)])
    mask = torch.tensor([[1.0 if t >= PROMPT else 0.0 for t in range(SEQ)]] * (2 * PAIRS))
    with torch.no_grad():
        ref = seq_logps(model, rows, mask)
    chosen, rejected = torch.arange(0, 2 * PAIRS, 2), torch.arange(1, 2 * PAIRS, 2)

    def dpo_step(m, opt, amp):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            lp = seq_logps(m, rows, mask)
        h = (lp[chosen] - ref[chosen]) - (lp[rejected] - ref[rejected])
        loss = -F.logsigmoid(0.1 * h).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    cap = torch.backends.cpu.get_cpu_capability()
    native_bf16 = "AVX512" in cap or "AMX" in cap
    print(f"PyTorch CPU capability: {cap}", file=sys.stderr)
    if want("matmul_f32_2048") or want("matmul_bf16_2048"):
        a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
        emit("matmul_f32_2048", median_time(lambda: torch.mm(a, b), args.runs))
        a16, b16 = a.bfloat16(), b.bfloat16()
        if native_bf16:
            emit("matmul_bf16_2048", median_time(lambda: torch.mm(a16, b16), args.runs))

    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6)
    if want("dpo_step_f32"):
        emit("dpo_step_f32", median_time(lambda: dpo_step(model, opt, False), args.runs))
    # Without AVX-512 (bf16 dot products) or AMX, PyTorch's CPU bf16 matmul falls back to a scalar
    # path that is hundreds of times slower than f32 (measured: 64 s for one 2048^3 on an AVX2-only
    # AMD EPYC): the bf16 rows are skipped there rather than run for hours.
    if want("dpo_step_bf16_amp") and native_bf16:
        emit("dpo_step_bf16_amp", median_time(lambda: dpo_step(model, opt, True), args.runs))
    if want("dpo_step_lora"):
        from peft import LoraConfig, get_peft_model

        lora = get_peft_model(
            LlamaForCausalLM.from_pretrained(args.model_dir, dtype=torch.float32,
                                             attn_implementation="eager"),
            LoraConfig(r=16, lora_alpha=32, target_modules=["q_proj", "k_proj", "v_proj", "o_proj",
                                                            "gate_proj", "up_proj", "down_proj"]),
        )
        lopt = torch.optim.AdamW([p for p in lora.parameters() if p.requires_grad], lr=1e-6)
        emit("dpo_step_lora", median_time(lambda: dpo_step(lora, lopt, False), args.runs))
        del lora, lopt

    if want("rm_step_f32"):
        rm = LlamaForSequenceClassification.from_pretrained(
            args.model_dir, num_labels=1, dtype=torch.float32, attn_implementation="eager")
        rm.config.pad_token_id = 2
        ropt = torch.optim.AdamW(rm.parameters(), lr=1e-6)

        def rm_step():
            r = rm(input_ids=rows).logits[:, 0]
            loss = -F.logsigmoid(r[chosen] - r[rejected]).mean()
            ropt.zero_grad(set_to_none=True)
            loss.backward()
            ropt.step()

        emit("rm_step_f32", median_time(rm_step, args.runs))
        del rm, ropt

    model.eval()
    prompt = torch.tensor([ids(1000, DECODE_PROMPT, vocab)])
    for name, k, sample in (("decode_b1", 1, False), ("decode_k32", 32, True)):
        if not want(name):
            continue

        def gen():
            with torch.inference_mode():
                out = model.generate(
                    input_ids=prompt, attention_mask=torch.ones_like(prompt), do_sample=sample,
                    temperature=1.0 if sample else None, top_p=None, top_k=None,
                    num_return_sequences=k, max_new_tokens=NEW, min_new_tokens=NEW,
                    pad_token_id=2, eos_token_id=None,
                )
            assert out.shape == (k, DECODE_PROMPT + NEW), out.shape

        s = median_time(gen, max(2, args.runs // 2))
        emit(name, s, tokens_per_second=k * NEW / s)


if __name__ == "__main__":
    main()

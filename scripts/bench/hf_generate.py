#!/usr/bin/env python3
"""Time Hugging Face `generate` on the same workload as kiln-sampling's `decode` bench.

Workload: the ~20M-parameter Llama-3-shaped checkpoint that `cargo bench -p kiln-sampling --bench
decode` saves in target/kiln-bench/decode-20m/ (run the bench first), greedy, a 16-token prompt,
exactly 32 new tokens per row, batch 1 and 32, with and without the KV cache, CPU, 2 threads,
prefill included. Prints generated tokens/s (median of the timed runs).

    .venv/bin/python scripts/bench/hf_generate.py [--threads 2] [--runs 5]
"""

import argparse
import os
import statistics
import time

import torch
from transformers import LlamaForCausalLM

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROMPT, NEW = 16, 32


def prompts(batch, vocab):
    # Same formula as crates/kiln-sampling/benches/decode.rs.
    return torch.tensor(
        [[10 + (b * 131 + t * 17) % (vocab - 10) for t in range(PROMPT)] for b in range(batch)]
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-dir", default=os.path.join(ROOT, "target/kiln-bench/decode-20m"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = LlamaForCausalLM.from_pretrained(args.model_dir, torch_dtype=torch.float32).eval()
    vocab = model.config.vocab_size
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters")
    for batch in (1, 32):
        ids = prompts(batch, vocab)
        mask = torch.ones_like(ids)
        for use_cache in (True, False):
            def run():
                with torch.inference_mode():
                    out = model.generate(
                        input_ids=ids, attention_mask=mask, do_sample=False,
                        max_new_tokens=NEW, min_new_tokens=NEW, use_cache=use_cache,
                        pad_token_id=0, temperature=None, top_p=None, top_k=None,
                    )
                assert out.shape == (batch, PROMPT + NEW), out.shape
            run()  # warm-up
            times = []
            for _ in range(args.runs if use_cache or batch == 1 else max(2, args.runs // 2)):
                t0 = time.perf_counter()
                run()
                times.append(time.perf_counter() - t0)
            med = statistics.median(times)
            name = f"b{batch}_{'kv_cache' if use_cache else 'no_cache'}"
            print(f"{name}: {med * 1e3:9.1f} ms  {batch * NEW / med:9.1f} tokens/s")


if __name__ == "__main__":
    main()

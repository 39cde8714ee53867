#!/usr/bin/env python3
"""Compare Kiln's logits on SmolLM2-135M-Instruct with transformers over the full vocabulary.

First run the opt-in Rust tests with an output directory:

    KILN_REAL_MODEL_DIR=models/SmolLM2-135M-Instruct KILN_REAL_MODEL_OUT=target/real-model \
        cargo test --test real_model -- --nocapture

then:

    .venv/bin/python scripts/real_model/compare_with_transformers.py target/real-model [MODEL_DIR]

Checks, in f32 with eager attention:
  1. `logits256.f32`: Kiln's logits on the 256-token input vs transformers on MODEL_DIR
     (max-abs error over all 256 x 49,152 logits);
  2. `dpo-step/`: the checkpoint Kiln saved after one DPO step, reloaded with
     `LlamaForCausalLM.from_pretrained` (missing/unexpected keys are errors), vs the logits Kiln
     computed with the trained model before saving (`dpo-step/kiln_logits.f32`).
Exit status 1 if an error exceeds 1e-3. (30 layers of f32 with different summation orders: the
errors are ~1e-4 on logits of magnitude ~30, i.e. ~5e-6 relative; both checks show the same
level, so the save itself adds nothing.)
"""
import json
import os
import sys

import numpy as np
import torch
from transformers import LlamaForCausalLM

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(2)


def kiln_logits(stem):
    meta = json.load(open(stem + ".json"))
    ids = meta["input_ids"]
    data = np.fromfile(stem + ".f32", dtype="<f4").reshape(len(ids), meta["vocab"])
    return ids, data


def hf_logits(model_dir, ids):
    model, info = LlamaForCausalLM.from_pretrained(
        model_dir, dtype=torch.float32, attn_implementation="eager", output_loading_info=True
    )
    bad = {k: v for k, v in info.items() if v and k in ("missing_keys", "unexpected_keys")}
    if bad:
        sys.exit(f"{model_dir}: {bad}")
    model.eval()
    with torch.no_grad():
        out = model(torch.tensor([ids])).logits[0]
    return out[:, : model.config.vocab_size].numpy()


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "target/real-model"
    model_dir = sys.argv[2] if len(sys.argv) > 2 else "models/SmolLM2-135M-Instruct"
    worst = 0.0
    ids, kiln = kiln_logits(os.path.join(out, "logits256"))
    err = float(np.abs(hf_logits(model_dir, ids) - kiln).max())
    scale = float(np.abs(kiln).max())
    print(
        f"256-token input: max-abs logits error Kiln vs transformers = {err:.3e} "
        f"(full vocabulary; largest |logit| {scale:.1f})"
    )
    worst = max(worst, err)
    ids, kiln = kiln_logits(os.path.join(out, "dpo-step", "kiln_logits"))
    err = float(np.abs(hf_logits(os.path.join(out, "dpo-step"), ids) - kiln).max())
    print(f"after one DPO step: Kiln-saved checkpoint reloaded by transformers, max-abs error = {err:.3e}")
    worst = max(worst, err)
    sys.exit(0 if worst <= 1e-3 else 1)


if __name__ == "__main__":
    main()

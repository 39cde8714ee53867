#!/usr/bin/env python3
"""Qwen2 checkpoints that the command-line tools can load as they are: the tiny random Qwen2
policy and reward model of tests/fixtures/qwen2/{untied,reward} with a ChatML tokenizer and chat
template beside them (tests/fixtures/templates/chatml: SmolLM2-135M-Instruct's template, the
format Qwen2 chat models use).

  tests/fixtures/qwen2/chat     Qwen2ForCausalLM (untied head), vocabulary 770
  tests/fixtures/qwen2/chat-rm  Qwen2ForSequenceClassification (one label), vocabulary 770

The decoder weights are the existing fixtures' own; only the embedding rows (and the policy's LM
head) are drawn again for the tokenizer's 770 ids, from N(0, 0.1) with a fixed seed. Needs numpy
and safetensors (no torch): `pip install numpy safetensors`, then run from the repository root.
"""

import json
import shutil
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures"
CHATML = FIX / "templates" / "chatml"
TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "chat_template.jinja"]


def make(src: str, dst: str, seed: int) -> None:
    src_dir, out = FIX / "qwen2" / src, FIX / "qwen2" / dst
    config = json.loads((src_dir / "config.json").read_text())
    generation = json.loads((CHATML / "generation_config.json").read_text())
    vocab = len(json.loads((CHATML / "tokenizer.json").read_text())["model"]["vocab"]) + 2
    rng = np.random.default_rng(seed)
    tensors = load_file(str(src_dir / "model.safetensors"))
    hidden = tensors["model.embed_tokens.weight"].shape[1]
    for name in ["model.embed_tokens.weight", "lm_head.weight"]:
        if name in tensors:
            tensors[name] = rng.normal(0.0, 0.1, size=(vocab, hidden)).astype(np.float32)
    config["vocab_size"] = vocab
    config["bos_token_id"] = generation["bos_token_id"]
    config["eos_token_id"] = generation["eos_token_id"]
    config["pad_token_id"] = generation["eos_token_id"]  # the template's pad is <|im_end|>
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (out / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")
    for f in TOKENIZER_FILES:
        shutil.copy(CHATML / f, out / f)
    print(f"{out.relative_to(ROOT)}: vocab {vocab}")


if __name__ == "__main__":
    make("untied", "chat", seed=11)
    make("reward", "chat-rm", seed=12)

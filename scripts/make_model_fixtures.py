#!/usr/bin/env python3
"""Create the tiny random Llama-3 fixtures that kiln-model's parity tests compare against.

Run from the repository root with a Python that has torch, transformers and safetensors:

    .venv/bin/python scripts/make_model_fixtures.py

Writes tests/fixtures/model/<name>/ (config.json + safetensors + expected.safetensors) for:
  untied-gqa    f32, untied head, 4 query / 2 KV heads, llama3 RoPE scaling (original context 16),
                config in the transformers-5 `rope_parameters` layout
  tied          f32, tied embeddings, plain RoPE, config rewritten to the legacy `rope_theta` keys,
                eos_token_id as a list
  bf16-sharded  bf16 weights split in several shards with model.safetensors.index.json
  reward        LlamaForSequenceClassification (score head, pad_token_id 0)

expected.safetensors holds, per case (single, left, right, long): `<case>.input_ids`,
`<case>.attention_mask` (int64), `<case>.logits` (f32, [B,T,V]) and `<case>.logprobs`
(f32, [B,T-1]: log p(ids[t+1] | ..t)); the reward fixture holds `<case>.scores` ([B]) instead.
Left-padded cases pass position_ids = cumsum(mask) - 1 (what kiln-model derives from the mask).
Weights are redrawn with std 0.1 (norm weights around 1) so logits are far from uniform.
"""

import json
import os
import sys

import torch
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "model")
PAD = 0


def base_dict(**kw):
    """The tiny shape every model fixture shares, with `kw` overriding keys."""
    cfg = dict(
        vocab_size=256,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        rms_norm_eps=1e-5,
        max_position_embeddings=128,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=PAD,
        tie_word_embeddings=False,
        attn_implementation="eager",
        rope_parameters={
            "rope_type": "llama3",
            "rope_theta": 500000.0,
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 16,
        },
    )
    cfg.update(kw)
    return cfg


def base_config(**kw):
    return LlamaConfig(**base_dict(**kw))


def redraw(model, gen):
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float32)
            if "norm" in name:
                p.copy_(1.0 + 0.1 * noise)
            else:
                p.copy_(0.1 * noise)


def cases(vocab, gen):
    """Token batches: single, left-/right-padded batches, and a sequence longer than 16."""

    def toks(n):
        return torch.randint(3, vocab, (n,), generator=gen)

    out = {}
    out["single"] = (toks(12)[None], torch.ones(1, 12, dtype=torch.long))
    lens = [12, 7, 4]
    seqs = [toks(n) for n in lens]
    for side in ("left", "right"):
        ids = torch.full((3, 12), PAD, dtype=torch.long)
        mask = torch.zeros(3, 12, dtype=torch.long)
        for i, s in enumerate(seqs):
            if side == "left":
                ids[i, 12 - len(s):] = s
                mask[i, 12 - len(s):] = 1
            else:
                ids[i, : len(s)] = s
                mask[i, : len(s)] = 1
        out[side] = (ids, mask)
    out["long"] = (toks(40)[None], torch.ones(1, 40, dtype=torch.long))
    return out


def positions(mask):
    return (mask.cumsum(-1) - 1).clamp(min=0)


def run_lm(model, ids, mask):
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask, position_ids=positions(mask)).logits
    logits = logits.float()
    lp = torch.log_softmax(logits[:, :-1], -1).gather(-1, ids[:, 1:, None])[..., 0]
    return logits, lp


def expected_lm(model, vocab, gen):
    tensors = {}
    for name, (ids, mask) in cases(vocab, gen).items():
        logits, lp = run_lm(model, ids, mask)
        tensors[f"{name}.input_ids"] = ids
        tensors[f"{name}.attention_mask"] = mask
        tensors[f"{name}.logits"] = logits.contiguous()
        tensors[f"{name}.logprobs"] = lp.contiguous()
    return tensors


def write(dirname, model, tensors, **save_kw):
    path = os.path.join(OUT, dirname)
    os.makedirs(path, exist_ok=True)
    for f in os.listdir(path):
        os.remove(os.path.join(path, f))
    model.save_pretrained(path, **save_kw)
    gen_cfg = os.path.join(path, "generation_config.json")
    if os.path.exists(gen_cfg):
        os.remove(gen_cfg)
    save_file(tensors, os.path.join(path, "expected.safetensors"))
    return path


def main():
    gen = torch.Generator().manual_seed(1234)
    torch.manual_seed(1234)

    # 1. untied, GQA, llama3 scaling, transformers-5 config layout.
    m = LlamaForCausalLM(base_config()).eval()
    redraw(m, gen)
    write("untied-gqa", m, expected_lm(m, 256, gen))

    # 2. tied embeddings, MHA, plain RoPE; config rewritten to the legacy keys.
    cfg = base_config(
        tie_word_embeddings=True,
        num_key_value_heads=4,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
    )
    m = LlamaForCausalLM(cfg).eval()
    redraw(m, gen)
    path = write("tied", m, expected_lm(m, 256, gen))
    cj = os.path.join(path, "config.json")
    with open(cj) as f:
        c = json.load(f)
    c.pop("rope_parameters", None)
    c["rope_theta"] = 10000.0
    c["rope_scaling"] = None
    c["eos_token_id"] = [2, 5]
    with open(cj, "w") as f:
        json.dump(c, f, indent=2)

    # 3. bf16 weights, sharded. Expected values: the bf16 weights upcast to f32.
    m = LlamaForCausalLM(base_config(vocab_size=128)).eval()
    redraw(m, gen)
    m = m.to(torch.bfloat16)
    ref = LlamaForCausalLM(base_config(vocab_size=128)).eval()
    ref.load_state_dict({k: v.float() for k, v in m.state_dict().items()})
    write("bf16-sharded", m, expected_lm(ref, 128, gen), max_shard_size="60KB")

    # 4. reward model (score head), scored at the last non-pad token.
    cfg = base_config(vocab_size=128, num_labels=1)
    m = LlamaForSequenceClassification(cfg).eval()
    redraw(m, gen)
    tensors = {}
    for name, (ids, mask) in cases(128, gen).items():
        with torch.no_grad():
            scores = m(input_ids=ids, attention_mask=mask, position_ids=positions(mask)).logits
        tensors[f"{name}.input_ids"] = ids
        tensors[f"{name}.attention_mask"] = mask
        tensors[f"{name}.scores"] = scores[:, 0].float().contiguous()
    write("reward", m, tensors)

    total = 0
    for d, _, files in os.walk(OUT):
        for f in files:
            total += os.path.getsize(os.path.join(d, f))
    print(f"fixtures written to {OUT}: {total / 1e6:.2f} MB", file=sys.stderr)


if __name__ == "__main__":
    main()

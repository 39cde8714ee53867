#!/usr/bin/env python3
"""Record Hugging Face greedy `generate` ids that kiln-sampling's parity test compares against.

Run from the repository root with a Python that has torch, transformers, safetensors, tokenizers:

    .venv/bin/python scripts/make_sampling_fixtures.py

Reuses the model fixtures tests/fixtures/model/{untied-gqa,tied} (made by make_model_fixtures.py,
not modified here) and writes one checkpoint of its own, tests/fixtures/sampling/tiny-chat/: a tiny
Llama-3 (vocab 768) with kiln-data's built-in tokenizer.json, so chat prompts and the
`generate` example can run on it. Writes tests/fixtures/sampling/greedy.json:

  {"cases": [{"name", "checkpoint" (repo-relative dir), "kind" ("raw" | "chat"),
              "messages" (chat cases: the user texts), "prompts" ([[ids]]),
              "stop_token_ids", "max_new_tokens", "pad_token_id",
              "expected" ([[generated ids]] per prompt, run alone, stop token kept),
              "expected_batched" (same prompts left-padded in one HF batch),
              "min_margin" (smallest top-1 minus top-2 logit gap along the expected paths)}]}

Each case's stop ids include a token that greedy decoding really produces midway through one of
the prompts, so stopping on a token is part of the comparison.
"""

import json
import os

import torch
from safetensors.torch import save_file  # noqa: F401  (save_pretrained needs safetensors)
from tokenizers import Tokenizer
from transformers import LlamaConfig, LlamaForCausalLM

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "sampling")
TOKENIZER = os.path.join(ROOT, "crates", "kiln-data", "assets", "tokenizer.json")
MAX_NEW = 24



# Meta's Llama-3.0 Instruct chat template (kiln_data::chat_template::LLAMA3_JINJA), written next to
# the weights with the special tokens, so the checkpoint carries its own template like a real one.
LLAMA3_JINJA = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)


def write_chat_files(path):
    with open(os.path.join(path, "chat_template.jinja"), "w") as f:
        f.write(LLAMA3_JINJA)
    specials = {
        "bos_token": "<|begin_of_text|>",
        "eos_token": "<|eot_id|>",
        "pad_token": "<|finetune_right_pad_id|>",
    }
    with open(os.path.join(path, "tokenizer_config.json"), "w") as f:
        json.dump(specials, f, indent=2)

def chat_text(user):
    # The Llama-3 chat template with the generation prompt (what kiln-data's ChatTemplate renders).
    return (
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n"
        + user.strip()
        + "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
    )


def greedy(model, prompts, stop, pad):
    """HF greedy generate on a left-padded batch; returns generated ids per row, cut at a stop."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, p in enumerate(prompts):
        ids[i, width - len(p):] = torch.tensor(p)
        mask[i, width - len(p):] = 1
    with torch.no_grad():
        out = model.generate(
            input_ids=ids,
            attention_mask=mask,
            do_sample=False,
            max_new_tokens=MAX_NEW,
            eos_token_id=stop,
            pad_token_id=pad,
            temperature=None,
            top_p=None,
            top_k=None,
            output_logits=True,
            return_dict_in_generate=True,
        )
    rows, margins = [], []
    for i in range(len(prompts)):
        gen = out.sequences[i, width:].tolist()
        cut = []
        for step, t in enumerate(gen):
            cut.append(t)
            top2 = out.logits[step][i].float().topk(2).values
            margins.append(float(top2[0] - top2[1]))
            if t in stop:
                break
        rows.append(cut)
    return rows, min(margins)


def record(name, checkpoint, kind, prompts, pad, base_stop, messages=None):
    model = LlamaForCausalLM.from_pretrained(os.path.join(ROOT, checkpoint)).eval()
    # Pick a token greedy decoding produces at step 5 of the first prompt as an extra stop id.
    free, _ = greedy(model, prompts[:1], base_stop, pad)
    stop = list(base_stop) + ([free[0][5]] if len(free[0]) > 5 else [])
    alone = []
    margin = float("inf")
    for p in prompts:
        r, m = greedy(model, [p], stop, pad)
        alone.append(r[0])
        margin = min(margin, m)
    batched, m = greedy(model, prompts, stop, pad)
    case = dict(
        name=name,
        checkpoint=checkpoint,
        kind=kind,
        prompts=prompts,
        stop_token_ids=stop,
        max_new_tokens=MAX_NEW,
        pad_token_id=pad,
        expected=alone,
        expected_batched=batched,
        min_margin=min(margin, m),
    )
    if messages is not None:
        case["messages"] = messages
    return case


def make_tiny_chat():
    torch.manual_seed(4321)
    gen = torch.Generator().manual_seed(4321)
    cfg = LlamaConfig(
        vocab_size=768,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        rms_norm_eps=1e-5,
        max_position_embeddings=256,
        bos_token_id=0,
        eos_token_id=[1, 4],
        pad_token_id=5,
        tie_word_embeddings=False,
        rope_parameters={"rope_type": "default", "rope_theta": 500000.0},
    )
    m = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        for name, p in m.named_parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float32)
            p.copy_(1.0 + 0.1 * noise if "norm" in name else 0.1 * noise)
    path = os.path.join(OUT, "tiny-chat")
    os.makedirs(path, exist_ok=True)
    m.save_pretrained(path)
    gc = os.path.join(path, "generation_config.json")
    if os.path.exists(gc):
        os.remove(gc)
    with open(TOKENIZER) as f, open(os.path.join(path, "tokenizer.json"), "w") as g:
        g.write(f.read())
    write_chat_files(path)
    return "tests/fixtures/sampling/tiny-chat"


def main():
    gen = torch.Generator().manual_seed(99)

    def toks(n, vocab):
        return torch.randint(6, vocab, (n,), generator=gen).tolist()

    cases = []
    for ck in ("untied-gqa", "tied"):
        prompts = [toks(n, 256) for n in (9, 3, 14, 1)]
        cases.append(record(f"{ck}-raw", f"tests/fixtures/model/{ck}", "raw", prompts, 0, [2]))

    chat = make_tiny_chat()
    tok = Tokenizer.from_file(TOKENIZER)
    users = ["What colour is the sky?", "Name three prime numbers.", "hi"]
    prompts = [tok.encode(chat_text(u), add_special_tokens=False).ids for u in users]
    cases.append(record("tiny-chat-chat", chat, "chat", prompts, 5, [4, 1], messages=users))
    raw = ["The quick brown fox", "Once upon a time, there"]
    prompts = [tok.encode(t, add_special_tokens=False).ids for t in raw]
    cases.append(record("tiny-chat-raw", chat, "raw", prompts, 5, [4, 1], messages=raw))

    with open(os.path.join(OUT, "greedy.json"), "w") as f:
        json.dump({"cases": cases}, f, indent=1)
    for c in cases:
        print(c["name"], "min_margin", round(c["min_margin"], 4),
              "lens", [len(e) for e in c["expected"]],
              "batched==alone", c["expected"] == c["expected_batched"])


if __name__ == "__main__":
    main()

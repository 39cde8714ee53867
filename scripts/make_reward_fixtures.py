"""Reward-model fixture on text: HF LlamaForSequenceClassification scores of preference pairs.

Writes tests/fixtures/reward/tiny-rm/:
  config.json, model.safetensors   tiny LlamaForSequenceClassification (vocab of the built-in
                                   tiny tokenizer, pad_token_id = <|finetune_right_pad_id|>)
  tokenizer.json                   a copy of crates/kiln-data/assets/tokenizer.json
  pairs.jsonl                      {"prompt", "chosen", "rejected"} (text and message prompts)
  expected.jsonl                   {"score_chosen", "score_rejected", "ids_chosen", "ids_rejected"}
                                   per pair, scored by transformers on the rendered chat
                                   (chat_template(prompt + [assistant response]), no padding)

Run: .venv/bin/python scripts/make_reward_fixtures.py
"""

import json
import os
import shutil

import torch
from tokenizers import Tokenizer
from transformers import LlamaConfig, LlamaForSequenceClassification

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "reward", "tiny-rm")
TOK = os.path.join(ROOT, "crates", "kiln-data", "assets", "tokenizer.json")



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

def render(messages):
    """The Llama-3 chat template (RECIPE.md section 3), no generation prompt."""
    s = "<|begin_of_text|>"
    for m in messages:
        s += f"<|start_header_id|>{m['role']}<|end_header_id|>\n\n{m['content'].strip()}<|eot_id|>"
    return s


def as_messages(prompt):
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return prompt


PAIRS = [
    {"prompt": "What colour is the sky?", "chosen": "The sky is blue on a clear day.", "rejected": "Green."},
    {"prompt": "Say hello.", "chosen": "Hello!", "rejected": "  I will not say it.  "},
    {
        "prompt": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Name a fruit."},
        ],
        "chosen": "Apple.",
        "rejected": "A fruit is the seed-bearing structure of a flowering plant, for example an apple.",
    },
    {
        "prompt": [
            {"role": "user", "content": "Count to three."},
            {"role": "assistant", "content": "1, 2, 3"},
            {"role": "user", "content": "Now backwards."},
        ],
        "chosen": "3, 2, 1",
        "rejected": "1, 2, 3",
    },
    {"prompt": "Translate 'chat' from French.", "chosen": "cat", "rejected": "chat means chat"},
]


def main():
    torch.manual_seed(7)
    gen = torch.Generator().manual_seed(7)
    tok = Tokenizer.from_file(TOK)
    vocab = tok.get_vocab_size(with_added_tokens=True)
    pad = tok.token_to_id("<|finetune_right_pad_id|>")
    cfg = LlamaConfig(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        rms_norm_eps=1e-5,
        max_position_embeddings=256,
        bos_token_id=tok.token_to_id("<|begin_of_text|>"),
        eos_token_id=tok.token_to_id("<|eot_id|>"),
        pad_token_id=pad,
        tie_word_embeddings=False,
        attn_implementation="eager",
        num_labels=1,
        rope_parameters={"rope_type": "default", "rope_theta": 500000.0},
    )
    m = LlamaForSequenceClassification(cfg).eval()
    with torch.no_grad():
        for name, p in m.named_parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float32)
            p.copy_(1.0 + 0.1 * noise if "norm" in name else 0.1 * noise)

    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        os.remove(os.path.join(OUT, f))
    m.save_pretrained(OUT)
    gen_cfg = os.path.join(OUT, "generation_config.json")
    if os.path.exists(gen_cfg):
        os.remove(gen_cfg)
    shutil.copy(TOK, os.path.join(OUT, "tokenizer.json"))
    write_chat_files(OUT)

    with open(os.path.join(OUT, "pairs.jsonl"), "w") as fp, open(
        os.path.join(OUT, "expected.jsonl"), "w"
    ) as fe:
        for pair in PAIRS:
            fp.write(json.dumps(pair) + "\n")
            row = {}
            for side in ("chosen", "rejected"):
                msgs = as_messages(pair["prompt"]) + [{"role": "assistant", "content": pair[side]}]
                ids = tok.encode(render(msgs), add_special_tokens=False).ids
                with torch.no_grad():
                    score = m(input_ids=torch.tensor([ids])).logits[0, 0].item()
                row[f"score_{side}"] = score
                row[f"ids_{side}"] = ids
            fe.write(json.dumps(row) + "\n")
    print("wrote", OUT)


if __name__ == "__main__":
    main()

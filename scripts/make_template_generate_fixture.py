#!/usr/bin/env python3
"""Greedy generation through the Llama-3.1 chat template on the tiny random model.

Renders 3 chats with the real Llama-3.1-8B-Instruct template from tests/fixtures/templates/llama3.1
(written by scripts/make_template_fixtures.py; date_string pinned to "01 Jan 2026" as a template var),
encodes them with add_special_tokens=False, and greedy-generates 24 new tokens with
tests/fixtures/sampling/tiny-chat (LlamaForCausalLM, f32, eager attention) stopping on
<|eot_id|> / <|end_of_text|>. Writes tests/fixtures/templates/greedy_llama31.json:

  {"template_dir", "model_dir", "vars", "stop_ids", "max_new_tokens",
   "cases": [{"messages", "prompt_ids", "generated_ids" (stop token kept when produced),
              "min_margin" (smallest top-1 minus top-2 logit gap along the greedy path)}]}

Usage: .venv/bin/python scripts/make_template_generate_fixture.py
"""
import json
import os
import pathlib

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
from transformers import AutoTokenizer, LlamaForCausalLM  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
TEMPLATE_DIR = ROOT / "tests/fixtures/templates/llama3.1"
MODEL_DIR = ROOT / "tests/fixtures/sampling/tiny-chat"
OUT = ROOT / "tests/fixtures/templates/greedy_llama31.json"
VARS = {"date_string": "01 Jan 2026"}
MAX_NEW_TOKENS = 24


def m(role, content):
    return {"role": role, "content": content}


CHATS = [
    [m("system", "You are a helpful assistant."), m("user", "What colour is the sky?")],
    [m("user", "How many legs does a spider have?")],
    [m("user", "What is 2 plus 3?"), m("assistant", "2 plus 3 is 5."), m("user", "And 4 times 3?")],
]


def dumps(obj):
    """indent=1 JSON, with lists of numbers kept on one line."""
    marks = {}

    def walk(o):
        if isinstance(o, dict):
            return {k: walk(v) for k, v in o.items()}
        if isinstance(o, list):
            if o and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in o):
                key = f"@@{len(marks)}@@"
                marks[key] = json.dumps(o, separators=(",", ":"))
                return key
            return [walk(v) for v in o]
        return o

    text = json.dumps(walk(obj), indent=1, ensure_ascii=False)
    for key, val in marks.items():
        text = text.replace(f'"{key}"', val, 1)
    return text + "\n"


def main():
    torch.set_num_threads(2)
    tok = AutoTokenizer.from_pretrained(str(TEMPLATE_DIR))
    model = LlamaForCausalLM.from_pretrained(str(MODEL_DIR), dtype=torch.float32, attn_implementation="eager")
    model.eval()
    stop_ids = [tok.convert_tokens_to_ids("<|eot_id|>"), tok.convert_tokens_to_ids("<|end_of_text|>")]
    pad = tok.convert_tokens_to_ids("<|finetune_right_pad_id|>")
    cases = []
    with torch.no_grad():
        for messages in CHATS:
            text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **VARS)
            assert "Today Date: 01 Jan 2026" in text
            ids = tok.encode(text, add_special_tokens=False)
            out = model.generate(
                torch.tensor([ids]),
                attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                do_sample=False,
                max_new_tokens=MAX_NEW_TOKENS,
                eos_token_id=stop_ids,
                pad_token_id=pad,
                output_logits=True,
                return_dict_in_generate=True,
                temperature=None,
                top_p=None,
                top_k=None,
            )
            gen = [int(x) for x in out.sequences[0, len(ids):]]
            margins = []
            for step in out.logits:
                top2 = torch.topk(step[0].float(), 2).values
                margins.append(float(top2[0] - top2[1]))
            cases.append(
                {"messages": messages, "prompt_ids": ids, "generated_ids": gen, "min_margin": round(min(margins), 6)}
            )
            print(f"{len(ids)} prompt ids -> {gen} (min margin {min(margins):.4f})")
    fixture = {
        "generator": "scripts/make_template_generate_fixture.py",
        "template_dir": str(TEMPLATE_DIR.relative_to(ROOT)),
        "model_dir": str(MODEL_DIR.relative_to(ROOT)),
        "vars": VARS,
        "stop_ids": stop_ids,
        "max_new_tokens": MAX_NEW_TOKENS,
        "cases": cases,
    }
    OUT.write_text(dumps(fixture))
    print(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()

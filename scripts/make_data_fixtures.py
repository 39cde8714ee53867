#!/usr/bin/env python3
"""Chat-template parity fixture for kiln-data.

Loads the shipped tiny tokenizer (crates/kiln-data/assets/tokenizer.json) into
transformers.PreTrainedTokenizerFast with Meta's official Llama-3 chat template and records, for
several conversations, the rendered text and the ids HF produces. Written to
tests/fixtures/data/chat_template.json; crates/kiln-data/tests/chat_template_parity.rs asserts that
kiln-data produces the same text and ids.

transformers 5: apply_chat_template(tokenize=True) returns a BatchEncoding, so the template is
rendered with tokenize=False and encoded with add_special_tokens=False (what HF does internally).

Usage: .venv/bin/python scripts/make_data_fixtures.py
"""
import json
import pathlib

import tokenizers
import transformers
from transformers import PreTrainedTokenizerFast

ROOT = pathlib.Path(__file__).resolve().parent.parent
TOKENIZER = ROOT / "crates/kiln-data/assets/tokenizer.json"
OUT = ROOT / "tests/fixtures/data/chat_template.json"

# Meta-Llama-3-8B-Instruct tokenizer_config.json "chat_template", verbatim.
LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)


def m(role, content):
    return {"role": role, "content": content}


CASES = [
    ("user_only", [m("user", "What colour is the sky?")]),
    ("system_user", [m("system", "You are a helpful assistant."), m("user", "How many legs does a spider have?")]),
    (
        "multi_turn",
        [
            m("system", "Answer in one short sentence."),
            m("user", "What is 2 plus 3?"),
            m("assistant", "2 plus 3 is 5."),
            m("user", "And 4 times 3?"),
            m("assistant", "4 times 3 is 12."),
        ],
    ),
    ("needs_strip", [m("user", "  \n What does a cow eat?\t \n"), m("assistant", "\n\n A cow eats grass.  ")]),
    ("unicode_and_punct", [m("user", "Qu'est-ce que c'est? 123456 ... !!\n\nnaïve café 🙂"), m("assistant", "It's a test: yes/no?")]),
    ("empty_content", [m("user", ""), m("assistant", "   ")]),
    ("special_in_text", [m("user", "Say <|eot_id|> please"), m("assistant", "OK")]),
    ("python_whitespace", [m("user", "\u001fx\u00a0y\u3000"), m("assistant", "z\u001c")]),
]


def main():
    tok = PreTrainedTokenizerFast(
        tokenizer_file=str(TOKENIZER),
        bos_token="<|begin_of_text|>",
        eos_token="<|eot_id|>",
        pad_token="<|finetune_right_pad_id|>",
    )
    tok.chat_template = LLAMA3_TEMPLATE
    cases = []
    for name, messages in CASES:
        for gen in (False, True):
            text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen)
            ids = tok.encode(text, add_special_tokens=False)
            cases.append(
                {"name": name, "messages": messages, "add_generation_prompt": gen, "text": text, "ids": ids}
            )
    plain = ["What colour is a banana?", " A cat meows.\n", "12 plus 9 is 21.", "Hello!  How are you?"]
    encodings = [{"text": t, "ids": tok.encode(t, add_special_tokens=False)} for t in plain]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "generator": "scripts/make_data_fixtures.py",
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "chat_template": LLAMA3_TEMPLATE,
        "cases": cases,
        "encodings": encodings,
    }
    OUT.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {OUT} ({len(cases)} chat cases)")


if __name__ == "__main__":
    main()

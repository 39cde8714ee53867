"""transformers' bf16 forward, for Kiln's bf16 drift checks.

Default mode (committed fixture): loads tests/fixtures/model/bf16-sharded in bfloat16 with the
eager and the sdpa attention and writes `expected_bf16.safetensors` next to it: for each case of
its `expected.safetensors` (same input_ids / attention_mask), `<case>.<impl>.logits` (bf16 logits
as f32, [B,T,V]) and `<case>.<impl>.logprobs` (log_softmax of the f32-cast logits, [B,T-1]).

`--real SRC_F32_DIR BF16_DIR OUT`: converts an f32 HF checkpoint (e.g. SmolLM2-135M-Instruct) to
a bf16 copy in BF16_DIR (if missing) and writes OUT with fixed token ids (`input_ids`,
`attention_mask`: two rows of text, the second left-padded) and the logits / log-probs of HF f32
and HF bf16 (eager and sdpa) on them. Not committed (large); used by
`crates/kiln-model/examples/bf16_drift.rs`.

Needs torch, transformers, safetensors; HF_HUB_OFFLINE=1, nothing is downloaded.
"""

import os
import sys

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoTokenizer, LlamaForCausalLM

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = os.path.join(ROOT, "tests", "fixtures", "model", "bf16-sharded")


def positions(mask):
    return (mask.cumsum(-1) - 1).clamp(min=0)


def run(model, ids, mask):
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask, position_ids=positions(mask)).logits
    logits = logits.float()
    lp = torch.log_softmax(logits[:, :-1], -1).gather(-1, ids[:, 1:, None])[..., 0]
    return logits, lp


def load(path, dtype, impl):
    return LlamaForCausalLM.from_pretrained(path, dtype=dtype, attn_implementation=impl).eval()


def fixture():
    expected = load_file(os.path.join(FIXTURE, "expected.safetensors"))
    cases = sorted({k.split(".")[0] for k in expected})
    out = {}
    for impl in ("eager", "sdpa"):
        model = load(FIXTURE, torch.bfloat16, impl)
        for case in cases:
            ids, mask = expected[f"{case}.input_ids"], expected[f"{case}.attention_mask"]
            logits, lp = run(model, ids, mask)
            out[f"{case}.{impl}.logits"] = logits.contiguous()
            out[f"{case}.{impl}.logprobs"] = lp.contiguous()
    path = os.path.join(FIXTURE, "expected_bf16.safetensors")
    save_file(out, path)
    print("wrote", path)


TEXT = [
    "The quick brown fox jumps over the lazy dog. Reinforcement learning from human feedback "
    "trains a reward model on preference pairs and then optimises the policy against it, while "
    "a KL penalty keeps it close to the supervised model.",
    "Direct preference optimisation skips the reward model: it raises the likelihood of the "
    "chosen response relative to a frozen reference.",
]


def real(src, bf16_dir, out_path):
    if not os.path.exists(os.path.join(bf16_dir, "config.json")):
        m = LlamaForCausalLM.from_pretrained(src, dtype=torch.float32)
        m.to(torch.bfloat16).save_pretrained(bf16_dir)
        AutoTokenizer.from_pretrained(src).save_pretrained(bf16_dir)
        print("wrote", bf16_dir)
    tok = AutoTokenizer.from_pretrained(src)
    rows = [tok(t, add_special_tokens=False)["input_ids"] for t in TEXT]
    width = max(len(r) for r in rows)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r):] = torch.tensor(r)
        mask[i, width - len(r):] = 1
    out = {"input_ids": ids, "attention_mask": mask}
    for name, path, dtype, impl in [
        ("hf_f32", src, torch.float32, "eager"),
        ("hf_bf16_eager", bf16_dir, torch.bfloat16, "eager"),
        ("hf_bf16_sdpa", bf16_dir, torch.bfloat16, "sdpa"),
    ]:
        logits, lp = run(load(path, dtype, impl), ids, mask)
        out[f"{name}.logits"] = logits.contiguous()
        out[f"{name}.logprobs"] = lp.contiguous()
    save_file(out, out_path)
    print("wrote", out_path, "rows", len(rows), "width", width)


if __name__ == "__main__":
    torch.manual_seed(0)
    if len(sys.argv) > 1 and sys.argv[1] == "--real":
        real(*sys.argv[2:5])
    else:
        fixture()

#!/usr/bin/env python3
"""Create the tiny random Qwen2 fixtures that kiln-model's Qwen2 parity tests compare against.

Run from the repository root, offline, with a Python that has torch, transformers, safetensors and
peft (`pip install --no-deps peft`):

    HF_HUB_OFFLINE=1 .venv/bin/python scripts/make_qwen2_fixtures.py
    cargo test -p kiln-model --test qwen2      # writes Kiln's saves under target/tmp/kiln-model
    HF_HUB_OFFLINE=1 .venv/bin/python scripts/make_qwen2_fixtures.py check

Writes tests/fixtures/qwen2/ (each model: config.json + model.safetensors as transformers saves
them, and expected.safetensors):
  tied      Qwen2ForCausalLM like Qwen2.5-0.5B in miniature: tied embeddings, 4 query / 2 KV heads,
            rope_theta 1e6, q/k/v biases (redrawn, non-zero), eos 2
  untied    untied head, 4 / 4 heads, rope_theta 10000
  reward    Qwen2ForSequenceClassification (1 label, pad_token_id 0), scored at the last non-pad
            token
  lora      a PEFT LoRA adapter on `tied` (all seven projections, r 4, alpha 8, A and B redrawn so
            B is non-zero) with `logits` of the PeftModel and `merged_logits` of merge_and_unload()
  greedy.json  transformers `generate(do_sample=False)` ids for `tied` and `untied`, each prompt
            generated alone (no padding), 12 new tokens, stopping on eos 2

expected.safetensors holds, per case (single, left, right, long): `<case>.input_ids`,
`<case>.attention_mask` (int64), `<case>.logits` (f32 [B,T,V]) and `<case>.logprobs` (f32
[B,T-1]); the reward holds `<case>.scores` ([B]). Padded cases pass position_ids =
cumsum(mask) - 1 (what kiln-model derives from the mask). Weights are redrawn with std 0.1
(norms around 1, biases std 0.1) so logits are far from uniform.
"""

import json
import os
import sys

import torch
from safetensors.torch import load_file, save_file
from transformers import Qwen2Config, Qwen2ForCausalLM, Qwen2ForSequenceClassification

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_model_fixtures import base_dict, cases, expected_lm, positions, redraw  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "qwen2")
PAD = 0


def config(**kw):
    """Qwen2.5-0.5B in miniature: the shared tiny shape, tied embeddings, rope_theta 1e6."""
    cfg = dict(
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
        use_sliding_window=False,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
    )
    cfg.update(kw)
    return Qwen2Config(**base_dict(**cfg))


def write(dirname, model, tensors):
    path = os.path.join(OUT, dirname)
    os.makedirs(path, exist_ok=True)
    for f in os.listdir(path):
        os.remove(os.path.join(path, f))
    model.save_pretrained(path)
    gen_cfg = os.path.join(path, "generation_config.json")
    if os.path.exists(gen_cfg):
        os.remove(gen_cfg)
    if tensors is not None:
        save_file(tensors, os.path.join(path, "expected.safetensors"))
    return path


def greedy(model, prompts):
    out = []
    for p in prompts:
        ids = torch.tensor([p])
        with torch.no_grad():
            g = model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                do_sample=False,
                max_new_tokens=12,
                eos_token_id=2,
                pad_token_id=PAD,
            )
        out.append(g[0, len(p):].tolist())
    return out


def main():
    gen = torch.Generator().manual_seed(4321)
    torch.manual_seed(4321)
    os.makedirs(OUT, exist_ok=True)

    tied = Qwen2ForCausalLM(config()).eval()
    redraw(tied, gen)
    write("tied", tied, expected_lm(tied, 256, gen))

    untied = Qwen2ForCausalLM(
        config(
            tie_word_embeddings=False,
            num_key_value_heads=4,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        )
    ).eval()
    redraw(untied, gen)
    write("untied", untied, expected_lm(untied, 256, gen))

    reward = Qwen2ForSequenceClassification(config(vocab_size=128, num_labels=1)).eval()
    redraw(reward, gen)
    tensors = {}
    for name, (ids, mask) in cases(128, gen).items():
        with torch.no_grad():
            scores = reward(input_ids=ids, attention_mask=mask, position_ids=positions(mask)).logits
        tensors[f"{name}.input_ids"] = ids
        tensors[f"{name}.attention_mask"] = mask
        tensors[f"{name}.scores"] = scores[:, 0].float().contiguous()
    write("reward", reward, tensors)

    prompts = [
        torch.randint(3, 256, (n,), generator=gen).tolist() for n in (5, 9, 3)
    ]
    greedy_cases = []
    for name, model in (("tied", tied), ("untied", untied)):
        greedy_cases.append(
            {
                "name": name,
                "checkpoint": f"tests/fixtures/qwen2/{name}",
                "prompts": prompts,
                "expected": greedy(model, prompts),
                "max_new_tokens": 12,
                "stop_token_ids": [2],
                "pad_token_id": PAD,
            }
        )
    with open(os.path.join(OUT, "greedy.json"), "w") as f:
        json.dump({"cases": greedy_cases}, f, indent=1)

    # PEFT adapter on `tied`, B redrawn non-zero.
    from peft import LoraConfig, PeftModel, get_peft_model

    base = Qwen2ForCausalLM.from_pretrained(os.path.join(OUT, "tied")).eval()
    lcfg = LoraConfig(
        r=4,
        lora_alpha=8,
        lora_dropout=0.0,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        task_type="CAUSAL_LM",
    )
    peft_model = get_peft_model(base, lcfg).eval()
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_" in name:
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
    lora_dir = os.path.join(OUT, "lora")
    os.makedirs(lora_dir, exist_ok=True)
    for f in os.listdir(lora_dir):
        os.remove(os.path.join(lora_dir, f))
    peft_model.save_pretrained(lora_dir)
    readme = os.path.join(lora_dir, "README.md")  # PEFT's model card template
    if os.path.exists(readme):
        os.remove(readme)
    ids, mask = cases(256, gen)["left"]
    with torch.no_grad():
        logits = peft_model(input_ids=ids, attention_mask=mask, position_ids=positions(mask)).logits
        merged = peft_model.merge_and_unload()
        merged_logits = merged(input_ids=ids, attention_mask=mask, position_ids=positions(mask)).logits
    save_file(
        {
            "input_ids": ids,
            "attention_mask": mask,
            "logits": logits.float().contiguous(),
            "merged_logits": merged_logits.float().contiguous(),
        },
        os.path.join(lora_dir, "expected.safetensors"),
    )
    # The adapter names its base by a path that only exists here: point it at the fixture.
    acfg_path = os.path.join(lora_dir, "adapter_config.json")
    with open(acfg_path) as f:
        acfg = json.load(f)
    acfg["base_model_name_or_path"] = "tests/fixtures/qwen2/tied"
    acfg["target_modules"] = sorted(acfg["target_modules"])  # PEFT writes a set: any order
    with open(acfg_path, "w") as f:
        json.dump(acfg, f, indent=2)

    total = 0
    for d, _, files in os.walk(OUT):
        for f in files:
            total += os.path.getsize(os.path.join(d, f))
    print(f"fixtures written to {OUT}: {total / 1e6:.2f} MB", file=sys.stderr)


def check():
    """After `cargo test -p kiln-model --test qwen2`: Kiln's saved merged checkpoint loads in
    transformers and Kiln's saved adapter in PEFT, with the PEFT fixture's logits."""
    from peft import PeftModel

    tmp = os.path.join(ROOT, "target", "tmp", "kiln-model")
    exp = load_file(os.path.join(OUT, "lora", "expected.safetensors"))
    ids, mask = exp["input_ids"], exp["attention_mask"]
    valid = mask.bool()
    worst = 0.0
    merged = Qwen2ForCausalLM.from_pretrained(os.path.join(tmp, "qwen2-merged")).eval()
    base = Qwen2ForCausalLM.from_pretrained(os.path.join(OUT, "tied")).eval()
    adapted = PeftModel.from_pretrained(base, os.path.join(tmp, "qwen2-adapter")).eval()
    for name, model, key in (("merged", merged, "merged_logits"), ("adapter", adapted, "logits")):
        with torch.no_grad():
            out = model(input_ids=ids, attention_mask=mask, position_ids=positions(mask)).logits
        err = (out.float() - exp[key])[valid].abs().max().item()
        print(f"Kiln-saved {name} vs the PEFT fixture: max |logits err| = {err:.3e}")
        worst = max(worst, err)
    sys.exit(1 if worst > 1e-5 else 0)


if __name__ == "__main__":
    check() if sys.argv[1:] == ["check"] else main()

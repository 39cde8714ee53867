#!/usr/bin/env python3
"""LoRA fixtures: PEFT-made adapters for kiln-model to load, and checks of Kiln-made adapters in PEFT.

Run from the repository root with a Python that has torch, transformers, safetensors and peft
(`pip install --no-deps peft`), offline:

    HF_HUB_OFFLINE=1 .venv/bin/python scripts/make_lora_fixtures.py generate
    KILN_UPDATE_LORA_FIXTURES=1 cargo test -p kiln-model --test lora   # writes kiln-*/
    HF_HUB_OFFLINE=1 .venv/bin/python scripts/make_lora_fixtures.py check

`generate` writes tests/fixtures/lora/:
  inputs.safetensors  `input_ids`, `attention_mask` (int64 [3, 10]: one full row, one left-padded,
                      one right-padded; ids < 128 so they fit both base models); position ids are
                      `cumsum(mask) - 1`, what kiln-model derives from the mask
  peft-clm/           PEFT adapter (adapter_config.json + adapter_model.safetensors) on
                      tests/fixtures/model/untied-gqa: all seven projections, r 4, alpha 8,
                      dropout 0.05, A and B redrawn from a seeded generator (B non-zero), and
                      expected.safetensors: `logits` of the PeftModel and `merged_logits` of
                      `merge_and_unload()` on the inputs
  peft-cls/           SEQ_CLS adapter on tests/fixtures/model/reward: all seven projections, r 4,
                      alpha 4, rsLoRA, the score head (modules_to_save) perturbed; expected
                      `scores` and `merged_scores`

`check` (after the Rust test has written tests/fixtures/lora/kiln-clm/ and kiln-cls/ and the merged
checkpoints under target/tmp/kiln-model/lora-merged/):
  - loads each Kiln-made adapter with `PeftModel.from_pretrained(base, dir)` and compares its
    logits/scores with the ones Kiln computed (kiln-*/kiln_expected.safetensors);
  - reloads every merged checkpoint Kiln saved with plain transformers `from_pretrained` (missing or
    unexpected keys are an error) and compares with the unmerged values.
It prints every max-abs error and exits 1 when one exceeds 1e-5.
"""

import json
import math
import os
import sys

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file, save_file
from transformers import LlamaForCausalLM, LlamaForSequenceClassification

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = os.path.join(ROOT, "tests", "fixtures", "model")
OUT = os.path.join(ROOT, "tests", "fixtures", "lora")
MERGED = os.path.join(ROOT, "target", "tmp", "kiln-model", "lora-merged")
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
PAD = 0
TOL = 1e-5


def inputs(gen):
    ids = torch.full((3, 10), PAD, dtype=torch.long)
    mask = torch.zeros(3, 10, dtype=torch.long)
    for row, (start, n) in enumerate([(0, 10), (4, 6), (0, 7)]):
        ids[row, start:start + n] = torch.randint(3, 128, (n,), generator=gen)
        mask[row, start:start + n] = 1
    return ids, mask


def positions(mask):
    return (mask.cumsum(-1) - 1).clamp(min=0)


def load_base(kind):
    if kind == "clm":
        m = LlamaForCausalLM.from_pretrained(os.path.join(MODELS, "untied-gqa"), dtype=torch.float32)
    else:
        m = LlamaForSequenceClassification.from_pretrained(os.path.join(MODELS, "reward"), dtype=torch.float32)
    return m.eval()


def run(model, kind, ids, mask):
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, position_ids=positions(mask)).logits.float()
    return out if kind == "clm" else out[:, 0]


def redraw_adapter(model, gen, score_noise=False):
    """A ~ U(-1/sqrt(in), 1/sqrt(in)) (PEFT's Kaiming bound), B ~ N(0, 0.1^2): non-zero B."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_A" in name:
                bound = 1.0 / math.sqrt(p.shape[1])
                p.copy_((torch.rand(p.shape, generator=gen) * 2 - 1) * bound)
            elif "lora_B" in name:
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            elif score_noise and "score.modules_to_save" in name:
                p.add_(0.1 * torch.randn(p.shape, generator=gen))


def generate():
    gen = torch.Generator().manual_seed(20240)
    torch.manual_seed(20240)
    os.makedirs(OUT, exist_ok=True)
    ids, mask = inputs(gen)
    save_file({"input_ids": ids, "attention_mask": mask}, os.path.join(OUT, "inputs.safetensors"))

    specs = {
        "clm": dict(r=4, lora_alpha=8, lora_dropout=0.05, target_modules=TARGETS, task_type="CAUSAL_LM"),
        "cls": dict(r=4, lora_alpha=4, lora_dropout=0.0, use_rslora=True, target_modules=TARGETS, task_type="SEQ_CLS"),
    }
    for kind, spec in specs.items():
        base = load_base(kind)
        pm = get_peft_model(base, LoraConfig(**spec))
        redraw_adapter(pm, gen, score_noise=(kind == "cls"))
        pm.eval()
        dirname = os.path.join(OUT, f"peft-{kind}")
        os.makedirs(dirname, exist_ok=True)
        for f in os.listdir(dirname):
            os.remove(os.path.join(dirname, f))
        pm.save_pretrained(dirname)
        os.remove(os.path.join(dirname, "README.md"))  # PEFT's model card template
        # PEFT keeps target_modules as a set (order varies per process) and records the absolute
        # base path: sort the one and make the other repository-relative, for stable fixtures.
        cfg_path = os.path.join(dirname, "adapter_config.json")
        with open(cfg_path) as f:
            cfg = json.load(f)
        cfg["target_modules"] = sorted(cfg["target_modules"])
        cfg["base_model_name_or_path"] = os.path.relpath(cfg["base_model_name_or_path"], ROOT)
        with open(cfg_path, "w") as f:
            json.dump(cfg, f, indent=2, sort_keys=True)
            f.write("\n")
        got = run(pm, kind, ids, mask)
        merged = run(pm.merge_and_unload(), kind, ids, mask)
        key = "logits" if kind == "clm" else "scores"
        save_file({key: got.contiguous(), f"merged_{key}": merged.contiguous()},
                  os.path.join(dirname, "expected.safetensors"))
        base_out = run(load_base(kind), kind, ids, mask)
        valid = mask.bool()[..., None] if kind == "clm" else torch.ones_like(got, dtype=torch.bool)
        print(f"peft-{kind}: adapter changes the output by up to "
              f"{((got - base_out).abs() * valid).max().item():.3e}; PEFT merged vs unmerged "
              f"{((got - merged).abs() * valid).max().item():.3e}", file=sys.stderr)

    total = 0
    for d, _, files in os.walk(OUT):
        for f in files:
            total += os.path.getsize(os.path.join(d, f))
    print(f"fixtures written to {OUT}: {total / 1e3:.0f} KB", file=sys.stderr)


def max_err(a, b, kind, mask):
    diff = (a - b).abs()
    if kind == "clm":
        diff = diff * mask.bool()[..., None]
    return diff.max().item()


def check():
    t = load_file(os.path.join(OUT, "inputs.safetensors"))
    ids, mask = t["input_ids"], t["attention_mask"]
    worst = 0.0
    for kind in ("clm", "cls"):
        key = "logits" if kind == "clm" else "scores"
        dirname = os.path.join(OUT, f"kiln-{kind}")
        kiln = load_file(os.path.join(dirname, "kiln_expected.safetensors"))[key]
        pm = PeftModel.from_pretrained(load_base(kind), dirname).eval()
        e = max_err(run(pm, kind, ids, mask), kiln, kind, mask)
        effect = max_err(run(load_base(kind), kind, ids, mask), kiln, kind, mask)
        print(f"Kiln-made adapter kiln-{kind} in PEFT vs Kiln: max |{key} err| = {e:.3e} "
              f"(the adapter moves the base by up to {effect:.3e})")
        if effect < 1e-2:
            raise SystemExit(f"kiln-{kind}: the adapter barely changes the base; the check is void")
        worst = max(worst, e)

    for name in ("kiln-clm", "kiln-cls", "peft-clm", "peft-cls"):
        kind = name.split("-")[1]
        key = "logits" if kind == "clm" else "scores"
        path = os.path.join(MERGED, name)
        if not os.path.isdir(path):
            raise SystemExit(f"{path} missing: run `cargo test -p kiln-model --test lora` first")
        cls = LlamaForCausalLM if kind == "clm" else LlamaForSequenceClassification
        model, info = cls.from_pretrained(path, output_loading_info=True, dtype=torch.float32)
        bad = {k: v for k, v in info.items() if v and k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
        if bad:
            raise SystemExit(f"{path}: loading problems {bad}")
        src = "kiln_expected" if name.startswith("kiln") else "expected"
        want = load_file(os.path.join(OUT, name, f"{src}.safetensors"))[key]
        e = max_err(run(model.eval(), kind, ids, mask), want, kind, mask)
        print(f"Kiln-merged {name} reloaded in transformers vs unmerged: max |{key} err| = {e:.3e}")
        worst = max(worst, e)
    if worst > TOL:
        raise SystemExit(f"max error {worst:.3e} exceeds {TOL}")


if __name__ == "__main__":
    cmd = sys.argv[1] if len(sys.argv) > 1 else "generate"
    {"generate": generate, "check": check}[cmd]()

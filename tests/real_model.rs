//! Opt-in tests on a real trained model: SmolLM2-135M-Instruct (Llama architecture, ChatML
//! template), against values transformers produced (`tests/fixtures/real_model/smollm2.json`, made
//! by `scripts/real_model/make_expected.py`).
//!
//! Skipped unless `KILN_REAL_MODEL_DIR` names the directory `scripts/real_model/fetch_smollm2.sh`
//! writes (CI stays offline and Python-free):
//!
//! ```text
//! bash scripts/real_model/fetch_smollm2.sh            # -> models/SmolLM2-135M-Instruct
//! KILN_REAL_MODEL_DIR=models/SmolLM2-135M-Instruct \
//!     cargo test --test real_model -- --nocapture
//! ```
//!
//! With `KILN_REAL_MODEL_OUT=DIR` the tests also leave Kiln's logits (raw little-endian f32) and
//! the checkpoint saved after the DPO step in `DIR`, and
//! `.venv/bin/python scripts/real_model/compare_with_transformers.py DIR` checks them against
//! transformers on the full vocabulary (the saved checkpoint reloaded by transformers).
#![cfg(test)]
#![allow(clippy::print_stderr)]

use std::path::{Path, PathBuf};

use kiln::backend::{AutodiffCpu, Cpu};
use kiln::burn::module::AutodiffModule;
use kiln::burn::tensor::{Int, Tensor, TensorData};
use kiln::data::examples::encode_pair;
use kiln::data::{ChatTemplate, Message, PairRecord, Tokenizer, TruncationConfig};
use kiln::losses::DpoConfig;
use kiln::model::checkpoint::{SaveDtype, SaveOptions};
use kiln::model::prelude::*;
use kiln::model::{LlamaForCausalLM, LogProbReduction};
use kiln::sampling::{GenerationConfig, Generator, SamplerConfig};
use kiln::train::dpo::{DpoTrainConfig, precompute_reference_logps, train_dpo};
use kiln::train::{TrainConfig, TrainLoop};
use serde::Deserialize;

#[derive(Deserialize)]
struct Greedy {
    messages: Vec<Message>,
    prompt_ids: Vec<u32>,
    generated_ids: Vec<u32>,
    text: String,
}

#[derive(Deserialize)]
struct Logits {
    input_ids: Vec<u32>,
    topk_ids: Vec<Vec<u32>>,
    topk_values: Vec<Vec<f32>>,
    logsumexp: Vec<f32>,
}

#[derive(Deserialize)]
struct DpoPair {
    prompt: Vec<Message>,
    chosen: String,
    rejected: String,
}

#[derive(Deserialize)]
struct Expected {
    greedy: Vec<Greedy>,
    stop_ids: Vec<u32>,
    logits: Logits,
    dpo_pair: DpoPair,
}

fn model_dir() -> Option<PathBuf> {
    match std::env::var_os("KILN_REAL_MODEL_DIR") {
        Some(d) => Some(PathBuf::from(d)),
        None => {
            eprintln!("skipped: set KILN_REAL_MODEL_DIR (see scripts/real_model/fetch_smollm2.sh)");
            None
        }
    }
}

fn expected() -> Expected {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/real_model/smollm2.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `KILN_REAL_MODEL_OUT`, where Kiln's logits and saved checkpoint are kept for the Python check.
fn dump_dir() -> Option<PathBuf> {
    let d = PathBuf::from(std::env::var_os("KILN_REAL_MODEL_OUT")?);
    std::fs::create_dir_all(&d).unwrap();
    Some(d)
}

/// Writes `<stem>.f32` (row-major `[tokens, vocab]`, little-endian) and `<stem>.json` (ids).
fn dump_logits(stem: &Path, ids: &[u32], logits: &[f32]) {
    let bytes: Vec<u8> = logits.iter().flat_map(|x| x.to_le_bytes()).collect();
    std::fs::write(stem.with_extension("f32"), bytes).unwrap();
    let meta = serde_json::json!({ "input_ids": ids, "vocab": logits.len() / ids.len() });
    std::fs::write(stem.with_extension("json"), meta.to_string()).unwrap();
}

#[test]
fn greedy_chat_equals_transformers() {
    let Some(dir) = model_dir() else { return };
    let exp = expected();
    let device = Default::default();
    let model = LlamaForCausalLM::<Cpu>::from_pretrained(&dir, &device).unwrap();
    let tok = Tokenizer::from_model_dir(&dir).unwrap();
    let template = ChatTemplate::from_model_dir(&dir, &tok).unwrap();
    let mut stop = template.stop_ids();
    stop.sort_unstable();
    let mut want_stop = exp.stop_ids.clone();
    want_stop.push(template.eot_id());
    want_stop.sort_unstable();
    want_stop.dedup();
    assert_eq!(
        stop, want_stop,
        "stop ids: generation_config eos + end of turn"
    );
    assert!(exp.greedy.len() >= 6);
    let config = GenerationConfig::new()
        .with_sampler(SamplerConfig::greedy())
        .with_max_new_tokens(64)
        .with_stop_token_ids(template.stop_ids())
        .with_pad_token_id(tok.pad_id().unwrap_or(0));
    let generator = Generator::new(&model, config).unwrap().with_tokenizer(&tok);
    let prompts: Vec<Vec<u32>> = exp
        .greedy
        .iter()
        .map(|g| template.encode(&tok, &g.messages, true).unwrap().ids)
        .collect();
    for (g, p) in exp.greedy.iter().zip(&prompts) {
        assert_eq!(p, &g.prompt_ids, "prompt ids of {:?}", g.messages);
    }
    // One prompt at a time: HF generated each prompt alone.
    let mut equal_tokens = 0;
    for (g, p) in exp.greedy.iter().zip(&prompts) {
        let out = generator.generate(std::slice::from_ref(p)).unwrap();
        let got = &out.responses[0][0];
        assert_eq!(
            got.token_ids, g.generated_ids,
            "greedy ids for {:?}\n kiln: {:?}\n   hf: {:?}",
            g.messages, got.text, g.text
        );
        equal_tokens += got.token_ids.len();
    }
    eprintln!(
        "greedy chat: {} prompts, {equal_tokens} generated tokens identical to transformers",
        exp.greedy.len()
    );
}

#[test]
fn logits_match_transformers() {
    let Some(dir) = model_dir() else { return };
    let exp = expected().logits;
    let device = Default::default();
    let model = LlamaForCausalLM::<Cpu>::from_pretrained(&dir, &device).unwrap();
    let n = exp.input_ids.len();
    assert_eq!(n, 256);
    let ids: Vec<i64> = exp.input_ids.iter().map(|&i| i as i64).collect();
    let input = Tensor::<Cpu, 2, Int>::from_data(TensorData::new(ids, [1, n]), &device);
    let logits = model.forward(input, None).unwrap();
    let vocab = logits.dims()[2];
    let data: Vec<f32> = logits.into_data().convert::<f32>().to_vec().unwrap();
    let (mut max_topk, mut max_lse) = (0f32, 0f32);
    for t in 0..n {
        let row = &data[t * vocab..(t + 1) * vocab];
        for (&id, &v) in exp.topk_ids[t].iter().zip(&exp.topk_values[t]) {
            max_topk = max_topk.max((row[id as usize] - v).abs());
        }
        let m = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        let lse = m + row
            .iter()
            .map(|&x| ((x - m) as f64).exp())
            .sum::<f64>()
            .ln() as f32;
        max_lse = max_lse.max((lse - exp.logsumexp[t]).abs());
        // Same argmax as HF at every position.
        let argmax = row
            .iter()
            .enumerate()
            .fold(
                (0, f32::NEG_INFINITY),
                |a, (i, &x)| if x > a.1 { (i, x) } else { a },
            )
            .0;
        assert_eq!(argmax as u32, exp.topk_ids[t][0], "argmax at position {t}");
    }
    if let Some(d) = dump_dir() {
        dump_logits(&d.join("logits256"), &exp.input_ids, &data);
    }
    eprintln!(
        "logits vs transformers f32 over {n} tokens: max-abs error {max_topk:.3e} on the top-32 \
         logits of every position, {max_lse:.3e} on logsumexp"
    );
    assert!(max_topk < 1e-3, "top-k logits error {max_topk}");
    assert!(max_lse < 1e-3, "logsumexp error {max_lse}");
}

/// One DPO step on the real model, then a save that reloads with identical logits. With
/// `KILN_REAL_MODEL_OUT=DIR` the saved checkpoint is kept in `DIR/dpo-step` with Kiln's logits,
/// for `scripts/real_model/compare_with_transformers.py` to reload in transformers.
#[test]
fn dpo_step_then_save_reloads_identically() {
    let Some(dir) = model_dir() else { return };
    let exp = expected().dpo_pair;
    let device = Default::default();
    let tok = Tokenizer::from_model_dir(&dir).unwrap();
    let template = ChatTemplate::from_model_dir(&dir, &tok).unwrap();
    let pair = PairRecord {
        prompt: exp.prompt.into(),
        chosen: exp.chosen.into(),
        rejected: exp.rejected.into(),
        margin: None,
    };
    let truncation = TruncationConfig {
        max_prompt_len: 256,
        max_total_len: 512,
    };
    let pairs = vec![encode_pair(&tok, &template, &pair, &truncation).unwrap()];
    let pad = tok.pad_id().unwrap_or(0);
    let policy = LlamaForCausalLM::<AutodiffCpu>::from_pretrained(&dir, &device).unwrap();
    let reference = LlamaForCausalLM::<Cpu>::from_pretrained(&dir, &device).unwrap();
    let ref_logps =
        precompute_reference_logps(&reference, &pairs, pad, 1, LogProbReduction::Sum).unwrap();
    let config = TrainConfig::new(1).with_lr(1e-5).with_micro_batch_size(1);
    let mut train = TrainLoop::new(policy, config).unwrap();
    let dpo = DpoTrainConfig::new()
        .with_loss(DpoConfig::new().with_beta(0.1))
        .with_pad_id(Some(pad));
    let stats = train_dpo(&mut train, (&pairs, &ref_logps), &dpo).unwrap();
    assert_eq!(stats.len(), 1);
    let loss = stats[0].loss;
    assert!(
        (loss - std::f64::consts::LN_2).abs() < 1e-4,
        "step-0 DPO loss {loss} != ln 2"
    );
    assert!(stats[0].grad_norm.is_finite() && stats[0].grad_norm > 0.0);
    let trained = train.into_model().unwrap();

    let kept = dump_dir();
    let out = match &kept {
        Some(d) => d.join("dpo-step"),
        None => std::env::temp_dir().join(format!("kiln-real-dpo-{}", std::process::id())),
    };
    let options = SaveOptions {
        dtype: SaveDtype::F32,
        ..SaveOptions::default()
    };
    trained.save_pretrained(&out, options).unwrap();
    for f in [
        "tokenizer.json",
        "tokenizer_config.json",
        "chat_template.jinja",
        "generation_config.json",
    ] {
        if dir.join(f).exists() {
            std::fs::copy(dir.join(f), out.join(f)).unwrap();
        }
    }
    let reloaded = LlamaForCausalLM::<Cpu>::from_pretrained(&out, &device).unwrap();
    let ids: Vec<i64> = pairs[0].0.ids.iter().map(|&i| i as i64).collect();
    let n = ids.len();
    let input = || Tensor::<Cpu, 2, Int>::from_data(TensorData::new(ids.clone(), [1, n]), &device);
    let a: Vec<f32> = trained
        .valid()
        .forward(input(), None)
        .unwrap()
        .into_data()
        .convert::<f32>()
        .to_vec()
        .unwrap();
    let b: Vec<f32> = reloaded
        .forward(input(), None)
        .unwrap()
        .into_data()
        .convert::<f32>()
        .to_vec()
        .unwrap();
    assert_eq!(a, b, "saved then reloaded logits differ");
    let before: Vec<f32> = reference
        .forward(input(), None)
        .unwrap()
        .into_data()
        .convert::<f32>()
        .to_vec()
        .unwrap();
    let moved = a
        .iter()
        .zip(&before)
        .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    assert!(moved > 0.0, "the DPO step changed nothing");
    if kept.is_some() {
        dump_logits(&out.join("kiln_logits"), &pairs[0].0.ids, &a);
    } else {
        let _ = std::fs::remove_dir_all(&out);
    }
    eprintln!(
        "one DPO step: loss {loss:.6}, grad norm {:.4}, logits moved by up to {moved:.3e}; saved to {} \
         and reloaded bit-identically",
        stats[0].grad_norm,
        out.display()
    );
}

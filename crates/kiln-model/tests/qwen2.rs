//! Qwen2, the second architecture: logits, log-probs and reward scores equal transformers'
//! `Qwen2ForCausalLM` / `Qwen2ForSequenceClassification` on tiny fixtures, PEFT adapters on it load
//! with the same logits, saving round-trips, and loaders refuse checkpoints of the other type by
//! name. Fixtures: `tests/fixtures/qwen2`, made by `scripts/make_qwen2_fixtures.py`.
#![cfg(test)]
#![allow(clippy::print_stderr)]

mod common;

use common::*;
use kiln_model::prelude::*;
use kiln_model::{
    Error, LlamaForCausalLM, LlamaForSequenceClassification, LoraConfig, LoraTarget, MissingScore,
    ModelType, Qwen2ForCausalLM, Qwen2ForSequenceClassification, SaveDtype, SaveOptions,
};

/// transformers' f32 logits; the bound for the second architecture.
const TOL: f32 = 1e-5;
const CASES: [&str; 4] = ["single", "left", "right", "long"];

fn qwen(name: &str) -> String {
    format!("../qwen2/{name}")
}

fn check_causal(name: &str) {
    let device = Default::default();
    let model = Qwen2ForCausalLM::<B>::from_pretrained(fixture(&qwen(name)), &device).unwrap();
    assert_eq!(model.config().model_type, ModelType::Qwen2);
    let exp = Expected::load(&qwen(name));
    for case in CASES {
        let ids = exp.ints(&format!("{case}.input_ids"));
        let mask = exp.ints(&format!("{case}.attention_mask"));
        let (mshape, m) = exp.mask_vec(case);
        let t = mshape[1];
        let logits = model.forward(ids.clone(), Some(mask.clone())).unwrap();
        let (lshape, want) = exp.floats(&format!("{case}.logits"));
        assert_eq!(&logits.dims().to_vec(), lshape);
        let e_logits = max_err_where(&to_vec(logits), want, lshape[2], |p| m[p] == 1);
        // The trainers' chunked path (no autodiff) against transformers' log-softmax.
        let lp = model.next_token_logprobs(ids, Some(mask)).unwrap();
        let (_, want_lp) = exp.floats(&format!("{case}.logprobs"));
        let e_lp = max_err_where(&to_vec(lp), want_lp, 1, |i| {
            let (b, s) = (i / (t - 1), i % (t - 1));
            m[b * t + s] == 1 && m[b * t + s + 1] == 1
        });
        eprintln!(
            "qwen2 {name}/{case}: max |logits err| = {e_logits:.3e}, |logprob err| = {e_lp:.3e}"
        );
        assert!(e_logits <= TOL, "{name}/{case}: logits err {e_logits}");
        assert!(e_lp <= TOL, "{name}/{case}: logprob err {e_lp}");
    }
}

#[test]
fn tied_qwen2_matches_transformers() {
    let model = Qwen2ForCausalLM::<B>::from_pretrained(fixture(&qwen("tied")), &Default::default())
        .unwrap();
    assert!(model.inner.lm_head.is_none(), "tie_word_embeddings");
    let q = &model.inner.model.layers[0].self_attn;
    assert!(q.q_proj.base.bias.is_some() && q.k_proj.base.bias.is_some());
    assert!(q.v_proj.base.bias.is_some() && q.o_proj.base.bias.is_none());
    check_causal("tied");
}

#[test]
fn untied_qwen2_matches_transformers() {
    check_causal("untied");
}

#[test]
fn qwen2_reward_head_matches_transformers() {
    let name = qwen("reward");
    let model = Qwen2ForSequenceClassification::<B>::from_pretrained(
        fixture(&name),
        &Default::default(),
        MissingScore::Error,
    )
    .unwrap();
    let exp = Expected::load(&name);
    for case in CASES {
        let ids = exp.ints(&format!("{case}.input_ids"));
        let mask = exp.ints(&format!("{case}.attention_mask"));
        let got = to_vec(model.score(ids, Some(mask)).unwrap());
        let (_, want) = exp.floats(&format!("{case}.scores"));
        let err = max_err_where(&got, want, 1, |_| true);
        eprintln!("qwen2 reward/{case}: max |score err| = {err:.3e}");
        assert!(err <= TOL, "reward/{case}: {err}");
    }
}

#[test]
fn peft_adapter_on_qwen2_matches_peft_and_round_trips() {
    let device = Default::default();
    let lora_dir = fixture(&qwen("lora"));
    let base = Qwen2ForCausalLM::<B>::from_pretrained(fixture(&qwen("tied")), &device).unwrap();
    let model = base.load_adapter(&lora_dir, &device).unwrap();
    assert!(model.has_adapters());
    let exp = Expected::load(&qwen("lora"));
    let ids = exp.ints("input_ids");
    let mask = exp.ints("attention_mask");
    let (_, m) = exp.i64s["attention_mask"].clone();
    let (shape, want) = exp.floats("logits");
    let v = shape[2];
    let got = to_vec(model.forward(ids.clone(), Some(mask.clone())).unwrap());
    let err = max_err_where(&got, want, v, |p| m[p] == 1);
    eprintln!("qwen2 PEFT adapter: max |logits err| = {err:.3e}");
    assert!(err <= TOL, "adapter logits err {err}");

    // Kiln's own save of the adapter loads back to the same logits.
    let dir = tmp_dir("qwen2-adapter");
    model.save_adapter(&dir).unwrap();
    let again = model
        .without_adapters()
        .load_adapter(&dir, &device)
        .unwrap();
    let got2 = to_vec(again.forward(ids.clone(), Some(mask.clone())).unwrap());
    assert!(max_err_where(&got, &got2, v, |_| true) == 0.0);

    // Merged: PEFT's merge_and_unload (biases untouched).
    let merged = model.merge_adapters();
    assert!(!merged.has_adapters());
    let (_, want_merged) = exp.floats("merged_logits");
    let got_merged = to_vec(merged.forward(ids.clone(), Some(mask.clone())).unwrap());
    let err = max_err_where(&got_merged, want_merged, v, |p| m[p] == 1);
    assert!(err <= TOL, "merged logits err {err}");

    // A merged save is a Qwen2 checkpoint again: config, biases, identical logits.
    let saved = tmp_dir("qwen2-merged");
    let f32 = SaveOptions {
        dtype: SaveDtype::F32,
        ..SaveOptions::default()
    };
    merged.save_pretrained(&saved, f32).unwrap();
    let text = std::fs::read_to_string(saved.join("config.json")).unwrap();
    assert!(
        text.contains("\"qwen2\"") && text.contains("Qwen2ForCausalLM"),
        "{text}"
    );
    let back = Qwen2ForCausalLM::<B>::load_hf(&saved, &device).unwrap();
    let got_back = to_vec(back.forward(ids, Some(mask)).unwrap());
    let err = max_err_where(&got_back, &got_merged, v, |_| true);
    assert!(err <= 1e-6, "saved and reloaded logits differ by {err}");
}

#[test]
fn lora_training_targets_work_on_qwen2() {
    let device = Default::default();
    let base = Qwen2ForCausalLM::<B>::from_pretrained(fixture(&qwen("untied")), &device).unwrap();
    let lora = LoraConfig::new(vec![LoraTarget::Q, LoraTarget::V]).with_rank(2);
    let policy = base.with_lora(&lora, &device).unwrap();
    assert_eq!(policy.lora_config(), Some(&lora));
    // B = 0: still the base.
    let exp = Expected::load(&qwen("untied"));
    let ids = exp.ints("single.input_ids");
    let a = to_vec(policy.forward(ids.clone(), None).unwrap());
    let b = to_vec(policy.without_adapters().forward(ids, None).unwrap());
    assert_eq!(a, b);
}

#[test]
fn loaders_refuse_the_other_architecture_by_name() {
    let device = Default::default();
    let err = LlamaForCausalLM::<B>::from_pretrained(fixture(&qwen("tied")), &device).unwrap_err();
    assert!(matches!(err, Error::WrongModelType { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("`qwen2`") && msg.contains("Qwen2ForCausalLM"),
        "{msg}"
    );

    let err = Qwen2ForCausalLM::<B>::from_pretrained(fixture("untied-gqa"), &device).unwrap_err();
    assert!(err.to_string().contains("LlamaForCausalLM"), "{err}");

    let err = LlamaForSequenceClassification::<B>::from_pretrained(
        fixture(&qwen("reward")),
        &device,
        MissingScore::Error,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("Qwen2ForSequenceClassification"),
        "{err}"
    );

    // A model_type Kiln does not implement is named, before any tensor is read.
    let dir = copy_fixture("../qwen2/tied", "qwen2-mistral");
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("\"qwen2\"", "\"mistral\"")).unwrap();
    let msg = Qwen2ForCausalLM::<B>::from_pretrained(&dir, &device)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("`mistral`") && msg.contains("llama, qwen2"),
        "{msg}"
    );

    // Sliding-window attention is refused rather than silently computed as full attention.
    std::fs::write(
        &path,
        text.replace(
            "\"use_sliding_window\": false",
            "\"use_sliding_window\": true",
        ),
    )
    .unwrap();
    let msg = Qwen2ForCausalLM::<B>::from_pretrained(&dir, &device)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("use_sliding_window"), "{msg}");
}

#[test]
fn random_qwen2_has_zero_biases_and_counts_them() {
    let config = kiln_model::DecoderConfig::tiny(64, 32);
    let model = Qwen2ForCausalLM::<B>::init_seeded(&config, 0.02, 3, &Default::default());
    let c = model.config();
    assert_eq!(c.model_type, ModelType::Qwen2);
    let bias = model.inner.model.layers[0]
        .self_attn
        .q_proj
        .base
        .bias
        .as_ref()
        .unwrap();
    assert!(to_vec(bias.val()).iter().all(|&x| x == 0.0));
    let llama = kiln_model::DecoderConfig {
        model_type: ModelType::Llama,
        ..c.clone()
    };
    let per_layer = c.head_dim * (c.num_attention_heads + 2 * c.num_key_value_heads);
    assert_eq!(
        c.num_parameters(),
        llama.num_parameters() + c.num_hidden_layers * per_layer
    );
    let params: usize = burn::module::Module::num_params(&model);
    assert_eq!(params, c.num_parameters());
}

//! Logit, log-prob and reward parity against Hugging Face transformers on the committed fixtures
//! (made by `scripts/make_model_fixtures.py`).
#![cfg(test)]
#![allow(clippy::print_stderr)]

mod common;

use common::*;
use kiln_model::prelude::*;
use kiln_model::{LlamaForCausalLM, LlamaForSequenceClassification, MissingScore};

const TOL: f32 = 1e-4;
const CASES: [&str; 4] = ["single", "left", "right", "long"];

fn check_causal(name: &str) -> f32 {
    let device = Default::default();
    let model = LlamaForCausalLM::<B>::from_pretrained(fixture(name), &device).unwrap();
    let exp = Expected::load(name);
    let mut worst = 0f32;
    for case in CASES {
        let ids = exp.ints(&format!("{case}.input_ids"));
        let mask = exp.ints(&format!("{case}.attention_mask"));
        let (mshape, m) = exp.mask_vec(case);
        let t = mshape[1];
        let logits = model.forward(ids.clone(), Some(mask)).unwrap();
        let (lshape, want) = exp.floats(&format!("{case}.logits"));
        assert_eq!(&logits.dims().to_vec(), lshape);
        let got = to_vec(logits.clone());
        let e_logits = max_err_where(&got, want, lshape[2], |p| m[p] == 1);

        let lp = next_token_logprobs(logits, ids);
        let (_, want_lp) = exp.floats(&format!("{case}.logprobs"));
        let got_lp = to_vec(lp);
        // entry (b, s) scores token s+1 given ..s: valid when both are real tokens.
        let e_lp = max_err_where(&got_lp, want_lp, 1, |i| {
            let (b, s) = (i / (t - 1), i % (t - 1));
            m[b * t + s] == 1 && m[b * t + s + 1] == 1
        });
        eprintln!(
            "parity {name}/{case}: max |logits err| = {e_logits:.3e}, max |logprob err| = {e_lp:.3e}"
        );
        assert!(e_logits <= TOL, "{name}/{case}: logits err {e_logits}");
        assert!(e_lp <= TOL, "{name}/{case}: logprob err {e_lp}");
        worst = worst.max(e_logits).max(e_lp);
    }
    worst
}

#[test]
fn untied_gqa_llama3_scaling_matches_hf() {
    check_causal("untied-gqa");
}

#[test]
fn tied_legacy_config_matches_hf() {
    let model =
        LlamaForCausalLM::<B>::from_pretrained(fixture("tied"), &Default::default()).unwrap();
    assert!(model.lm_head.is_none());
    assert_eq!(model.config().eos_token_id, vec![2, 5]);
    check_causal("tied");
}

#[test]
fn bf16_sharded_matches_hf() {
    assert!(
        fixture("bf16-sharded")
            .join("model.safetensors.index.json")
            .exists()
    );
    check_causal("bf16-sharded");
}

#[test]
fn reward_head_matches_hf() {
    let name = "reward";
    let model = LlamaForSequenceClassification::<B>::from_pretrained(
        fixture(name),
        &Default::default(),
        MissingScore::Error,
    )
    .unwrap();
    let exp = Expected::load(name);
    for case in CASES {
        let ids = exp.ints(&format!("{case}.input_ids"));
        let mask = exp.ints(&format!("{case}.attention_mask"));
        let got = to_vec(model.forward(ids, Some(mask)).unwrap());
        let (_, want) = exp.floats(&format!("{case}.scores"));
        let err = max_err_where(&got, want, 1, |_| true);
        eprintln!("parity reward/{case}: max |score err| = {err:.3e} (scores {got:?})");
        assert!(err <= TOL, "reward/{case}: {err}");
    }
}

#[test]
fn left_padding_equals_unpadded_run() {
    let device = Default::default();
    let model = LlamaForCausalLM::<B>::from_pretrained(fixture("untied-gqa"), &device).unwrap();
    let exp = Expected::load("untied-gqa");
    let ids = exp.ints("left.input_ids");
    let mask = exp.ints("left.attention_mask");
    let padded = to_vec(model.forward(ids.clone(), Some(mask)).unwrap());
    // Row 2 has 4 real tokens at the end: run them alone.
    let alone = to_vec(
        model
            .forward(ids.narrow(0, 2, 1).narrow(1, 8, 4), None)
            .unwrap(),
    );
    let v = model.config().vocab_size;
    let row2 = &padded[(2 * 12 + 8) * v..3 * 12 * v];
    let err = max_err_where(row2, &alone, v, |_| true);
    assert!(err < 1e-5, "left padding changed logits by {err}");
}

#[test]
fn logprob_helpers_match_hf() {
    use burn::tensor::Tensor;
    use kiln_model::LogProbReduction;
    let device = Default::default();
    let model = LlamaForCausalLM::<B>::from_pretrained(fixture("untied-gqa"), &device).unwrap();
    let exp = Expected::load("untied-gqa");
    let ids = exp.ints("right.input_ids");
    let mask = exp.ints("right.attention_mask");
    let (_, m) = exp.mask_vec("right");
    let (_, want) = exp.floats("right.logprobs");
    let t = 12;

    let per_token = to_vec(
        model
            .next_token_logprobs(ids.clone(), Some(mask.clone()))
            .unwrap(),
    );
    let err = max_err_where(&per_token, want, 1, |i| {
        m[(i / (t - 1)) * t + i % (t - 1) + 1] == 1
    });
    assert!(err <= TOL, "next_token_logprobs err {err}");

    // Labels = ids shifted left: label_logprobs at t equals next_token_logprobs at t.
    let labels = Tensor::cat(
        vec![ids.clone().narrow(1, 1, t - 1), ids.clone().narrow(1, 0, 1)],
        1,
    );
    let lab = to_vec(
        model
            .label_logprobs(ids.clone(), Some(mask.clone()), labels)
            .unwrap()
            .narrow(1, 0, t - 1),
    );
    assert!(max_err_where(&lab, &per_token, 1, |_| true) < 1e-6);

    // Sequence sum over the real tokens (targets = the attention mask).
    let target = mask.clone().float();
    let sums = to_vec(
        model
            .sequence_logprobs(
                ids.clone(),
                Some(mask.clone()),
                target.clone(),
                LogProbReduction::Sum,
            )
            .unwrap(),
    );
    let means = to_vec(
        model
            .sequence_logprobs(ids, Some(mask), target, LogProbReduction::Mean)
            .unwrap(),
    );
    for b in 0..3 {
        let (mut s, mut n) = (0f32, 0f32);
        for j in 0..t - 1 {
            if m[b * t + j + 1] == 1 {
                s += want[b * (t - 1) + j];
                n += 1.0;
            }
        }
        assert!((sums[b] - s).abs() < 1e-4, "row {b}: {} vs {s}", sums[b]);
        assert!(
            (means[b] - s / n).abs() < 1e-5,
            "row {b}: mean {} vs {}",
            means[b],
            s / n
        );
    }
}

#[test]
fn fixtures_detect_missing_rope_scaling() {
    // Guards the strength of the fixtures: dropping llama3 scaling must break parity clearly.
    let device = Default::default();
    let mut model = LlamaForCausalLM::<B>::from_pretrained(fixture("untied-gqa"), &device).unwrap();
    let mut cfg = model.config().clone();
    cfg.rope_scaling = None;
    model.model.rope = kiln_model::rope::RotaryEmbedding::new(&cfg);
    let exp = Expected::load("untied-gqa");
    let got = to_vec(model.forward(exp.ints("long.input_ids"), None).unwrap());
    let (shape, want) = exp.floats("long.logits");
    let err = max_err_where(&got, want, shape[2], |_| true);
    eprintln!("without llama3 scaling: max |logits err| = {err:.3e}");
    assert!(err > 1e-2, "fixture too weak: {err}");
}

//! KV-cache incremental decoding equals the full forward (left-padded batch, expanded cache).
#![cfg(test)]

mod common;

use burn::tensor::{Int, Tensor};
use common::*;
use kiln_model::LlamaForCausalLM;
use kiln_model::prelude::*;

fn model() -> LlamaForCausalLM<B> {
    LlamaForCausalLM::from_pretrained(fixture("untied-gqa"), &Default::default()).unwrap()
}

#[test]
fn step_by_step_equals_full_forward() {
    let model = model();
    let exp = Expected::load("untied-gqa");
    // Left-padded batch of 3, 12 positions; prefill 6 then decode 1 token at a time.
    let ids = exp.ints("left.input_ids");
    let mask = exp.ints("left.attention_mask");
    let (_, m) = exp.mask_vec("left");
    let full = model.forward(ids.clone(), Some(mask.clone())).unwrap();
    let v = model.config().vocab_size;

    let mut cache = model.new_cache();
    let prefill = model
        .forward_cached(
            ids.clone().narrow(1, 0, 6),
            Some(mask.clone().narrow(1, 0, 6)),
            &mut cache,
        )
        .unwrap();
    assert_eq!(cache.len(), 6);
    let mut pieces = vec![prefill];
    for t in 6..12 {
        let step = model
            .forward_cached(
                ids.clone().narrow(1, t, 1),
                Some(mask.clone().narrow(1, 0, t + 1)),
                &mut cache,
            )
            .unwrap();
        pieces.push(step);
    }
    assert_eq!(cache.len(), 12);
    let cached = to_vec(Tensor::cat(pieces, 1));
    let err = max_err_where(&cached, &to_vec(full), v, |p| m[p] == 1);
    assert!(
        err < 1e-5,
        "cached decoding differs from full forward by {err}"
    );
}

#[test]
fn repeat_interleave_then_decode() {
    let model = model();
    let exp = Expected::load("untied-gqa");
    let ids = exp.ints("left.input_ids");
    let mask = exp.ints("left.attention_mask");
    let k = 2;
    let rep = |t: Tensor<B, 2, Int>| {
        let [b, l] = t.dims();
        t.reshape([b, 1, l]).repeat_dim(1, k).reshape([b * k, l])
    };
    // Reference: the full forward on the repeated batch, where the two copies of each prompt
    // continue with different tokens.
    let mut cont = to_vec_i(rep(ids.clone()));
    for (i, c) in cont.iter_mut().enumerate() {
        if i % 12 >= 9 && (i / 12) % 2 == 1 {
            *c = 3 + (*c + 17) % 250;
        }
    }
    let ids_rep: Tensor<B, 2, Int> = Tensor::from_data(
        burn::tensor::TensorData::new(cont, [3 * k, 12]),
        &Default::default(),
    );
    let mask_rep = rep(mask.clone());
    let full = to_vec(
        model
            .forward(ids_rep.clone(), Some(mask_rep.clone()))
            .unwrap(),
    );

    let mut cache = model.new_cache();
    let _ = model.forward_cached(ids.narrow(1, 0, 9), Some(mask.narrow(1, 0, 9)), &mut cache);
    let mut cache = cache.repeat_interleave(k);
    assert_eq!(cache.batch_size(), Some(3 * k));
    let step = model
        .forward_cached(ids_rep.narrow(1, 9, 3), Some(mask_rep), &mut cache)
        .unwrap();
    let got = to_vec(step);
    let v = model.config().vocab_size;
    // Compare positions 9..12 of every row (all real tokens there).
    let mut err = 0f32;
    for r in 0..3 * k {
        for s in 0..3 {
            let a = &got[(r * 3 + s) * v..(r * 3 + s + 1) * v];
            let b = &full[(r * 12 + 9 + s) * v..(r * 12 + 10 + s) * v];
            err = err.max(max_err_where(a, b, v, |_| true));
        }
    }
    assert!(err < 1e-5, "expanded cache differs by {err}");

    // select keeps rows: choose rows [5, 0].
    let rows = Tensor::<B, 1, Int>::from_data([5, 0], &Default::default());
    let sel = cache.select(rows);
    assert_eq!(sel.batch_size(), Some(2));
    assert_eq!(sel.len(), 12);
}

fn to_vec_i(t: Tensor<B, 2, Int>) -> Vec<i64> {
    t.into_data().convert::<i64>().to_vec::<i64>().unwrap()
}

/// A mask that does not cover the cached tokens plus the new ones is an error naming both
/// shapes, not a panic.
#[test]
fn a_misshaped_mask_is_an_error_naming_both_shapes() {
    let model = model();
    let exp = Expected::load("untied-gqa");
    let ids = exp.ints("left.input_ids");
    let mask = exp.ints("left.attention_mask");
    let [b, t] = ids.dims();
    let short = mask.clone().narrow(1, 0, t - 1);
    let err = model.forward(ids.clone(), Some(short)).unwrap_err();
    assert!(
        matches!(err, kiln_model::Error::MaskShape { expected, found } if expected == [b, t] && found == [b, t - 1]),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("{:?}", [b, t - 1])) && msg.contains(&format!("{:?}", [b, t])),
        "{msg}"
    );
    // With a cache, the mask must also cover the cached tokens.
    let mut cache = model.new_cache();
    model
        .forward_cached(ids.clone(), Some(mask.clone()), &mut cache)
        .unwrap();
    let err = model
        .forward_cached(ids.narrow(1, 0, 1), Some(mask.narrow(1, 0, 1)), &mut cache)
        .unwrap_err();
    assert!(matches!(err, kiln_model::Error::MaskShape { .. }), "{err}");
}

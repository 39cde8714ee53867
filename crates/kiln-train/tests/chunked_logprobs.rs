//! `ChunkedLogProbs` (kiln-model) gives the full-logits path's values and gradients (both head
//! layouts, trainable and frozen heads, sum and mean reductions, kiln-losses' DPO and RRHF losses,
//! chunk sizes that do and do not divide the number of counted positions). It lives here, in the
//! crate that depends on both, because kiln-model does not depend on kiln-losses.
#![cfg(test)]

use burn::backend::{Autodiff, Flex};
use burn::tensor::{DType, Distribution, FloatDType, Int, Tensor, TensorData};
use kiln_losses::{DpoConfig, RrhfConfig};
use kiln_model::{
    ChunkedLogProbsConfig, LmHead, LogProbReduction, LogProbStrategy, full_sequence_logprobs,
    gather_logprobs, shifted_token_logprobs,
};

type I = Flex;
type A = Autodiff<Flex>;

const B: usize = 4;
const T: usize = 7;
const D: usize = 12;
const V: usize = 50;

fn vals<Bk: burn::tensor::backend::Backend, const N: usize>(t: Tensor<Bk, N>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec::<f32>().unwrap()
}

fn max_rel(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(1e-3f32, |m, x| m.max(x.abs()));
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
        / scale
}

fn inputs() -> (Tensor<I, 2, Int>, Tensor<I, 2>) {
    let device = Default::default();
    let ids: Vec<i64> = (0..B * T).map(|i| ((i * 37 + 11) % V) as i64).collect();
    let ids = Tensor::<I, 2, Int>::from_data(TensorData::new(ids, [B, T]), &device);
    // Prompt tokens, padding (left and right), a row with a single counted token, fractional 0.5.
    let mask = Tensor::<I, 2>::from_data(
        [
            [0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0],
            [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
            [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0],
            [0.0, 1.0, 0.5, 1.0, 0.0, 1.0, 1.0],
        ],
        &device,
    );
    (ids, mask)
}

fn head<Bk: burn::tensor::backend::Backend>(w: Tensor<Bk, 2>, vocab_major: bool) -> LmHead<Bk> {
    if vocab_major {
        LmHead::VocabMajor(w)
    } else {
        LmHead::HiddenMajor(w)
    }
}

#[test]
fn inference_values_equal_the_full_logits_path() {
    let device = Default::default();
    let (ids, mask) = inputs();
    let hidden = Tensor::<I, 3>::random([B, T, D], Distribution::Normal(0.0, 1.0), &device);
    for vocab_major in [true, false] {
        let shape = if vocab_major { [V, D] } else { [D, V] };
        let w = Tensor::<I, 2>::random(shape, Distribution::Normal(0.0, 0.5), &device);
        let head = head(w, vocab_major);
        let logits = head.logits3(hidden.clone());
        for chunk in [1, 3, 4, 256] {
            let c = ChunkedLogProbsConfig::new()
                .with_chunk_size(chunk)
                .init()
                .unwrap();
            for reduction in [LogProbReduction::Sum, LogProbReduction::Mean] {
                let full = vals(full_sequence_logprobs(
                    hidden.clone(),
                    &head,
                    ids.clone(),
                    mask.clone(),
                    reduction,
                ));
                let got = vals(c.sequence_logprobs(
                    hidden.clone(),
                    &head,
                    ids.clone(),
                    mask.clone(),
                    reduction,
                ));
                assert!(max_rel(&got, &full) < 1e-6, "{got:?} vs {full:?}");
            }
            let per_token =
                vals(c.shifted_token_logprobs(hidden.clone(), &head, ids.clone(), mask.clone()));
            let want = vals(shifted_token_logprobs(
                logits.clone(),
                ids.clone(),
                mask.clone(),
            ));
            assert!(max_rel(&per_token, &want) < 1e-6);
            let labels = vals(c.label_logprobs(hidden.clone(), &head, ids.clone()));
            let want = vals(gather_logprobs(logits.clone(), ids.clone()));
            assert!(max_rel(&labels, &want) < 1e-6);
        }
    }
    assert!(
        ChunkedLogProbsConfig::new()
            .with_chunk_size(0)
            .init()
            .is_err()
    );
    assert!(LogProbStrategy::chunks_of(0).is_err());
    assert_eq!(
        LogProbStrategy::default().chunked().unwrap().chunk_size(),
        256
    );
}

/// Gradients of `below` (a parameter under the hidden states: `H = X below`) and of the head.
struct Grads {
    loss: f32,
    below: Vec<f32>,
    head: Option<Vec<f32>>,
}

#[derive(Clone, Copy, Debug)]
enum Loss {
    Dpo,
    Rrhf,
    Nll,
}

fn apply(loss: Loss, lp: Tensor<A, 1>) -> Tensor<A, 1> {
    let device = lp.device();
    match loss {
        Loss::Dpo => {
            let dpo = DpoConfig::new().with_beta(0.5).init().unwrap();
            let refs = Tensor::<A, 1>::from_floats([-3.0, -2.0], &device);
            let out = dpo.forward(
                lp.clone().narrow(0, 0, 2),
                lp.narrow(0, 2, 2),
                refs.clone(),
                refs.flip([0]),
            );
            out.loss
        }
        Loss::Rrhf => {
            let rrhf = RrhfConfig::new().init().unwrap();
            let lengths = Tensor::<A, 2>::from_floats([[4.0, 7.0], [1.0, 4.5]], &device);
            let rewards = Tensor::<A, 2>::from_floats([[1.0, 0.0], [0.0, 2.0]], &device);
            rrhf.forward(lp.reshape([2, 2]), lengths, rewards).loss
        }
        Loss::Nll => lp.sum().neg().div_scalar(17.5),
    }
}

fn grads(
    chunked: bool,
    vocab_major: bool,
    train_head: bool,
    reduction: LogProbReduction,
    loss: Loss,
    dtype: DType,
) -> Grads {
    let device = Default::default();
    let (ids, mask) = inputs();
    let ids = Tensor::<A, 2, Int>::from_inner(ids);
    let mask = Tensor::<A, 2>::from_inner(mask);
    let x = Tensor::<A, 3>::from_data(
        TensorData::new(
            (0..B * T * D)
                .map(|i| ((i * 7919) % 113) as f32 / 56.0 - 1.0)
                .collect(),
            [B, T, D],
        ),
        &device,
    );
    let below = Tensor::<A, 2>::from_data(
        TensorData::new(
            (0..D * D)
                .map(|i| ((i * 104_729) % 97) as f32 / 97.0 - 0.5)
                .collect(),
            [D, D],
        ),
        &device,
    )
    .require_grad();
    let shape = if vocab_major { [V, D] } else { [D, V] };
    let w = Tensor::<A, 2>::from_data(
        TensorData::new(
            (0..V * D)
                .map(|i| ((i * 7727) % 89) as f32 / 60.0 - 0.7)
                .collect(),
            shape,
        ),
        &device,
    );
    // The head is a parameter leaf in the computation dtype (a model's `lm_head` or embedding).
    let w = if dtype == DType::F32 {
        w
    } else {
        w.cast(FloatDType::from(dtype))
    };
    let w = if train_head { w.require_grad() } else { w };
    let cast = |t: Tensor<A, 3>| {
        if dtype == DType::F32 {
            t
        } else {
            t.cast(FloatDType::from(dtype))
        }
    };
    let hidden = cast(
        x.reshape([B * T, D])
            .matmul(below.clone())
            .reshape([B, T, D]),
    );
    let head = head(w.clone(), vocab_major);
    let out = if chunked {
        let c = ChunkedLogProbsConfig::new()
            .with_chunk_size(3)
            .init()
            .unwrap();
        c.sequence_loss(hidden, &head, ids, mask, reduction, |lp| {
            assert_eq!(lp.dtype(), DType::F32);
            (apply(loss, lp), ())
        })
        .0
    } else {
        let lp = full_sequence_logprobs(hidden, &head, ids, mask, reduction);
        let lp = if lp.dtype() == DType::F32 {
            lp
        } else {
            lp.cast(FloatDType::F32)
        };
        apply(loss, lp)
    };
    let g = out.backward();
    Grads {
        loss: out.into_scalar(),
        below: vals(below.grad(&g).unwrap()),
        head: w.grad(&g).map(vals),
    }
}

#[test]
fn training_gradients_equal_the_full_logits_path() {
    for vocab_major in [true, false] {
        for train_head in [true, false] {
            for reduction in [LogProbReduction::Sum, LogProbReduction::Mean] {
                for loss in [Loss::Dpo, Loss::Rrhf, Loss::Nll] {
                    let what = format!("{vocab_major} {train_head} {reduction:?} {loss:?}");
                    let full = grads(false, vocab_major, train_head, reduction, loss, DType::F32);
                    let got = grads(true, vocab_major, train_head, reduction, loss, DType::F32);
                    assert!(
                        (got.loss - full.loss).abs() <= 1e-6 * full.loss.abs().max(1.0),
                        "{what}: loss {} vs {}",
                        got.loss,
                        full.loss
                    );
                    let e = max_rel(&got.below, &full.below);
                    assert!(e < 2e-6, "{what}: below-H gradient error {e}");
                    assert!(full.below.iter().any(|&g| g != 0.0));
                    match (&got.head, &full.head) {
                        (Some(a), Some(b)) => {
                            let e = max_rel(a, b);
                            assert!(e < 2e-6, "{what}: head gradient error {e}");
                        }
                        (None, None) => assert!(!train_head),
                        _ => panic!("{what}: head gradient presence differs"),
                    }
                }
            }
        }
    }
}

#[test]
fn bf16_states_and_head_give_f32_logprobs_close_to_the_f32_path() {
    for train_head in [false, true] {
        let f32 = grads(
            true,
            true,
            train_head,
            LogProbReduction::Sum,
            Loss::Dpo,
            DType::F32,
        );
        let full = grads(
            false,
            true,
            train_head,
            LogProbReduction::Sum,
            Loss::Dpo,
            DType::BF16,
        );
        let got = grads(
            true,
            true,
            train_head,
            LogProbReduction::Sum,
            Loss::Dpo,
            DType::BF16,
        );
        // bf16 rounding of H and W (8 bits of mantissa): a few percent at most.
        assert!((got.loss - f32.loss).abs() < 0.05 * f32.loss.abs().max(1.0));
        assert!((got.loss - full.loss).abs() < 0.02 * full.loss.abs().max(1.0));
        assert!(max_rel(&got.below, &f32.below) < 0.1);
        if train_head {
            assert!(max_rel(got.head.as_ref().unwrap(), f32.head.as_ref().unwrap()) < 0.1);
        }
    }
}

/// Fewer than two positions: no next token to score. Values are empty sums (`[batch, 0]` per
/// token, zeros per sequence) and the loss gets the loss function's value at zero log-probs,
/// with no gradient into the model, where an `assert!` used to panic.
#[test]
fn fewer_than_two_positions_score_nothing_instead_of_panicking() {
    let device = Default::default();
    let c = ChunkedLogProbsConfig::new().init().unwrap();
    for t in [0, 1] {
        let ids = Tensor::<I, 2, Int>::zeros([2, t], &device);
        let mask = Tensor::<I, 2>::ones([2, t], &device);
        let w = Tensor::<I, 2>::ones([V, D], &device);
        let hidden = Tensor::<I, 3>::ones([2, t, D], &device);
        let tok = c.shifted_token_logprobs(
            hidden.clone(),
            &head(w.clone(), true),
            ids.clone(),
            mask.clone(),
        );
        assert_eq!(tok.dims(), [2, 0]);
        let lp = c.sequence_logprobs(
            hidden,
            &head(w, true),
            ids.clone(),
            mask.clone(),
            LogProbReduction::Mean,
        );
        assert_eq!(vals(lp), vec![0.0, 0.0]);

        let w = Tensor::<A, 2>::ones([V, D], &device).require_grad();
        let hidden = Tensor::<A, 3>::ones([2, t, D], &device).require_grad();
        let (loss, n) = c.sequence_loss(
            hidden,
            &head(w, true),
            Tensor::from_inner(ids),
            Tensor::from_inner(mask),
            LogProbReduction::Sum,
            |lp| {
                (
                    lp.clone().sub_scalar(1.0).powi_scalar(2).mean(),
                    lp.dims()[0],
                )
            },
        );
        assert_eq!((vals(loss), n), (vec![1.0], 2));
    }
}

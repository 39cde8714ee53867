//! Shared helpers of the integration tests: fixture paths and expected-value files.
#![allow(dead_code, clippy::print_stderr)]

use std::collections::HashMap;
use std::path::PathBuf;

use burn::backend::Flex;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor, TensorData};
use safetensors::{Dtype, SafeTensors};

pub type B = Flex;

pub fn fixture(name: &str) -> PathBuf {
    kiln_test_support::fixture("model").join(name)
}

/// A fresh, empty directory for test `name`.
pub fn tmp_dir(name: &str) -> PathBuf {
    kiln_test_support::scratch(&format!("kiln-model/{name}"))
}

/// Copies a fixture directory to a temp dir (for corrupting it).
pub fn copy_fixture(name: &str, to: &str) -> PathBuf {
    let d = tmp_dir(to);
    for e in std::fs::read_dir(fixture(name)).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), d.join(e.file_name())).unwrap();
    }
    d
}

pub struct Expected {
    pub f32s: HashMap<String, (Vec<usize>, Vec<f32>)>,
    pub i64s: HashMap<String, (Vec<usize>, Vec<i64>)>,
}

impl Expected {
    pub fn load(name: &str) -> Self {
        let bytes = std::fs::read(fixture(name).join("expected.safetensors")).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let mut f32s = HashMap::new();
        let mut i64s = HashMap::new();
        for (k, v) in st.tensors() {
            let shape = v.shape().to_vec();
            match v.dtype() {
                Dtype::F32 => {
                    let vals = v
                        .data()
                        .chunks_exact(4)
                        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                        .collect();
                    f32s.insert(k, (shape, vals));
                }
                Dtype::I64 => {
                    let vals = v
                        .data()
                        .chunks_exact(8)
                        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                        .collect();
                    i64s.insert(k, (shape, vals));
                }
                d => panic!("unexpected dtype {d:?}"),
            }
        }
        Self { f32s, i64s }
    }

    pub fn ints(&self, key: &str) -> Tensor<B, 2, Int> {
        let (shape, v) = &self.i64s[key];
        Tensor::from_data(
            TensorData::new(v.clone(), shape.clone()),
            &Default::default(),
        )
    }

    pub fn mask_vec(&self, case: &str) -> (Vec<usize>, Vec<i64>) {
        self.i64s[&format!("{case}.attention_mask")].clone()
    }

    pub fn floats(&self, key: &str) -> &(Vec<usize>, Vec<f32>) {
        &self.f32s[key]
    }
}

pub fn to_vec<const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec::<f32>().unwrap()
}

/// Max |a - b| over the rows/positions where `valid(row_index)` holds; `inner` values per row.
pub fn max_err_where(a: &[f32], b: &[f32], inner: usize, valid: impl Fn(usize) -> bool) -> f32 {
    assert_eq!(a.len(), b.len());
    let mut m = 0f32;
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        if valid(i / inner) {
            assert!(x.is_finite(), "non-finite value {x} at {i}");
            m = m.max((x - y).abs());
        }
    }
    m
}

/// `log p(ids[t+1] | ..t)` from logits, `[B, T-1]`, computed in the test (independent helper).
pub fn next_token_logprobs(logits: Tensor<B, 3>, ids: Tensor<B, 2, Int>) -> Tensor<B, 2> {
    let [b, t, _] = logits.dims();
    let lp = log_softmax(logits.narrow(1, 0, t - 1), 2);
    lp.gather(2, ids.narrow(1, 1, t - 1).reshape([b, t - 1, 1]))
        .reshape([b, t - 1])
}

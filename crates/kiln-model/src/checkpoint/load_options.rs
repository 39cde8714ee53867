//! [`LoadOptions`]: the dtype a checkpoint's weights are loaded in, and the backend check that
//! a half-precision request needs.

use burn::tensor::DType;
use burn::tensor::backend::Backend;

use crate::error::{Error, Result};

/// The dtype of the loaded weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LoadDtype {
    /// f32, whatever the checkpoint stores (f16/bf16 are widened exactly). The default, and what
    /// `from_pretrained` does.
    #[default]
    F32,
    /// IEEE half precision (f32 checkpoints are rounded to nearest).
    F16,
    /// bfloat16, what Llama-3 checkpoints ship in: a bf16 checkpoint is loaded bit for bit,
    /// without an f32 copy (f32 checkpoints are rounded to nearest).
    BF16,
    /// The dtype the checkpoint stores `model.embed_tokens.weight` in (f32, f16 or bf16); every
    /// other tensor is converted to it, so one model has one dtype.
    Checkpoint,
}

/// Options of `from_pretrained_with_options`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LoadOptions {
    /// The dtype of the weights (default [`LoadDtype::F32`]).
    pub dtype: LoadDtype,
    /// Load tensors holding NaN or infinities instead of failing with
    /// [`Error::NonFiniteWeight`] (default `false`; the environment variable
    /// [`crate::checkpoint::ALLOW_NON_FINITE_ENV`] does the same for every load, adapters
    /// included).
    pub allow_non_finite: bool,
}

impl LoadOptions {
    /// Options loading the weights as `dtype`.
    pub fn dtype(dtype: LoadDtype) -> Self {
        Self {
            dtype,
            ..Self::default()
        }
    }

    /// These options, loading non-finite weights instead of failing (to inspect a diverged
    /// checkpoint).
    pub fn allowing_non_finite(mut self) -> Self {
        self.allow_non_finite = true;
        self
    }
}

/// Fails with [`Error::UnsupportedBackendDtype`] unless `B` can store and compute in `dtype`
/// on `device` (`Backend::supports_dtype`: flex, cuda and tch support f16/bf16, ndarray does
/// not).
pub fn check_backend_dtype<B: Backend>(device: &B::Device, dtype: DType) -> Result<()> {
    if B::supports_dtype(device, dtype) {
        Ok(())
    } else {
        Err(Error::UnsupportedBackendDtype {
            dtype: format!("{dtype:?}"),
            backend: B::name(device),
        })
    }
}

//! [`read_f32`]: a tensor's values on the host as `f32`, the one read-back every crate uses.

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use crate::error::{Error, Result};

/// The values of `t` (row-major), converted to `f32` whatever the tensor's dtype; `what` names
/// them in the error (`"log-probs"`, `"scores"`, ...).
///
/// # Errors
/// [`Error::ReadBack`] when the backend cannot hand the data over as `f32`.
pub fn read_f32<B: Backend, const D: usize>(t: Tensor<B, D>, what: &str) -> Result<Vec<f32>> {
    t.into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .map_err(|e| Error::ReadBack {
            what: what.to_string(),
            message: format!("{e:?}"),
        })
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;
    use burn::tensor::{FloatDType, Tensor};

    #[test]
    fn reads_every_float_dtype_as_f32() {
        let t = Tensor::<Flex, 2>::from_floats([[1.5, -2.0], [0.25, 3.0]], &Default::default());
        assert_eq!(
            super::read_f32(t.clone(), "x").unwrap(),
            vec![1.5, -2.0, 0.25, 3.0]
        );
        let half = t.cast(FloatDType::BF16);
        assert_eq!(
            super::read_f32(half, "x").unwrap(),
            vec![1.5, -2.0, 0.25, 3.0]
        );
    }
}

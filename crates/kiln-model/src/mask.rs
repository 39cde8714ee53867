//! Position ids and attention masks derived from a `[batch, len]` 0/1 padding mask.

use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Int, Tensor, TensorData};

/// Position ids like HF builds them from an attention mask: `cumsum(mask) - 1`, clamped at 0 on
/// left padding. A left-padded row thus gets the same positions as the unpadded sequence.
///
/// # Shapes
/// - `mask`: `[batch, len]` (1 = token, 0 = padding) -> `[batch, len]`
pub fn positions_from_mask<B: Backend>(mask: Tensor<B, 2, Int>) -> Tensor<B, 2, Int> {
    mask.cumsum(1).sub_scalar(1).clamp_min(0)
}

/// Boolean "masked out" tensor for `queries` new tokens at the end of `mask.dims()[1]` keys.
///
/// Query `i` (absolute index `len - queries + i`) may see key `j` when `j <= i_abs` and key `j` is
/// not padding. A padding query always sees itself, so no row is fully masked (no NaN), and its
/// output is never seen by real tokens.
///
/// # Shapes
/// - `mask`: `[batch, len]` -> `[batch, 1, queries, len]` (`true` = masked out)
pub fn attention_mask<B: Backend>(mask: Tensor<B, 2, Int>, queries: usize) -> Tensor<B, 4, Bool> {
    let [b, len] = mask.dims();
    let device = mask.device();
    let past = len - queries;
    let mut future = Vec::with_capacity(queries * len);
    let mut not_diag = Vec::with_capacity(queries * len);
    for i in 0..queries {
        for j in 0..len {
            future.push(j > past + i);
            not_diag.push(j != past + i);
        }
    }
    let future = Tensor::<B, 2, Bool>::from_data(TensorData::new(future, [queries, len]), &device)
        .reshape([1, 1, queries, len])
        .expand([b, 1, queries, len]);
    let not_diag =
        Tensor::<B, 2, Bool>::from_data(TensorData::new(not_diag, [queries, len]), &device)
            .reshape([1, 1, queries, len])
            .expand([b, 1, queries, len]);
    let key_pad = mask
        .equal_elem(0)
        .reshape([b, 1, 1, len])
        .expand([b, 1, queries, len]);
    future.bool_or(key_pad.bool_and(not_diag))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    #[test]
    fn left_padding_positions_and_mask() {
        let device = Default::default();
        let m = Tensor::<Flex, 2, Int>::from_data([[0, 0, 1, 1], [1, 1, 1, 0]], &device);
        let pos = positions_from_mask(m.clone())
            .into_data()
            .convert::<i64>()
            .to_vec::<i64>()
            .unwrap();
        assert_eq!(pos, vec![0, 0, 0, 1, 0, 1, 2, 2]);
        let am = attention_mask(m.clone(), 4)
            .into_data()
            .to_vec::<bool>()
            .unwrap();
        // Row 0, query 3 (real): sees keys 2, 3 only.
        assert_eq!(&am[12..16], &[true, true, false, false]);
        // Row 0, query 0 (pad): sees only itself.
        assert_eq!(&am[0..4], &[false, true, true, true]);
        // Row 1, query 3 (right pad): sees keys 0..=2 and itself.
        assert_eq!(&am[16 + 12..32], &[false, false, false, false]);
        // Decoding one new query over 4 keys (3 cached): the last row of the full mask.
        let step = attention_mask(m, 1).into_data().to_vec::<bool>().unwrap();
        assert_eq!(&step[0..4], &[true, true, false, false]);
    }
}

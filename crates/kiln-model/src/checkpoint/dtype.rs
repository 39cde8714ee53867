//! Conversions between safetensors byte buffers (f32/f16/bf16, little-endian), f32 values and
//! burn tensor data of a chosen float dtype.

use burn::tensor::{DType, TensorData};
use half::{bf16, f16};
use safetensors::Dtype;

/// The burn dtype of a stored safetensors float dtype (`None` for non-float dtypes).
pub(crate) fn burn_dtype(dtype: Dtype) -> Option<DType> {
    match dtype {
        Dtype::F32 => Some(DType::F32),
        Dtype::F16 => Some(DType::F16),
        Dtype::BF16 => Some(DType::BF16),
        _ => None,
    }
}

/// `[rows, cols]` row-major values transposed to `[cols, rows]`.
fn transpose<T: Copy + Default>(src: &[T], rows: usize, cols: usize) -> Vec<T> {
    let mut out = vec![T::default(); src.len()];
    for (r, row) in src.chunks_exact(cols).enumerate() {
        for (c, &v) in row.iter().enumerate() {
            out[c * rows + r] = v;
        }
    }
    out
}

fn finish<T: Copy + Default + burn::tensor::Element>(
    values: Vec<T>,
    shape: &[usize],
    transposed: bool,
) -> TensorData {
    if transposed && shape.len() == 2 {
        let (rows, cols) = (shape[0], shape[1]);
        TensorData::new(transpose(&values, rows, cols), [cols, rows])
    } else {
        TensorData::new(values, shape.to_vec())
    }
}

/// Decodes `bytes` stored as `stored` into tensor data of dtype `target` (f32, f16 or bf16),
/// optionally transposing a `[rows, cols]` matrix. Same-dtype conversions copy the bits; others
/// go through f32 and round to nearest. `None` for unsupported dtypes.
pub(crate) fn decode_as(
    stored: Dtype,
    bytes: &[u8],
    shape: &[usize],
    target: DType,
    transposed: bool,
) -> Option<TensorData> {
    let halves = |b: &[u8]| -> Vec<[u8; 2]> { b.chunks_exact(2).map(|c| [c[0], c[1]]).collect() };
    match (stored, target) {
        (Dtype::BF16, DType::BF16) => {
            let v: Vec<bf16> = halves(bytes).into_iter().map(bf16::from_le_bytes).collect();
            Some(finish(v, shape, transposed))
        }
        (Dtype::F16, DType::F16) => {
            let v: Vec<f16> = halves(bytes).into_iter().map(f16::from_le_bytes).collect();
            Some(finish(v, shape, transposed))
        }
        (_, DType::F32) => Some(finish(decode_f32(stored, bytes)?, shape, transposed)),
        (_, DType::BF16) => {
            let v: Vec<bf16> = decode_f32(stored, bytes)?
                .into_iter()
                .map(bf16::from_f32)
                .collect();
            Some(finish(v, shape, transposed))
        }
        (_, DType::F16) => {
            let v: Vec<f16> = decode_f32(stored, bytes)?
                .into_iter()
                .map(f16::from_f32)
                .collect();
            Some(finish(v, shape, transposed))
        }
        _ => None,
    }
}

/// Decodes `bytes` of dtype `dtype` to f32; `None` for unsupported dtypes.
pub(crate) fn decode_f32(dtype: Dtype, bytes: &[u8]) -> Option<Vec<f32>> {
    match dtype {
        Dtype::F32 => Some(
            bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ),
        Dtype::F16 => Some(
            bytes
                .chunks_exact(2)
                .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
        ),
        Dtype::BF16 => Some(
            bytes
                .chunks_exact(2)
                .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
        ),
        _ => None,
    }
}

/// Index and value of the first NaN or infinity in `bytes` stored as `dtype` (f32, f16 or bf16,
/// little-endian), found from the exponent bits without decoding; `None` when all are finite
/// (or the dtype is not one of those).
pub(crate) fn first_non_finite(dtype: Dtype, bytes: &[u8]) -> Option<(usize, f32)> {
    match dtype {
        Dtype::F32 => bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .position(|b| b & 0x7f80_0000 == 0x7f80_0000)
            .map(|i| (i, decode_one(dtype, bytes, i))),
        Dtype::F16 | Dtype::BF16 => {
            let exponent = if dtype == Dtype::F16 { 0x7c00 } else { 0x7f80 };
            bytes
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .position(|b| b & exponent == exponent)
                .map(|i| (i, decode_one(dtype, bytes, i)))
        }
        _ => None,
    }
}

fn decode_one(dtype: Dtype, bytes: &[u8], i: usize) -> f32 {
    let size = if dtype == Dtype::F32 { 4 } else { 2 };
    decode_f32(dtype, &bytes[i * size..(i + 1) * size])
        .and_then(|v| v.first().copied())
        .unwrap_or(f32::NAN)
}

/// Encodes f32 values to little-endian bytes of `dtype` (F32, F16 or BF16; round to nearest).
pub(crate) fn encode(dtype: Dtype, values: &[f32]) -> Vec<u8> {
    match dtype {
        Dtype::F16 => values
            .iter()
            .flat_map(|&v| f16::from_f32(v).to_le_bytes())
            .collect(),
        Dtype::BF16 => values
            .iter()
            .flat_map(|&v| bf16::from_f32(v).to_le_bytes())
            .collect(),
        _ => values.iter().flat_map(|&v| v.to_le_bytes()).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_values_are_found_in_every_dtype() {
        for dt in [Dtype::F32, Dtype::F16, Dtype::BF16] {
            assert_eq!(first_non_finite(dt, &encode(dt, &[1.0, -2.0, 6e4])), None);
            for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                let (i, v) =
                    first_non_finite(dt, &encode(dt, &[1.0, 0.0, bad, f32::NAN])).expect("found");
                assert_eq!(i, 2, "{dt:?} {bad}");
                assert!(v.is_nan() == bad.is_nan() && (v.is_nan() || v == bad));
            }
        }
        // f16 overflows to inf when a large f32 is encoded: that is what the file then holds.
        assert!(first_non_finite(Dtype::F16, &encode(Dtype::F16, &[1e6])).is_some());
    }

    #[test]
    fn round_trips() {
        let v = [1.0f32, -2.5, 0.333_333_34, 1e-3];
        for dt in [Dtype::F32, Dtype::F16, Dtype::BF16] {
            let back = decode_f32(dt, &encode(dt, &v)).unwrap();
            let tol = match dt {
                Dtype::F32 => 0.0,
                Dtype::F16 => 1e-3,
                _ => 1e-2,
            };
            for (a, b) in v.iter().zip(&back) {
                assert!(
                    (a - b).abs() <= tol * a.abs().max(1.0),
                    "{dt:?}: {a} vs {b}"
                );
            }
        }
        assert!(decode_f32(Dtype::I64, &[0; 8]).is_none());
    }

    #[test]
    fn decodes_into_each_dtype_and_transposes() {
        let v = [1.0f32, -2.5, 0.375, 1e-3, 7.0, -0.125];
        for stored in [Dtype::F32, Dtype::F16, Dtype::BF16] {
            let bytes = encode(stored, &v);
            for target in [DType::F32, DType::F16, DType::BF16] {
                let d = decode_as(stored, &bytes, &[2, 3], target, true).unwrap();
                assert_eq!(d.dtype, target);
                assert_eq!(d.shape.to_vec(), vec![3, 2]);
                let got = d.convert::<f32>().to_vec::<f32>().unwrap();
                // Row-major [3, 2] of the transpose of [[1, -2.5, 0.375], [1e-3, 7, -0.125]].
                let want = [v[0], v[3], v[1], v[4], v[2], v[5]];
                for (a, b) in got.iter().zip(want) {
                    assert!(
                        (a - b).abs() <= 1e-2 * b.abs().max(1e-2),
                        "{stored:?}->{target:?}"
                    );
                }
            }
        }
        // Same-dtype decoding keeps the bits.
        let bytes = encode(Dtype::BF16, &v);
        let d = decode_as(Dtype::BF16, &bytes, &[6], DType::BF16, false).unwrap();
        assert_eq!(d.as_bytes(), bytes.as_slice());
        assert!(decode_as(Dtype::I64, &[0; 8], &[1], DType::F32, false).is_none());
    }
}

//! Conversions between safetensors byte buffers (f32/f16/bf16, little-endian) and f32 values.

use half::{bf16, f16};
use safetensors::Dtype;

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
}

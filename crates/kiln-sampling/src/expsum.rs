//! Softmax arithmetic over a vocabulary row: a branch-free `f32` exponential and lane-wise
//! reductions that the compiler vectorises.
//!
//! A sampling step exponentiates every logit of every row (`rows x vocab` values per step), which
//! with the C library's scalar `exp` in `f64` cost more than the model's attention. Here the
//! exponential is Cephes' `expf` polynomial (relative error below 2.5e-7 on the whole range, checked
//! against `f64::exp` in the tests), written without branches or calls, and sums are accumulated
//! in `f64` over 8 fixed lanes: vectorised, and deterministic (the summation order depends only on
//! the row length).

/// Number of independent accumulators of the reductions (their order is fixed).
const LANES: usize = 8;

/// Below this, `e^x` is under `f32`'s smallest normal number and is returned as exactly 0.
const EXP_MIN: f32 = -87.336_55;

/// `e^x` for `x <= 0` in `f32`, branch-free (vectorises in loops); `-inf` and anything below
/// -87.34 give exactly `0`, NaN gives NaN.
#[inline]
pub fn exp_nonpositive(x: f32) -> f32 {
    debug_assert!(x <= 0.0 || x.is_nan(), "exp_nonpositive({x})");
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split in a part exact in f32 times small integers and the remainder (Cephes).
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5 * 2^23: adding and subtracting it rounds to the nearest integer (no `round` call).
    const ROUND: f32 = 12_582_912.0;
    // Not `f32::max`, which would turn NaN into EXP_MIN.
    let xc = if x < EXP_MIN { EXP_MIN } else { x };
    let t = xc * LOG2E + ROUND;
    let n = t - ROUND;
    let r = xc - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let p = p * r * r + r + 1.0;
    // 2^n for n in [-126, 0], built in the exponent field. `n` is read from the low mantissa bits
    // of `t` (integer ops vectorise; a float-to-int `as` cast saturates and does not).
    let ni = (t.to_bits() as i32).wrapping_sub(0x4B40_0000);
    let scale = f32::from_bits((ni.wrapping_add(127) as u32) << 23);
    let y = p * scale;
    if x < EXP_MIN { 0.0 } else { y }
}

/// Largest value of `xs` (NaN entries ignored; `-inf` for an empty or all-NaN row).
pub fn max(xs: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let chunks = xs.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for (l, &x) in lanes.iter_mut().zip(c) {
            *l = l.max(x);
        }
    }
    let mut m = lanes.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for &x in tail {
        m = m.max(x);
    }
    m
}

/// `sum_i e^(xs[i] - shift)` in `f64`, for `shift >= max(xs)` (so every exponent is `<= 0`).
pub fn sum_exp(xs: &[f32], shift: f32) -> f64 {
    let mut lanes = [0.0f64; LANES];
    let chunks = xs.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for (l, &x) in lanes.iter_mut().zip(c) {
            *l += f64::from(exp_nonpositive(x - shift));
        }
    }
    let mut s: f64 = lanes.iter().sum();
    for &x in tail {
        s += f64::from(exp_nonpositive(x - shift));
    }
    s
}

/// Index of the first maximum (like `torch.argmax`), NaN ignored; 0 for an empty or all-NaN row.
pub fn argmax(xs: &[f32]) -> usize {
    first_index_of(xs, max(xs))
}

/// Index of the first entry equal to `m` (0 when none is).
fn first_index_of(xs: &[f32], m: f32) -> usize {
    xs.iter().position(|&x| x == m).unwrap_or(0)
}

/// `log(sum_i e^xs[i])`, stable (shifted by the maximum). `-inf` for an all-`-inf` row; NaN when
/// `+inf` or (only) NaN values are present.
pub fn log_sum_exp(xs: &[f32]) -> f64 {
    log_sum_exp_from(xs, max(xs))
}

/// [`argmax`] and `log_softmax(xs)` at that index, with the maximum found once (greedy decoding).
pub fn argmax_log_softmax(xs: &[f32]) -> (usize, f64) {
    let m = max(xs);
    let id = first_index_of(xs, m);
    (id, f64::from(xs[id]) - log_sum_exp_from(xs, m))
}

/// [`log_sum_exp`] given `m = max(xs)`.
fn log_sum_exp_from(xs: &[f32], m: f32) -> f64 {
    if m == f32::NEG_INFINITY {
        return f64::NEG_INFINITY;
    }
    if !m.is_finite() || xs.iter().any(|x| x.is_nan()) {
        return f64::NAN;
    }
    f64::from(m) + sum_exp(xs, m).ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_f64_to_a_few_ulps_over_the_whole_range() {
        let mut worst = 0.0f64;
        let mut x = 0.0f32;
        while x > -87.3 {
            let want = f64::from(x).exp();
            let got = f64::from(exp_nonpositive(x));
            worst = worst.max(((got - want) / want).abs());
            x -= 0.000_37;
        }
        assert!(worst < 2.5e-7, "worst relative error {worst:e}");
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert_eq!(exp_nonpositive(-0.0), 1.0);
        assert_eq!(exp_nonpositive(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_nonpositive(-100.0), 0.0);
        assert!(exp_nonpositive(f32::NAN).is_nan());
    }

    #[test]
    fn reductions_agree_with_plain_loops() {
        for n in [0usize, 1, 7, 8, 9, 100, 8193] {
            let xs: Vec<f32> = (0..n)
                .map(|i| ((i * 7919 % 1000) as f32) / 100.0 - 5.0)
                .collect();
            let m = xs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            assert_eq!(max(&xs), m);
            if n == 0 {
                assert_eq!(log_sum_exp(&xs), f64::NEG_INFINITY);
                continue;
            }
            let want = f64::from(m)
                + xs.iter()
                    .map(|&x| (f64::from(x) - f64::from(m)).exp())
                    .sum::<f64>()
                    .ln();
            assert!((log_sum_exp(&xs) - want).abs() < 1e-6 * want.abs().max(1.0));
        }
        assert_eq!(max(&[f32::NAN, 1.0, f32::NAN]), 1.0);
        assert_eq!(argmax(&[f32::NAN, 1.0, 3.0, f32::NAN, 3.0]), 2);
        assert_eq!(argmax(&[f32::NEG_INFINITY, f32::NEG_INFINITY]), 0);
        assert_eq!(argmax(&[f32::NAN]), 0);
        assert_eq!(argmax(&[]), 0);
        assert!(log_sum_exp(&[1.0, f32::NAN]).is_nan());
        assert!(log_sum_exp(&[1.0, f32::INFINITY]).is_nan());
        assert_eq!(log_sum_exp(&[f32::NEG_INFINITY; 3]), f64::NEG_INFINITY);
        let (id, lp) = argmax_log_softmax(&[1.0, 3.0, 3.0, f32::NAN]);
        assert_eq!(id, 1);
        assert!(lp.is_nan());
        let xs = [1.0, 3.0, 3.0, -2.0];
        let (id, lp) = argmax_log_softmax(&xs);
        assert_eq!((id, lp), (argmax(&xs), 3.0 - log_sum_exp(&xs)));
        // -inf entries contribute exactly nothing.
        assert_eq!(log_sum_exp(&[0.0, f32::NEG_INFINITY]), 0.0);
    }
}

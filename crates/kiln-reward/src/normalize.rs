//! Reward normalisation helpers: z-scores, min-max scaling, per-prompt centering and running
//! statistics (for scores from different reward models or iterations to be comparable).

/// `(x - mean) / (std + eps)` with the population standard deviation; empty input gives empty
/// output and a constant input gives zeros.
pub fn standardize(rewards: &[f32]) -> Vec<f32> {
    let mut s = RunningStats::default();
    s.extend(rewards);
    rewards.iter().map(|&r| s.normalize(r)).collect()
}

/// Scales to `[0, 1]` (a constant input gives zeros).
pub fn min_max(rewards: &[f32]) -> Vec<f32> {
    let lo = rewards.iter().copied().fold(f32::INFINITY, f32::min);
    let hi = rewards.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let span = hi - lo;
    rewards
        .iter()
        .map(|&r| if span > 0.0 { (r - lo) / span } else { 0.0 })
        .collect()
}

/// Subtracts the mean of the group (e.g. the K responses of one prompt).
pub fn center(rewards: &[f32]) -> Vec<f32> {
    if rewards.is_empty() {
        return Vec::new();
    }
    let mean = rewards.iter().map(|&r| r as f64).sum::<f64>() / rewards.len() as f64;
    rewards.iter().map(|&r| (r as f64 - mean) as f32).collect()
}

/// Streaming mean and variance (Welford), to normalise rewards with statistics gathered over
/// many batches.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RunningStats {
    count: u64,
    mean: f64,
    m2: f64,
}

impl RunningStats {
    /// Added to the standard deviation in [`Self::normalize`].
    pub const EPS: f64 = 1e-8;

    /// Adds one value (non-finite values are ignored).
    pub fn push(&mut self, x: f32) {
        if !x.is_finite() {
            return;
        }
        let x = x as f64;
        self.count += 1;
        let delta = x - self.mean;
        self.mean += delta / self.count as f64;
        self.m2 += delta * (x - self.mean);
    }

    /// Adds many values.
    pub fn extend(&mut self, xs: &[f32]) {
        xs.iter().for_each(|&x| self.push(x));
    }

    /// Number of values seen.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Mean (0 when empty).
    pub fn mean(&self) -> f64 {
        self.mean
    }

    /// Population standard deviation (0 when fewer than two values).
    pub fn std(&self) -> f64 {
        if self.count < 2 {
            0.0
        } else {
            (self.m2 / self.count as f64).sqrt()
        }
    }

    /// `(x - mean) / (std + eps)`.
    pub fn normalize(&self, x: f32) -> f32 {
        ((x as f64 - self.mean) / (self.std() + Self::EPS)) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        let z = standardize(&[1.0, 2.0, 3.0, 4.0]);
        let mean: f32 = z.iter().sum::<f32>() / 4.0;
        let var: f32 = z.iter().map(|x| x * x).sum::<f32>() / 4.0;
        assert!(mean.abs() < 1e-6 && (var - 1.0).abs() < 1e-5);
        assert_eq!(standardize(&[2.0, 2.0]), vec![0.0, 0.0]);
        assert_eq!(min_max(&[1.0, 3.0, 2.0]), vec![0.0, 1.0, 0.5]);
        assert_eq!(center(&[1.0, 3.0]), vec![-1.0, 1.0]);
        let mut s = RunningStats::default();
        s.extend(&[1.0, 2.0]);
        s.extend(&[3.0, 4.0, f32::NAN]);
        assert_eq!(s.count(), 4);
        assert!((s.mean() - 2.5).abs() < 1e-12);
        assert!((s.std() - 1.25f64.sqrt()).abs() < 1e-12);
    }
}

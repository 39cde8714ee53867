//! Drawing one token from a row of logits: processors, the final distribution, seeded draws.
//!
//! Sampling runs on the host (one `[rows, vocab]` download per step), identically on every
//! backend: the logit processors work in `f32` like Hugging Face's (penalty, temperature, top-k
//! threshold), exponentials use [`expsum::exp_nonpositive`] (vectorised `f32`, relative error
//! < 2.5e-7) and probabilities are normalised and accumulated in `f64`. Each row owns an RNG stream ([`row_rng`]) and
//! consumes exactly one uniform number per sampled token, so a response's tokens depend only on the
//! seed, its stream and its own logits, not on which other rows share the batch.
//!
//! The draw is inverse-CDF over the kept tokens in ascending id order. The returned log-prob is
//! the log-probability of the drawn token under the *final* sampling distribution (after penalty,
//! temperature, top-k, top-p, min-p). Greedy decoding has a point-mass distribution; it reports
//! instead the log-prob under the temperature-1 softmax of the (penalised) logits, which is the
//! informative number.

use std::borrow::Cow;

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use kiln_data::Rng;

use crate::config::SamplerConfig;
use crate::error::{Error, Result};
use crate::expsum;

/// A drawn token and its log-probability (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SampledToken {
    /// Token id.
    pub id: u32,
    /// Log-probability of `id` under the final sampling distribution.
    pub logprob: f32,
}

/// The RNG stream of response `sample` of prompt `stream`: independent of batch composition and
/// of the number of responses per prompt.
pub fn row_rng(seed: u64, stream: u64, sample: u64) -> Rng {
    Rng::derive(Rng::derive(seed, stream).next_u64(), sample)
}

/// The final distribution of one row, sparse: kept token ids (ascending) and their probabilities
/// (summing to 1).
#[derive(Debug, Clone, PartialEq)]
pub struct Candidates {
    /// Kept token ids, ascending.
    pub ids: Vec<u32>,
    /// Probability of each kept id.
    pub probs: Vec<f64>,
}

/// A validated sampler.
#[derive(Debug, Clone)]
pub struct Sampler {
    config: SamplerConfig,
}

impl Sampler {
    /// Validates `config`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for an out-of-range field.
    pub fn new(config: SamplerConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self { config })
    }

    /// The configuration.
    pub fn config(&self) -> &SamplerConfig {
        &self.config
    }

    /// Logits after the repetition penalty (`f32`, like HF's processors); borrowed when the
    /// penalty is off. `history` lists token ids already seen (duplicates allowed).
    fn penalised<'l>(&self, logits: &'l [f32], history: &[u32]) -> Cow<'l, [f32]> {
        let p = self.config.repetition_penalty;
        if p == 1.0 || history.is_empty() {
            return Cow::Borrowed(logits);
        }
        let p = p as f32;
        let mut s = logits.to_vec();
        let mut seen = vec![false; s.len()];
        for &id in history {
            let i = id as usize;
            if i < s.len() && !seen[i] {
                seen[i] = true;
                s[i] = if s[i] < 0.0 { s[i] * p } else { s[i] / p };
            }
        }
        Cow::Owned(s)
    }

    /// The final sampling distribution of one row (for sampling and for tests). Greedy configs
    /// give the point mass on the argmax.
    pub fn candidates(&self, logits: &[f32], history: &[u32]) -> Candidates {
        let s = self.penalised(logits, history);
        if self.config.is_greedy() {
            return Candidates {
                ids: vec![expsum::argmax(&s) as u32],
                probs: vec![1.0],
            };
        }
        let t = self.config.temperature as f32;
        let mut s = s.into_owned();
        if t != 1.0 {
            s.iter_mut().for_each(|x| *x /= t);
        }
        let mut kept: Vec<u32> = (0..s.len() as u32)
            .filter(|&i| s[i as usize] > f32::NEG_INFINITY && !s[i as usize].is_nan())
            .collect();
        if kept.is_empty() {
            // Every logit is -inf or NaN: fall back to the first token rather than panic.
            kept.push(0);
            s[0] = 0.0;
        }
        // Top-k: keep every token whose score reaches the k-th largest (ties kept, as HF does).
        if let Some(k) = self.config.top_k.filter(|&k| k > 0 && k < kept.len()) {
            let mut v: Vec<f32> = kept.iter().map(|&i| s[i as usize]).collect();
            let (_, kth, _) = v.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
            let kth = *kth;
            kept.retain(|&i| s[i as usize] >= kth);
        }
        // Probabilities of the kept tokens (unnormalised, max = 1).
        let max = kept
            .iter()
            .map(|&i| s[i as usize])
            .fold(f32::NEG_INFINITY, f32::max);
        let mut w: Vec<f64> = kept
            .iter()
            .map(|&i| f64::from(expsum::exp_nonpositive(s[i as usize] - max)))
            .collect();
        if self.config.top_p < 1.0 {
            let keep = nucleus(&w, self.config.top_p);
            let (k2, w2) = kept
                .iter()
                .zip(&w)
                .zip(&keep)
                .filter(|(_, k)| **k)
                .map(|((&i, &p), _)| (i, p))
                .unzip();
            kept = k2;
            w = w2;
        }
        if self.config.min_p > 0.0 {
            let wmax = w.iter().copied().fold(0.0, f64::max);
            let cut = self.config.min_p * wmax;
            let (k2, w2) = kept
                .iter()
                .zip(&w)
                .filter(|(_, p)| **p >= cut)
                .map(|(&i, &p)| (i, p))
                .unzip();
            kept = k2;
            w = w2;
        }
        let total: f64 = w.iter().sum();
        Candidates {
            ids: kept,
            probs: w.into_iter().map(|p| p / total).collect(),
        }
    }

    /// Dense final distribution over the whole vocabulary (zeros for removed tokens).
    pub fn distribution(&self, logits: &[f32], history: &[u32]) -> Vec<f64> {
        let c = self.candidates(logits, history);
        let mut d = vec![0.0; logits.len()];
        for (&i, &p) in c.ids.iter().zip(&c.probs) {
            d[i as usize] = p;
        }
        d
    }

    /// Draws one token from a row of logits. Greedy configs do not touch `rng`; other configs
    /// consume exactly one uniform number.
    pub fn sample_row(&self, logits: &[f32], history: &[u32], rng: &mut Rng) -> SampledToken {
        if self.config.is_greedy() {
            let s = self.penalised(logits, history);
            let (id, logprob) = expsum::argmax_log_softmax(&s);
            return SampledToken {
                id: id as u32,
                logprob: logprob as f32,
            };
        }
        let c = &self.config;
        if c.top_k.is_none_or(|k| k == 0) && c.top_p >= 1.0 && c.min_p <= 0.0 {
            // Temperature only: draw from the dense softmax without materialising it.
            let s = self.penalised(logits, history);
            let t = c.temperature as f32;
            let s = if t == 1.0 {
                s
            } else {
                Cow::Owned(s.iter().map(|x| x / t).collect())
            };
            if let Some(token) = draw_dense(&s, rng) {
                return token;
            }
        }
        let c = self.candidates(logits, history);
        let u = rng.next_f64();
        let mut acc = 0.0;
        let mut pick = c.ids.len() - 1;
        for (j, &p) in c.probs.iter().enumerate() {
            acc += p;
            if u < acc {
                pick = j;
                break;
            }
        }
        SampledToken {
            id: c.ids[pick],
            logprob: c.probs[pick].ln() as f32,
        }
    }

    /// Draws one token per row of a `[rows, vocab]` logits tensor. `rngs` holds one stream per
    /// row; `histories` is empty or holds the tokens seen by each row (for the repetition
    /// penalty).
    ///
    /// # Shapes
    /// - `logits`: `[rows, vocab]` -> `rows` sampled tokens
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when `rngs` or `histories` do not match the number of rows;
    /// [`Error::NonFiniteLogits`] (step 0) naming the first row that cannot be sampled from.
    pub fn sample<B: Backend>(
        &self,
        logits: Tensor<B, 2>,
        rngs: &mut [Rng],
        histories: &[Vec<u32>],
    ) -> Result<Vec<SampledToken>> {
        let [rows, vocab] = logits.dims();
        if rngs.len() != rows || !(histories.is_empty() || histories.len() == rows) {
            return Err(Error::InvalidInput(format!(
                "logits have {rows} rows but {} RNG streams and {} histories were given",
                rngs.len(),
                histories.len()
            )));
        }
        let host = logits_to_host(logits)?;
        for r in 0..rows {
            if let Some(what) = non_finite_logits(&host[r * vocab..(r + 1) * vocab]) {
                return Err(Error::NonFiniteLogits {
                    step: 0,
                    prompt: r,
                    sample: 0,
                    what,
                });
            }
        }
        Ok(rngs
            .iter_mut()
            .enumerate()
            .map(|(r, rng)| {
                let h = histories.get(r).map_or(&[][..], |h| &h[..]);
                self.sample_row(&host[r * vocab..(r + 1) * vocab], h, rng)
            })
            .collect())
    }
}

/// Why a row of logits cannot be sampled from: `Some("NaN")`, `Some("+inf")` or
/// `Some("all -inf")`; `None` when it is usable (some `-inf` entries, e.g. masked tokens, are fine).
pub fn non_finite_logits(row: &[f32]) -> Option<&'static str> {
    let mut max = f32::NEG_INFINITY;
    let mut nan = false;
    for &x in row {
        nan |= x.is_nan();
        max = max.max(x);
    }
    if nan {
        Some("NaN")
    } else if max == f32::INFINITY {
        Some("+inf")
    } else if max == f32::NEG_INFINITY {
        Some("all -inf")
    } else {
        None
    }
}

/// Downloads a float tensor as `f32` values (row-major).
pub(crate) fn logits_to_host<B: Backend, const D: usize>(t: Tensor<B, D>) -> Result<Vec<f32>> {
    Ok(kiln_model::read_f32(t, "logits")?)
}

/// Inverse-CDF draw (ascending ids, one uniform number) from `softmax(s)`, the same rule as
/// [`Sampler::candidates`] + the draw in [`Sampler::sample_row`] without filters. `None`, before
/// touching `rng`, when `s` has NaN or no finite maximum (the general path handles those).
fn draw_dense(s: &[f32], rng: &mut Rng) -> Option<SampledToken> {
    let max = expsum::max(s);
    if !max.is_finite() || s.iter().any(|x| x.is_nan()) {
        return None;
    }
    let total = expsum::sum_exp(s, max);
    let target = rng.next_f64() * total;
    let mut acc = 0.0;
    let mut pick = None;
    for (i, &x) in s.iter().enumerate() {
        let w = f64::from(expsum::exp_nonpositive(x - max));
        if w > 0.0 {
            acc += w;
            pick = Some(i);
            if target < acc {
                break;
            }
        }
    }
    // Rounding can leave `target` at or past the last partial sum: the last kept token then.
    // The maximum has weight 1, so `pick` is set; `?` keeps this function panic-free.
    let id = pick?;
    Some(SampledToken {
        id: id as u32,
        logprob: (f64::from(s[id] - max) - total.ln()) as f32,
    })
}

/// Which entries of the unnormalised probabilities `w` the nucleus keeps: walking tokens from
/// most to least likely (ties by position), a token is kept while the mass before it is below
/// `top_p` of the total (HF's rule; at least one token is kept). Only the head of the ranking is
/// sorted: candidates grow geometrically until they hold enough mass.
fn nucleus(w: &[f64], top_p: f64) -> Vec<bool> {
    let total: f64 = w.iter().sum();
    let target = top_p * total;
    let mut order: Vec<usize> = (0..w.len()).collect();
    let cmp = |a: &usize, b: &usize| w[*b].total_cmp(&w[*a]).then(a.cmp(b));
    let mut m = 64.min(order.len());
    loop {
        if m < order.len() {
            order.select_nth_unstable_by(m - 1, cmp);
        }
        let head_mass: f64 = order[..m].iter().map(|&i| w[i]).sum();
        if head_mass >= target || m == order.len() {
            break;
        }
        m = (m * 4).min(order.len());
    }
    order[..m].sort_unstable_by(cmp);
    let mut keep = vec![false; w.len()];
    let mut before = 0.0;
    for &i in &order[..m] {
        if before >= target {
            break;
        }
        keep[i] = true;
        before += w[i];
    }
    keep
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampler(c: SamplerConfig) -> Sampler {
        Sampler::new(c).unwrap()
    }

    #[test]
    fn nucleus_keeps_the_smallest_head_reaching_top_p() {
        let w = [0.1, 0.5, 0.2, 0.2];
        assert_eq!(nucleus(&w, 0.5), vec![false, true, false, false]);
        // 0.5 < 0.6: the next token (a tie 0.2/0.2 broken by position: index 2) is added.
        assert_eq!(nucleus(&w, 0.6), vec![false, true, true, false]);
        assert_eq!(nucleus(&w, 1.0), vec![true; 4]);
        // Large vector: the geometric head growth gives the same set as a full sort.
        let big: Vec<f64> = (0..1000)
            .map(|i| ((i * 37 % 1000) as f64).exp2() / 1e300)
            .collect();
        let keep = nucleus(&big, 0.999);
        assert!(keep.iter().filter(|&&k| k).count() >= 1);
    }

    #[test]
    fn filters_match_hand_computed_distributions() {
        let logits = [1.0f32, 3.0, 2.0, 0.0, 3.0];
        let z: f64 = logits.iter().map(|&x| (x as f64).exp()).sum();
        let p: Vec<f64> = logits.iter().map(|&x| (x as f64).exp() / z).collect();
        // top-k 2 keeps the two 3.0 logits.
        let d = sampler(SamplerConfig::new().with_top_k(Some(2))).distribution(&logits, &[]);
        assert_eq!(d, vec![0.0, 0.5, 0.0, 0.0, 0.5]);
        // top-k 3 keeps 3.0, 3.0, 2.0.
        let d = sampler(SamplerConfig::new().with_top_k(Some(3))).distribution(&logits, &[]);
        let s = p[1] + p[2] + p[4];
        assert!((d[2] - p[2] / s).abs() < 1e-6);
        // min-p 0.5: keep p >= 0.5 * p_max, i.e. logits >= 3 - ln 2.
        let d = sampler(SamplerConfig::new().with_min_p(0.5)).distribution(&logits, &[]);
        assert_eq!(d, vec![0.0, 0.5, 0.0, 0.0, 0.5]);
        // Temperature 2 flattens.
        let d = sampler(SamplerConfig::new().with_temperature(2.0)).distribution(&logits, &[]);
        let z2: f64 = logits.iter().map(|&x| (x as f64 / 2.0).exp()).sum();
        assert!((d[3] - (0.0f64).exp() / z2).abs() < 1e-6);
        // Repetition penalty 2 on token 1 (positive: halved) and 3 (zero: unchanged).
        let d = sampler(SamplerConfig::new().with_repetition_penalty(2.0))
            .distribution(&logits, &[1, 1, 3]);
        let l = [1.0f64, 1.5, 2.0, 0.0, 3.0];
        let z3: f64 = l.iter().map(|x| x.exp()).sum();
        assert!((d[1] - 1.5f64.exp() / z3).abs() < 1e-6);
    }

    #[test]
    fn greedy_picks_the_first_maximum_without_rng() {
        let s = sampler(SamplerConfig::greedy());
        let mut rng = Rng::new(1);
        let before = rng.clone();
        let t = s.sample_row(&[0.0, 2.0, 2.0, -1.0], &[], &mut rng);
        assert_eq!(t.id, 1);
        assert_eq!(rng, before);
        let z = 1.0 + 2.0 * 2f64.exp() + (-1f64).exp();
        assert!((t.logprob as f64 - (2.0 - z.ln())).abs() < 1e-6);
    }

    #[test]
    fn logprob_is_under_the_final_distribution() {
        let s = sampler(SamplerConfig::new().with_top_k(Some(2)).with_seed(3));
        let mut rng = row_rng(3, 0, 0);
        for _ in 0..20 {
            let t = s.sample_row(&[1.0, 3.0, 2.0, 0.0, 3.0], &[], &mut rng);
            assert!(t.id == 1 || t.id == 4);
            assert!((t.logprob - 0.5f32.ln()).abs() < 1e-6);
        }
    }
}

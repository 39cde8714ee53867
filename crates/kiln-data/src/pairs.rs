//! Pair selection (the annotate -> pairs step) and ranked / all-pairs output for RRHF.
//!
//! For each annotated prompt, a [`SelectionStrategy`] picks two responses; the pair is oriented by
//! **raw** reward (chosen = higher), a pair whose two rewards tie is dropped and counted, and
//! `margin = r_chosen - r_rejected > 0` is stored. Prompts with fewer than K responses, non-finite
//! rewards, or a reward count that differs from the response count are not silently skipped: they
//! are listed in [`SelectionStats`]. Randomness comes from [`Rng::derive`]`(seed, prompt_index)`, so
//! the output depends only on the seed and each record's position, not on batching.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::formats::{AnnotatedRecord, PairRecord, RankedRecord};
use crate::message::Content;
use crate::rng::Rng;
use crate::tokenizer::Tokenizer;

/// How response length is measured for the length penalty of [`SelectionStrategy::MaxMinP`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LengthUnit {
    /// Tokens of the response text (needs a tokenizer).
    Tokens,
    /// Unicode characters (what the reference code counts).
    Chars,
}

impl std::fmt::Display for LengthUnit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LengthUnit::Tokens => "tokens",
            LengthUnit::Chars => "chars",
        })
    }
}

impl LengthUnit {
    /// The length of `text` in this unit; `Tokens` needs the tokenizer.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for `Tokens` without a tokenizer; tokenisation errors.
    pub fn measure(self, text: &str, tokenizer: Option<&Tokenizer>) -> Result<usize> {
        match (self, tokenizer) {
            (LengthUnit::Chars, _) => Ok(text.chars().count()),
            (LengthUnit::Tokens, Some(tok)) => Ok(tok.encode(text)?.len()),
            (LengthUnit::Tokens, None) => Err(Error::InvalidConfig(
                "measuring length in tokens needs a tokenizer".into(),
            )),
        }
    }
}

impl std::str::FromStr for LengthUnit {
    type Err = Error;

    /// `tokens` or `chars`.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "tokens" => Ok(LengthUnit::Tokens),
            "chars" => Ok(LengthUnit::Chars),
            other => Err(Error::InvalidConfig(format!(
                "unknown length unit `{other}` (tokens, chars)"
            ))),
        }
    }
}

/// Which two responses of a prompt form the preference pair (`choose_type` in the reference code).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SelectionStrategy {
    /// Best vs worst reward (the reference loop's choice).
    #[default]
    MaxMin,
    /// Best vs a uniformly random other response.
    MaxRandom,
    /// Best vs second best.
    MaxMax,
    /// Two distinct uniformly random responses.
    Random,
    /// Best vs worst of the penalised scores `r_i - lambda * len_i`; still oriented by raw reward.
    MaxMinP {
        /// Penalty per unit of length.
        lambda: f64,
        /// Unit of length.
        unit: LengthUnit,
    },
}

impl SelectionStrategy {
    /// The reference code's name (`max_min`, `max_random`, `max_max`, `random`, `max_min_p`).
    pub fn name(&self) -> &'static str {
        match self {
            SelectionStrategy::MaxMin => "max_min",
            SelectionStrategy::MaxRandom => "max_random",
            SelectionStrategy::MaxMax => "max_max",
            SelectionStrategy::Random => "random",
            SelectionStrategy::MaxMinP { .. } => "max_min_p",
        }
    }
}

impl std::fmt::Display for SelectionStrategy {
    /// The command-line form [`FromStr`](std::str::FromStr) reads back: `max_min`, ...,
    /// `max_min_p:LAMBDA` (tokens) or `max_min_p:LAMBDA:chars`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SelectionStrategy::MaxMinP { lambda, unit } => match unit {
                LengthUnit::Tokens => write!(f, "max_min_p:{lambda}"),
                LengthUnit::Chars => write!(f, "max_min_p:{lambda}:chars"),
            },
            other => f.write_str(other.name()),
        }
    }
}

impl std::str::FromStr for SelectionStrategy {
    type Err = Error;

    /// `max_min | max_random | max_max | random | max_min_p:LAMBDA[:tokens|:chars]`.
    fn from_str(s: &str) -> Result<Self> {
        let mut parts = s.split(':');
        let name = parts.next().unwrap_or_default();
        let strategy = match name {
            "max_min" => SelectionStrategy::MaxMin,
            "max_random" => SelectionStrategy::MaxRandom,
            "max_max" => SelectionStrategy::MaxMax,
            "random" => SelectionStrategy::Random,
            "max_min_p" => {
                let lambda = parts.next().ok_or_else(|| {
                    Error::InvalidConfig(
                        "max_min_p needs a penalty per unit of length, e.g. max_min_p:0.05".into(),
                    )
                })?;
                let lambda: f64 = lambda.parse().map_err(|_| {
                    Error::InvalidConfig(format!("max_min_p: `{lambda}` is not a number"))
                })?;
                if !lambda.is_finite() || lambda < 0.0 {
                    return Err(Error::InvalidConfig(format!(
                        "max_min_p: the length penalty must be finite and >= 0, got {lambda}"
                    )));
                }
                let unit = match parts.next() {
                    Some(u) => u.parse()?,
                    None => LengthUnit::Tokens,
                };
                SelectionStrategy::MaxMinP { lambda, unit }
            }
            other => {
                return Err(Error::InvalidConfig(format!(
                    "unknown selection strategy `{other}` (max_min, max_random, max_max, random, \
                     max_min_p:LAMBDA[:tokens|:chars])"
                )));
            }
        };
        if let Some(extra) = parts.next() {
            return Err(Error::InvalidConfig(format!(
                "selection strategy `{s}`: unexpected `:{extra}`"
            )));
        }
        Ok(strategy)
    }
}

pub use crate::selection_config::SelectionConfig;

/// Why a prompt produced no pair.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum SkipReason {
    /// Fewer responses than required.
    TooFewResponses {
        /// Responses present.
        found: usize,
        /// Responses required.
        required: usize,
    },
    /// `rewards.len() != responses.len()`.
    LengthMismatch {
        /// Number of responses.
        responses: usize,
        /// Number of rewards.
        rewards: usize,
    },
    /// A reward is NaN or infinite.
    NonFiniteReward {
        /// Index of the first offending response.
        index: usize,
    },
    /// The two picked responses have the same reward.
    Tie {
        /// The tied reward.
        reward: f64,
    },
}

/// A prompt that produced no pair, by position in the input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SkippedPrompt {
    /// 0-based index of the record in the input.
    pub index: usize,
    /// Why.
    pub reason: SkipReason,
}

/// What pair selection did: counts, the mean rewards, and every skipped prompt.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SelectionStats {
    /// Records seen.
    pub prompts: usize,
    /// Pairs (or ranked records) emitted.
    pub emitted: usize,
    /// Prompts dropped because the picked rewards tied (for all-pairs: tied pairs dropped).
    pub ties_dropped: usize,
    /// Prompts with fewer than K responses.
    pub too_few_responses: usize,
    /// Prompts with a non-finite reward.
    pub non_finite_rewards: usize,
    /// Prompts whose reward count differs from the response count.
    pub length_mismatch: usize,
    /// Mean reward over all responses of valid prompts.
    pub mean_reward: f64,
    /// Mean over valid prompts of the best reward (best-of-K).
    pub mean_best_reward: f64,
    /// Every prompt that produced nothing, with the reason.
    pub skipped: Vec<SkippedPrompt>,
    #[serde(skip)]
    valid: usize,
    #[serde(skip)]
    reward_sum: f64,
    #[serde(skip)]
    reward_count: usize,
    #[serde(skip)]
    best_sum: f64,
}

impl SelectionStats {
    fn skip(&mut self, index: usize, reason: SkipReason) {
        match reason {
            SkipReason::TooFewResponses { .. } => self.too_few_responses += 1,
            SkipReason::LengthMismatch { .. } => self.length_mismatch += 1,
            SkipReason::NonFiniteReward { .. } => self.non_finite_rewards += 1,
            SkipReason::Tie { .. } => self.ties_dropped += 1,
        }
        tracing::debug!(index, ?reason, "prompt skipped in pair selection");
        self.skipped.push(SkippedPrompt { index, reason });
    }

    fn record_valid(&mut self, rewards: &[f64]) {
        self.valid += 1;
        self.reward_sum += rewards.iter().sum::<f64>();
        self.reward_count += rewards.len();
        self.best_sum += rewards.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        self.mean_reward = self.reward_sum / self.reward_count.max(1) as f64;
        self.mean_best_reward = self.best_sum / self.valid.max(1) as f64;
    }

    /// Prompts that passed validation (enough responses, finite rewards).
    pub fn valid_prompts(&self) -> usize {
        self.valid
    }
}

/// Checks one record; `Err` carries why it cannot be used.
pub fn validate(
    record: &AnnotatedRecord,
    min_responses: usize,
) -> std::result::Result<(), SkipReason> {
    let (n, m) = (record.responses.len(), record.rewards.len());
    if n != m {
        return Err(SkipReason::LengthMismatch {
            responses: n,
            rewards: m,
        });
    }
    let required = min_responses.max(2);
    if n < required {
        return Err(SkipReason::TooFewResponses { found: n, required });
    }
    if let Some(index) = record.rewards.iter().position(|r| !r.is_finite()) {
        return Err(SkipReason::NonFiniteReward { index });
    }
    Ok(())
}

fn argmax(v: &[f64]) -> usize {
    (0..v.len()).fold(0, |b, i| if v[i] > v[b] { i } else { b })
}

fn argmin(v: &[f64]) -> usize {
    (0..v.len()).fold(0, |b, i| if v[i] < v[b] { i } else { b })
}

/// Picks `(chosen, rejected)` response indices from finite `rewards` (at least 2).
///
/// `lengths` is used only by [`SelectionStrategy::MaxMinP`]. Returns `Err(reward)` when the two picked
/// responses tie on raw reward (the prompt is then dropped).
pub fn choose_pair(
    strategy: &SelectionStrategy,
    rewards: &[f64],
    lengths: &[usize],
    rng: &mut Rng,
) -> std::result::Result<(usize, usize), f64> {
    let n = rewards.len();
    let (a, b) = match *strategy {
        SelectionStrategy::MaxMin => (argmax(rewards), argmin(rewards)),
        SelectionStrategy::MaxRandom => {
            let best = argmax(rewards);
            let mut other = rng.index(n - 1);
            if other >= best {
                other += 1;
            }
            (best, other)
        }
        SelectionStrategy::MaxMax => {
            let mut order: Vec<usize> = (0..n).collect();
            order.sort_by(|&i, &j| rewards[j].total_cmp(&rewards[i]));
            (order[0], order[1])
        }
        SelectionStrategy::Random => {
            let i = rng.index(n);
            let mut j = rng.index(n - 1);
            if j >= i {
                j += 1;
            }
            (i, j)
        }
        SelectionStrategy::MaxMinP { lambda, .. } => {
            let scores: Vec<f64> = rewards
                .iter()
                .zip(lengths)
                .map(|(r, &l)| r - lambda * l as f64)
                .collect();
            (argmax(&scores), argmin(&scores))
        }
    };
    if rewards[a] > rewards[b] {
        Ok((a, b))
    } else if rewards[b] > rewards[a] {
        Ok((b, a))
    } else {
        Err(rewards[a])
    }
}

/// Streaming pair selector: feed records in order with [`PairSelector::select`], then read the stats.
#[derive(Debug)]
pub struct PairSelector<'a> {
    config: SelectionConfig,
    tokenizer: Option<&'a Tokenizer>,
    stats: SelectionStats,
}

impl<'a> PairSelector<'a> {
    /// Creates a selector. `tokenizer` is required by `MaxMinP { unit: Tokens, .. }`.
    pub fn new(config: SelectionConfig, tokenizer: Option<&'a Tokenizer>) -> Result<Self> {
        if let SelectionStrategy::MaxMinP { lambda, unit } = config.strategy {
            if !lambda.is_finite() {
                return Err(Error::InvalidConfig(format!(
                    "max_min_p lambda must be finite, got {lambda}"
                )));
            }
            if unit == LengthUnit::Tokens && tokenizer.is_none() {
                return Err(Error::InvalidConfig(
                    "max_min_p with unit = tokens needs a tokenizer".into(),
                ));
            }
        }
        Ok(PairSelector {
            config,
            tokenizer,
            stats: SelectionStats::default(),
        })
    }

    fn lengths(&self, record: &AnnotatedRecord) -> Result<Vec<usize>> {
        match self.config.strategy {
            SelectionStrategy::MaxMinP { unit, .. } => (record.responses.iter())
                .map(|r| unit.measure(r, self.tokenizer))
                .collect(),
            _ => Ok(Vec::new()),
        }
    }

    /// Selects the pair of record number `index` (0-based position in the input), or `None` when the
    /// prompt is skipped (the reason is recorded in the stats).
    pub fn select(&mut self, index: usize, record: &AnnotatedRecord) -> Result<Option<PairRecord>> {
        self.stats.prompts += 1;
        if let Err(reason) = validate(record, self.config.min_responses) {
            self.stats.skip(index, reason);
            return Ok(None);
        }
        self.stats.record_valid(&record.rewards);
        let lengths = self.lengths(record)?;
        let mut rng = Rng::derive(self.config.seed, index as u64);
        match choose_pair(&self.config.strategy, &record.rewards, &lengths, &mut rng) {
            Ok((c, r)) => {
                self.stats.emitted += 1;
                Ok(Some(PairRecord {
                    prompt: record.prompt.clone(),
                    chosen: Content::Text(record.responses[c].clone()),
                    rejected: Content::Text(record.responses[r].clone()),
                    margin: Some(record.rewards[c] - record.rewards[r]),
                }))
            }
            Err(reward) => {
                self.stats.skip(index, SkipReason::Tie { reward });
                Ok(None)
            }
        }
    }

    /// The statistics so far.
    pub fn stats(&self) -> &SelectionStats {
        &self.stats
    }

    /// Consumes the selector, returning the statistics.
    pub fn into_stats(self) -> SelectionStats {
        self.stats
    }
}

/// Selects one pair per record (see [`PairSelector`]).
pub fn select_pairs(
    records: &[AnnotatedRecord],
    config: SelectionConfig,
    tokenizer: Option<&Tokenizer>,
) -> Result<(Vec<PairRecord>, SelectionStats)> {
    let mut sel = PairSelector::new(config, tokenizer)?;
    let mut pairs = Vec::new();
    for (i, r) in records.iter().enumerate() {
        pairs.extend(sel.select(i, r)?);
    }
    Ok((pairs, sel.into_stats()))
}

/// Sorts each valid record's responses by reward, best first (stable for ties), for RRHF. A
/// record whose rewards all tie carries no ranking signal and is dropped (counted in
/// `ties_dropped`), like a tied pair.
pub fn rank_records(
    records: &[AnnotatedRecord],
    min_responses: usize,
) -> (Vec<RankedRecord>, SelectionStats) {
    let mut stats = SelectionStats::default();
    let mut out = Vec::new();
    for (i, r) in records.iter().enumerate() {
        stats.prompts += 1;
        if let Err(reason) = validate(r, min_responses) {
            stats.skip(i, reason);
            continue;
        }
        stats.record_valid(&r.rewards);
        if let Some(&first) = r.rewards.first()
            && r.rewards.iter().all(|&x| x == first)
        {
            stats.skip(i, SkipReason::Tie { reward: first });
            continue;
        }
        let mut order: Vec<usize> = (0..r.responses.len()).collect();
        order.sort_by(|&a, &b| r.rewards[b].total_cmp(&r.rewards[a]));
        out.push(RankedRecord {
            prompt: r.prompt.clone(),
            responses: order.iter().map(|&k| r.responses[k].clone()).collect(),
            rewards: order.iter().map(|&k| r.rewards[k]).collect(),
        });
        stats.emitted += 1;
    }
    (out, stats)
}

/// Every pair `(i, j)` with `r_i > r_j` of each valid record, oriented and with margins; tied pairs
/// are dropped and counted in `ties_dropped`.
pub fn all_pairs(
    records: &[AnnotatedRecord],
    min_responses: usize,
) -> (Vec<PairRecord>, SelectionStats) {
    let mut stats = SelectionStats::default();
    let mut out = Vec::new();
    for (i, r) in records.iter().enumerate() {
        stats.prompts += 1;
        if let Err(reason) = validate(r, min_responses) {
            stats.skip(i, reason);
            continue;
        }
        stats.record_valid(&r.rewards);
        let n = r.responses.len();
        for a in 0..n {
            for b in (a + 1)..n {
                let (c, j) = if r.rewards[a] > r.rewards[b] {
                    (a, b)
                } else if r.rewards[b] > r.rewards[a] {
                    (b, a)
                } else {
                    stats.ties_dropped += 1;
                    continue;
                };
                out.push(PairRecord {
                    prompt: r.prompt.clone(),
                    chosen: Content::Text(r.responses[c].clone()),
                    rejected: Content::Text(r.responses[j].clone()),
                    margin: Some(r.rewards[c] - r.rewards[j]),
                });
                stats.emitted += 1;
            }
        }
    }
    (out, stats)
}

/// Streams an annotated JSON Lines file through a [`PairSelector`] into a pairs file (written
/// atomically). Returns the statistics; malformed records abort with their file and line.
pub fn select_pairs_file(
    annotated: impl AsRef<std::path::Path>,
    pairs_out: impl AsRef<std::path::Path>,
    config: SelectionConfig,
    tokenizer: Option<&Tokenizer>,
) -> Result<SelectionStats> {
    let mut sel = PairSelector::new(config, tokenizer)?;
    let mut out = crate::jsonl::JsonlWriter::<PairRecord>::create(pairs_out)?;
    for (i, record) in crate::jsonl::JsonlReader::<AnnotatedRecord>::open(annotated)?.enumerate() {
        if let Some(pair) = sel.select(i, &record?)? {
            out.write(&pair)?;
        }
    }
    out.finish()?;
    let stats = sel.into_stats();
    tracing::info!(
        strategy = config.strategy.name(),
        prompts = stats.prompts,
        pairs = stats.emitted,
        ties = stats.ties_dropped,
        too_few = stats.too_few_responses,
        non_finite = stats.non_finite_rewards,
        mismatched = stats.length_mismatch,
        "pair selection done"
    );
    Ok(stats)
}

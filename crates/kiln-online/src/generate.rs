//! Sampling the policy: `K` responses per prompt under the chat template, as
//! [`GenerationRecord`]s for the annotate stage.

use burn::tensor::backend::Backend;
use kiln_data::{ChatEncoder, Content, GenerationRecord};
use kiln_model::CausalLm;
use kiln_sampling::{GenerationConfig, GenerationOutput, Generator, SamplerConfig};
use serde::{Deserialize, Serialize};

use std::sync::atomic::{AtomicUsize, Ordering};

use std::ops::Range;

use kiln_train::parallel::{Team, gather as gather_ranks, shard};

use crate::error::{Error, Result};
use crate::observer::Observer;

/// How responses are sampled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SamplingSettings {
    /// Responses per prompt `K`.
    pub k: usize,
    /// Sampling temperature.
    pub temperature: f64,
    /// Maximum new tokens per response.
    pub max_new_tokens: usize,
    /// Prompts decoded together in one batch.
    pub prompt_batch_size: usize,
    /// Batches decoded at a time (CPU: the cores; GPU backends: 1).
    pub concurrent_batches: usize,
    /// Peers the prompts are sharded over (contiguous shards, one thread each, results gathered
    /// in prompt order). Every prompt draws from its own RNG stream, so the records are the same
    /// bytes whatever the number of peers.
    #[serde(default = "one")]
    pub peers: usize,
}

fn one() -> usize {
    1
}

impl Default for SamplingSettings {
    fn default() -> Self {
        Self {
            k: 8,
            temperature: 1.0,
            max_new_tokens: 256,
            prompt_batch_size: 32,
            concurrent_batches: 1,
            peers: 1,
        }
    }
}

/// `settings.k` responses to every prompt, rendered with `enc`'s chat template and stopped at its
/// stop ids; prompt `i` draws from RNG stream `i` of `seed`, so results do not depend on
/// batching. `label` names the progress bar.
///
/// # Errors
/// Tokenisation and generation errors.
pub fn sample<B: Backend, M: CausalLm<B> + Sync>(
    policy: &M,
    enc: &ChatEncoder,
    prompts: &[Content],
    settings: &SamplingSettings,
    seed: u64,
    label: &str,
    observer: &dyn Observer,
) -> Result<GenerationOutput> {
    sample_range(
        policy,
        enc,
        prompts,
        0..prompts.len(),
        settings,
        seed,
        label,
        observer,
    )
}

/// [`sample`] for `prompts[range]` only, each prompt drawing from its stream in the whole list
/// (one process's shard of a multi-process run).
///
/// # Errors
/// As [`sample`].
#[allow(clippy::too_many_arguments)]
pub fn sample_range<B: Backend, M: CausalLm<B> + Sync>(
    policy: &M,
    enc: &ChatEncoder,
    prompts: &[Content],
    range: Range<usize>,
    settings: &SamplingSettings,
    seed: u64,
    label: &str,
    observer: &dyn Observer,
) -> Result<GenerationOutput> {
    let prompts = prompts.get(range.clone()).ok_or_else(|| {
        Error::InvalidConfig(format!(
            "prompt range {range:?} outside {} prompts",
            prompts.len()
        ))
    })?;
    let ids: Vec<Vec<u32>> = prompts
        .iter()
        .map(|p| enc.generation_prompt(p))
        .collect::<std::result::Result<_, _>>()?;
    let config = GenerationConfig::new()
        .with_sampler(
            SamplerConfig::new()
                .with_temperature(settings.temperature)
                .with_seed(seed),
        )
        .with_max_new_tokens(settings.max_new_tokens)
        .with_num_responses(settings.k)
        .with_stop_token_ids(enc.stop_ids())
        .with_pad_token_id(enc.pad_id)
        .with_prompt_batch_size(settings.prompt_batch_size)
        .with_concurrent_batches(settings.concurrent_batches);
    let generator = Generator::new(policy, config)?.with_tokenizer(&enc.tokenizer);
    let streams: Vec<u64> = range.map(|i| i as u64).collect();
    let bar = observer.bar(label, ids.len() * settings.k);
    let peers = settings.peers.clamp(1, ids.len().max(1));
    let finished: Vec<AtomicUsize> = (0..peers).map(|_| AtomicUsize::new(0)).collect();
    let run = |r: usize| {
        let range = shard(ids.len(), r, peers);
        generator.generate_with_progress(&ids[range.clone()], &streams[range], |p| {
            finished[r].store(p.finished_responses, Ordering::Relaxed);
            bar.message(format!("{} tokens", p.generated_tokens));
            bar.set(finished.iter().map(|f| f.load(Ordering::Relaxed)).sum());
        })
    };
    let parts: Vec<Result<GenerationOutput>> = if peers == 1 {
        vec![run(0).map_err(Into::into)]
    } else {
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..peers)
                .map(|r| {
                    let run = &run;
                    scope.spawn(move || run(r))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| match h.join() {
                    Ok(out) => out.map_err(Into::into),
                    Err(_) => Err(Error::InvalidConfig("a generation peer panicked".into())),
                })
                .collect()
        })
    };
    bar.finish();
    gather(parts)
}

/// The shards' outputs in prompt order, prompt indices made global, counters summed.
fn gather(parts: Vec<Result<GenerationOutput>>) -> Result<GenerationOutput> {
    let mut out = GenerationOutput::default();
    for part in parts {
        let part = part?;
        let offset = out.responses.len();
        for mut gens in part.responses {
            for g in &mut gens {
                g.prompt_index += offset;
            }
            out.responses.push(gens);
        }
        out.stats.merge(&part.stats);
    }
    Ok(out)
}

/// [`sample`] as the records the annotate stage reads (text and finish reason per response).
///
/// # Errors
/// As [`sample`].
pub fn generation_records<B: Backend, M: CausalLm<B> + Sync>(
    policy: &M,
    enc: &ChatEncoder,
    prompts: &[Content],
    settings: &SamplingSettings,
    seed: u64,
    observer: &dyn Observer,
) -> Result<Vec<GenerationRecord>> {
    sharded_generation_records(policy, enc, prompts, settings, seed, observer, None)
}

/// [`generation_records`] sharded across the processes of `team` (contiguous shards of the
/// prompts, gathered in prompt order through the shared directory); every rank gets every record,
/// the same bytes as one process would write.
///
/// # Errors
/// As [`sample`]; the gather's.
pub fn sharded_generation_records<B: Backend, M: CausalLm<B> + Sync>(
    policy: &M,
    enc: &ChatEncoder,
    prompts: &[Content],
    settings: &SamplingSettings,
    seed: u64,
    observer: &dyn Observer,
    team: Option<&dyn Team>,
) -> Result<Vec<GenerationRecord>> {
    let label = format!("generate K={}", settings.k);
    let range = team.map_or(0..prompts.len(), |t| {
        shard(prompts.len(), t.rank(), t.world())
    });
    let out = sample_range(
        policy,
        enc,
        prompts,
        range.clone(),
        settings,
        seed,
        &label,
        observer,
    )?;
    let part: Vec<GenerationRecord> = prompts[range]
        .iter()
        .zip(&out.responses)
        .map(|(p, rs)| GenerationRecord {
            prompt: p.clone(),
            responses: rs.iter().map(|g| g.text.clone()).collect(),
            finish_reasons: rs.iter().map(|g| g.finish_reason).collect(),
        })
        .collect();
    match team {
        Some(t) => Ok(gather_ranks(t, "generate", &part)?),
        None => Ok(part),
    }
}

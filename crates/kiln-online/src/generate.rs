//! Sampling the policy: `K` responses per prompt under the chat template, on every peer of a
//! [`Placement`] (whole prompts each; prompt `i` draws from RNG stream `i` of the seed, so the
//! result does not depend on the number of peers), as [`GenerationRecord`]s for the annotate
//! stage or as [`Generation`]s for evaluation.

use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};

use burn::tensor::backend::AutodiffBackend;
use kiln_data::{ChatEncoder, Content, GenerationRecord};
use kiln_model::CausalLm;
use kiln_sampling::{Generation, GenerationConfig, Generator};
use kiln_train::Placement;

use crate::error::Result;
use crate::observer::Observer;

/// `config` as the run samples with it: the sampler seeded with `seed`, stopped at the chat
/// template's stop ids (and any `config` lists), padded with the encoder's pad id.
pub fn generation_config(
    config: &GenerationConfig,
    enc: &ChatEncoder,
    seed: u64,
) -> GenerationConfig {
    let mut stop = enc.stop_ids();
    for id in &config.stop_token_ids {
        if !stop.contains(id) {
            stop.push(*id);
        }
    }
    config
        .clone()
        .with_sampler(config.sampler.clone().with_seed(seed))
        .with_stop_token_ids(stop)
        .with_pad_token_id(enc.pad_id)
}

/// The responses to `prompts` on this process's peers only (work one rank does alone, such as an
/// evaluation): `config.num_responses` per prompt, `label` naming the progress bar.
///
/// # Errors
/// Tokenisation and generation errors; a peer thread that panicked.
#[allow(clippy::too_many_arguments)]
pub fn sample<A, M>(
    placement: &Placement<A>,
    policy: &M,
    enc: &ChatEncoder,
    prompts: &[Content],
    config: &GenerationConfig,
    seed: u64,
    label: &str,
    observer: &dyn Observer,
) -> Result<Vec<Vec<Generation>>>
where
    A: AutodiffBackend,
    M: CausalLm<A::InnerBackend> + Sync,
{
    let run = Sampler::new(policy, enc, prompts, config, seed, label, observer)?;
    let out = placement.map_local_blocks("generation", prompts.len(), 1, |r| run.range(r));
    run.finish();
    out
}

/// The annotate stage's input: `config.num_responses` responses to every prompt, on every peer of
/// every process (contiguous shards of prompts, gathered in order), the same records as one peer
/// writes. Every rank must call it.
///
/// # Errors
/// As [`sample`]; the gather's.
pub fn generation_records<A, M>(
    placement: &Placement<A>,
    policy: &M,
    enc: &ChatEncoder,
    prompts: &[Content],
    config: &GenerationConfig,
    seed: u64,
    observer: &dyn Observer,
) -> Result<Vec<GenerationRecord>>
where
    A: AutodiffBackend,
    M: CausalLm<A::InnerBackend> + Sync,
{
    let label = format!("generate K={}", config.num_responses);
    let run = Sampler::new(policy, enc, prompts, config, seed, &label, observer)?;
    let out = placement.map_blocks("generate", prompts.len(), 1, |r| {
        let start = r.start;
        let gens = run.range(r)?;
        Ok(gens
            .iter()
            .enumerate()
            .map(|(i, rs)| GenerationRecord {
                prompt: prompts[start + i].clone(),
                responses: rs.iter().map(|g| g.text.clone()).collect(),
                finish_reasons: rs.iter().map(|g| g.finish_reason).collect(),
            })
            .collect::<Vec<_>>())
    });
    run.finish();
    out
}

/// One sampling job shared by the peer threads: the prompts' ids, the generator and the bar.
struct Sampler<'a, B: burn::tensor::backend::Backend> {
    ids: Vec<Vec<u32>>,
    generator: Generator<'a, B>,
    bar: std::sync::Arc<dyn crate::observer::ProgressBar>,
    finished: std::sync::Mutex<std::collections::BTreeMap<usize, usize>>,
    total_finished: AtomicUsize,
}

impl<'a, B: burn::tensor::backend::Backend> Sampler<'a, B> {
    fn new(
        policy: &'a (impl CausalLm<B> + Sync),
        enc: &'a ChatEncoder,
        prompts: &[Content],
        config: &GenerationConfig,
        seed: u64,
        label: &str,
        observer: &dyn Observer,
    ) -> Result<Self> {
        let ids: Vec<Vec<u32>> = prompts
            .iter()
            .map(|p| enc.generation_prompt(p))
            .collect::<std::result::Result<_, _>>()?;
        let generator = Generator::new(policy, generation_config(config, enc, seed))?
            .with_tokenizer(&enc.tokenizer);
        Ok(Sampler {
            bar: observer.bar(label, ids.len() * config.num_responses),
            ids,
            generator,
            finished: Default::default(),
            total_finished: AtomicUsize::new(0),
        })
    }

    /// The responses of prompts `r` (prompt `i` on RNG stream `i`).
    fn range(&self, r: Range<usize>) -> Result<Vec<Vec<Generation>>> {
        let streams: Vec<u64> = r.clone().map(|i| i as u64).collect();
        let key = r.start;
        let out = self
            .generator
            .generate_with_progress(&self.ids[r], &streams, |p| {
                if let Ok(mut f) = self.finished.lock() {
                    let before = f.insert(key, p.finished_responses).unwrap_or(0);
                    let delta = p.finished_responses.saturating_sub(before);
                    let all = self.total_finished.fetch_add(delta, Ordering::Relaxed) + delta;
                    self.bar.message(format!("{} tokens", p.generated_tokens));
                    self.bar.set(all);
                }
            })?;
        Ok(out.responses)
    }

    fn finish(&self) {
        self.bar.finish();
    }
}

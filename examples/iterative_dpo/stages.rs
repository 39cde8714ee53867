//! The loop's stages: evaluation, prompt drawing, generation, and DPO / RRHF training of one
//! iteration's policy, each built from Kiln's library parts.

use super::config::{Annotator, LoopConfig};
use super::eval::{EvalRecord, EvalSetup, evaluate};
use super::models::{Annotation, B, I, PolicyStore, Res, decode_concurrency};
use super::pipeline::{Ctx, Setup, stage_seed};
use super::progress::{Bar, Monitor, monitored};
use super::task::{self, GoldJudge};
use kiln::burn::module::AutodiffModule;
use kiln::burn::prelude::Backend;
use kiln::data::atomic::{read_json, write_json};
use kiln::data::{
    AnnotatedRecord, Content, GenerationRecord, PairRecord, PromptRecord, RankedRecord, Rng,
    read_jsonl, write_jsonl,
};
use kiln::losses::{DpoConfig, RrhfConfig};
use kiln::model::LlamaForCausalLM;
use kiln::sampling::{GenerationConfig, Generator, SamplerConfig};
use kiln::train::dpo::{DpoTrainConfig, precompute_reference_logps, train_dpo};
use kiln::train::rrhf::{RankedExamples, train_rrhf};
use kiln::train::{StageRunner, TrainConfig, TrainLoop};
use std::path::{Path, PathBuf};

/// The `<name>.json` evaluation stage of policy `dir` against `reference`.
#[allow(clippy::too_many_arguments)]
pub fn cached_eval(
    ctx: &Ctx,
    stages: &mut StageRunner,
    setup: &Setup,
    annotation: &Annotation,
    store: &PolicyStore,
    sft: Option<&EvalRecord>,
    name: &str,
    dir: &Path,
    reference: &Path,
) -> Res<EvalRecord> {
    let file = format!("{name}.json");
    stages.run(name, &[&file], |out| -> Res<()> {
        let policy = store.load(dir)?;
        let reference = store.load(reference)?;
        let setup = EvalSetup {
            prompts: &setup.eval_prompts,
            enc: &ctx.enc,
            annotator: annotation,
            judge: ctx.judge.as_ref(),
            sft,
            samples: ctx.cfg.eval_samples,
            max_new_tokens: ctx.cfg.max_new_tokens,
            seed: stage_seed(ctx.cfg.seed, 7),
        };
        let label = if name == "eval" {
            dir_label(dir)
        } else {
            name.into()
        };
        Ok(write_json(
            out.path(&file)?,
            &evaluate(&setup, &label, &policy, &reference)?,
        )?)
    })?;
    Ok(read_json(stages.path(&file))?)
}

fn dir_label(policy: &Path) -> String {
    policy
        .parent()
        .and_then(|p| p.file_name())
        .map_or("policy".into(), |n| n.to_string_lossy().into_owned())
}

/// Real models: the given directories, the prompt file's last `eval_prompts` prompts held out.
pub fn real_setup(cfg: &LoopConfig) -> Res<Setup> {
    let file = cfg.prompts.clone().expect("validated");
    let mut pool: Vec<Content> = read_jsonl::<PromptRecord>(&file)?
        .into_iter()
        .map(|p| p.prompt)
        .collect();
    if pool.len() <= cfg.eval_prompts {
        return Err(format!(
            "{}: {} prompts, but {} are held out for evaluation; provide more",
            file.display(),
            pool.len(),
            cfg.eval_prompts
        )
        .into());
    }
    let eval_prompts = pool.split_off(pool.len() - cfg.eval_prompts);
    let annotator = match cfg.annotator {
        Annotator::Bt => cfg.reward_model.clone(),
        Annotator::Pairwise => cfg.annotator_model.clone(),
    };
    Ok(Setup {
        sft: cfg.policy.clone().expect("validated"),
        annotator: annotator.expect("validated"),
        eval_prompts,
        pool,
    })
}

/// `prompts.jsonl`: `n` prompts for iteration `t` (0 = the offline baseline): drawn at random
/// from the built-in pool, or consecutive slices of a real prompt file (wrapping around).
pub fn prompts_stage(
    ctx: &Ctx,
    stages: &mut StageRunner,
    pool: &[Content],
    n: usize,
    t: usize,
) -> Res<Vec<Content>> {
    stages.run("prompts", &["prompts.jsonl"], |out| -> Res<()> {
        let picked: Vec<PromptRecord> = if ctx.judge.is_some() {
            let id = if t == 0 { 300 } else { 100 + t as u64 };
            let mut rng = Rng::new(stage_seed(ctx.cfg.seed, id));
            (0..n)
                .map(|_| PromptRecord {
                    prompt: task::pick(&mut rng, pool).clone(),
                })
                .collect()
        } else {
            (0..n)
                .map(|i| PromptRecord {
                    prompt: pool[((t.max(1) - 1) * n + i) % pool.len()].clone(),
                })
                .collect()
        };
        write_jsonl(out.path("prompts.jsonl")?, &picked)?;
        Ok(())
    })?;
    Ok(read_jsonl::<PromptRecord>(stages.path("prompts.jsonl"))?
        .into_iter()
        .map(|p| p.prompt)
        .collect())
}

/// K sampled responses for every prompt with the policy.
pub fn generate(
    ctx: &Ctx,
    policy: &LlamaForCausalLM<I>,
    prompts: &[Content],
    seed: u64,
) -> Res<Vec<GenerationRecord>> {
    let (cfg, enc) = (&ctx.cfg, &ctx.enc);
    let ids: Vec<Vec<u32>> = prompts
        .iter()
        .map(|p| enc.generation_prompt(p))
        .collect::<Result<_, _>>()?;
    let gc = GenerationConfig::new()
        .with_sampler(
            SamplerConfig::new()
                .with_temperature(cfg.temperature)
                .with_seed(seed),
        )
        .with_max_new_tokens(cfg.max_new_tokens)
        .with_num_responses(cfg.k)
        .with_stop_token_ids(enc.stop_ids())
        .with_pad_token_id(enc.pad_id)
        .with_prompt_batch_size(32)
        .with_concurrent_batches(decode_concurrency());
    let generator = Generator::new(policy, gc)?.with_tokenizer(&enc.tokenizer);
    let streams: Vec<u64> = (0..ids.len() as u64).collect();
    let bar = Bar::new(format!("generate K={}", cfg.k), ids.len() * cfg.k);
    let out = generator.generate_with(&ids, &streams, |p| {
        bar.message(format!("{} tokens", p.generated_tokens));
        bar.set(p.finished_responses);
    })?;
    bar.finish();
    Ok(prompts
        .iter()
        .zip(&out.responses)
        .map(|(p, rs)| GenerationRecord {
            prompt: p.clone(),
            responses: rs.iter().map(|g| g.text.clone()).collect(),
            finish_reasons: rs.iter().map(|g| g.finish_reason.to_string()).collect(),
        })
        .collect())
}

/// What the gold judge says about an iteration's data (the signal DPO really gets): the mean
/// response, the oracle best-of-K, the proxy's pick and how often the chosen side of a pair is
/// really better (pairs are scored as finished: pair files keep no finish reasons).
pub fn report_gold_agreement(
    judge: &GoldJudge,
    generations: &Path,
    annotated: &Path,
    pairs_file: &Path,
) -> Res<()> {
    let records: Vec<AnnotatedRecord> = read_jsonl(annotated)?;
    let gens: Vec<GenerationRecord> = read_jsonl(generations)?;
    let (mut mean, mut best, mut picked, mut n) = (0.0, 0.0, 0.0, 0usize);
    // Over every two responses of a prompt that the gold judge tells apart: how often the proxy
    // orders them the same way (what RRHF's ranking, which has no pair file, learns from).
    let (mut ordered, mut distinct) = (0usize, 0usize);
    for (r, g) in records.iter().zip(&gens) {
        let q = r.prompt.text();
        let gold: Vec<f64> = (r.responses.iter().enumerate())
            .map(|(i, x)| f64::from(judge.score(&q, x, !g.truncated(i))))
            .collect();
        for i in 0..gold.len() {
            for j in i + 1..gold.len() {
                if gold[i] != gold[j] {
                    distinct += 1;
                    ordered += usize::from((gold[i] > gold[j]) == (r.rewards[i] > r.rewards[j]));
                }
            }
        }
        let argmax = (0..gold.len()).max_by(|&a, &b| r.rewards[a].total_cmp(&r.rewards[b]));
        if let Some(i) = argmax {
            mean += gold.iter().sum::<f64>() / gold.len() as f64;
            best += gold.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            picked += gold[i];
            n += 1;
        }
    }
    let pairs: Vec<PairRecord> = read_jsonl::<PairRecord>(pairs_file).unwrap_or_default();
    let agree = pairs
        .iter()
        .filter(|p| {
            let q = p.prompt.text();
            judge.score(&q, &p.chosen.text(), true) > judge.score(&q, &p.rejected.text(), true)
        })
        .count();
    let n = n.max(1) as f64;
    let picks = if pairs.is_empty() {
        String::new()
    } else {
        format!(
            "; the gold judge agrees with {agree}/{} chosen-vs-rejected picks",
            pairs.len()
        )
    };
    eprintln!(
        "   gold: mean {:.3}, oracle best-of-K {:.3}, proxy's best {:.3}; the proxy orders {:.0} % of {distinct} gold-distinct response pairs as gold does{picks}",
        mean / n,
        best / n,
        picked / n,
        100.0 * ordered as f64 / distinct.max(1) as f64,
    );
    Ok(())
}

/// A training loop with a progress bar showing the loss and `metric`, writing every step to the
/// metrics log `metrics`.
fn train_loop(
    model: LlamaForCausalLM<B>,
    tc: TrainConfig,
    label: String,
    metric: &'static str,
    metrics: &Path,
) -> Res<(TrainLoop<B, LlamaForCausalLM<B>>, Monitor)> {
    monitored(model, tc, label, metrics, move |s| {
        let m = s.metric(metric).unwrap_or(f64::NAN);
        format!("loss {:.3} {metric} {m:.2}", s.loss)
    })
}

/// An iteration's training stage keeps its metrics file `name` beside its data file, in the
/// iteration's stage directory (e.g. `iter_1/dpo_metrics.jsonl`), written while it trains.
fn metrics_beside(data: &Path, name: &str) -> PathBuf {
    data.with_file_name(name)
}

/// DPO of the policy in `policy_dir` on `pairs_file` against `reference_dir`, `steps` optimiser
/// steps; every step is written to `dpo_metrics.jsonl` beside `pairs_file`.
pub fn train_dpo_stage(
    ctx: &Ctx,
    store: &PolicyStore,
    pairs_file: &Path,
    policy_dir: &Path,
    reference_dir: &Path,
    steps: usize,
    seed: u64,
) -> Res<LlamaForCausalLM<B>> {
    let (cfg, enc) = (&ctx.cfg, &ctx.enc);
    let records: Vec<PairRecord> = read_jsonl(pairs_file)?;
    let pairs = records
        .iter()
        .map(|r| enc.pair(r))
        .collect::<Result<Vec<_>, _>>()?;
    let dtc = DpoTrainConfig::new(
        DpoConfig::new().with_beta(cfg.beta).with_loss(cfg.loss),
        enc.pad_id,
    )
    .with_nll_weight(cfg.dpo_nll_weight);
    // Fresh LoRA adapters draw from the backend RNG: seed it per stage, so a resumed run draws
    // the same ones.
    B::seed(&Default::default(), seed);
    let policy = store.load_trainable(policy_dir)?;
    // The reference needs no second model when it is the policy's own start (reference =
    // previous policy) or, with LoRA, its base (pi_0 = the adapters disabled, as TRL does with
    // PEFT); otherwise it is loaded once for the precomputation.
    let ref_logps = {
        let same =
            |a: &Path, b: &Path| std::fs::canonicalize(a).ok() == std::fs::canonicalize(b).ok();
        let reference = if same(reference_dir, policy_dir) {
            policy.valid()
        } else if policy.has_adapters() && same(reference_dir, &store.base) {
            policy.valid().without_adapters()
        } else {
            store.load(reference_dir)?
        };
        precompute_reference_logps(&reference, &pairs, enc.pad_id, 64, dtc.reduction)?
    };
    let tc = TrainConfig::new(steps)
        .with_lr(cfg.lr)
        .with_warmup_steps(steps / 10)
        .with_micro_batch_size(cfg.dpo_batch_size)
        .with_seed(seed)
        .with_log_every(0);
    let label = format!("DPO ({} pairs)", pairs.len());
    let metrics = metrics_beside(pairs_file, "dpo_metrics.jsonl");
    let (mut train, monitor) = train_loop(policy, tc, label, "rewards/accuracies", &metrics)?;
    train_dpo(&mut train, &pairs, &ref_logps, &dtc, steps)?;
    monitor.finish()?;
    Ok(train.into_model()?)
}

/// RRHF of the policy in `policy_dir` on `ranked_file`, `steps` optimiser steps; every step is
/// written to `rrhf_metrics.jsonl` beside `ranked_file`.
pub fn train_rrhf_stage(
    ctx: &Ctx,
    store: &PolicyStore,
    ranked_file: &Path,
    policy_dir: &Path,
    steps: usize,
    seed: u64,
) -> Res<LlamaForCausalLM<B>> {
    let (cfg, enc) = (&ctx.cfg, &ctx.enc);
    let records: Vec<RankedRecord> = read_jsonl(ranked_file)?;
    let items = records
        .iter()
        .map(|r| -> Res<RankedExamples> {
            Ok(RankedExamples {
                responses: enc.ranked(r)?,
                rewards: r.rewards.iter().map(|&x| x as f32).collect(),
            })
        })
        .collect::<Res<Vec<_>>>()?;
    let rrhf = RrhfConfig::new()
        .with_length_alpha(cfg.rrhf_length_alpha)
        .with_rank_weight(cfg.rrhf_rank_weight);
    let tc = TrainConfig::new(steps)
        .with_lr(cfg.rrhf_lr)
        .with_warmup_steps(steps / 10)
        .with_micro_batch_size(cfg.rrhf_batch_size)
        .with_seed(seed)
        .with_log_every(0);
    let label = format!("RRHF ({} prompts x {})", items.len(), cfg.k);
    B::seed(&Default::default(), seed);
    let policy = store.load_trainable(policy_dir)?;
    let metrics = metrics_beside(ranked_file, "rrhf_metrics.jsonl");
    let (mut train, monitor) = train_loop(policy, tc, label, "rank_loss", &metrics)?;
    train_rrhf(&mut train, &items, &rrhf, enc.pad_id, steps)?;
    monitor.finish()?;
    Ok(train.into_model()?)
}

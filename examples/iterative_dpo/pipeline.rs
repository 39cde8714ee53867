//! The loop itself, assembled from Kiln's library parts. Every stage runs through a
//! `StageRunner`: skipped when its outputs exist, outputs renamed into place only when complete,
//! so a run killed anywhere resumes after the last finished stage. Every stage's randomness comes
//! from the run seed and the stage's identity, so a resumed run computes what an uninterrupted one
//! would.

use super::builtin;
use super::config::{Algorithm, Annotator, LoopConfig, Mode, Reference};
use super::eval::EvalRecord;
use super::models::{Annotation, B, PolicyStore, Res, load_bt, load_pairwise};
use super::progress::Bar;
use super::report::{Evaluation, Summary, reward_plot_svg};
use super::stages::{
    cached_eval, generate, prompts_stage, real_setup, report_gold_agreement, train_dpo_stage,
    train_rrhf_stage,
};
use super::task::GoldJudge;
use kiln::burn::prelude::Backend;
use kiln::data::atomic::{read_json, write_bytes, write_json};
use kiln::data::pairs::{rank_records, select_pairs_file};
use kiln::data::{
    ChatEncoder, Content, GenerationRecord, SelectionConfig, SelectionStats, TruncationConfig,
    read_jsonl, write_jsonl,
};
use kiln::reward::annotate::annotate_with;
use kiln::train::{StageHook, StageRunner};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Stage seeds: `seed ^ (id * golden)` keeps streams of different stages apart.
pub fn stage_seed(seed: u64, id: u64) -> u64 {
    seed ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// What the setup stages hand to the loop.
pub struct Setup {
    /// pi_0: the SFT policy (built-in task) or the given policy.
    pub sft: PathBuf,
    /// The annotator's directory (BT reward model or pairwise preference model).
    pub annotator: PathBuf,
    /// Held-out evaluation prompts.
    pub eval_prompts: Vec<Content>,
    /// Training prompts to draw each iteration's prompts from.
    pub pool: Vec<Content>,
}

/// The run's fixed context.
pub struct Ctx {
    /// The configuration.
    pub cfg: LoopConfig,
    /// Text to ids (tokenizer, template, truncation, pad).
    pub enc: ChatEncoder,
    /// The hidden judge (built-in task only).
    pub judge: Option<GoldJudge>,
}

/// Runs (or resumes) the whole loop; see [`run_with`].
pub fn run(cfg: &LoopConfig) -> Res<Summary> {
    run_with(cfg, None)
}

/// Runs (or resumes) the whole loop and returns the summary (also in `summary.json`). `hook` is
/// called at every stage boundary; an error it returns stops the run there (as a kill would).
pub fn run_with(cfg: &LoopConfig, hook: Option<StageHook>) -> Res<Summary> {
    let started = Instant::now();
    let mut root = StageRunner::open(&cfg.out)?.with_hook(hook);
    let config_path = root.path("config.json");
    if config_path.exists() {
        if &read_json::<LoopConfig>(&config_path)? != cfg {
            return Err(format!(
                "{} holds a run with a different configuration; use another --out (or delete it)",
                cfg.out.display()
            )
            .into());
        }
        eprintln!("resuming the run in {}", cfg.out.display());
    } else {
        write_json(&config_path, cfg)?;
    }
    let truncation = TruncationConfig {
        max_prompt_len: cfg.max_prompt_tokens,
        max_total_len: cfg.max_total_tokens,
    };
    let enc = match &cfg.policy {
        Some(dir) => {
            ChatEncoder::from_model_dir(dir, &cfg.chat_template, cfg.template_clock()?, truncation)?
        }
        None => ChatEncoder::builtin_tiny(truncation)?,
    };
    let ctx = Ctx {
        cfg: cfg.clone(),
        judge: (cfg.mode() != Mode::Real).then(GoldJudge::default),
        enc,
    };
    B::seed(&Default::default(), cfg.seed);
    let setup = match (cfg.mode(), &ctx.judge) {
        (Mode::Builtin, Some(judge)) => builtin::setup(&ctx, judge, &mut root)?,
        (Mode::BuiltinOnPolicy, Some(judge)) => builtin::setup_on_policy(&ctx, judge, &mut root)?,
        _ => real_setup(cfg)?,
    };
    let annotation = match cfg.annotator {
        Annotator::Bt => Annotation::Bt(load_bt(&setup.annotator, &ctx.enc)?),
        Annotator::Pairwise => Annotation::Pairwise(load_pairwise(&setup.annotator, &ctx.enc)?),
    };
    let store = PolicyStore::new(&setup.sft, cfg.lora())?;
    let eval = |stages: &mut StageRunner, name: &str, dir: &Path, reference: &Path, sft| {
        cached_eval(
            &ctx,
            stages,
            &setup,
            &annotation,
            &store,
            sft,
            name,
            dir,
            reference,
        )
    };
    let sft_eval: EvalRecord = eval(&mut root, "sft_eval", &setup.sft, &setup.sft, None)?;
    let mut summary = Summary {
        algorithm: format!("{:?}", cfg.algorithm).to_lowercase(),
        sft: sft_eval.evaluation,
        iterations: vec![Evaluation {
            seconds: root.total_seconds(),
            ..sft_eval.evaluation
        }],
        ..Summary::default()
    };
    let (mut previous, mut online_steps) = (setup.sft.clone(), 0);
    for t in 1..=cfg.iterations {
        eprintln!("== online iteration {t}/{}", cfg.iterations);
        let mut stages = root.child(&format!("iter_{t}"))?;
        let n = cfg.prompts_per_iteration;
        let prompts = prompts_stage(&ctx, &mut stages, &setup.pool, n, t)?;
        let reference = match cfg.reference {
            Reference::Sft => setup.sft.clone(),
            Reference::Previous => previous.clone(),
        };
        let seed = stage_seed(cfg.seed, 200 + t as u64);
        let (stats, steps) = iteration(
            &ctx,
            &mut stages,
            &prompts,
            &annotation,
            &store,
            &previous,
            &reference,
            None,
            seed,
        )?;
        online_steps += steps;
        let policy = stages.path("policy");
        let rec = eval(&mut stages, "eval", &policy, &reference, Some(&sft_eval))?;
        summary
            .iterations
            .push(row(rec.evaluation, t as i64, &stats, &stages));
        print_stage_times(&format!("iteration {t}"), &stages);
        previous = policy;
    }
    if cfg.offline {
        eprintln!("== offline baseline ({online_steps} steps, the online run's total)");
        let mut stages = root.child("offline")?;
        let n = cfg.prompts_per_iteration * cfg.iterations;
        let prompts = prompts_stage(&ctx, &mut stages, &setup.pool, n, 0)?;
        let seed = stage_seed(cfg.seed, 301);
        let (stats, _) = iteration(
            &ctx,
            &mut stages,
            &prompts,
            &annotation,
            &store,
            &setup.sft,
            &setup.sft,
            Some(online_steps),
            seed,
        )?;
        let policy = stages.path("policy");
        let rec = eval(&mut stages, "eval", &policy, &setup.sft, Some(&sft_eval))?;
        summary.offline_dpo = Some(row(rec.evaluation, -1, &stats, &stages));
        print_stage_times("offline baseline", &stages);
    }
    summary.total_seconds = started.elapsed().as_secs_f64();
    summary.nothing_trained = summary.online_trained_nothing();
    if summary.nothing_trained {
        tracing::warn!("no online iteration found a pair to train on: nothing was trained");
    }
    write_json(root.path("summary.json"), &summary)?;
    write_bytes(
        root.path("reward_plot.svg"),
        reward_plot_svg(&summary).as_bytes(),
    )?;
    Ok(summary)
}

fn row(
    mut e: Evaluation,
    iteration: i64,
    stats: &SelectionStats,
    stages: &StageRunner,
) -> Evaluation {
    e.iteration = iteration;
    e.pairs = stats.emitted;
    e.ties_dropped = stats.ties_dropped;
    e.seconds = stages.total_seconds();
    e
}

fn print_stage_times(what: &str, stages: &StageRunner) {
    let parts: Vec<String> = stages
        .timings()
        .iter()
        .map(|(k, v)| format!("{k} {v:.1}s"))
        .collect();
    eprintln!("   {what}: {}", parts.join(", "));
}

/// generate -> annotate -> pairs (DPO) or ranked lists (RRHF) -> train, for one iteration (or
/// the offline baseline, with a fixed number of steps). Returns the selection statistics and the
/// optimiser steps taken.
#[allow(clippy::too_many_arguments)]
fn iteration(
    ctx: &Ctx,
    stages: &mut StageRunner,
    prompts: &[Content],
    annotation: &Annotation,
    store: &PolicyStore,
    policy_dir: &Path,
    reference_dir: &Path,
    fixed_steps: Option<usize>,
    seed: u64,
) -> Res<(SelectionStats, usize)> {
    let cfg = &ctx.cfg;
    stages.run("generate", &["generations.jsonl"], |out| -> Res<()> {
        let records = generate(ctx, &store.load(policy_dir)?, prompts, seed)?;
        write_jsonl(out.path("generations.jsonl")?, &records)?;
        Ok(())
    })?;
    let (generations, annotated) = (
        stages.path("generations.jsonl"),
        stages.path("annotated.jsonl"),
    );
    stages.run("annotate", &["annotated.jsonl"], |out| -> Res<()> {
        let records: Vec<GenerationRecord> = read_jsonl(&generations)?;
        let rm = annotation.reward_model();
        let rows = rm.rows_per_prompt(cfg.k);
        let bar = Bar::new(format!("annotate ({rows} rows/prompt)"), records.len());
        let annotated = annotate_with(rm, &records, |done, _| bar.set(done))?;
        bar.finish();
        write_jsonl(out.path("annotated.jsonl")?, &annotated)?;
        Ok(())
    })?;
    let (data, stats_file) = match cfg.algorithm {
        Algorithm::Dpo => ("pairs.jsonl", "pairs_stats.json"),
        Algorithm::Rrhf => ("ranked.jsonl", "ranked_stats.json"),
    };
    stages.run("select", &[data, stats_file], |out| -> Res<()> {
        let stats = match cfg.algorithm {
            Algorithm::Dpo => {
                let sc = SelectionConfig {
                    strategy: cfg.choose,
                    min_responses: cfg.k,
                    seed,
                };
                select_pairs_file(&annotated, out.path(data)?, sc, Some(&ctx.enc.tokenizer))?
            }
            Algorithm::Rrhf => {
                let (ranked, stats) = rank_records(&read_jsonl(&annotated)?, cfg.k);
                write_jsonl(out.path(data)?, &ranked)?;
                stats
            }
        };
        Ok(write_json(out.path(stats_file)?, &stats)?)
    })?;
    let stats: SelectionStats = read_json(stages.path(stats_file))?;
    eprintln!(
        "   proxy reward: mean {:.3}, best-of-{} {:.3}; {} {}, {} ties dropped",
        stats.mean_reward,
        cfg.k,
        stats.mean_best_reward,
        stats.emitted,
        if cfg.algorithm == Algorithm::Dpo {
            "pairs"
        } else {
            "ranked prompts"
        },
        stats.ties_dropped
    );
    if let Some(judge) = &ctx.judge {
        report_gold_agreement(judge, &generations, &annotated, &stages.path(data))?;
    }
    let batch = match cfg.algorithm {
        Algorithm::Dpo => cfg.dpo_batch_size,
        Algorithm::Rrhf => cfg.rrhf_batch_size,
    };
    let steps = fixed_steps
        .unwrap_or_else(|| (stats.emitted * cfg.policy_epochs).div_ceil(batch))
        .max(usize::from(stats.emitted > 0));
    let data = stages.path(data);
    stages.run("train", &["policy"], |out| -> Res<()> {
        let dst = out.path("policy")?;
        if stats.emitted == 0 {
            eprintln!(
                "   no {} to train on (every prompt's rewards tied): the policy is carried over unchanged",
                if cfg.algorithm == Algorithm::Dpo { "pair" } else { "ranking" }
            );
            return PolicyStore::carry_over(policy_dir, dst);
        }
        let model = match cfg.algorithm {
            Algorithm::Dpo => {
                train_dpo_stage(ctx, store, &data, policy_dir, reference_dir, steps, seed)?
            }
            Algorithm::Rrhf => train_rrhf_stage(ctx, store, &data, policy_dir, steps, seed)?,
        };
        store.save(&model, dst)
    })?;
    let taken = if stats.emitted == 0 { 0 } else { steps };
    Ok((stats, taken))
}

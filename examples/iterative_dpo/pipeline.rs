//! The loop itself, assembled from Kiln's library parts. Every stage runs through a
//! `StageRunner`: skipped when its outputs exist, outputs renamed into place only when complete,
//! so a run killed anywhere resumes after the last finished stage. Every stage's randomness comes
//! from the run seed and the stage's identity, so a resumed run computes what an uninterrupted one
//! would.

use super::builtin;
use super::config::{AnnotatorKind, LoopConfig, Mode};
use super::models::{Annotation, B, Res, Store};
use super::progress::Console;
use super::report::{Evaluation, Summary, reward_plot_svg};
use super::shipped::{self, Manifest};
use super::stages::{cached_eval, prompts_stage, real_setup, report_gold_agreement};
use super::task::GoldJudge;
use kiln::burn::prelude::Backend;
use kiln::data::atomic::{read_json, write_bytes, write_json};
use kiln::data::{ChatEncoder, Content, SelectionStats, TruncationConfig};
use kiln::online::{EvalRecord, Iteration, IterationConfig, IterationOutcome};
use kiln::train::{Cluster, Launch, Placement, StageHook, StageRunner};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

pub use kiln::data::rng::stage_seed;

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
    /// Where training and sharded work run: `--devices` peers in this process (copies of the
    /// default device: on a CPU they share the cores), and the other processes of a torchrun
    /// launch.
    pub placement: Placement<B>,
}

/// `--setup-only`: trains the built-in task's SFT policy and proxy reward model into `cfg.out`
/// (resumable stages, as in a run) and writes `manifest.json` beside them.
pub fn setup_only(cfg: &LoopConfig) -> Res<Manifest> {
    if cfg.mode() != Mode::Builtin || cfg.annotator != AnnotatorKind::Bt {
        return Err(
            "--setup-only makes the built-in task's SFT policy and Bradley-Terry reward \
                    model: drop --policy, --reward-model and --annotator"
                .into(),
        );
    }
    let cfg = LoopConfig {
        train_setup: true,
        ..cfg.clone()
    };
    let devices = vec![Default::default(); cfg.devices.max(1)];
    let ctx = Ctx::new(cfg, Placement::devices(devices))?;
    let mut root = StageRunner::open(&ctx.cfg.out)?;
    write_json(root.path("config.json"), &ctx.cfg)?;
    B::seed(&Default::default(), ctx.cfg.seed);
    let judge = ctx
        .judge
        .as_ref()
        .ok_or("the built-in task has a gold judge")?;
    builtin::setup(&ctx, judge, &mut root)?;
    let manifest = shipped::manifest_of(&ctx.cfg.out, &ctx.cfg)?;
    write_json(root.path("manifest.json"), &manifest)?;
    Ok(manifest)
}

impl Ctx {
    /// The context of a run of `cfg` on `placement`: the encoder of the policy's checkpoint (its
    /// chat template, tokenizer and pad) or of the built-in task, and the gold judge outside real
    /// mode.
    pub fn new(cfg: LoopConfig, placement: Placement<B>) -> Res<Self> {
        let truncation = TruncationConfig {
            max_prompt_len: cfg.max_prompt_tokens,
            max_total_len: cfg.max_total_tokens,
        };
        let enc = match &cfg.policy {
            Some(dir) => ChatEncoder::from_model_dir(
                dir,
                &cfg.chat_template,
                cfg.template_clock()?,
                truncation,
            )?,
            None => ChatEncoder::builtin_tiny(truncation)?,
        };
        Ok(Ctx {
            judge: (cfg.mode() != Mode::Real).then(GoldJudge::default),
            enc,
            placement,
            cfg,
        })
    }
}

/// Runs (or resumes) the whole loop; see [`run_with`].
pub fn run(cfg: &LoopConfig) -> Res<Summary> {
    run_with(cfg, None)
}

/// Runs (or resumes) the whole loop and returns the summary (also in `summary.json`). `hook` is
/// called at every stage boundary; an error it returns stops the run there (as a kill would).
pub fn run_with(cfg: &LoopConfig, hook: Option<StageHook>) -> Res<Summary> {
    let started = Instant::now();
    let devices = vec![Default::default(); cfg.devices.max(1)];
    let cluster = match Launch::from_env()? {
        Some(launch) => {
            eprintln!(
                "rank {} of {}: joining through {} (peer timeout {:.0} s)",
                launch.rank,
                launch.world,
                launch.orchestrator_url(),
                launch.timeout.as_secs_f64()
            );
            Some(Arc::new(Cluster::join(launch, devices.clone(), &cfg.out)?))
        }
        None => None,
    };
    let placement = match &cluster {
        Some(c) => Placement::cluster(Arc::clone(c)),
        None => Placement::devices(devices),
    };
    let team = placement.team();
    let lead = team.as_ref().is_none_or(|t| t.rank() == 0);
    let mut root = StageRunner::open(&cfg.out)?
        .with_hook(hook)
        .with_team(team.clone());
    let config_path = root.path("config.json");
    let resumed = config_path.exists();
    if lead && !resumed {
        write_json(&config_path, cfg)?;
    }
    if let Some(team) = &team {
        team.barrier("config.json")?;
    }
    if resumed || !lead {
        if &read_json::<LoopConfig>(&config_path)? != cfg {
            return Err(format!(
                "{} holds a run with a different configuration; use another --out (or delete it)",
                cfg.out.display()
            )
            .into());
        }
        if resumed && lead {
            eprintln!("resuming the run in {}", cfg.out.display());
        }
    }
    let ctx = Ctx::new(cfg.clone(), placement)?;
    B::seed(&Default::default(), cfg.seed);
    let setup = match (cfg.mode(), &ctx.judge) {
        (Mode::Builtin, Some(judge)) => builtin::setup(&ctx, judge, &mut root)?,
        (Mode::BuiltinOnPolicy, Some(judge)) => builtin::setup_on_policy(&ctx, judge, &mut root)?,
        _ => real_setup(cfg)?,
    };
    let device = Default::default();
    let annotation = Annotation::load(cfg.annotator, &setup.annotator, &ctx.enc, &device)?;
    let store = Store::new(&setup.sft, cfg.lora(), device)?.with_placement(ctx.placement.clone());
    let icfg = cfg.iteration_config();
    let eval = |stages: &mut StageRunner, name: &str, dir: &Path, sft| {
        cached_eval(&ctx, stages, &setup, &annotation, &store, sft, name, dir)
    };
    let sft_eval: EvalRecord = eval(&mut root, "sft_eval", &setup.sft, None)?;
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
        let reference = cfg.reference.dir(&setup.sft, &previous).to_path_buf();
        let seed = stage_seed(cfg.seed, 200 + t as u64);
        let models = (&annotation, &store);
        let outcome = iteration(
            &ctx,
            &icfg,
            &mut stages,
            &prompts,
            models,
            (&previous, &reference),
            None,
            seed,
        )?;
        let stats = outcome.stats;
        online_steps += outcome.steps;
        let policy = stages.path("policy");
        let rec = eval(&mut stages, "eval", &policy, Some(&sft_eval))?;
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
        let models = (&annotation, &store);
        let dirs = (setup.sft.as_path(), setup.sft.as_path());
        let stats = iteration(
            &ctx,
            &icfg,
            &mut stages,
            &prompts,
            models,
            dirs,
            Some(online_steps),
            seed,
        )?
        .stats;
        let policy = stages.path("policy");
        let rec = eval(&mut stages, "eval", &policy, Some(&sft_eval))?;
        summary.offline_dpo = Some(row(rec.evaluation, -1, &stats, &stages));
        print_stage_times("offline baseline", &stages);
    }
    summary.total_seconds = started.elapsed().as_secs_f64();
    summary.peers = ctx.placement.peers();
    summary.processes = team.as_ref().map_or(1, |t| t.world());
    summary.nothing_trained = summary.online_trained_nothing();
    if summary.nothing_trained {
        tracing::warn!("no online iteration found a pair to train on: nothing was trained");
    }
    if lead {
        write_json(root.path("summary.json"), &summary)?;
        write_bytes(
            root.path("reward_plot.svg"),
            reward_plot_svg(&summary).as_bytes(),
        )?;
    }
    drop((store, ctx, root, team));
    if let Some(cluster) = cluster {
        Arc::try_unwrap(cluster)
            .map_err(|_| "the cluster is still in use at the end of the run")?
            .finish()?;
    }
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

/// One iteration (or the offline baseline, with a fixed step count) of the library's loop from
/// the policy in `policy_dir` against `reference_dir`, then the gold judge's report on its data
/// (built-in task).
#[allow(clippy::too_many_arguments)]
fn iteration(
    ctx: &Ctx,
    config: &IterationConfig,
    stages: &mut StageRunner,
    prompts: &[Content],
    (annotation, store): (&Annotation, &Store),
    (policy_dir, reference_dir): (&Path, &Path),
    fixed_steps: Option<usize>,
    seed: u64,
) -> Res<IterationOutcome> {
    let outcome = Iteration {
        config,
        enc: &ctx.enc,
        prompts,
        annotator: annotation.reward_model(),
        store,
        policy_dir,
        reference_dir,
        fixed_steps,
        seed,
        observer: &Console,
    }
    .run(stages)?;
    if let Some(judge) = &ctx.judge {
        report_gold_agreement(
            judge,
            &outcome.generations,
            &outcome.annotated,
            &outcome.data,
        )?;
    }
    Ok(outcome)
}

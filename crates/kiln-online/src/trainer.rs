//! [`OnlineTrainer`]: the whole online loop as one type. Give it pi_0's directory, a
//! [`RewardSource`], prompts and an [`OnlineConfig`]; [`OnlineTrainer::run`] does the rest:
//! evaluation of pi_0, `T` iterations of generate -> annotate -> select -> DPO or RRHF against
//! the chosen reference, an evaluation after each, an optional offline baseline, checkpoints,
//! resume after a kill, data parallelism over the devices and the processes of a torchrun
//! launch, and `summary.json` + `reward_plot.svg`.
//!
//! ```no_run
//! use kiln_online::{OnlineConfig, OnlineTrainer, RewardSource, read_prompts};
//! type B = burn::backend::Autodiff<burn::backend::Flex>;
//! # fn main() -> Result<(), kiln_online::Error> {
//! let prompts = read_prompts("prompts.jsonl")?;
//! let config = OnlineConfig::new().with_iterations(3);
//! let summary = OnlineTrainer::<B>::new("my-sft", RewardSource::bt("my-rm"), prompts, config)
//!     .run("runs/mine")?;
//! println!("{summary}");
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::tensor::backend::AutodiffBackend;
use kiln_data::atomic::{read_json, write_bytes, write_json};
use kiln_data::rng::stage_seed;
use kiln_data::{ChatEncoder, Content, SelectionStats};
use kiln_model::{LlamaForCausalLM, ModelType, Qwen2ForCausalLM, Qwen2ForSequenceClassification};
use kiln_reward::{Annotator, AnyAnnotator};
use kiln_sampling::SamplerConfig;
use serde_json::{Map, Value};

use crate::config::OnlineConfig;
use crate::error::{Error, Result};
use crate::evaluate::{EvalRecord, Evaluation, Evaluator};
use crate::iteration::Iteration;
use crate::judge::{Judge, agreement_note};
use crate::observer::{Logged, Observer};
use crate::policy::Policy;
use crate::prompts::prompts_stage;
use crate::reward::RewardSource;
use crate::session::Session;
use crate::stage::{StageHook, StageRunner};
use crate::store::PolicyStore;
use crate::summary::{Summary, reward_plot_svg};

/// The online loop as one type (see the module docs). `B` is the training backend
/// (`Autodiff<...>`); the architecture is read from the policy's `config.json` (`model_type`:
/// Llama or Qwen2), and the reward model's from its own.
pub struct OnlineTrainer<B: AutodiffBackend> {
    policy: PathBuf,
    reward: RewardSource,
    prompts: Vec<Content>,
    eval_prompts: Option<Vec<Content>>,
    config: OnlineConfig,
    judge: Option<Arc<dyn Judge>>,
    observer: Arc<dyn Observer>,
    encoder: Option<ChatEncoder>,
    devices: Vec<B::Device>,
    hook: Option<StageHook>,
    extra: Map<String, Value>,
}

impl<B: AutodiffBackend> std::fmt::Debug for OnlineTrainer<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnlineTrainer")
            .field("policy", &self.policy)
            .field("reward", &self.reward)
            .field("prompts", &self.prompts.len())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<B: AutodiffBackend> OnlineTrainer<B>
where
    Annotator<B::InnerBackend>: AnyAnnotator,
    Annotator<
        B::InnerBackend,
        Qwen2ForSequenceClassification<B::InnerBackend>,
        Qwen2ForCausalLM<B::InnerBackend>,
    >: AnyAnnotator,
{
    /// A trainer of the SFT policy in `policy` (a Hugging Face directory: checkpoint with its
    /// tokenizer and chat template, or PEFT adapters over one) with rewards from `reward`, on
    /// `prompts` (the last `config.eval_prompts` are held out for evaluation unless
    /// [`Self::with_eval_prompts`] gives others).
    pub fn new(
        policy: impl Into<PathBuf>,
        reward: RewardSource,
        prompts: Vec<Content>,
        config: OnlineConfig,
    ) -> Self {
        Self {
            policy: policy.into(),
            reward,
            prompts,
            eval_prompts: None,
            config,
            judge: None,
            observer: Arc::new(Logged::default()),
            encoder: None,
            devices: Vec::new(),
            hook: None,
            extra: Map::new(),
        }
    }

    /// Trains on `prompts` instead of those given to [`Self::new`].
    pub fn with_prompts(mut self, prompts: Vec<Content>) -> Self {
        self.prompts = prompts;
        self
    }

    /// Evaluates on `prompts` instead of holding out the end of the training prompts.
    pub fn with_eval_prompts(mut self, prompts: Vec<Content>) -> Self {
        self.eval_prompts = Some(prompts);
        self
    }

    /// A programmatic gold judge: evaluation then reports gold reward, win rate against SFT and
    /// their bootstrap intervals, and each iteration notes how its data agrees with the judge.
    pub fn with_judge(mut self, judge: impl Judge + 'static) -> Self {
        self.judge = Some(Arc::new(judge));
        self
    }

    /// Who shows progress (default: [`Logged`], lines through `tracing`).
    pub fn with_observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observer = observer;
        self
    }

    /// Text to ids for a policy directory without a tokenizer of its own (default: the policy's
    /// `tokenizer.json` and chat template, with the config's truncation).
    pub fn with_encoder(mut self, encoder: ChatEncoder) -> Self {
        self.encoder = Some(encoder);
        self
    }

    /// One peer per device (on a CPU, repeat its device: the peers share the cores); training is
    /// data-parallel over them and generation, annotation and reference log-probs are sharded.
    /// Default: the default device.
    pub fn with_devices(mut self, devices: Vec<B::Device>) -> Self {
        self.devices = devices;
        self
    }

    /// Calls `hook` at every stage boundary; an error it returns stops the run there, as a kill
    /// would (cancellation; fault injection in tests).
    pub fn with_hook(mut self, hook: StageHook) -> Self {
        self.hook = Some(hook);
        self
    }

    /// Settings of the caller's own (a task's options), recorded in `config.json` beside the
    /// loop's and checked on resume like them.
    pub fn with_extra_settings(mut self, extra: Map<String, Value>) -> Self {
        self.extra = extra;
        self
    }

    /// The configuration.
    pub fn config(&self) -> &OnlineConfig {
        &self.config
    }

    /// What `config.json` holds: the [`OnlineConfig`]'s keys, `policy_dir` and `reward_source`
    /// (the run's inputs), and the extra settings.
    pub fn settings(&self) -> Value {
        let mut all = match serde_json::to_value(&self.config) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        };
        all.insert(
            "policy_dir".into(),
            Value::String(self.policy.display().to_string()),
        );
        all.insert(
            "reward_source".into(),
            serde_json::to_value(&self.reward).unwrap_or(Value::Null),
        );
        for (k, v) in &self.extra {
            all.insert(k.clone(), v.clone());
        }
        Value::Object(all)
    }

    /// Runs (or resumes) the loop in `out` and returns the summary (also in `summary.json`):
    /// opens a [`Session`] (joining a torchrun launch when the environment describes one),
    /// [`Self::run_in`] it, and leaves it.
    ///
    /// # Errors
    /// Any stage's, naming the file, stage or setting; a run directory holding other settings.
    pub fn run(&self, out: impl AsRef<Path>) -> Result<Summary> {
        let mut session = Session::open(out, self.devices.clone())?.with_hook(self.hook.clone());
        let summary = self.run_in(&mut session)?;
        session.finish()?;
        Ok(summary)
    }

    /// Runs (or resumes) the loop in an open session, after the caller's own stages there (a
    /// task's SFT and reward model, say); the session's devices and hook are used.
    ///
    /// # Errors
    /// As [`Self::run`].
    pub fn run_in(&self, session: &mut Session<B>) -> Result<Summary> {
        self.config.validate()?;
        session.pin_settings(&self.settings(), self.observer.as_ref())?;
        let enc = match &self.encoder {
            Some(e) => e.clone(),
            None => ChatEncoder::from_model_dir(
                &self.policy,
                &self.config.chat_template,
                self.config.template_clock(),
                self.config.truncation,
            )?,
        };
        let (pool, eval) = self.split_prompts()?;
        let ctx = Ctx {
            enc: &enc,
            pool: &pool,
            eval: &eval,
        };
        match ModelType::of_dir(&self.policy)? {
            ModelType::Llama => self.run_typed::<LlamaForCausalLM<B>>(session, &ctx),
            ModelType::Qwen2 => self.run_typed::<Qwen2ForCausalLM<B>>(session, &ctx),
        }
    }

    /// The training pool and the evaluation prompts.
    fn split_prompts(&self) -> Result<(Vec<Content>, Vec<Content>)> {
        if let Some(eval) = &self.eval_prompts {
            return Ok((self.prompts.clone(), eval.clone()));
        }
        let held = self.config.eval_prompts;
        if self.prompts.len() <= held {
            return Err(Error::InvalidConfig(format!(
                "{} prompts, but eval_prompts = {held} are held out for evaluation: give more \
                 prompts, fewer eval_prompts, or evaluation prompts of their own",
                self.prompts.len()
            )));
        }
        let mut pool = self.prompts.clone();
        let eval = pool.split_off(pool.len() - held);
        Ok((pool, eval))
    }

    fn run_typed<P: Policy<B>>(&self, session: &mut Session<B>, ctx: &Ctx<'_>) -> Result<Summary> {
        let cfg = &self.config;
        let obs = self.observer.as_ref();
        let device = session
            .placement()
            .local_devices()
            .first()
            .cloned()
            .unwrap_or_default();
        let annotator = self.reward.load::<B::InnerBackend>(ctx.enc, &device)?;
        let store = PolicyStore::<B, P>::new(&self.policy, cfg.lora.clone(), device)?
            .with_placement(session.placement().clone());
        let run = Run {
            trainer: self,
            ctx,
            annotator: annotator.as_ref(),
            store: &store,
        };
        let root = session.stages();
        let sft_eval = run.evaluate(root, "sft_eval", &store.base, None)?;
        let mut summary = Summary {
            algorithm: cfg.algorithm,
            sft: Evaluation {
                seconds: root.total_seconds(),
                ..sft_eval.evaluation
            },
            ..Summary::default()
        };
        let n = cfg
            .prompts_per_iteration
            .unwrap_or(ctx.pool.len() / cfg.iterations)
            .max(1);
        let (mut previous, mut online_steps) = (store.base.clone(), 0);
        for t in 1..=cfg.iterations {
            obs.note(&format!("== online iteration {t}/{}", cfg.iterations));
            let mut stages = root.child(&format!("iter_{t}"))?;
            let prompts = prompts_stage(&mut stages, ctx.pool, n, t, cfg.prompt_order, cfg.seed)?;
            let reference = cfg.reference.dir(&store.base, &previous).to_path_buf();
            let seed = stage_seed(cfg.seed, 200 + t as u64);
            let dirs = (previous.as_path(), reference.as_path());
            let (stats, steps) = run.iteration(&mut stages, &prompts, dirs, None, seed)?;
            online_steps += steps;
            let policy = stages.path("policy");
            let rec = run.evaluate(&mut stages, "eval", &policy, Some(&sft_eval))?;
            summary.online.push(row(rec.evaluation, &stats, &stages));
            note_times(obs, &format!("iteration {t}"), &stages);
            previous = policy;
        }
        if cfg.offline {
            obs.note(&format!(
                "== offline baseline ({online_steps} steps, the online run's total)"
            ));
            let mut stages = root.child("offline")?;
            let all = n * cfg.iterations;
            let prompts = prompts_stage(&mut stages, ctx.pool, all, 0, cfg.prompt_order, cfg.seed)?;
            let seed = stage_seed(cfg.seed, 301);
            let dirs = (store.base.as_path(), store.base.as_path());
            let (stats, _) =
                run.iteration(&mut stages, &prompts, dirs, Some(online_steps), seed)?;
            let policy = stages.path("policy");
            let rec = run.evaluate(&mut stages, "eval", &policy, Some(&sft_eval))?;
            summary.offline = Some(row(rec.evaluation, &stats, &stages));
            note_times(obs, "offline baseline", &stages);
        }
        summary.total_seconds = session.elapsed();
        summary.peers = session.placement().peers();
        summary.processes = session.team().map_or(1, |t| t.world());
        summary.nothing_trained = summary.online_trained_nothing();
        if summary.nothing_trained {
            tracing::warn!("no online iteration found a pair to train on: nothing was trained");
        }
        if session.is_lead() {
            write_json(session.path("summary.json"), &summary)?;
            write_bytes(
                session.path("reward_plot.svg"),
                reward_plot_svg(&summary).as_bytes(),
            )?;
        }
        Ok(summary)
    }
}

/// What every stage of a run reads.
struct Ctx<'a> {
    enc: &'a ChatEncoder,
    pool: &'a [Content],
    eval: &'a [Content],
}

/// One run's loaded parts.
struct Run<'a, B: AutodiffBackend, P: Policy<B>> {
    trainer: &'a OnlineTrainer<B>,
    ctx: &'a Ctx<'a>,
    annotator: &'a dyn AnyAnnotator,
    store: &'a PolicyStore<B, P>,
}

impl<B: AutodiffBackend, P: Policy<B>> Run<'_, B, P> {
    /// One iteration (or the offline baseline, with a fixed step count) from the policy in
    /// `policy_dir` against `reference_dir`, then the judge's note on its data.
    fn iteration(
        &self,
        stages: &mut StageRunner,
        prompts: &[Content],
        (policy_dir, reference_dir): (&Path, &Path),
        fixed_steps: Option<usize>,
        seed: u64,
    ) -> Result<(SelectionStats, usize)> {
        let t = self.trainer;
        let outcome = Iteration {
            config: &t.config,
            enc: self.ctx.enc,
            prompts,
            reward: self.annotator.reward_model(),
            store: self.store,
            policy_dir,
            reference_dir,
            fixed_steps,
            seed,
            observer: t.observer.as_ref(),
        }
        .run(stages)?;
        if let Some(judge) = &t.judge {
            let note = agreement_note(
                judge.as_ref(),
                &outcome.generations,
                &outcome.annotated,
                &outcome.data,
            )?;
            t.observer.note(&note);
        }
        Ok((outcome.stats, outcome.steps))
    }

    /// The `<name>.json` evaluation stage of the policy in `dir` (rank 0; its KL against SFT).
    fn evaluate(
        &self,
        stages: &mut StageRunner,
        name: &str,
        dir: &Path,
        sft: Option<&EvalRecord>,
    ) -> Result<EvalRecord> {
        let t = self.trainer;
        let cfg = &t.config;
        let file = format!("{name}.json");
        stages.run_lead(name, &[&file], |out| -> Result<()> {
            let policy = self.store.load(dir)?;
            let sft_model = self.store.load(&self.store.base)?;
            let evaluator = Evaluator {
                placement: &self.store.placement,
                prompts: self.ctx.eval,
                enc: self.ctx.enc,
                annotator: self.annotator,
                judge: t.judge.as_deref(),
                sft,
                generation: cfg
                    .generation
                    .clone()
                    .with_num_responses(cfg.eval_samples)
                    .with_sampler(SamplerConfig::new()),
                seed: stage_seed(cfg.seed, 7),
                observer: t.observer.as_ref(),
            };
            let label = match dir.parent().and_then(|p| p.file_name()) {
                Some(n) if name == "eval" => n.to_string_lossy().into_owned(),
                _ => name.to_string(),
            };
            let record = evaluator.evaluate(&label, &policy, &sft_model)?;
            Ok(write_json(out.path(&file)?, &record)?)
        })?;
        Ok(read_json(stages.path(&file))?)
    }
}

fn row(mut e: Evaluation, stats: &SelectionStats, stages: &StageRunner) -> Evaluation {
    e.pairs = stats.emitted;
    e.ties_dropped = stats.ties_dropped;
    e.seconds = stages.total_seconds();
    e
}

fn note_times(observer: &dyn Observer, what: &str, stages: &StageRunner) {
    let parts: Vec<String> = stages
        .timings()
        .iter()
        .map(|(k, v)| format!("{k} {v:.1}s"))
        .collect();
    observer.note(&format!("   {what}: {}", parts.join(", ")));
}

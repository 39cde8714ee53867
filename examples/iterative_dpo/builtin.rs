//! The built-in task's setup stages: the data (SFT demonstrations, gold-labelled preference pairs
//! with label noise, held-out evaluation prompts), SFT of the tiny policy, and the proxy annotator
//! trained on the noisy pairs (a Bradley-Terry reward model, or with `--annotator pairwise` a
//! pairwise preference model). On a real policy (`--policy DIR` alone) the policy is pi_0 and the
//! reward model (LoRA on pi_0's backbone) trains on pi_0's own samples, gold-labelled with noise.

use super::config::{LoopConfig, Mode, TaskConfig};
use super::console::Console;
use super::shipped;
use super::task::{self, GoldJudge};
use super::{B, I, Res};
use kiln::burn::module::AutodiffModule;
use kiln::burn::prelude::Backend;
use kiln::data::rng::stage_seed;
use kiln::data::{
    ChatEncoder, Content, Message, PairRecord, PromptRecord, Rng, SftRecord, read_jsonl,
    write_jsonl,
};
use kiln::model::{
    Adapters, CausalLm, DecoderConfig, HfModel, LlamaForCausalLM, LlamaForSequenceClassification,
    LoraConfig, LoraTarget, MissingScore, ModelType, Qwen2ForCausalLM,
    Qwen2ForSequenceClassification, SequenceScorer,
};
use kiln::online::{
    FitProgress, Session, StageRunner, exact_save_options as save_options, fit, fit_reward_model,
    sample,
};
use kiln::reward::AnnotatorKind;
use kiln::reward::pairwise::preference_examples;
use kiln::sampling::{FinishReason, SamplerConfig};
use kiln::train::reward::RewardTrainConfig;
use kiln::train::sft::{SftTrainConfig, train_sft};
use kiln::train::{Placement, TrainConfig};
use std::path::{Path, PathBuf};

/// What the setup stages hand to the loop (the models are where [`annotator_dir`] and the run's
/// `sft` directory say).
pub struct Setup {
    /// Held-out evaluation prompts.
    pub eval_prompts: Vec<Content>,
    /// Training prompts each iteration's prompts are drawn from.
    pub pool: Vec<Content>,
}

/// What the setup stages read.
pub struct Ctx<'a> {
    /// The run's configuration.
    pub cfg: &'a LoopConfig,
    /// Text to ids.
    pub enc: &'a ChatEncoder,
    /// Where training runs.
    pub placement: &'a Placement<B>,
}

/// Where the setup puts the annotator, before it runs (the run's settings name it).
pub fn annotator_dir(cfg: &LoopConfig, out: &Path) -> PathBuf {
    match (cfg.task.annotator, &cfg.task.annotator_model, cfg.mode()) {
        (AnnotatorKind::Pairwise, Some(dir), _) => dir.clone(),
        (AnnotatorKind::Pairwise, None, Mode::Builtin) => out.join("pairwise_model"),
        _ => out.join("reward_model"),
    }
}

/// The setup of `cfg`'s mode in `session` (the built-in task's data, SFT policy and annotator).
pub fn run_setup(session: &mut Session<B>, cfg: &LoopConfig, enc: &ChatEncoder) -> Res<Setup> {
    let placement = session.placement().clone();
    let ctx = Ctx {
        cfg,
        enc,
        placement: &placement,
    };
    let judge = GoldJudge::default();
    match cfg.mode() {
        Mode::Builtin => setup(&ctx, &judge, session.stages()),
        Mode::BuiltinOnPolicy => setup_on_policy(&ctx, &judge, session.stages()),
        Mode::Real => Err("real-model mode has no setup stages".into()),
    }
}

/// Data, SFT and the proxy annotator; returns what the loop needs.
pub fn setup(ctx: &Ctx, judge: &GoldJudge, root: &mut StageRunner) -> Res<Setup> {
    let cfg = &ctx.cfg.task;
    let (train_pool, eval_pool) = task::split_pools(cfg.train_phrasings);
    let files = [
        "data/sft.jsonl",
        "data/reward_pairs.jsonl",
        "data/eval_prompts.jsonl",
    ];
    root.run_lead("data", &files, |out| -> Res<()> {
        let mut rng = Rng::new(stage_seed(cfg.setup_seed, 1));
        let sft: Vec<SftRecord> = (0..cfg.sft_examples)
            .map(|_| {
                let q = task::pick(&mut rng, &train_pool);
                let answer = task::demonstration(q, task::draw_quality(&mut rng), &mut rng);
                SftRecord {
                    messages: vec![Message::user(q.text.clone()), Message::assistant(answer)],
                }
            })
            .collect();
        write_jsonl(out.path(files[0])?, &sft)?;
        let mut pairs = Vec::new();
        while pairs.len() < cfg.rm_pairs {
            let q = task::pick(&mut rng, &train_pool);
            let a = task::demonstration(q, task::draw_quality(&mut rng), &mut rng);
            let b = task::demonstration(q, task::draw_quality(&mut rng), &mut rng);
            let (ga, gb) = (
                judge.score(&q.text, &a, true),
                judge.score(&q.text, &b, true),
            );
            if ga == gb {
                continue;
            }
            let (mut chosen, mut rejected) = if ga > gb { (a, b) } else { (b, a) };
            if rng.next_f64() < cfg.label_noise {
                std::mem::swap(&mut chosen, &mut rejected);
            }
            pairs.push(PairRecord {
                prompt: Content::Text(q.text.clone()),
                chosen: Content::Text(chosen),
                rejected: Content::Text(rejected),
                margin: None,
            });
        }
        write_jsonl(out.path(files[1])?, &pairs)?;
        write_jsonl(out.path(files[2])?, &eval_records(ctx, &eval_pool))?;
        Ok(())
    })?;
    let sft_dir = root.path("sft");
    let sft_file = root.path(files[0]);
    let metrics = root.path("sft_metrics.jsonl");
    let shipped = shipped::for_run(ctx.cfg)?;
    root.run("sft", &["sft"], |out| match &shipped {
        Some(m) => shipped::install(m, "sft", out.path("sft")?),
        None => train_sft_stage(ctx, &sft_file, out.path("sft")?, &metrics),
    })?;
    let pairs: Vec<PairRecord> = read_jsonl(root.path(files[1]))?;
    match (cfg.annotator, &cfg.annotator_model) {
        (AnnotatorKind::Pairwise, Some(_)) => {}
        (AnnotatorKind::Pairwise, None) => {
            let metrics = root.path("pairwise_model_metrics.jsonl");
            root.run("pairwise_model", &["pairwise_model"], |out| {
                train_pairwise_stage(ctx, &pairs, &sft_dir, out.path("pairwise_model")?, &metrics)
            })?;
        }
        (AnnotatorKind::Bt, _) => {
            let metrics = root.path("reward_model_metrics.jsonl");
            root.run("reward_model", &["reward_model"], |out| match &shipped {
                Some(m) => shipped::install(m, "reward_model", out.path("reward_model")?),
                None => {
                    train_reward_stage(ctx, &pairs, &sft_dir, out.path("reward_model")?, &metrics)
                }
            })?;
        }
    }
    if let Some(s) = &shipped {
        let dir = s.dir.display();
        eprintln!(
            "   started from the SFT policy and reward model in {dir} (--train-setup: train)"
        );
    }
    finish(root, files[2], train_pool)
}

/// The built-in task on a real policy (Llama or Qwen2): held-out evaluation prompts,
/// reward-model pairs from pi_0's own samples (gold-labelled, with label noise), and a LoRA reward
/// model on pi_0's backbone.
pub fn setup_on_policy(ctx: &Ctx, judge: &GoldJudge, root: &mut StageRunner) -> Res<Setup> {
    let policy = (ctx.cfg.task.policy.clone()).ok_or("the built-in task needs --policy")?;
    let init = MissingScore::Init { std: 0.02 };
    match ModelType::of_dir(&policy)? {
        ModelType::Llama => {
            on_policy::<LlamaForCausalLM<I>, _>(ctx, judge, root, &policy, |p, d| {
                Ok(LlamaForSequenceClassification::<B>::from_pretrained(
                    p, d, init,
                )?)
            })
        }
        ModelType::Qwen2 => {
            on_policy::<Qwen2ForCausalLM<I>, _>(ctx, judge, root, &policy, |p, d| {
                Ok(Qwen2ForSequenceClassification::<B>::from_pretrained(
                    p, d, init,
                )?)
            })
        }
    }
}

fn on_policy<L: CausalLm<I> + HfModel<I> + Sync, C: RewardModelType>(
    ctx: &Ctx,
    judge: &GoldJudge,
    root: &mut StageRunner,
    policy: &Path,
    load: impl Fn(&Path, &kiln::burn::tensor::Device<B>) -> Res<C>,
) -> Res<Setup> {
    let cfg = &ctx.cfg.task;
    let (train_pool, eval_pool) = task::split_pools(cfg.train_phrasings);
    let files = ["data/reward_pairs.jsonl", "data/eval_prompts.jsonl"];
    root.run_lead("data", &files, |out| -> Res<()> {
        write_jsonl(out.path(files[1])?, &eval_records(ctx, &eval_pool))?;
        let mut rng = Rng::new(stage_seed(cfg.setup_seed, 1));
        let questions = task::sample_questions(&train_pool, cfg.rm_prompts, &mut rng);
        let pairs = sample_pairs::<L>(ctx, judge, policy, &questions, &mut rng)?;
        write_jsonl(out.path(files[0])?, &pairs)?;
        Ok(())
    })?;
    let pairs: Vec<PairRecord> = read_jsonl(root.path(files[0]))?;
    if !(cfg.annotator == AnnotatorKind::Pairwise && cfg.annotator_model.is_some()) {
        let metrics = root.path("reward_model_metrics.jsonl");
        root.run("reward_model", &["reward_model"], |out| {
            let out = out.path("reward_model")?;
            train_policy_reward_stage(ctx, &pairs, policy, out, &metrics, &load)
        })?;
    }
    finish(root, files[1], train_pool)
}

/// The held-out evaluation prompts (the same draw in both modes: stage seed 2).
fn eval_records(ctx: &Ctx, eval_pool: &[task::Question]) -> Vec<PromptRecord> {
    let mut rng = Rng::new(stage_seed(ctx.cfg.task.setup_seed, 2));
    task::sample_questions(eval_pool, ctx.cfg.online.eval_prompts, &mut rng)
        .into_iter()
        .map(|q| PromptRecord {
            prompt: Content::Text(q.text),
        })
        .collect()
}

/// The [`Setup`] from the finished stages: evaluation prompts read back from `eval_file`, the
/// training questions as the loop's prompt pool.
fn finish(root: &StageRunner, eval_file: &str, train_pool: Vec<task::Question>) -> Res<Setup> {
    let eval_prompts = read_jsonl::<PromptRecord>(root.path(eval_file))?
        .into_iter()
        .map(|p| p.prompt)
        .collect();
    let pool = train_pool
        .into_iter()
        .map(|q| Content::Text(q.text))
        .collect();
    Ok(Setup { eval_prompts, pool })
}

/// `rm_samples` responses of pi_0 to each question; every two with different gold rewards make a
/// pair oriented by gold and flipped with probability `label_noise` (the noisy human labels).
fn sample_pairs<L: CausalLm<I> + HfModel<I> + Sync>(
    ctx: &Ctx,
    judge: &GoldJudge,
    policy: &Path,
    questions: &[task::Question],
    rng: &mut Rng,
) -> Res<Vec<PairRecord>> {
    let (cfg, enc) = (&ctx.cfg.task, ctx.enc);
    let model = L::load_hf(policy, &Default::default())?;
    let prompts: Vec<Content> = questions
        .iter()
        .map(|q| Content::Text(q.text.clone()))
        .collect();
    let online = &ctx.cfg.online;
    let generation = online
        .generation
        .clone()
        .with_num_responses(cfg.rm_samples)
        .with_prompt_batch_size(16)
        .with_sampler(SamplerConfig::new().with_temperature(online.generation.sampler.temperature));
    let seed = stage_seed(cfg.setup_seed, 3);
    let out = sample(
        ctx.placement,
        &model,
        enc,
        &prompts,
        &generation,
        seed,
        "reward-model samples",
        &Console,
    )?;
    let mut pairs = Vec::new();
    for (q, gens) in questions.iter().zip(&out) {
        let gold: Vec<f32> = gens
            .iter()
            .map(|g| judge.score(&q.text, &g.text, g.finish_reason != FinishReason::Length))
            .collect();
        for a in 0..gens.len() {
            for b in a + 1..gens.len() {
                if gold[a] == gold[b] {
                    continue;
                }
                let (mut c, mut r) = if gold[a] > gold[b] { (a, b) } else { (b, a) };
                if rng.next_f64() < cfg.label_noise {
                    std::mem::swap(&mut c, &mut r);
                }
                pairs.push(PairRecord {
                    prompt: Content::Text(q.text.clone()),
                    chosen: Content::Text(gens[c].text.clone()),
                    rejected: Content::Text(gens[r].text.clone()),
                    margin: None,
                });
            }
        }
    }
    eprintln!(
        "   {} reward-model pairs from {} questions x {} samples of pi_0",
        pairs.len(),
        questions.len(),
        cfg.rm_samples
    );
    if pairs.is_empty() {
        return Err("pi_0's samples all tie under the gold judge: no reward-model pairs".into());
    }
    Ok(pairs)
}

/// The built-in task's policy shape: Llama-3 layout, tiny sizes, the shipped tokenizer's ids.
fn tiny_policy_config(ctx: &Ctx) -> DecoderConfig {
    let (cfg, enc) = (&ctx.cfg.task, ctx.enc);
    let online = &ctx.cfg.online;
    let mut c = DecoderConfig::tiny(enc.tokenizer.vocab_size(), cfg.hidden_size);
    c.num_hidden_layers = cfg.layers;
    c.intermediate_size = cfg.hidden_size * 3;
    c.max_position_embeddings =
        256.max(online.truncation.max_total_len + online.generation.max_new_tokens);
    c.bos_token_id = enc.template.bos_id();
    c.eos_token_id = enc.stop_ids();
    c.pad_token_id = Some(enc.pad_id);
    c
}

/// The setup's optimiser: `steps` at `lr` with 5 % warmup, its data order from stage `stage`.
fn setup_optimizer(cfg: &TaskConfig, steps: usize, lr: f64, stage: u64) -> TrainConfig {
    TrainConfig::new(steps)
        .with_lr(lr)
        .with_warmup_steps(steps / 20)
        .with_micro_batch_size(cfg.batch_size)
        .with_seed(stage_seed(cfg.setup_seed, stage))
        .with_log_every(0)
}

/// A training stage's bar (on the console) and metrics log.
fn watch<'a>(label: &'a str, metric: &'static str, metrics: &'a Path) -> FitProgress<'a> {
    FitProgress {
        label,
        metric,
        metrics,
        observer: &Console,
    }
}

/// SFT of the tiny policy from scratch; every step is written to `metrics`.
fn train_sft_stage(ctx: &Ctx, file: &Path, out: &Path, metrics: &Path) -> Res<()> {
    let cfg = &ctx.cfg.task;
    let records: Vec<SftRecord> = read_jsonl(file)?;
    let examples = records
        .iter()
        .map(|r| ctx.enc.sft(r))
        .collect::<Result<Vec<_>, _>>()?;
    let device = Default::default();
    B::seed(&device, stage_seed(cfg.setup_seed, 10));
    let model = LlamaForCausalLM::<B>::init(&tiny_policy_config(ctx), 0.02, &device);
    let tc = setup_optimizer(cfg, cfg.sft_steps, cfg.sft_lr, 11).with_weight_decay(0.01);
    let sft = SftTrainConfig::new().with_pad_id(Some(ctx.enc.pad_id));
    let trained = fit(
        model,
        tc,
        ctx.placement,
        &watch("SFT", "nll", metrics),
        |t| train_sft(t, &examples, &sft),
    )?;
    Ok(trained.save_pretrained(out, save_options())?)
}

/// The Bradley-Terry reward model on the SFT backbone; every step is written to `metrics`.
fn train_reward_stage(
    ctx: &Ctx,
    records: &[PairRecord],
    sft_dir: &Path,
    out: &Path,
    metrics: &Path,
) -> Res<()> {
    let device = Default::default();
    B::seed(&device, stage_seed(ctx.cfg.task.setup_seed, 20));
    let backbone = LlamaForCausalLM::<B>::from_pretrained(sft_dir, &device)?;
    let model = LlamaForSequenceClassification::from_causal_lm(backbone, 0.02);
    let trained = train_bt(ctx, records, model, metrics)?;
    Ok(trained.save_pretrained(out, save_options())?)
}

/// A reward model on the real policy's backbone: LoRA adapters (`rm_lora_rank`) plus a fresh
/// score head, saved as a PEFT SEQ_CLS adapter over the policy directory.
fn train_policy_reward_stage<C: RewardModelType>(
    ctx: &Ctx,
    records: &[PairRecord],
    policy: &Path,
    out: &Path,
    metrics: &Path,
    load: &impl Fn(&Path, &kiln::burn::tensor::Device<B>) -> Res<C>,
) -> Res<()> {
    let cfg = &ctx.cfg.task;
    let device = Default::default();
    B::seed(&device, stage_seed(cfg.setup_seed, 20));
    let model = load(policy, &device)?;
    if cfg.rm_lora_rank == 0 {
        let trained = train_bt(ctx, records, model, metrics)?;
        return Ok(trained.save_hf(out, save_options())?);
    }
    let base = std::fs::canonicalize(policy)?.display().to_string();
    let lora = LoraConfig::new(LoraTarget::ALL.to_vec())
        .with_rank(cfg.rm_lora_rank)
        .with_alpha(2.0 * cfg.rm_lora_rank as f64)
        .with_base_model_name_or_path(Some(base));
    let trained = train_bt(ctx, records, model.with_lora(&lora, &device)?, metrics)?;
    Ok(trained.save_adapter(out)?)
}

/// A reward model the setup trains: a sequence classifier (Llama's or Qwen2's) with adapters.
pub trait RewardModelType:
    SequenceScorer<B> + HfModel<B> + Adapters<B> + AutodiffModule<B, InnerModule: SequenceScorer<I>>
{
}

impl<C> RewardModelType for C where
    C: SequenceScorer<B>
        + HfModel<B>
        + Adapters<B>
        + AutodiffModule<B, InnerModule: SequenceScorer<I>>
{
}

/// Bradley-Terry training of `model` on 90 % of the noisy pairs (every step written to
/// `metrics`); reports held-out accuracy.
fn train_bt<C: RewardModelType>(
    ctx: &Ctx,
    records: &[PairRecord],
    model: C,
    metrics: &Path,
) -> Res<C> {
    let cfg = &ctx.cfg.task;
    let tc = setup_optimizer(cfg, cfg.rm_steps, cfg.rm_lr, 21);
    let loss = RewardTrainConfig::new()
        .with_loss(kiln::losses::BradleyTerryConfig::new().with_center_rewards_coefficient(0.01));
    let watching = watch("reward model", "accuracy", metrics);
    let (trained, held) =
        fit_reward_model(model, records, ctx.enc, tc, &loss, ctx.placement, &watching)?;
    eprintln!(
        "   proxy reward model: held-out pairwise accuracy {:.3} (noisy labels), mean margin {:.3}",
        held.accuracy, held.mean_margin
    );
    Ok(trained)
}

/// A pairwise preference model: the SFT backbone fine-tuned to answer `A` or `B` to the judge
/// prompt, on both orders of every noisy preference pair; every step is written to `metrics`.
fn train_pairwise_stage(
    ctx: &Ctx,
    records: &[PairRecord],
    sft_dir: &Path,
    out: &Path,
    metrics: &Path,
) -> Res<()> {
    let (cfg, enc) = (&ctx.cfg.task, ctx.enc);
    let examples = preference_examples(enc, records)?;
    let device = Default::default();
    B::seed(&device, stage_seed(cfg.setup_seed, 30));
    let model = LlamaForCausalLM::<B>::from_pretrained(sft_dir, &device)?;
    let tc = setup_optimizer(cfg, cfg.rm_steps, cfg.rm_lr, 31);
    let sft = SftTrainConfig::new().with_pad_id(Some(enc.pad_id));
    let watching = watch("pairwise model", "nll", metrics);
    let trained = fit(model, tc, ctx.placement, &watching, |t| {
        train_sft(t, &examples, &sft)
    })?;
    Ok(trained.save_pretrained(out, save_options())?)
}

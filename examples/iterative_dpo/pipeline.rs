//! The loop's stages. Every stage writes its outputs atomically and is skipped when they already
//! exist, so rerunning with the same `--out` resumes after the last finished stage. Every stage's
//! randomness comes from the run seed and the stage's identity, never from state carried over
//! from an earlier stage, so a resumed run computes exactly what an uninterrupted one would.

use super::config::{LoopConfig, Reference};
use super::eval::{EvalRecord, EvalSetup, evaluate};
use super::models::{
    B, Res, Text, checkpoint_exists, load_policy, load_reward_model, load_trainable_policy,
    save_policy, score,
};
use super::progress::Progress;
use super::report::Summary;
use super::task::{self, GoldJudge};
use kiln::burn::prelude::Backend;
use kiln::data::examples::{encode_generation_prompt, encode_pair};
use kiln::data::pairs::select_pairs_file;
use kiln::data::{
    AnnotatedRecord, ChatTemplate, Content, GenerationRecord, PairRecord, PromptRecord, Rng,
    SelectionConfig, SelectionStats, Tokenizer, read_jsonl, write_jsonl,
};
use kiln::losses::DpoConfig;
use kiln::reward::RewardModel;
use kiln::sampling::{GenerationConfig, Generator, SamplerConfig};
use kiln::train::dpo::{DpoTrainConfig, precompute_reference_logps, train_dpo};
use kiln::train::{TrainConfig, TrainLoop};
use serde::{Serialize, de::DeserializeOwned};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Longest prompt / prompt+response kept, in tokens.
pub(super) const MAX_PROMPT: usize = 96;
pub(super) const MAX_TOTAL: usize = 160;

/// Stage seeds: `seed ^ (id * golden)` keeps streams of different stages apart.
pub(super) fn stage_seed(seed: u64, id: u64) -> u64 {
    seed ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Res<()> {
    let tmp = path.with_extension("json.partial");
    std::fs::write(&tmp, serde_json::to_string_pretty(value)?)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

fn read_json<T: DeserializeOwned>(path: &Path) -> Res<T> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?)
}

/// Seconds per stage, persisted beside the stage outputs so resumed runs report them too.
pub(super) struct Timings {
    path: PathBuf,
    stages: BTreeMap<String, f64>,
}

impl Timings {
    fn open(path: PathBuf) -> Res<Self> {
        let stages = if path.exists() {
            read_json(&path)?
        } else {
            BTreeMap::new()
        };
        Ok(Timings { path, stages })
    }
    pub(super) fn record(&mut self, stage: &str, start: Instant) -> Res<()> {
        self.stages
            .insert(stage.to_string(), start.elapsed().as_secs_f64());
        write_json(&self.path, &self.stages)
    }
    fn total(&self) -> f64 {
        self.stages.values().sum()
    }
}

/// The run's fixed context.
pub struct Run {
    pub(super) cfg: LoopConfig,
    pub(super) text: Text,
    pub(super) judge: Option<GoldJudge>,
    pub(super) timings: Timings,
}

/// Runs (or resumes) the whole loop and returns the summary (also written to `summary.json`).
pub fn run(cfg: &LoopConfig) -> Res<Summary> {
    let started = Instant::now();
    std::fs::create_dir_all(&cfg.out)?;
    let config_path = cfg.out.join("config.json");
    if config_path.exists() {
        let previous: LoopConfig = read_json(&config_path)?;
        if &previous != cfg {
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
    let builtin = cfg.policy.is_none();
    let (tokenizer, template) = match &cfg.policy {
        Some(dir) => {
            let tokenizer = Tokenizer::from_model_dir(dir)?;
            let template = ChatTemplate::load(&cfg.chat_template, Some(dir), &tokenizer)?
                .with_clock(super::config::template_clock(cfg)?);
            (tokenizer, template)
        }
        None => {
            let tokenizer = Tokenizer::builtin_tiny();
            let template = ChatTemplate::llama3(&tokenizer)?;
            (tokenizer, template)
        }
    };
    let mut run = Run {
        cfg: cfg.clone(),
        text: Text::new(tokenizer, template, MAX_PROMPT, MAX_TOTAL)?,
        judge: builtin.then(GoldJudge::default),
        timings: Timings::open(cfg.out.join("timings.json"))?,
    };
    B::seed(&Default::default(), cfg.seed);

    let (sft_dir, rm_dir, eval_prompts, pool) = if builtin {
        run.builtin_setup()?
    } else {
        run.real_setup()?
    };
    let reward_model = load_reward_model(&rm_dir, &run.text)?;
    let sft = load_policy(&sft_dir)?;
    let eval_cfg = |sft_gold| EvalSetup {
        prompts: &eval_prompts,
        text: &run.text,
        reward_model: &reward_model,
        judge: run.judge.as_ref(),
        sft_gold,
        max_new_tokens: cfg.max_new_tokens,
        seed: stage_seed(cfg.seed, 7),
    };
    let sft_eval = run.cached_eval(&cfg.out.join("sft_eval.json"), || {
        evaluate(&eval_cfg(None), "sft", &sft, &sft)
    })?;
    let mut sft_summary = sft_eval.evaluation;
    sft_summary.seconds = run.timings.total();
    let sft_gold =
        (!sft_eval.gold_per_response.is_empty()).then_some(sft_eval.gold_per_response.as_slice());

    let mut summary = Summary {
        sft: sft_summary,
        iterations: vec![sft_summary],
        ..Summary::default()
    };
    let mut previous = sft_dir.clone();
    let mut online_steps = 0;
    let mut online_pairs = 0;
    for t in 1..=cfg.iterations {
        let dir = cfg.out.join(format!("iter_{t}"));
        std::fs::create_dir_all(&dir)?;
        eprintln!("== online iteration {t}/{}", cfg.iterations);
        let mut times = Timings::open(dir.join("timings.json"))?;
        let prompts = run.prompts_stage(
            &dir,
            &pool,
            cfg.prompts_per_iteration,
            stage_seed(cfg.seed, 100 + t as u64),
            t,
        )?;
        let reference = match cfg.reference {
            Reference::Sft => sft_dir.clone(),
            Reference::Previous => previous.clone(),
        };
        let (stats, steps) = run.iteration_stages(
            &dir,
            &prompts,
            &previous,
            &reference,
            &reward_model,
            None,
            stage_seed(cfg.seed, 200 + t as u64),
            &mut times,
        )?;
        online_steps += steps;
        online_pairs += stats.emitted;
        let policy_dir = dir.join("policy");
        let policy = load_policy(&policy_dir)?;
        let reference_model = load_policy(&reference)?;
        let start = Instant::now();
        let mut rec = run.cached_eval(&dir.join("eval.json"), || {
            evaluate(
                &eval_cfg(sft_gold),
                &format!("t={t}"),
                &policy,
                &reference_model,
            )
        })?;
        if !times.stages.contains_key("eval") {
            times.record("eval", start)?;
        }
        rec.evaluation.iteration = t as i64;
        rec.evaluation.pairs = stats.emitted;
        rec.evaluation.ties_dropped = stats.ties_dropped;
        rec.evaluation.seconds = times.total();
        summary.iterations.push(rec.evaluation);
        print_stage_times(&format!("iteration {t}"), &times);
        previous = policy_dir;
    }

    if cfg.offline {
        let dir = cfg.out.join("offline");
        std::fs::create_dir_all(&dir)?;
        eprintln!("== offline DPO baseline ({online_pairs} target pairs, {online_steps} steps)");
        let mut times = Timings::open(dir.join("timings.json"))?;
        let n = cfg.prompts_per_iteration * cfg.iterations;
        let prompts = run.prompts_stage(&dir, &pool, n, stage_seed(cfg.seed, 300), 0)?;
        let (stats, _) = run.iteration_stages(
            &dir,
            &prompts,
            &sft_dir,
            &sft_dir,
            &reward_model,
            Some(online_steps),
            stage_seed(cfg.seed, 301),
            &mut times,
        )?;
        let policy = load_policy(&dir.join("policy"))?;
        let start = Instant::now();
        let mut rec = run.cached_eval(&dir.join("eval.json"), || {
            evaluate(&eval_cfg(sft_gold), "offline", &policy, &sft)
        })?;
        if !times.stages.contains_key("eval") {
            times.record("eval", start)?;
        }
        rec.evaluation.iteration = -1;
        rec.evaluation.pairs = stats.emitted;
        rec.evaluation.ties_dropped = stats.ties_dropped;
        rec.evaluation.seconds = times.total();
        summary.offline_dpo = Some(rec.evaluation);
        print_stage_times("offline DPO", &times);
    }
    summary.total_seconds = started.elapsed().as_secs_f64();
    write_json(&cfg.out.join("summary.json"), &summary)?;
    std::fs::write(
        cfg.out.join("reward_plot.svg"),
        super::report::reward_plot_svg(&summary),
    )?;
    Ok(summary)
}

fn print_stage_times(what: &str, t: &Timings) {
    let parts: Vec<String> = t
        .stages
        .iter()
        .map(|(k, v)| format!("{k} {v:.1}s"))
        .collect();
    eprintln!("   {what}: {}", parts.join(", "));
}

impl Run {
    fn cached_eval(&self, path: &Path, f: impl FnOnce() -> Res<EvalRecord>) -> Res<EvalRecord> {
        if path.exists() {
            return read_json(path);
        }
        let rec = f()?;
        write_json(path, &rec)?;
        Ok(rec)
    }

    /// Real models: the given directories, the prompt file's last `eval_prompts` prompts held out.
    fn real_setup(&mut self) -> Res<(PathBuf, PathBuf, Vec<Content>, Vec<Content>)> {
        let cfg = &self.cfg;
        let file = cfg.prompts.clone().expect("validated");
        let mut prompts: Vec<Content> = read_jsonl::<PromptRecord>(&file)?
            .into_iter()
            .map(|p| p.prompt)
            .collect();
        if prompts.len() <= cfg.eval_prompts {
            return Err(format!(
                "{}: {} prompts, but {} are held out for evaluation; provide more",
                file.display(),
                prompts.len(),
                cfg.eval_prompts
            )
            .into());
        }
        let eval = prompts.split_off(prompts.len() - cfg.eval_prompts);
        Ok((
            cfg.policy.clone().expect("validated"),
            cfg.reward_model.clone().expect("validated"),
            eval,
            prompts,
        ))
    }

    /// Writes (or reads back) `prompts.jsonl`: `n` prompts drawn from `pool` for iteration `t`.
    fn prompts_stage(
        &self,
        dir: &Path,
        pool: &[Content],
        n: usize,
        seed: u64,
        t: usize,
    ) -> Res<Vec<Content>> {
        let file = dir.join("prompts.jsonl");
        if !file.exists() {
            let picked: Vec<PromptRecord> = if self.judge.is_some() {
                let mut rng = Rng::new(seed);
                (0..n)
                    .map(|_| PromptRecord {
                        prompt: task::pick(&mut rng, pool).clone(),
                    })
                    .collect()
            } else {
                // Real prompts: consecutive slices, wrapping around, so iterations see fresh prompts.
                (0..n)
                    .map(|i| PromptRecord {
                        prompt: pool[((t.max(1) - 1) * n + i) % pool.len()].clone(),
                    })
                    .collect()
            };
            write_jsonl(&file, &picked)?;
        }
        Ok(read_jsonl::<PromptRecord>(&file)?
            .into_iter()
            .map(|p| p.prompt)
            .collect())
    }

    /// generate -> annotate -> pairs -> DPO for one iteration (or the offline baseline, with a
    /// fixed number of steps). Returns the selection statistics and the DPO steps taken.
    #[allow(clippy::too_many_arguments)]
    fn iteration_stages(
        &self,
        dir: &Path,
        prompts: &[Content],
        policy_dir: &Path,
        reference_dir: &Path,
        reward_model: &dyn RewardModel,
        fixed_steps: Option<usize>,
        seed: u64,
        times: &mut Timings,
    ) -> Res<(SelectionStats, usize)> {
        let cfg = &self.cfg;
        let text = &self.text;
        let generations = dir.join("generations.jsonl");
        if !generations.exists() {
            let start = Instant::now();
            let policy = load_policy(policy_dir)?;
            let ids: Vec<Vec<u32>> = prompts
                .iter()
                .map(|p| encode_generation_prompt(&text.tokenizer, &text.template, p, MAX_PROMPT))
                .collect::<Result<_, _>>()?;
            let gc = GenerationConfig::new()
                .with_sampler(
                    SamplerConfig::new()
                        .with_temperature(cfg.temperature)
                        .with_seed(seed),
                )
                .with_max_new_tokens(cfg.max_new_tokens)
                .with_num_responses(cfg.k)
                .with_stop_token_ids(text.template.stop_ids())
                .with_pad_token_id(text.pad_id)
                .with_prompt_batch_size(32)
                .with_concurrent_batches(super::models::cpu_cores());
            let generator = Generator::new(&policy, gc)?.with_tokenizer(&text.tokenizer);
            let streams: Vec<u64> = (0..ids.len() as u64).collect();
            let mut bar = Progress::new(format!("generate K={}", cfg.k), ids.len() * cfg.k);
            let mut done = 0;
            let out = generator.generate_with(&ids, &streams, |p| {
                bar.advance(
                    p.finished_responses - done,
                    &format!("{} tokens", p.generated_tokens),
                );
                done = p.finished_responses;
            })?;
            bar.finish();
            let records: Vec<GenerationRecord> = prompts
                .iter()
                .zip(&out.responses)
                .map(|(p, rs)| GenerationRecord {
                    prompt: p.clone(),
                    responses: rs.iter().map(|g| g.text.clone()).collect(),
                })
                .collect();
            write_jsonl(&generations, &records)?;
            times.record("generate", start)?;
        }
        let annotated = dir.join("annotated.jsonl");
        if !annotated.exists() {
            let start = Instant::now();
            let records: Vec<GenerationRecord> = read_jsonl(&generations)?;
            let items: Vec<(Content, String)> = records
                .iter()
                .flat_map(|r| r.responses.iter().map(|s| (r.prompt.clone(), s.clone())))
                .collect();
            let scores = score(reward_model, &items)?;
            let mut offset = 0;
            let out: Vec<AnnotatedRecord> = records
                .into_iter()
                .map(|r| {
                    let n = r.responses.len();
                    let rewards = scores[offset..offset + n]
                        .iter()
                        .map(|&x| f64::from(x))
                        .collect();
                    offset += n;
                    AnnotatedRecord {
                        prompt: r.prompt,
                        responses: r.responses,
                        rewards,
                    }
                })
                .collect();
            write_jsonl(&annotated, &out)?;
            times.record("annotate", start)?;
        }
        let pairs_file = dir.join("pairs.jsonl");
        let stats_file = dir.join("pairs_stats.json");
        if !stats_file.exists() {
            let start = Instant::now();
            let sc = SelectionConfig {
                strategy: cfg.choose,
                min_responses: cfg.k,
                seed,
            };
            let stats = select_pairs_file(&annotated, &pairs_file, sc, Some(&text.tokenizer))?;
            write_json(&stats_file, &stats)?;
            times.record("pairs", start)?;
        }
        let stats: SelectionStats = read_json(&stats_file)?;
        eprintln!(
            "   proxy reward: mean {:.3}, best-of-{} {:.3}; {} pairs, {} ties dropped",
            stats.mean_reward, cfg.k, stats.mean_best_reward, stats.emitted, stats.ties_dropped
        );
        if let Some(judge) = &self.judge {
            // How often the gold judge agrees with the proxy's pick: the signal DPO really gets.
            let pairs: Vec<PairRecord> = read_jsonl(&pairs_file)?;
            let agree = pairs
                .iter()
                .filter(|p| {
                    let q = p.prompt.text();
                    judge.score(&q, &p.chosen.text(), true)
                        > judge.score(&q, &p.rejected.text(), true)
                })
                .count();
            eprintln!(
                "   gold judge agrees with {agree}/{} chosen-vs-rejected picks",
                pairs.len()
            );
        }
        let steps = fixed_steps.unwrap_or_else(|| {
            (stats.emitted * cfg.dpo_epochs)
                .div_ceil(cfg.dpo_batch_size)
                .max(1)
        });
        let out_dir = dir.join("policy");
        if !checkpoint_exists(&out_dir) {
            let start = Instant::now();
            self.train_dpo(
                &pairs_file,
                policy_dir,
                reference_dir,
                &out_dir,
                steps,
                seed,
            )?;
            times.record("dpo", start)?;
        }
        Ok((stats, steps))
    }

    fn train_dpo(
        &self,
        pairs_file: &Path,
        policy_dir: &Path,
        reference_dir: &Path,
        out: &Path,
        steps: usize,
        seed: u64,
    ) -> Res<()> {
        let cfg = &self.cfg;
        let text = &self.text;
        let records: Vec<PairRecord> = read_jsonl(pairs_file)?;
        if records.is_empty() {
            return Err(format!(
                "{}: no pairs to train on (every prompt tied?)",
                pairs_file.display()
            )
            .into());
        }
        let pairs = records
            .iter()
            .map(|r| encode_pair(&text.tokenizer, &text.template, r, &text.truncation))
            .collect::<Result<Vec<_>, _>>()?;
        let dtc = DpoTrainConfig::new(
            DpoConfig::new().with_beta(cfg.beta).with_loss(cfg.loss),
            text.pad_id,
        );
        let reference = load_policy(reference_dir)?;
        let ref_logps =
            precompute_reference_logps(&reference, &pairs, text.pad_id, 64, dtc.reduction)?;
        drop(reference);
        let policy = load_trainable_policy(policy_dir)?;
        let tc = TrainConfig::new(steps)
            .with_lr(cfg.lr)
            .with_warmup_steps(steps / 10)
            .with_micro_batch_size(cfg.dpo_batch_size)
            .with_seed(seed)
            .with_log_every(0);
        let mut train = TrainLoop::new(policy, tc)?;
        let mut bar = Progress::new(format!("DPO ({} pairs)", pairs.len()), steps);
        while !train.is_done() {
            let until = (train.step() + 4).min(steps);
            let stats = train_dpo(&mut train, &pairs, &ref_logps, &dtc, until)?;
            let last = stats.last();
            let acc = last
                .and_then(|s| s.metric("rewards/accuracies"))
                .unwrap_or(f64::NAN);
            let margin = last
                .and_then(|s| s.metric("rewards/margins"))
                .unwrap_or(f64::NAN);
            bar.advance(
                stats.len(),
                &format!(
                    "loss {:.3} acc {acc:.2} margin {margin:.2}",
                    last.map_or(f64::NAN, |s| s.loss)
                ),
            );
        }
        bar.finish();
        save_policy(train.model(), out)
    }
}

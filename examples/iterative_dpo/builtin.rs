//! The built-in task's setup stages: the stage data files (SFT demonstrations, gold-labelled
//! preference pairs with label noise, held-out evaluation prompts), SFT of the tiny policy from
//! scratch, and the proxy Bradley-Terry reward model. Each stage is skipped when its output exists.

use super::models::{
    B, Res, checkpoint_exists, load_trainable_policy, save_policy, save_reward_model,
    tiny_policy_config,
};
use super::pipeline::{MAX_TOTAL, Run, stage_seed};
use super::progress::Progress;
use super::task;
use kiln::burn::module::AutodiffModule;
use kiln::burn::prelude::Backend;
use kiln::data::examples::encode_sft;
use kiln::data::{
    Content, Message, PairRecord, PromptRecord, Rng, SftRecord, read_jsonl, write_jsonl,
};
use kiln::model::{LlamaForCausalLM, LlamaForSequenceClassification};
use kiln::train::reward::{RewardPair, RewardTrainConfig, pairwise_accuracy, train_reward_model};
use kiln::train::sft::train_sft;
use kiln::train::{TrainConfig, TrainLoop};
use std::path::{Path, PathBuf};
use std::time::Instant;

impl Run {
    /// Built-in task: data files, SFT from scratch, proxy reward model. Returns the SFT and
    /// reward-model directories, the evaluation prompts and the training prompt pool.
    pub(super) fn builtin_setup(&mut self) -> Res<(PathBuf, PathBuf, Vec<Content>, Vec<Content>)> {
        let cfg = self.cfg.clone();
        let data = cfg.out.join("data");
        std::fs::create_dir_all(&data)?;
        let (train_pool, eval_pool) = task::split_pools();
        let judge = self.judge.clone().expect("built-in task has a judge");

        let sft_file = data.join("sft.jsonl");
        let rm_file = data.join("reward_pairs.jsonl");
        let eval_file = data.join("eval_prompts.jsonl");
        if !eval_file.exists() {
            let start = Instant::now();
            let mut rng = Rng::new(stage_seed(cfg.seed, 1));
            let sft: Vec<SftRecord> = (0..cfg.sft_examples)
                .map(|_| {
                    let q = task::pick(&mut rng, &train_pool);
                    let quality = task::draw_quality(&mut rng);
                    let answer = task::demonstration(q, quality, &mut rng);
                    SftRecord {
                        messages: vec![Message::user(q.text.clone()), Message::assistant(answer)],
                    }
                })
                .collect();
            write_jsonl(&sft_file, &sft)?;
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
            write_jsonl(&rm_file, &pairs)?;
            let mut rng = Rng::new(stage_seed(cfg.seed, 2));
            let eval: Vec<PromptRecord> =
                task::sample_questions(&eval_pool, cfg.eval_prompts, &mut rng)
                    .into_iter()
                    .map(|q| PromptRecord {
                        prompt: Content::Text(q.text),
                    })
                    .collect();
            write_jsonl(&eval_file, &eval)?;
            self.timings.record("data", start)?;
        }

        let sft_dir = cfg.out.join("sft");
        if !checkpoint_exists(&sft_dir) {
            let start = Instant::now();
            self.train_sft(&sft_file, &sft_dir)?;
            self.timings.record("sft", start)?;
        }
        let rm_dir = cfg.out.join("reward_model");
        if !checkpoint_exists(&rm_dir) {
            let start = Instant::now();
            self.train_reward_model(&rm_file, &sft_dir, &rm_dir)?;
            self.timings.record("reward_model", start)?;
        }
        let eval: Vec<Content> = read_jsonl::<PromptRecord>(&eval_file)?
            .into_iter()
            .map(|p| p.prompt)
            .collect();
        let pool = train_pool
            .into_iter()
            .map(|q| Content::Text(q.text))
            .collect();
        Ok((sft_dir, rm_dir, eval, pool))
    }

    fn train_sft(&self, file: &Path, out: &Path) -> Res<()> {
        let cfg = &self.cfg;
        let text = &self.text;
        let records: Vec<SftRecord> = read_jsonl(file)?;
        let examples = records
            .iter()
            .map(|r| encode_sft(&text.tokenizer, &text.template, r, MAX_TOTAL))
            .collect::<Result<Vec<_>, _>>()?;
        let device = Default::default();
        B::seed(&device, stage_seed(cfg.seed, 10));
        let model = LlamaForCausalLM::<B>::init(
            &tiny_policy_config(text, cfg.hidden_size, cfg.layers)?,
            0.02,
            &device,
        );
        let tc = TrainConfig::new(cfg.sft_steps)
            .with_lr(cfg.sft_lr)
            .with_warmup_steps(cfg.sft_steps / 20)
            .with_micro_batch_size(cfg.batch_size)
            .with_weight_decay(0.01)
            .with_seed(stage_seed(cfg.seed, 11))
            .with_log_every(0);
        let mut train = TrainLoop::new(model, tc)?;
        let mut bar = Progress::new("SFT", cfg.sft_steps);
        while !train.is_done() {
            let until = (train.step() + 10).min(cfg.sft_steps);
            let stats = train_sft(&mut train, &examples, text.pad_id, until)?;
            let nll = stats
                .last()
                .and_then(|s| s.metric("nll"))
                .unwrap_or(f64::NAN);
            bar.advance(stats.len(), &format!("nll {nll:.3}"));
        }
        bar.finish();
        save_policy(train.model(), out)
    }

    fn train_reward_model(&self, file: &Path, sft_dir: &Path, out: &Path) -> Res<()> {
        let cfg = &self.cfg;
        let text = &self.text;
        let records: Vec<PairRecord> = read_jsonl(file)?;
        let mut pairs = Vec::with_capacity(records.len());
        for r in &records {
            let ex = |c: &Content| -> Res<kiln::data::Example> {
                let ids = text.reward_input(&r.prompt, &c.text())?;
                Ok(kiln::data::Example {
                    loss_mask: vec![false; ids.len()],
                    ids,
                })
            };
            pairs.push(RewardPair {
                chosen: ex(&r.chosen)?,
                rejected: ex(&r.rejected)?,
                margin: None,
            });
        }
        let held_out = pairs.split_off(pairs.len() * 9 / 10);
        let device = Default::default();
        B::seed(&device, stage_seed(cfg.seed, 20));
        let backbone = load_trainable_policy(sft_dir)?;
        let model = LlamaForSequenceClassification::from_causal_lm(backbone, 0.02);
        let tc = TrainConfig::new(cfg.rm_steps)
            .with_lr(cfg.rm_lr)
            .with_warmup_steps(cfg.rm_steps / 20)
            .with_micro_batch_size(cfg.batch_size)
            .with_seed(stage_seed(cfg.seed, 21))
            .with_log_every(0);
        let rtc = RewardTrainConfig {
            loss: kiln::losses::BradleyTerryConfig::new().with_center_rewards_coefficient(0.01),
            use_margin: false,
            pad_id: text.pad_id,
        };
        let mut train = TrainLoop::new(model, tc)?;
        let mut bar = Progress::new("reward model", cfg.rm_steps);
        while !train.is_done() {
            let until = (train.step() + 10).min(cfg.rm_steps);
            let stats = train_reward_model(&mut train, &pairs, &rtc, until)?;
            let acc = stats
                .iter()
                .filter_map(|s| s.metric("accuracy"))
                .sum::<f64>()
                / stats.len().max(1) as f64;
            bar.advance(stats.len(), &format!("train acc {acc:.2}"));
        }
        bar.finish();
        let (acc, margin) = pairwise_accuracy(&train.model().valid(), &held_out, text.pad_id, 64)?;
        eprintln!(
            "   proxy reward model: held-out pairwise accuracy {acc:.3} (noisy labels), mean margin {margin:.3}"
        );
        save_reward_model(train.model(), out)
    }
}

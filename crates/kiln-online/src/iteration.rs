//! One online iteration as resumable stages: generate -> annotate -> select -> train.

use std::path::{Path, PathBuf};

use burn::tensor::backend::AutodiffBackend;
use kiln_data::atomic::{read_json, write_json};
use kiln_data::pairs::{rank_records, select_pairs_file};
use kiln_data::{
    ChatEncoder, Content, GenerationRecord, PairRecord, RankedRecord, SelectionConfig,
    SelectionStats, read_jsonl, write_jsonl,
};
use kiln_reward::RewardModel;
use kiln_train::dpo::train_dpo;
use kiln_train::rrhf::{ranked_examples, train_rrhf};
use kiln_train::{StepStats, TrainConfig, TrainLoop};

use crate::annotate::annotate_on;
use crate::config::{Algorithm, OnlineConfig};
use crate::error::Result;
use crate::generate::generation_records;
use crate::observer::{FitProgress, Observer, fit};
use crate::policy::Policy;
use crate::reference::reference_logps;
use crate::stage::StageRunner;
use crate::store::PolicyStore;

/// One iteration's inputs: the policy it starts from, the reference, the prompts and who
/// annotates.
pub struct Iteration<'a, B: AutodiffBackend, P: Policy<B>> {
    /// How to generate, select and train.
    pub config: &'a OnlineConfig,
    /// Text to ids (tokenizer, chat template, truncation, pad).
    pub enc: &'a ChatEncoder,
    /// The iteration's prompts.
    pub prompts: &'a [Content],
    /// Who scores the responses (on every peer of the store's placement, whole chunks each).
    pub reward: &'a (dyn RewardModel + Sync),
    /// Where policies are loaded and saved.
    pub store: &'a PolicyStore<B, P>,
    /// The policy this iteration starts from.
    pub policy_dir: &'a Path,
    /// DPO's reference policy.
    pub reference_dir: &'a Path,
    /// A fixed number of optimiser steps (the offline baseline) instead of `epochs`.
    pub fixed_steps: Option<usize>,
    /// The iteration's seed (sampling, selection, data order, fresh adapters).
    pub seed: u64,
    /// Progress.
    pub observer: &'a dyn Observer,
}

/// What an iteration produced.
#[derive(Debug, Clone, PartialEq)]
pub struct IterationOutcome {
    /// Selection statistics (pairs emitted, ties dropped, proxy rewards).
    pub stats: SelectionStats,
    /// Optimiser steps taken (0 when nothing was trained and the policy was carried over).
    pub steps: usize,
    /// `generations.jsonl`.
    pub generations: PathBuf,
    /// `annotated.jsonl`.
    pub annotated: PathBuf,
    /// `pairs.jsonl` (DPO) or `ranked.jsonl` (RRHF).
    pub data: PathBuf,
    /// The trained policy's directory (`policy`).
    pub policy: PathBuf,
}

impl<B: AutodiffBackend, P: Policy<B>> Iteration<'_, B, P> {
    /// Runs (or resumes) the iteration's stages in `stages`: `generate` (`generations.jsonl`),
    /// `annotate` (`annotated.jsonl`), `select` (pairs or ranked lists and their statistics)
    /// and `train` (`policy`: adapters or a checkpoint). Each stage is skipped when its outputs
    /// exist, so a killed run resumes after its last finished stage; every random draw comes from
    /// `seed`, so a resumed iteration computes what an uninterrupted one would. With nothing to
    /// train on (every prompt's rewards tied) the policy is carried over unchanged.
    ///
    /// # Errors
    /// Any stage's error; the stage's outputs are then absent.
    pub fn run(&self, stages: &mut StageRunner) -> Result<IterationOutcome> {
        let cfg = self.config;
        let generations = stages.path("generations.jsonl");
        let annotated = stages.path("annotated.jsonl");
        let placement = &self.store.placement;
        stages.run("generate", &["generations.jsonl"], |out| -> Result<()> {
            let policy = self.store.load(self.policy_dir)?;
            let records = generation_records(
                placement,
                &policy,
                self.enc,
                self.prompts,
                &cfg.generation,
                self.seed,
                self.observer,
            )?;
            write_jsonl(out.path("generations.jsonl")?, &records)?;
            Ok(())
        })?;
        stages.run("annotate", &["annotated.jsonl"], |out| -> Result<()> {
            let records: Vec<GenerationRecord> = read_jsonl(&generations)?;
            let rows = self.reward.rows_per_prompt(cfg.k());
            let label = format!("annotate ({rows} rows/prompt)");
            let done = annotate_on(placement, self.reward, &records, self.observer, &label)?;
            write_jsonl(out.path("annotated.jsonl")?, &done)?;
            Ok(())
        })?;
        let (data, stats_file) = cfg.selection_files();
        stages.run_lead("select", &[data, stats_file], |out| -> Result<()> {
            let stats = match cfg.algorithm {
                Algorithm::Dpo => {
                    let sc = SelectionConfig::new()
                        .with_strategy(cfg.choose)
                        .with_min_responses(cfg.k())
                        .with_seed(self.seed);
                    select_pairs_file(&annotated, out.path(data)?, sc, Some(&self.enc.tokenizer))?
                }
                Algorithm::Rrhf => {
                    let (ranked, stats) = rank_records(&read_jsonl(&annotated)?, cfg.k());
                    write_jsonl(out.path(data)?, &ranked)?;
                    stats
                }
            };
            Ok(write_json(out.path(stats_file)?, &stats)?)
        })?;
        let stats: SelectionStats = read_json(stages.path(stats_file))?;
        self.observer.note(&format!(
            "   proxy reward: mean {:.3}, best-of-{} {:.3}; {} {}, {} ties dropped",
            stats.mean_reward,
            cfg.k(),
            stats.mean_best_reward,
            stats.emitted,
            match cfg.algorithm {
                Algorithm::Dpo => "pairs",
                Algorithm::Rrhf => "ranked prompts",
            },
            stats.ties_dropped
        ));
        let steps = cfg.steps(stats.emitted, self.fixed_steps);
        let data = stages.path(data);
        stages.run("train", &["policy"], |out| -> Result<()> {
            let dst = out.path("policy")?;
            if stats.emitted == 0 {
                self.observer.note(
                    "   nothing to train on (every prompt's rewards tied): the policy is carried \
                     over unchanged",
                );
                return PolicyStore::<B, P>::carry_over(self.policy_dir, dst);
            }
            let model = match cfg.algorithm {
                Algorithm::Dpo => self.train_dpo(&data, steps)?,
                Algorithm::Rrhf => self.train_rrhf(&data, steps)?,
            };
            self.store.save(&model, dst)
        })?;
        Ok(IterationOutcome {
            steps: if stats.emitted == 0 { 0 } else { steps },
            stats,
            generations,
            annotated,
            data,
            policy: stages.path("policy"),
        })
    }

    /// DPO of the starting policy on `pairs_file` for `steps` optimiser steps; every step is
    /// written to `dpo_metrics.jsonl` beside it.
    fn train_dpo(&self, pairs_file: &Path, steps: usize) -> Result<P> {
        let enc = self.enc;
        let records: Vec<PairRecord> = read_jsonl(pairs_file)?;
        let pairs = records
            .iter()
            .map(|r| enc.pair(r))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let dtc = self.config.dpo.clone().with_pad_id(Some(enc.pad_id));
        // Fresh LoRA adapters draw from the backend RNG: seed it per stage, so a resumed run
        // draws the same ones.
        B::seed(&self.store.device, self.seed);
        let policy = self.store.load_trainable(self.policy_dir)?;
        let reference = reference_logps(
            self.store,
            &policy,
            self.policy_dir,
            self.reference_dir,
            &pairs,
            enc.pad_id,
            dtc.reduction(),
        )?;
        let tc = self.train_config(&self.config.dpo_optimizer, steps);
        let label = format!("DPO ({} pairs)", pairs.len());
        let metrics = pairs_file.with_file_name("dpo_metrics.jsonl");
        let progress = (label.as_str(), "rewards/accuracies", metrics.as_path());
        self.fit(policy, tc, progress, |train| {
            train_dpo(train, (&pairs, &reference), &dtc)
        })
    }

    /// RRHF of the starting policy on `ranked_file` for `steps` optimiser steps; every step is
    /// written to `rrhf_metrics.jsonl` beside it.
    fn train_rrhf(&self, ranked_file: &Path, steps: usize) -> Result<P> {
        let records: Vec<RankedRecord> = read_jsonl(ranked_file)?;
        let items = ranked_examples(&records, self.enc)?;
        let tc = self.train_config(&self.config.rrhf_optimizer, steps);
        let label = format!("RRHF ({} prompts x {})", items.len(), self.config.k());
        B::seed(&self.store.device, self.seed);
        let policy = self.store.load_trainable(self.policy_dir)?;
        let metrics = ranked_file.with_file_name("rrhf_metrics.jsonl");
        let rtc = self.config.rrhf.clone().with_pad_id(Some(self.enc.pad_id));
        let progress = (label.as_str(), "rank_loss", metrics.as_path());
        self.fit(policy, tc, progress, |train| {
            train_rrhf(train, &items, &rtc)
        })
    }

    /// [`fit`] on the store's placement.
    fn fit<F>(
        &self,
        policy: P,
        tc: TrainConfig,
        (label, metric, metrics): (&str, &'static str, &Path),
        train: F,
    ) -> Result<P>
    where
        F: Fn(&mut TrainLoop<B, P>) -> kiln_train::Result<Vec<StepStats>> + Sync,
    {
        let progress = FitProgress {
            label,
            metric,
            metrics,
            observer: self.observer,
        };
        fit(policy, tc, &self.store.placement, &progress, train)
    }

    /// `optimizer` for `steps` steps with the iteration's seed.
    fn train_config(&self, optimizer: &TrainConfig, steps: usize) -> TrainConfig {
        TrainConfig {
            total_steps: steps,
            seed: self.seed,
            ..optimizer.clone()
        }
    }
}

//! One online iteration as resumable stages: generate -> annotate -> select -> train.

use std::path::{Path, PathBuf};

use burn::tensor::backend::AutodiffBackend;
use kiln_data::atomic::{read_json, write_json};
use kiln_data::pairs::{rank_records, select_pairs_file};
use kiln_data::{
    ChatEncoder, Content, GenerationRecord, PairRecord, RankedRecord, SelectionConfig,
    SelectionStats, SelectionStrategy, read_jsonl, write_jsonl,
};
use kiln_losses::{DpoConfig, DpoLoss, RrhfConfig};
use kiln_reward::RewardModel;
use kiln_reward::annotate::PROMPTS_PER_CALL;
use kiln_reward::parallel::annotate_parallel;
use kiln_train::dpo::{DpoTrainConfig, train_dpo};
use kiln_train::parallel::{Team, gather, shard};
use kiln_train::rrhf::{RrhfTrainConfig, ranked_examples, train_rrhf};
use kiln_train::{StageRunner, StepStats, TrainConfig, TrainLoop};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::generate::{SamplingSettings, sharded_generation_records};
use crate::observer::{Observer, Watch, train_watched};
use crate::policy::Policy;
use crate::reference::reference_logps;
use crate::store::PolicyStore;

/// What trains the policy on an iteration's annotated responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    /// DPO on one selected pair per prompt, against the reference model.
    #[default]
    Dpo,
    /// RRHF on all K ranked responses per prompt: length-normalised ranking loss plus the NLL of
    /// the best response; no reference model.
    Rrhf,
}

impl std::str::FromStr for Algorithm {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "dpo" => Ok(Algorithm::Dpo),
            "rrhf" => Ok(Algorithm::Rrhf),
            other => Err(format!("unknown algorithm `{other}` (dpo | rrhf)")),
        }
    }
}

impl std::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Algorithm::Dpo => "dpo",
            Algorithm::Rrhf => "rrhf",
        })
    }
}

/// DPO's settings for an iteration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DpoSettings {
    /// beta.
    pub beta: f64,
    /// The DPO-family loss.
    pub loss: DpoLoss,
    /// Learning rate (AdamW, 10 % warmup, cosine).
    pub lr: f64,
    /// Pairs per micro-batch.
    pub batch_size: usize,
    /// Weight of an NLL term on the chosen responses (TRL's `rpo_alpha`; 0 = plain DPO).
    pub nll_weight: f64,
}

impl Default for DpoSettings {
    fn default() -> Self {
        Self {
            beta: 0.1,
            loss: DpoLoss::SIGMOID,
            lr: 5e-7,
            batch_size: 16,
            nll_weight: 0.0,
        }
    }
}

/// RRHF's settings for an iteration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RrhfSettings {
    /// Learning rate.
    pub lr: f64,
    /// Prompts (K responses each) per micro-batch.
    pub batch_size: usize,
    /// Length normalisation exponent: scores are `logp / |y|^alpha` (1 = the paper).
    pub length_alpha: f64,
    /// Weight of the ranking term.
    pub rank_weight: f64,
}

impl Default for RrhfSettings {
    fn default() -> Self {
        Self {
            lr: 1e-4,
            batch_size: 4,
            length_alpha: 1.0,
            rank_weight: 1.0,
        }
    }
}

/// How one online iteration generates, selects and trains.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct IterationConfig {
    /// DPO or RRHF.
    pub algorithm: Algorithm,
    /// Sampling of the `K` responses per prompt.
    pub sampling: SamplingSettings,
    /// Pair selection (DPO).
    pub choose: SelectionStrategy,
    /// Epochs over the iteration's pairs or ranked lists (sets the step count).
    pub epochs: usize,
    /// DPO settings.
    pub dpo: DpoSettings,
    /// RRHF settings.
    pub rrhf: RrhfSettings,
}

impl IterationConfig {
    /// Optimiser steps for `items` pairs or ranked prompts: `epochs` passes at the algorithm's
    /// batch size, at least one when there is anything to train on; `fixed` overrides.
    pub fn steps(&self, items: usize, fixed: Option<usize>) -> usize {
        let batch = match self.algorithm {
            Algorithm::Dpo => self.dpo.batch_size,
            Algorithm::Rrhf => self.rrhf.batch_size,
        };
        fixed
            .unwrap_or_else(|| (items * self.epochs).div_ceil(batch.max(1)))
            .max(usize::from(items > 0))
    }

    /// The training data file and its statistics file of the select stage.
    pub fn selection_files(&self) -> (&'static str, &'static str) {
        match self.algorithm {
            Algorithm::Dpo => ("pairs.jsonl", "pairs_stats.json"),
            Algorithm::Rrhf => ("ranked.jsonl", "ranked_stats.json"),
        }
    }
}

/// One iteration's inputs: the policy it starts from, the reference, the prompts and who
/// annotates.
pub struct Iteration<'a, B: AutodiffBackend, P: Policy<B>> {
    /// How to generate, select and train.
    pub config: &'a IterationConfig,
    /// Text to ids (tokenizer, chat template, truncation, pad).
    pub enc: &'a ChatEncoder,
    /// The iteration's prompts.
    pub prompts: &'a [Content],
    /// The annotator (scored by this process's peers in parallel, each on whole chunks).
    pub annotator: &'a (dyn RewardModel + Sync),
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

/// One process's part of `len` items cut in blocks of `block` (so every block is processed as
/// one batch whatever the number of processes, and the results are the same bytes): contiguous
/// shards of whole blocks. Everything without a team.
pub fn aligned_shard(len: usize, block: usize, team: Option<&dyn Team>) -> std::ops::Range<usize> {
    let Some(t) = team else {
        return 0..len;
    };
    let block = block.max(1);
    let blocks = shard(len.div_ceil(block), t.rank(), t.world());
    (blocks.start * block).min(len)..(blocks.end * block).min(len)
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
        let team = self.store.placement.team();
        let annotated = stages.path("annotated.jsonl");
        stages.run("generate", &["generations.jsonl"], |out| -> Result<()> {
            let policy = self.store.load(self.policy_dir)?;
            let records = sharded_generation_records(
                &policy,
                self.enc,
                self.prompts,
                &cfg.sampling,
                self.seed,
                self.observer,
                team.as_deref(),
            )?;
            write_jsonl(out.path("generations.jsonl")?, &records)?;
            Ok(())
        })?;
        stages.run("annotate", &["annotated.jsonl"], |out| -> Result<()> {
            let records: Vec<GenerationRecord> = read_jsonl(&generations)?;
            let rows = self.annotator.rows_per_prompt(cfg.sampling.k);
            let label = format!("annotate ({rows} rows/prompt)");
            let range = aligned_shard(records.len(), PROMPTS_PER_CALL, team.as_deref());
            let bar = self.observer.bar(&label, range.len());
            let peers = self.store.placement.local_devices().len();
            let part =
                annotate_parallel(self.annotator, &records[range], peers, |n, _| bar.set(n))?;
            bar.finish();
            let done = match team.as_deref() {
                Some(t) => gather(t, "annotate", &part)?,
                None => part,
            };
            write_jsonl(out.path("annotated.jsonl")?, &done)?;
            Ok(())
        })?;
        let (data, stats_file) = cfg.selection_files();
        stages.run_lead("select", &[data, stats_file], |out| -> Result<()> {
            let stats = match cfg.algorithm {
                Algorithm::Dpo => {
                    let sc = SelectionConfig {
                        strategy: cfg.choose,
                        min_responses: cfg.sampling.k,
                        seed: self.seed,
                    };
                    select_pairs_file(&annotated, out.path(data)?, sc, Some(&self.enc.tokenizer))?
                }
                Algorithm::Rrhf => {
                    let (ranked, stats) = rank_records(&read_jsonl(&annotated)?, cfg.sampling.k);
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
            cfg.sampling.k,
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
        let (cfg, enc) = (&self.config.dpo, self.enc);
        let records: Vec<PairRecord> = read_jsonl(pairs_file)?;
        let pairs = records
            .iter()
            .map(|r| enc.pair(r))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let dtc = DpoTrainConfig::new(
            DpoConfig::new().with_beta(cfg.beta).with_loss(cfg.loss),
            enc.pad_id,
        )
        .with_nll_weight(cfg.nll_weight);
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
            dtc.reduction,
        )?;
        let tc = self.train_config(steps, cfg.lr, cfg.batch_size);
        let label = format!("DPO ({} pairs)", pairs.len());
        let metrics = pairs_file.with_file_name("dpo_metrics.jsonl");
        let watch = (label.as_str(), "rewards/accuracies", metrics.as_path());
        self.fit(policy, tc, watch, |train| {
            train_dpo(train, (&pairs, &reference), &dtc)
        })
    }

    /// RRHF of the starting policy on `ranked_file` for `steps` optimiser steps; every step is
    /// written to `rrhf_metrics.jsonl` beside it.
    fn train_rrhf(&self, ranked_file: &Path, steps: usize) -> Result<P> {
        let cfg = &self.config.rrhf;
        let records: Vec<RankedRecord> = read_jsonl(ranked_file)?;
        let items = ranked_examples(&records, self.enc)?;
        let rrhf = RrhfConfig::new()
            .with_length_alpha(cfg.length_alpha)
            .with_rank_weight(cfg.rank_weight);
        let tc = self.train_config(steps, cfg.lr, cfg.batch_size);
        let label = format!(
            "RRHF ({} prompts x {})",
            items.len(),
            self.config.sampling.k
        );
        B::seed(&self.store.device, self.seed);
        let policy = self.store.load_trainable(self.policy_dir)?;
        let metrics = ranked_file.with_file_name("rrhf_metrics.jsonl");
        let rtc = RrhfTrainConfig::new(rrhf, self.enc.pad_id);
        let watch = (label.as_str(), "rank_loss", metrics.as_path());
        self.fit(policy, tc, watch, |train| train_rrhf(train, &items, &rtc))
    }

    /// [`train_watched`] on the store's placement.
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
        let watch = Watch {
            label,
            metric,
            metrics,
            observer: self.observer,
        };
        train_watched(policy, tc, &self.store.placement, &watch, train)
    }

    fn train_config(&self, steps: usize, lr: f64, batch_size: usize) -> TrainConfig {
        TrainConfig::new(steps)
            .with_lr(lr)
            .with_warmup_steps(steps / 10)
            .with_micro_batch_size(batch_size)
            .with_seed(self.seed)
            .with_log_every(0)
    }
}

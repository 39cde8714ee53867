//! [`Annotator`]: the run's reward signal loaded from a directory, a Bradley-Terry reward model or
//! a pairwise preference model, for the annotate stage and for evaluation's proxy reward.

use std::path::Path;

use burn::tensor::backend::Backend;
use kiln_data::ChatEncoder;
use kiln_model::{
    CausalLm, HfModel, LlamaForCausalLM, LlamaForSequenceClassification, ModelType,
    Qwen2ForCausalLM, Qwen2ForSequenceClassification, SequenceScorer,
};
use serde::{Deserialize, Serialize};

use crate::classifier::ClassifierRewardModel;
use crate::error::Result;
use crate::model::{Prompt, RewardModel};
use crate::pairwise::PairwisePreferenceModel;

/// Which kind of annotator a directory holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AnnotatorKind {
    /// A Bradley-Terry reward model (`*ForSequenceClassification`, one label).
    #[default]
    Bt,
    /// A pairwise preference model (a causal LM answering `A` or `B`).
    Pairwise,
}

impl std::str::FromStr for AnnotatorKind {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "bt" => Ok(AnnotatorKind::Bt),
            "pairwise" => Ok(AnnotatorKind::Pairwise),
            other => Err(format!("unknown annotator `{other}` (bt | pairwise)")),
        }
    }
}

impl std::fmt::Display for AnnotatorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AnnotatorKind::Bt => "bt",
            AnnotatorKind::Pairwise => "pairwise",
        })
    }
}

/// A loaded annotator; `S` is the classifier type, `L` the causal LM type (Llama by default).
#[derive(Debug)]
pub enum Annotator<
    B: Backend,
    S: SequenceScorer<B> = LlamaForSequenceClassification<B>,
    L: CausalLm<B> = LlamaForCausalLM<B>,
> {
    /// A Bradley-Terry reward model.
    Bt(ClassifierRewardModel<B, S>),
    /// A pairwise preference model.
    Pairwise(PairwisePreferenceModel<B, L>),
}

impl<B: Backend, S: SequenceScorer<B> + HfModel<B>, L: CausalLm<B> + HfModel<B>>
    Annotator<B, S, L>
{
    /// Loads the annotator in `dir` (a checkpoint, or PEFT adapters over their base, see
    /// [`kiln_model::traits::resolve_model_dir`]) with its own `tokenizer.json` and chat template when
    /// the directory has them, else with `enc`'s (a model trained on the policy's tokenizer).
    /// A reward model reads at most `enc`'s total length in batches of 64; the pairwise model
    /// twice that (two responses per question).
    ///
    /// # Errors
    /// Missing files or tensors (named), a tokenizer that does not fit the model.
    pub fn load(
        kind: AnnotatorKind,
        dir: &Path,
        enc: &ChatEncoder,
        device: &B::Device,
    ) -> Result<Self> {
        let own_tokenizer = dir.join("tokenizer.json").exists();
        Ok(match kind {
            AnnotatorKind::Bt => {
                let rm = if own_tokenizer {
                    ClassifierRewardModel::<B, S>::from_pretrained(dir, device)?
                } else {
                    ClassifierRewardModel::<B, S>::from_pretrained_with_tokenizer(
                        dir,
                        enc.tokenizer.clone(),
                        enc.template.clone(),
                        device,
                    )?
                };
                Annotator::Bt(
                    rm.with_max_len(enc.truncation.max_total_len)
                        .with_batch_size(64),
                )
            }
            AnnotatorKind::Pairwise => {
                let pm = if own_tokenizer {
                    PairwisePreferenceModel::<B, L>::from_pretrained(dir, device)?
                } else {
                    PairwisePreferenceModel::from_parts(
                        L::load_hf(dir, device)?,
                        enc.tokenizer.clone(),
                        enc.template.clone(),
                    )?
                };
                Annotator::Pairwise(pm.with_max_len(2 * enc.truncation.max_total_len))
            }
        })
    }
}

impl<B: Backend, S: SequenceScorer<B>, L: CausalLm<B>> Annotator<B, S, L> {
    /// As a [`RewardModel`] (the annotate stage), shareable by scoring threads
    /// (whole blocks per peer).
    pub fn reward_model(&self) -> &(dyn RewardModel + Sync)
    where
        ClassifierRewardModel<B, S>: Sync,
        PairwisePreferenceModel<B, L>: Sync,
    {
        match self {
            Annotator::Bt(m) => m,
            Annotator::Pairwise(m) => m,
        }
    }

    /// Per-response proxy rewards for evaluation: the reward model's score, or the pairwise
    /// model's `p(response > baseline's response)` against the baseline policy's response to the
    /// same prompt and sample (`baseline[i]` for `items[i]`); 0.5 when there is no baseline of the
    /// same length (the baseline policy itself).
    ///
    /// # Errors
    /// Scoring errors.
    pub fn proxy_scores(
        &self,
        items: &[(Prompt, String)],
        baseline: Option<&[String]>,
    ) -> Result<Vec<f64>> {
        match (self, baseline) {
            (Annotator::Bt(rm), _) => {
                let refs: Vec<(&Prompt, &str)> =
                    items.iter().map(|(p, r)| (p, r.as_str())).collect();
                Ok(rm.score_batch(&refs)?.into_iter().map(f64::from).collect())
            }
            (Annotator::Pairwise(pm), Some(base)) if base.len() == items.len() => {
                let triples: Vec<(&Prompt, &str, &str)> = items
                    .iter()
                    .zip(base)
                    .map(|((p, r), s)| (p, r.as_str(), s.as_str()))
                    .collect();
                let mut out = Vec::with_capacity(triples.len());
                for chunk in triples.chunks(32) {
                    out.extend(pm.preference_probs(chunk)?.into_iter().map(f64::from));
                }
                Ok(out)
            }
            (Annotator::Pairwise(_), _) => Ok(vec![0.5; items.len()]),
        }
    }
}

/// A loaded annotator of whichever architecture its directory holds, as the online loop uses it:
/// the annotate stage's reward model and evaluation's proxy scores ([`load_annotator`]).
pub trait AnyAnnotator: Send + Sync {
    /// BT or pairwise.
    fn kind(&self) -> AnnotatorKind;

    /// As a [`RewardModel`] (the annotate stage), shareable by scoring threads.
    fn reward_model(&self) -> &(dyn RewardModel + Sync);

    /// Evaluation's proxy rewards ([`Annotator::proxy_scores`]).
    ///
    /// # Errors
    /// Scoring errors.
    fn proxy_scores(
        &self,
        items: &[(Prompt, String)],
        baseline: Option<&[String]>,
    ) -> Result<Vec<f64>>;
}

impl<B, S, L> AnyAnnotator for Annotator<B, S, L>
where
    B: Backend,
    S: SequenceScorer<B>,
    L: CausalLm<B>,
    ClassifierRewardModel<B, S>: Send + Sync,
    PairwisePreferenceModel<B, L>: Send + Sync,
{
    fn kind(&self) -> AnnotatorKind {
        match self {
            Annotator::Bt(_) => AnnotatorKind::Bt,
            Annotator::Pairwise(_) => AnnotatorKind::Pairwise,
        }
    }

    fn reward_model(&self) -> &(dyn RewardModel + Sync) {
        Annotator::reward_model(self)
    }

    fn proxy_scores(
        &self,
        items: &[(Prompt, String)],
        baseline: Option<&[String]>,
    ) -> Result<Vec<f64>> {
        Annotator::proxy_scores(self, items, baseline)
    }
}

/// [`Annotator::load`] for the architecture `dir` holds (`config.json`'s `model_type`, or the
/// base's for PEFT adapters): Llama or Qwen2.
///
/// # Errors
/// As [`Annotator::load`]; a `model_type` Kiln does not implement (named with the file).
pub fn load_annotator<B: Backend>(
    kind: AnnotatorKind,
    dir: &Path,
    enc: &ChatEncoder,
    device: &B::Device,
) -> Result<Box<dyn AnyAnnotator>>
where
    Annotator<B>: AnyAnnotator,
    Annotator<B, Qwen2ForSequenceClassification<B>, Qwen2ForCausalLM<B>>: AnyAnnotator,
{
    Ok(match ModelType::of_dir(dir)? {
        ModelType::Llama => Box::new(Annotator::<B>::load(kind, dir, enc, device)?),
        ModelType::Qwen2 => Box::new(Annotator::<
            B,
            Qwen2ForSequenceClassification<B>,
            Qwen2ForCausalLM<B>,
        >::load(kind, dir, enc, device)?),
    })
}

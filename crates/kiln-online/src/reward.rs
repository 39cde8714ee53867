//! [`RewardSource`]: where an online run's rewards come from (the seam for other sources: a
//! reward model or a pairwise preference model today), loaded for the architecture its directory
//! holds.

use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use kiln_data::ChatEncoder;
use kiln_model::{
    LlamaForCausalLM, LlamaForSequenceClassification, Qwen2ForCausalLM,
    Qwen2ForSequenceClassification,
};
use kiln_reward::{Annotator, AnnotatorKind, AnyAnnotator, load_annotator};
use serde::{Deserialize, Serialize};

use crate::error::Result;

/// Where an online run's rewards come from. In `config.json`: `{"bt": "DIR"}` or
/// `{"pairwise": "DIR"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RewardSource {
    /// A Bradley-Terry reward model: a one-label `LlamaForSequenceClassification` or
    /// `Qwen2ForSequenceClassification` directory (full, or PEFT adapters over a base), with its
    /// own tokenizer and chat template or the policy's.
    Bt(PathBuf),
    /// RLHFlow's pairwise preference model: a causal-LM directory asked which of two responses
    /// is better (`A` or `B`); a response's reward is its mean win probability against the
    /// prompt's other responses.
    Pairwise(PathBuf),
}

impl RewardSource {
    /// A Bradley-Terry reward model in `dir`.
    pub fn bt(dir: impl Into<PathBuf>) -> Self {
        RewardSource::Bt(dir.into())
    }

    /// A pairwise preference model in `dir`.
    pub fn pairwise(dir: impl Into<PathBuf>) -> Self {
        RewardSource::Pairwise(dir.into())
    }

    /// The model directory.
    pub fn dir(&self) -> &Path {
        match self {
            RewardSource::Bt(d) | RewardSource::Pairwise(d) => d,
        }
    }

    /// The annotator kind.
    pub fn kind(&self) -> AnnotatorKind {
        match self {
            RewardSource::Bt(_) => AnnotatorKind::Bt,
            RewardSource::Pairwise(_) => AnnotatorKind::Pairwise,
        }
    }

    /// Loads the model for the architecture its directory holds (`model_type`: Llama or Qwen2),
    /// with `enc`'s tokenizer and template when the directory has none.
    ///
    /// # Errors
    /// Missing files or tensors (named), a `model_type` Kiln does not implement.
    pub fn load<B: Backend>(
        &self,
        enc: &ChatEncoder,
        device: &B::Device,
    ) -> Result<Box<dyn AnyAnnotator>>
    where
        Annotator<B, LlamaForSequenceClassification<B>, LlamaForCausalLM<B>>: AnyAnnotator,
        Annotator<B, Qwen2ForSequenceClassification<B>, Qwen2ForCausalLM<B>>: AnyAnnotator,
    {
        Ok(load_annotator::<B>(self.kind(), self.dir(), enc, device)?)
    }
}

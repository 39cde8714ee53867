//! `LlamaForSequenceClassification` with one label: a scalar score (reward) per sequence.

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, FloatDType, Int, Tensor};

use crate::causal_lm::LlamaForCausalLM;
use crate::config::DecoderConfig;
use crate::error::Result;
use crate::model::LlamaModel;
use crate::traits::SequenceScorer;
use crate::weights::{RandomSource, WeightSource, build_model, linear};

/// Llama with a `score` head (`[hidden] -> 1`, no bias), read at the last non-pad token.
#[derive(Module, Debug)]
pub struct LlamaForSequenceClassification<B: Backend> {
    /// The decoder stack.
    pub model: LlamaModel<B>,
    /// `score` (`[hidden] -> [1]`).
    pub score: Linear<B>,
}

impl<B: Backend> LlamaForSequenceClassification<B> {
    /// Random initialisation (`N(0, std)` matrices, unit norms) from the backend's RNG.
    pub fn init(config: &DecoderConfig, std: f64, device: &B::Device) -> Self {
        Self::init_from(config, std, None, device)
    }

    /// [`Self::init`] with every tensor drawn from its own stream of (`seed`, tensor name), as
    /// [`LlamaForCausalLM::init_seeded`].
    pub fn init_seeded(config: &DecoderConfig, std: f64, seed: u64, device: &B::Device) -> Self {
        Self::init_from(config, std, Some(seed), device)
    }

    fn init_from(config: &DecoderConfig, std: f64, seed: Option<u64>, device: &B::Device) -> Self {
        let mut src = RandomSource { std, device, seed };
        // RandomSource's error type is `Infallible`: every name gets the shape asked for.
        let Ok(model) = Self::build(config, &mut src);
        model
    }

    pub(crate) fn build<S: WeightSource<B>>(
        config: &DecoderConfig,
        src: &mut S,
    ) -> std::result::Result<Self, S::Error> {
        let model = build_model(config, src)?;
        let score = linear(src, "score", config.hidden_size, 1)?;
        Ok(Self { model, score })
    }

    /// A reward model from a causal LM (e.g. the SFT model): keeps the decoder, drops the LM head
    /// and draws a fresh score head from `N(0, std)`.
    pub fn from_causal_lm(lm: LlamaForCausalLM<B>, std: f64) -> Self {
        let device = lm.model.device();
        let mut src = RandomSource {
            std,
            device: &device,
            seed: None,
        };
        let d = lm.model.config.hidden_size;
        let Ok(score) = linear(&mut src, "score", d, 1);
        Self {
            model: lm.model,
            score,
        }
    }

    /// The model's config.
    pub fn config(&self) -> &DecoderConfig {
        &self.model.config
    }

    /// One score per sequence, read like HF at the rightmost token whose id is not
    /// `pad_token_id` (the last token when the config has no pad id); the same as
    /// [`SequenceScorer::score`].
    ///
    /// # Shapes
    /// - `input_ids`, `attention_mask`: `[batch, seq]` -> `[batch]`
    ///
    /// # Errors
    /// [`Error::MaskShape`](crate::Error::MaskShape) for a mask that is not `[batch, seq]`.
    pub fn forward(
        &self,
        input_ids: Tensor<B, 2, Int>,
        attention_mask: Option<Tensor<B, 2, Int>>,
    ) -> Result<Tensor<B, 1>> {
        self.score(input_ids, attention_mask)
    }
}

impl<B: Backend> SequenceScorer<B> for LlamaForSequenceClassification<B> {
    fn vocab_size(&self) -> usize {
        self.model.config.vocab_size
    }

    fn pad_token_id(&self) -> Option<u32> {
        self.model.config.pad_token_id
    }

    fn device(&self) -> B::Device {
        self.model.device()
    }

    fn position_scores(
        &self,
        input_ids: Tensor<B, 2, Int>,
        attention_mask: Option<Tensor<B, 2, Int>>,
    ) -> Result<Tensor<B, 2>> {
        let hidden = self.model.forward(input_ids, attention_mask, None)?;
        let scores = self.score.forward(hidden).squeeze_dim(2);
        Ok(match scores.dtype() {
            DType::F16 | DType::BF16 => scores.cast(FloatDType::F32),
            _ => scores,
        })
    }
}

/// Index of the rightmost token whose id differs from `pad` (HF's
/// `(arange * (ids != pad)).argmax(-1)`; 0 for an all-pad row, `seq - 1` when `pad` is `None`).
///
/// # Shapes
/// - `input_ids`: `[batch, seq]` -> `[batch]`
pub fn last_non_pad_index<B: Backend>(
    input_ids: Tensor<B, 2, Int>,
    pad: Option<u32>,
) -> Tensor<B, 1, Int> {
    let [b, t] = input_ids.dims();
    let device = input_ids.device();
    match pad {
        None => Tensor::<B, 1, Int>::full([b], t as i64 - 1, &device),
        Some(pad) => {
            let non_pad = input_ids.not_equal_elem(pad as i64).int();
            let idx = Tensor::<B, 1, Int>::arange(0..t as i64, &device).reshape([1, t]);
            (non_pad * idx).argmax(1).reshape([b])
        }
    }
}

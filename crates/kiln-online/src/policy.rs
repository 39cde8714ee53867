//! [`Policy`]: a trainable causal LM and the inference type it becomes, as one bound.

use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use kiln_model::{Adapters, CausalLm, HfModel, LlamaForCausalLM, Qwen2ForCausalLM};

/// A policy the online loop can train (autodiff backend `B`), load, save, put LoRA adapters on,
/// and run for generation and log-probs without autodiff ([`Self::Inference`]).
///
/// Implemented for [`LlamaForCausalLM`] and [`Qwen2ForCausalLM`]; another architecture gets the
/// whole loop by implementing kiln-model's traits and this one (two lines).
pub trait Policy<B: AutodiffBackend>:
    CausalLm<B> + AutodiffModule<B> + HfModel<B> + Adapters<B> + 'static
{
    /// The same model on the inner (inference) backend.
    type Inference: CausalLm<B::InnerBackend>
        + HfModel<B::InnerBackend>
        + Adapters<B::InnerBackend>
        + Sync;

    /// The inference copy of this model (`AutodiffModule::valid`).
    fn inference(&self) -> Self::Inference;
}

impl<B: AutodiffBackend> Policy<B> for LlamaForCausalLM<B> {
    type Inference = LlamaForCausalLM<B::InnerBackend>;

    fn inference(&self) -> Self::Inference {
        self.valid()
    }
}

impl<B: AutodiffBackend> Policy<B> for Qwen2ForCausalLM<B> {
    type Inference = Qwen2ForCausalLM<B::InnerBackend>;

    fn inference(&self) -> Self::Inference {
        self.valid()
    }
}

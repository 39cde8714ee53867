//! The example's backends and model types: the library's policy store and annotator on the
//! facade's selected backend, with Llama as the policy.

use kiln::model::LlamaForCausalLM;
use kiln::online::PolicyStore;
use kiln::reward::Annotator;

/// The training backend: the facade's selection (`kiln::backend::AutodiffSelected`): flex by
/// default, LibTorch with `--features tch` (the faster CPU path for training real models, README
/// "Benchmarks"), CUDA with `--features cuda`.
pub type B = kiln::backend::AutodiffSelected;
/// The inference backend (the training backend without autodiff).
pub type I = <B as kiln::burn::tensor::backend::AutodiffBackend>::InnerBackend;
/// The example's error type: every library error converts into it.
pub type Res<T> = Result<T, Box<dyn std::error::Error>>;
/// The run's policies (Llama checkpoints or PEFT adapters over pi_0).
pub type Store = PolicyStore<B, LlamaForCausalLM<B>>;
/// The run's annotator (Llama reward model or pairwise preference model).
pub type Annotation = Annotator<I>;

pub use kiln::online::exact_save_options as save_options;

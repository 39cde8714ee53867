//! Model plumbing for the loop: backends, policies stored as full checkpoints or as PEFT LoRA
//! adapters over pi_0, and the annotator (Bradley-Terry or pairwise preference model).

use kiln::data::ChatEncoder;
use kiln::model::checkpoint::{SaveDtype, SaveOptions};
use kiln::model::{LlamaForCausalLM, LoraConfig, MissingScore};
use kiln::reward::{LlamaRewardModel, PairwisePreferenceModel, RewardModel};
use std::path::{Path, PathBuf};

/// The training backend: the facade's selection (`kiln::backend::AutodiffSelected`): flex by
/// default, LibTorch with `--features tch` (the faster CPU path for training real models, README
/// "Benchmarks"), CUDA with `--features cuda`.
pub type B = kiln::backend::AutodiffSelected;
/// The inference backend (the training backend without autodiff).
pub type I = <B as kiln::burn::tensor::backend::AutodiffBackend>::InnerBackend;
/// The example's error type: every library error converts into it.
pub type Res<T> = Result<T, Box<dyn std::error::Error>>;

pub use kiln::backend::decode_concurrency;

/// f32, so that save -> load is exact (a resumed run then equals an uninterrupted one).
pub fn save_options() -> SaveOptions {
    SaveOptions {
        dtype: SaveDtype::F32,
        ..SaveOptions::default()
    }
}

const ADAPTER_CONFIG: &str = "adapter_config.json";

/// How the run stores policies: full HF checkpoints, or (with LoRA) PEFT adapters whose
/// `base_model_name_or_path` is pi_0's directory, so every iteration's policy is a few MB.
#[derive(Debug, Clone)]
pub struct PolicyStore {
    /// pi_0's directory (absolute): the SFT model or the given policy; the LoRA base.
    pub base: PathBuf,
    /// The adapter settings when the policy trains LoRA adapters.
    pub lora: Option<LoraConfig>,
}

impl PolicyStore {
    /// A store whose adapters sit over `base` (pi_0, recorded as an absolute path so adapters find
    /// it from anywhere).
    pub fn new(base: &Path, lora: Option<LoraConfig>) -> Res<Self> {
        let base = std::fs::canonicalize(base).map_err(|e| format!("{}: {e}", base.display()))?;
        let lora = lora.map(|l| l.with_base_model_name_or_path(Some(base.display().to_string())));
        Ok(PolicyStore { base, lora })
    }

    fn adapter_base(dir: &Path) -> Res<PathBuf> {
        let cfg = LoraConfig::from_adapter_config(dir.join(ADAPTER_CONFIG))?;
        let base = cfg
            .base_model_name_or_path
            .ok_or_else(|| format!("{}: adapter has no base_model_name_or_path", dir.display()))?;
        Ok(PathBuf::from(base))
    }

    /// A policy for inference (adapters merged into the weights: no extra matmuls).
    pub fn load(&self, dir: &Path) -> Res<LlamaForCausalLM<I>> {
        let device = Default::default();
        if dir.join(ADAPTER_CONFIG).exists() {
            let base = LlamaForCausalLM::<I>::from_pretrained(Self::adapter_base(dir)?, &device)?;
            return Ok(base.load_adapter(dir, &device)?.merge_adapters());
        }
        Ok(LlamaForCausalLM::<I>::from_pretrained(dir, &device)?)
    }

    /// A policy to train, warm-started from `dir`: an adapter directory continues its adapters;
    /// a full checkpoint trains every weight, or gets fresh adapters when the run uses LoRA.
    pub fn load_trainable(&self, dir: &Path) -> Res<LlamaForCausalLM<B>> {
        let device = Default::default();
        if dir.join(ADAPTER_CONFIG).exists() {
            let base = LlamaForCausalLM::<B>::from_pretrained(Self::adapter_base(dir)?, &device)?;
            return Ok(base.load_adapter(dir, &device)?);
        }
        let model = LlamaForCausalLM::<B>::from_pretrained(dir, &device)?;
        Ok(match &self.lora {
            Some(lora) => model.with_lora(lora, &device)?,
            None => model,
        })
    }

    /// Writes a trained policy into `dir` (a fresh directory): its adapters, or every weight.
    pub fn save(&self, model: &LlamaForCausalLM<B>, dir: &Path) -> Res<()> {
        if model.has_adapters() {
            model.save_adapter(dir)?;
        } else {
            model.save_pretrained(dir, save_options())?;
        }
        Ok(())
    }

    /// Copies the policy in `from` to `dir` unchanged (an iteration without pairs): hard links
    /// where the file system allows, else copies.
    pub fn carry_over(from: &Path, dir: &Path) -> Res<()> {
        std::fs::create_dir_all(dir)?;
        for entry in std::fs::read_dir(from)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                let dst = dir.join(entry.file_name());
                if std::fs::hard_link(entry.path(), &dst).is_err() {
                    std::fs::copy(entry.path(), &dst)?;
                }
            }
        }
        Ok(())
    }
}

/// The run's annotator, loaded for inference.
pub enum Annotation {
    /// A Bradley-Terry reward model.
    Bt(LlamaRewardModel<I>),
    /// A pairwise preference model.
    Pairwise(PairwisePreferenceModel<I>),
}

impl Annotation {
    /// As a [`RewardModel`] (the annotate stage).
    pub fn reward_model(&self) -> &dyn RewardModel {
        match self {
            Annotation::Bt(m) => m,
            Annotation::Pairwise(m) => m,
        }
    }
}

/// Loads a Bradley-Terry reward model: with its own tokenizer and chat template when the
/// directory has a `tokenizer.json` (a real reward model), else with the run's (the built-in
/// task's reward model, trained on the policy's tokenizer). A directory with an
/// `adapter_config.json` is a LoRA reward model over its `base_model_name_or_path`.
pub fn load_bt(dir: &Path, enc: &ChatEncoder) -> Res<LlamaRewardModel<I>> {
    let device = Default::default();
    let rm = if dir.join(ADAPTER_CONFIG).exists() {
        let base = PolicyStore::adapter_base(dir)?;
        let model = kiln::model::LlamaForSequenceClassification::<I>::from_pretrained(
            &base,
            &device,
            MissingScore::Init { std: 0.0 },
        )?
        .load_adapter(dir, &device)?
        .merge_adapters();
        LlamaRewardModel::with_chat_template(model, enc.tokenizer.clone(), enc.template.clone())?
    } else if dir.join("tokenizer.json").exists() {
        LlamaRewardModel::<I>::from_pretrained(dir, &device)?
    } else {
        LlamaRewardModel::<I>::from_pretrained_with_tokenizer(
            dir,
            enc.tokenizer.clone(),
            enc.template.clone(),
            &device,
        )?
    };
    Ok(rm
        .with_max_len(enc.truncation.max_total_len)
        .with_batch_size(64))
}

/// Loads a pairwise preference model (a causal LM) like [`load_bt`].
pub fn load_pairwise(dir: &Path, enc: &ChatEncoder) -> Res<PairwisePreferenceModel<I>> {
    let device = Default::default();
    let m = if dir.join("tokenizer.json").exists() {
        PairwisePreferenceModel::<I>::from_pretrained(dir, &device)?
    } else {
        let lm = LlamaForCausalLM::<I>::from_pretrained(dir, &device)?;
        PairwisePreferenceModel::with_chat_template(
            lm,
            enc.tokenizer.clone(),
            enc.template.clone(),
        )?
    };
    Ok(m.with_max_len(2 * enc.truncation.max_total_len))
}

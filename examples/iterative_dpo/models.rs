//! Model plumbing for the loop: building the tiny policy, atomic checkpoint save/load, batched
//! reward-model scoring and teacher-forced log-probs.

use kiln::backend::{AutodiffCpu, Cpu};
use kiln::burn::prelude::Backend;
use kiln::data::collate::pad_right;
use kiln::data::examples::{encode_prompt_completion, encode_reward_input};
use kiln::data::{ChatTemplate, Content, Example, Tokenizer, TruncationConfig};
use kiln::model::checkpoint::{SaveDtype, SaveOptions};
use kiln::model::{
    LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification, LogProbReduction,
};
use kiln::reward::{LlamaRewardModel, RewardModel};
use std::path::{Path, PathBuf};

/// The training backend.
pub type B = AutodiffCpu;
/// The inference backend.
pub type I = Cpu;
/// Prompt batches decoded concurrently on the CPU backend: one per core (see
/// `GenerationConfig::concurrent_batches`).
pub fn cpu_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Boxed error for the example.
pub type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// Everything a stage needs to turn text into tokens.
pub struct Text {
    /// The tokenizer.
    pub tokenizer: Tokenizer,
    /// The policy's chat template (the checkpoint's own; the built-in Llama-3.0 one for the
    /// built-in task).
    pub template: ChatTemplate,
    /// Prompt/total truncation.
    pub truncation: TruncationConfig,
    /// Padding id.
    pub pad_id: u32,
}

impl Text {
    /// From a tokenizer and its chat template.
    pub fn new(
        tokenizer: Tokenizer,
        template: ChatTemplate,
        max_prompt_len: usize,
        max_total_len: usize,
    ) -> Res<Self> {
        let pad_id = template.pad_id(&tokenizer)?;
        Ok(Text {
            tokenizer,
            template,
            truncation: TruncationConfig {
                max_prompt_len,
                max_total_len,
            },
            pad_id,
        })
    }

    /// `prompt + completion` as an example whose loss mask covers the completion.
    pub fn example(&self, prompt: &Content, completion: &str) -> Res<Example> {
        let completion = Content::Text(completion.to_string());
        Ok(encode_prompt_completion(
            &self.tokenizer,
            &self.template,
            prompt,
            &completion,
            &self.truncation,
        )?)
    }

    /// Reward-model input ids for a prompt and a response (for training the reward model).
    pub fn reward_input(&self, prompt: &Content, completion: &str) -> Res<Vec<u32>> {
        let completion = Content::Text(completion.to_string());
        Ok(encode_reward_input(
            &self.tokenizer,
            &self.template,
            prompt,
            &completion,
            self.truncation.max_total_len,
        )?)
    }
}

/// The built-in task's policy shape: Llama-3 layout, tiny sizes, the shipped tokenizer's ids.
pub fn tiny_policy_config(text: &Text, hidden: usize, layers: usize) -> Res<LlamaConfig> {
    let mut c = LlamaConfig::tiny(text.tokenizer.vocab_size(), hidden);
    c.num_hidden_layers = layers;
    c.intermediate_size = hidden * 3;
    c.max_position_embeddings = 256;
    c.bos_token_id = text.template.bos_id();
    c.eos_token_id = text.template.stop_ids();
    c.pad_token_id = Some(text.pad_id);
    Ok(c)
}

/// f32 so that save -> load is exact (a resumed run then equals an uninterrupted one).
fn save_options() -> SaveOptions {
    SaveOptions {
        dtype: SaveDtype::F32,
        ..SaveOptions::default()
    }
}

/// Saves atomically: into `<dir>.partial`, then renamed to `dir`.
fn atomic_dir(dir: &Path, save: impl FnOnce(&Path) -> Res<()>) -> Res<()> {
    let partial = PathBuf::from(format!("{}.partial", dir.display()));
    if partial.exists() {
        std::fs::remove_dir_all(&partial)?;
    }
    save(&partial)?;
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::rename(&partial, dir)?;
    Ok(())
}

/// Saves a policy in HF layout (f32), atomically.
pub fn save_policy<BB: Backend>(model: &LlamaForCausalLM<BB>, dir: &Path) -> Res<()> {
    atomic_dir(dir, |p| Ok(model.save_pretrained(p, save_options())?))
}

/// Saves a reward model in HF layout (f32), atomically.
pub fn save_reward_model<BB: Backend>(
    model: &LlamaForSequenceClassification<BB>,
    dir: &Path,
) -> Res<()> {
    atomic_dir(dir, |p| Ok(model.save_pretrained(p, save_options())?))
}

/// Whether a finished checkpoint exists at `dir`.
pub fn checkpoint_exists(dir: &Path) -> bool {
    dir.join("config.json").exists()
}

/// Loads a policy for inference.
pub fn load_policy(dir: &Path) -> Res<LlamaForCausalLM<I>> {
    Ok(LlamaForCausalLM::<I>::from_pretrained(
        dir,
        &Default::default(),
    )?)
}

/// Loads a policy for training.
pub fn load_trainable_policy(dir: &Path) -> Res<LlamaForCausalLM<B>> {
    Ok(LlamaForCausalLM::<B>::from_pretrained(
        dir,
        &Default::default(),
    )?)
}

/// Loads a Bradley-Terry reward model for inference: with its own tokenizer and chat template
/// when the directory has a `tokenizer.json` (a real reward model), else with the run's (the
/// built-in task's reward model, trained on the policy's tokenizer).
pub fn load_reward_model(dir: &Path, text: &Text) -> Res<LlamaRewardModel<I>> {
    let device = Default::default();
    let rm = if dir.join("tokenizer.json").exists() {
        LlamaRewardModel::<I>::from_pretrained(dir, &device)?
    } else {
        LlamaRewardModel::<I>::from_pretrained_with_tokenizer(
            dir,
            text.tokenizer.clone(),
            text.template.clone(),
            &device,
        )?
    };
    Ok(rm
        .with_max_len(text.truncation.max_total_len)
        .with_batch_size(64))
}

/// Scores `(prompt, response)` items with any reward model.
pub fn score(rm: &dyn RewardModel, items: &[(Content, String)]) -> Res<Vec<f32>> {
    let refs: Vec<(&Content, &str)> = items.iter().map(|(p, r)| (p, r.as_str())).collect();
    Ok(rm.score_batch(&refs)?)
}

/// Summed log-probs of each example's completion under `model` (teacher forcing), in batches.
pub fn completion_logprobs<BB: Backend>(
    model: &LlamaForCausalLM<BB>,
    examples: &[Example],
    pad_id: u32,
    batch_size: usize,
) -> Res<Vec<f32>> {
    let device = Default::default();
    let mut out = Vec::with_capacity(examples.len());
    for chunk in examples.chunks(batch_size.max(1)) {
        let b = pad_right(chunk, pad_id)?.to_tensors::<BB>(&device);
        let lp = model.sequence_logprobs(
            b.input_ids,
            Some(b.attention_mask),
            b.loss_mask,
            LogProbReduction::Sum,
        );
        let v: Vec<f32> = lp
            .into_data()
            .convert::<f32>()
            .to_vec()
            .map_err(|e| format!("{e:?}"))?;
        out.extend_from_slice(&v[..chunk.len()]);
    }
    Ok(out)
}

//! Saving and loading LoRA adapters in PEFT's format: `adapter_config.json` +
//! `adapter_model.safetensors` with keys `base_model.model.<module>.lora_A.weight` (`[r, in]`)
//! and `...lora_B.weight` (`[out, r]`); a `SEQ_CLS` adapter also holds the trained score head as
//! `base_model.model.score.weight` (PEFT's `modules_to_save`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::backend::Backend;

use super::peft_config::{
    ADAPTER_WEIGHTS_FILE, AdapterConfig, PEFT_KEY_PREFIX, PeftTaskType, config_path,
};
use super::target::LoraTarget;
use crate::causal_lm::LlamaForCausalLM;
use crate::checkpoint::CheckpointReader;
use crate::checkpoint::SaveDtype;
use crate::checkpoint::load::DeviceSource;
use crate::checkpoint::save::{HfTensor, hf_linear, write_safetensors};
use crate::classifier::LlamaForSequenceClassification;
use crate::error::{Error, Result};
use crate::model::LlamaModel;
use crate::weights::WeightSource;

/// HF path of projection `target` in layer `layer` (`model.layers.0.self_attn.q_proj`).
pub fn module_path(layer: usize, target: LoraTarget) -> String {
    format!("model.layers.{layer}.{}", target.layer_path())
}

/// The PEFT key of an adapter matrix: `base_model.model.<module>.lora_A.weight` (`b = false`)
/// or `...lora_B.weight` (`b = true`).
pub fn lora_key(layer: usize, target: LoraTarget, b: bool) -> String {
    let ab = if b { "lora_B" } else { "lora_A" };
    format!(
        "{PEFT_KEY_PREFIX}{}.{ab}.weight",
        module_path(layer, target)
    )
}

const SCORE_KEY: &str = "base_model.model.score.weight";

/// The adapter tensors of `model` in PEFT layout and naming.
fn adapter_tensors<B: Backend>(model: &LlamaModel<B>) -> Vec<(String, HfTensor<B>)> {
    let mut out = Vec::new();
    for (i, layer) in model.layers.iter().enumerate() {
        for t in LoraTarget::ALL {
            if let Some(lora) = &layer.projection(t).lora {
                let a = lora.lora_a.val().transpose();
                let b = lora.lora_b.val().transpose();
                out.push((lora_key(i, t, false), HfTensor::Matrix(a)));
                out.push((lora_key(i, t, true), HfTensor::Matrix(b)));
            }
        }
    }
    out
}

fn save<B: Backend>(
    model: &LlamaModel<B>,
    dir: &Path,
    task: PeftTaskType,
    extra: Vec<(String, HfTensor<B>)>,
) -> Result<()> {
    let lora = model.lora.clone().ok_or_else(|| Error::NoAdapters {
        dir: dir.to_path_buf(),
    })?;
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    AdapterConfig::for_model(lora, task).write(config_path(dir))?;
    let mut tensors = adapter_tensors(model);
    tensors.extend(extra);
    let n = tensors.len();
    write_safetensors(&dir.join(ADAPTER_WEIGHTS_FILE), tensors, SaveDtype::F32)?;
    tracing::info!(dir = %dir.display(), tensors = n, "saved LoRA adapter (PEFT format)");
    Ok(())
}

/// An opened adapter: its config and its weights file, with every key checked against the model.
struct OpenedAdapter {
    config: AdapterConfig,
    reader: CheckpointReader,
    file: PathBuf,
}

fn open<B: Backend>(
    model: &LlamaModel<B>,
    dir: &Path,
    task: PeftTaskType,
) -> Result<OpenedAdapter> {
    model.check_can_attach_any()?;
    let cfg_path = config_path(dir);
    let config = AdapterConfig::from_file(&cfg_path)?;
    if let Some(found) = config.task_type
        && found != task
    {
        return Err(Error::AdapterTaskType {
            file: cfg_path,
            found: found.to_string(),
            expected: task.to_string(),
        });
    }
    let saves_score = config.modules_to_save.iter().any(|m| m == "score");
    if saves_score && task != PeftTaskType::SeqCls {
        return Err(Error::UnsupportedAdapterOption {
            file: cfg_path,
            key: "modules_to_save".into(),
            value: format!("{:?}", config.modules_to_save),
            reason: "a causal LM has no `score` head".into(),
        });
    }
    let file = dir.join(ADAPTER_WEIGHTS_FILE);
    let reader = CheckpointReader::open_file(&file)?;
    let mut expected = BTreeSet::new();
    for i in 0..model.layers.len() {
        for &t in &config.lora.targets {
            expected.insert(lora_key(i, t, false));
            expected.insert(lora_key(i, t, true));
        }
    }
    if saves_score {
        expected.insert(SCORE_KEY.to_string());
    }
    for key in reader.names() {
        if !expected.contains(&key) {
            let targets: Vec<String> = config.lora.targets.iter().map(|t| t.to_string()).collect();
            return Err(Error::UnknownAdapterKey {
                file,
                key,
                message: format!(
                    "expected `{PEFT_KEY_PREFIX}model.layers.<0..{}>.<module>.lora_A.weight` / \
                     `lora_B.weight` for target_modules [{}]{}",
                    model.layers.len(),
                    targets.join(", "),
                    if saves_score {
                        " and `base_model.model.score.weight`"
                    } else {
                        ""
                    }
                ),
            });
        }
    }
    for key in &expected {
        if !reader.contains(key) {
            return Err(Error::MissingTensor {
                file,
                tensor: key.clone(),
            });
        }
    }
    Ok(OpenedAdapter {
        config,
        reader,
        file,
    })
}

/// Checks a stored shape against `expected` (PEFT layout), naming the module on mismatch.
fn check_shape(
    reader: &CheckpointReader,
    file: &Path,
    key: &str,
    module: &str,
    expected: [usize; 2],
) -> Result<()> {
    let found = reader.shape(key).unwrap_or_default();
    if found != expected {
        return Err(Error::AdapterShapeMismatch {
            file: file.to_path_buf(),
            module: module.to_string(),
            tensor: key
                .strip_prefix(&format!("{PEFT_KEY_PREFIX}{module}."))
                .unwrap_or(key)
                .to_string(),
            expected: expected.to_vec(),
            found: found.to_vec(),
        });
    }
    Ok(())
}

/// Attaches the adapter of `opened` to a frozen `model`.
fn attach<B: Backend>(
    model: LlamaModel<B>,
    opened: &mut OpenedAdapter,
    device: &B::Device,
) -> Result<LlamaModel<B>> {
    let lora = opened.config.lora.clone();
    let r = lora.rank;
    let file = opened.file.clone();
    let reader = &mut opened.reader;
    model.attach_with(&lora, |i, t, d_in, d_out| {
        let module = module_path(i, t);
        let (ka, kb) = (lora_key(i, t, false), lora_key(i, t, true));
        check_shape(reader, &file, &ka, &module, [r, d_in])?;
        check_shape(reader, &file, &kb, &module, [d_out, r])?;
        // Adapters are f32 whatever the base's dtype (PEFT keeps them in f32 on a bf16 base).
        let mut src = DeviceSource::<B> {
            reader: &mut *reader,
            device,
            dtype: burn::tensor::DType::F32,
        };
        let a = src.get_transposed(&ka, d_in, r)?;
        let b = src.get_transposed(&kb, r, d_out)?;
        Ok(lora.adapter_from(a, b))
    })
}

impl<B: Backend> LlamaModel<B> {
    fn check_can_attach_any(&self) -> Result<()> {
        if self.has_adapters() {
            return Err(Error::InvalidLora(
                "the model already has LoRA adapters; call merge_adapters() or \
                 without_adapters() first"
                    .into(),
            ));
        }
        Ok(())
    }
}

impl<B: Backend> LlamaForCausalLM<B> {
    /// Writes the adapters in PEFT's format (`adapter_config.json` with `task_type: CAUSAL_LM`,
    /// `adapter_model.safetensors` in f32) into `dir`; `PeftModel.from_pretrained(base, dir)`
    /// loads them.
    ///
    /// # Errors
    /// [`Error::NoAdapters`] for a model without adapters; I/O errors naming the file.
    pub fn save_adapter(&self, dir: impl AsRef<Path>) -> Result<()> {
        save(
            &self.model,
            dir.as_ref(),
            PeftTaskType::CausalLm,
            Vec::new(),
        )
    }

    /// Loads a PEFT LoRA adapter from `dir` onto this (base) model and freezes the base, like
    /// [`Self::with_lora`]. The adapter's `lora_dropout` is kept (active only under autodiff).
    ///
    /// # Errors
    /// Missing files (named); [`Error::UnsupportedPeftType`] / [`Error::UnsupportedAdapterOption`]
    /// / [`Error::UnknownLoraTarget`] from the config; [`Error::AdapterTaskType`] for a non-
    /// `CAUSAL_LM` adapter; [`Error::UnknownAdapterKey`] for a tensor that is no LoRA weight of
    /// this model (e.g. a layer it does not have); [`Error::MissingTensor`];
    /// [`Error::AdapterShapeMismatch`] naming the module and both shapes; [`Error::InvalidLora`]
    /// when adapters are already attached.
    pub fn load_adapter(self, dir: impl AsRef<Path>, device: &B::Device) -> Result<Self> {
        let dir = dir.as_ref();
        let mut opened = open(&self.model, dir, PeftTaskType::CausalLm)?;
        let mut frozen = self.no_grad();
        frozen.model = attach(frozen.model, &mut opened, device)?;
        tracing::info!(dir = %dir.display(), adapter_params = frozen.num_adapter_params(), "loaded LoRA adapter");
        Ok(frozen)
    }
}

impl<B: Backend> LlamaForSequenceClassification<B> {
    /// Writes the adapters and the score head in PEFT's format (`task_type: SEQ_CLS`,
    /// `modules_to_save: ["score"]`, key `base_model.model.score.weight`).
    ///
    /// # Errors
    /// [`Error::NoAdapters`] for a model without adapters; I/O errors naming the file.
    pub fn save_adapter(&self, dir: impl AsRef<Path>) -> Result<()> {
        let mut score = Vec::new();
        hf_linear(&mut score, SCORE_KEY.to_string(), &self.score);
        save(&self.model, dir.as_ref(), PeftTaskType::SeqCls, score)
    }

    /// Loads a PEFT `SEQ_CLS` LoRA adapter (and its saved score head, when `modules_to_save`
    /// holds `score`) onto this base model; the decoder is frozen, the score head trainable.
    ///
    /// # Errors
    /// As [`LlamaForCausalLM::load_adapter`] (`task_type` must be `SEQ_CLS` or absent).
    pub fn load_adapter(self, dir: impl AsRef<Path>, device: &B::Device) -> Result<Self> {
        let dir = dir.as_ref();
        let mut opened = open(&self.model, dir, PeftTaskType::SeqCls)?;
        let mut frozen = self.no_grad();
        frozen.model = attach(frozen.model, &mut opened, device)?;
        if opened.reader.contains(SCORE_KEY) {
            let d = frozen.config().hidden_size;
            check_shape(&opened.reader, &opened.file, SCORE_KEY, "score", [1, d])?;
            let mut src = DeviceSource::<B> {
                reader: &mut opened.reader,
                device,
                dtype: frozen.score.weight.val().dtype(),
            };
            let w = src.get_transposed(SCORE_KEY, d, 1)?;
            frozen.score = Linear {
                weight: Param::initialized(frozen.score.weight.id, w.require_grad()),
                bias: None,
            };
        } else {
            frozen.score.weight = frozen.score.weight.set_require_grad(true);
        }
        tracing::info!(dir = %dir.display(), adapter_params = frozen.num_adapter_params(), "loaded LoRA adapter");
        Ok(frozen)
    }
}

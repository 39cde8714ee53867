//! Saving in Hugging Face layout: `config.json` + `model.safetensors`, or
//! `model-0000i-of-0000n.safetensors` shards with `model.safetensors.index.json` above a size
//! threshold. Tensors are materialised one shard at a time.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use safetensors::{Dtype, View};

use super::dtype::encode;
use crate::causal_lm::LlamaForCausalLM;
use crate::classifier::LlamaForSequenceClassification;
use crate::error::{Error, Result};
use crate::model::LlamaModel;

/// On-disk dtype of saved weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveDtype {
    /// 32-bit float (exact round trip of an f32 model).
    F32,
    /// IEEE half precision.
    F16,
    /// bfloat16 (what Llama-3 checkpoints ship in).
    BF16,
}

impl SaveDtype {
    fn safetensors(self) -> Dtype {
        match self {
            Self::F32 => Dtype::F32,
            Self::F16 => Dtype::F16,
            Self::BF16 => Dtype::BF16,
        }
    }
    fn torch_name(self) -> &'static str {
        match self {
            Self::F32 => "float32",
            Self::F16 => "float16",
            Self::BF16 => "bfloat16",
        }
    }
    fn bytes(self) -> usize {
        if self == Self::F32 { 4 } else { 2 }
    }
}

/// Options of `save_pretrained`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SaveOptions {
    /// Dtype of the stored tensors.
    pub dtype: SaveDtype,
    /// Shards are cut so that none exceeds this many bytes (unless one tensor alone does).
    pub max_shard_bytes: usize,
}

impl Default for SaveOptions {
    /// bf16, 5 GB shards (HF's default `max_shard_size`).
    fn default() -> Self {
        Self {
            dtype: SaveDtype::BF16,
            max_shard_bytes: 5_000_000_000,
        }
    }
}

pub(crate) enum HfTensor<B: Backend> {
    Matrix(Tensor<B, 2>),
    Vector(Tensor<B, 1>),
}

impl<B: Backend> HfTensor<B> {
    fn shape(&self) -> Vec<usize> {
        match self {
            Self::Matrix(t) => t.dims().to_vec(),
            Self::Vector(t) => t.dims().to_vec(),
        }
    }
    fn values(self, name: &str) -> Result<Vec<f32>> {
        match self {
            Self::Matrix(t) => crate::readback::read_f32(t, name),
            Self::Vector(t) => crate::readback::read_f32(t, name),
        }
    }
}

pub(crate) fn hf_linear<B: Backend>(
    out: &mut Vec<(String, HfTensor<B>)>,
    name: String,
    l: &burn::nn::Linear<B>,
) {
    if let Some(bias) = &l.bias {
        let bias_name = match name.strip_suffix(".weight") {
            Some(stem) => format!("{stem}.bias"),
            None => format!("{name}.bias"),
        };
        out.push((name, HfTensor::Matrix(l.weight.val().transpose())));
        out.push((bias_name, HfTensor::Vector(bias.val())));
    } else {
        out.push((name, HfTensor::Matrix(l.weight.val().transpose())));
    }
}

fn model_tensors<B: Backend>(m: &LlamaModel<B>) -> Vec<(String, HfTensor<B>)> {
    let mut out = vec![(
        "model.embed_tokens.weight".to_string(),
        HfTensor::Matrix(m.embed_tokens.weight.val()),
    )];
    for (i, l) in m.layers.iter().enumerate() {
        let p = format!("model.layers.{i}");
        let a = &l.self_attn;
        hf_linear(
            &mut out,
            format!("{p}.self_attn.q_proj.weight"),
            &a.q_proj.base,
        );
        hf_linear(
            &mut out,
            format!("{p}.self_attn.k_proj.weight"),
            &a.k_proj.base,
        );
        hf_linear(
            &mut out,
            format!("{p}.self_attn.v_proj.weight"),
            &a.v_proj.base,
        );
        hf_linear(
            &mut out,
            format!("{p}.self_attn.o_proj.weight"),
            &a.o_proj.base,
        );
        hf_linear(
            &mut out,
            format!("{p}.mlp.gate_proj.weight"),
            &l.mlp.gate_proj.base,
        );
        hf_linear(
            &mut out,
            format!("{p}.mlp.up_proj.weight"),
            &l.mlp.up_proj.base,
        );
        hf_linear(
            &mut out,
            format!("{p}.mlp.down_proj.weight"),
            &l.mlp.down_proj.base,
        );
        out.push((
            format!("{p}.input_layernorm.weight"),
            HfTensor::Vector(l.input_layernorm.weight.val()),
        ));
        out.push((
            format!("{p}.post_attention_layernorm.weight"),
            HfTensor::Vector(l.post_attention_layernorm.weight.val()),
        ));
    }
    out.push((
        "model.norm.weight".into(),
        HfTensor::Vector(m.norm.weight.val()),
    ));
    out
}

struct Owned {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl View for &Owned {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

/// Writes `tensors` (HF layout) to one safetensors file in `dtype`, with PyTorch's
/// `{"format": "pt"}` metadata.
pub(crate) fn write_safetensors<B: Backend>(
    path: &Path,
    tensors: Vec<(String, HfTensor<B>)>,
    dtype: SaveDtype,
) -> Result<()> {
    let dtype = dtype.safetensors();
    let meta = Some(HashMap::from([("format".to_string(), "pt".to_string())]));
    let owned: Vec<(String, Owned)> = tensors
        .into_iter()
        .map(|(name, t)| {
            let shape = t.shape();
            let data = encode(dtype, &t.values(&name)?);
            Ok((name, Owned { dtype, shape, data }))
        })
        .collect::<Result<_>>()?;
    safetensors::serialize_to_file(owned.iter().map(|(k, v)| (k.as_str(), v)), meta, path).map_err(
        |e| Error::Save {
            file: path.to_path_buf(),
            message: e.to_string(),
        },
    )
}

fn write_dir<B: Backend>(
    dir: &Path,
    config_json: String,
    tensors: Vec<(String, HfTensor<B>)>,
    opts: SaveOptions,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    // Remove weights of an earlier save so that stale shards cannot be picked up.
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if name.starts_with("model") && name.contains(".safetensors") {
                std::fs::remove_file(e.path()).map_err(|err| Error::io(e.path(), err))?;
            }
        }
    }
    let cfg_path = dir.join("config.json");
    std::fs::write(&cfg_path, config_json).map_err(|e| Error::io(&cfg_path, e))?;

    let elem = opts.dtype.bytes();
    let mut shards: Vec<Vec<(String, HfTensor<B>)>> = vec![vec![]];
    let mut current = 0usize;
    let mut total = 0usize;
    for (name, t) in tensors {
        let size = t.shape().iter().product::<usize>() * elem;
        total += size;
        if current > 0 && current + size > opts.max_shard_bytes {
            shards.push(vec![]);
            current = 0;
        }
        current += size;
        if let Some(s) = shards.last_mut() {
            s.push((name, t));
        }
    }
    let n = shards.len();
    let mut weight_map = BTreeMap::new();
    for (i, shard) in shards.into_iter().enumerate() {
        let file = if n == 1 {
            "model.safetensors".to_string()
        } else {
            format!("model-{:05}-of-{:05}.safetensors", i + 1, n)
        };
        for (name, _) in &shard {
            weight_map.insert(name.clone(), file.clone());
        }
        write_safetensors(&dir.join(&file), shard, opts.dtype)?;
    }
    if n > 1 {
        let index = serde_json::json!({
            "metadata": {"total_size": total},
            "weight_map": weight_map,
        });
        let path = dir.join("model.safetensors.index.json");
        let text = serde_json::to_string_pretty(&index).unwrap_or_default();
        std::fs::write(&path, text).map_err(|e| Error::io(&path, e))?;
    }
    tracing::info!(dir = %dir.display(), shards = n, bytes = total, "saved checkpoint");
    Ok(())
}

fn no_adapters<B: Backend>(model: &LlamaModel<B>, dir: &Path) -> Result<()> {
    if model.has_adapters() {
        return Err(Error::AdaptersPresent {
            dir: dir.to_path_buf(),
        });
    }
    Ok(())
}

impl<B: Backend> LlamaForCausalLM<B> {
    /// Saves in Hugging Face layout (`AutoModelForCausalLM.from_pretrained` loads it).
    ///
    /// # Errors
    /// [`Error::AdaptersPresent`] when LoRA adapters are attached (use `save_adapter`,
    /// `merge_adapters()` or `without_adapters()`); I/O errors naming the file.
    pub fn save_pretrained(&self, dir: impl AsRef<Path>, opts: SaveOptions) -> Result<()> {
        no_adapters(&self.model, dir.as_ref())?;
        let mut tensors = model_tensors(&self.model);
        if let Some(head) = &self.lm_head {
            hf_linear(&mut tensors, "lm_head.weight".into(), head);
        }
        let cfg = self.config().to_hf_json(opts.dtype.torch_name());
        write_dir(dir.as_ref(), cfg, tensors, opts)
    }
}

impl<B: Backend> LlamaForSequenceClassification<B> {
    /// Saves in Hugging Face layout as a one-label `LlamaForSequenceClassification`.
    ///
    /// # Errors
    /// [`Error::AdaptersPresent`] when LoRA adapters are attached; I/O errors naming the file.
    pub fn save_pretrained(&self, dir: impl AsRef<Path>, opts: SaveOptions) -> Result<()> {
        no_adapters(&self.model, dir.as_ref())?;
        let mut tensors = model_tensors(&self.model);
        hf_linear(&mut tensors, "score.weight".into(), &self.score);
        let mut cfg: serde_json::Value =
            serde_json::from_str(&self.config().to_hf_json(opts.dtype.torch_name()))
                .unwrap_or_default();
        cfg["architectures"] =
            serde_json::json!([self.config().model_type.classifier_architecture()]);
        cfg["id2label"] = serde_json::json!({"0": "LABEL_0"});
        cfg["label2id"] = serde_json::json!({"LABEL_0": 0});
        let text = serde_json::to_string_pretty(&cfg).unwrap_or_default();
        write_dir(dir.as_ref(), text, tensors, opts)
    }
}

//! Loading Hugging Face checkpoints: `config.json` + `model.safetensors`, or shards listed in
//! `model.safetensors.index.json`. Files are memory-mapped; each tensor is decoded (f32, f16 or
//! bf16 -> the [`LoadDtype`] asked for, bit for bit when the dtypes agree) and moved to the
//! device one at a time, so at most one tensor is copied at once.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorData};
use memmap2::Mmap;
use safetensors::SafeTensors;
use safetensors::tensor::{Metadata, TensorInfo};

use super::dtype::{burn_dtype, decode_as, decode_f32, first_non_finite};
use super::load_options::{LoadDtype, LoadOptions, check_backend_dtype};
use crate::causal_lm::LlamaForCausalLM;
use crate::classifier::LlamaForSequenceClassification;
use crate::config::DecoderConfig;
use crate::error::{Error, Result};
use crate::model_type::ModelType;
use crate::weights::{RandomSource, WeightSource};

/// What to do when a reward-model checkpoint has no `score.weight` (e.g. an SFT checkpoint).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MissingScore {
    /// Fail with [`Error::MissingTensor`].
    Error,
    /// Draw a fresh head from `N(0, std)` (HF does the same with `initializer_range`).
    Init {
        /// Standard deviation of the new head.
        std: f64,
    },
}

struct Shard {
    path: PathBuf,
    map: Mmap,
    header_len: usize,
    tensors: HashMap<String, TensorInfo>,
}

/// The environment variable that lets checkpoints and adapters with NaN or infinite weights load
/// (`KILN_ALLOW_NON_FINITE_WEIGHTS=1`), e.g. to inspect a diverged run's weights. Without it,
/// such a tensor is an [`Error::NonFiniteWeight`] naming it: a NaN weight would otherwise only
/// surface later, as non-finite logits or a NaN loss.
pub const ALLOW_NON_FINITE_ENV: &str = "KILN_ALLOW_NON_FINITE_WEIGHTS";

fn non_finite_allowed_by_env() -> bool {
    std::env::var(ALLOW_NON_FINITE_ENV).is_ok_and(|v| !matches!(v.as_str(), "" | "0" | "false"))
}

/// Memory-mapped safetensors files of a checkpoint directory, with a name -> file index.
///
/// Every tensor read is checked for NaN and infinities (one pass over its bytes while decoding)
/// unless [`CheckpointReader::allow_non_finite`] or [`ALLOW_NON_FINITE_ENV`] says otherwise.
pub struct CheckpointReader {
    allow_non_finite: bool,
    dir: PathBuf,
    /// File named in "missing tensor" errors (the index, or the single safetensors file).
    index_path: PathBuf,
    shards: Vec<Shard>,
    location: HashMap<String, usize>,
    used: BTreeSet<String>,
}

#[allow(unsafe_code)]
fn mmap(path: &Path) -> Result<Mmap> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    // SAFETY: the map is read-only and only lives while the model is being built; checkpoint
    // files are not expected to be modified concurrently (the same contract as HF's safe_open).
    unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))
}

fn open_shard(path: &Path) -> Result<Shard> {
    let map = mmap(path)?;
    let corrupt = |e: safetensors::SafeTensorError| Error::Corrupt {
        file: path.to_path_buf(),
        message: e.to_string(),
    };
    // Full validation (header, offsets, file length) before anything is read.
    SafeTensors::deserialize(&map).map_err(corrupt)?;
    let (n, meta): (usize, Metadata) = SafeTensors::read_metadata(&map).map_err(corrupt)?;
    let tensors = meta
        .tensors()
        .into_iter()
        .map(|(k, v)| (k, v.clone()))
        .collect();
    Ok(Shard {
        path: path.to_path_buf(),
        map,
        header_len: 8 + n,
        tensors,
    })
}

impl CheckpointReader {
    /// Opens `dir/model.safetensors.index.json` (sharded) or `dir/model.safetensors`.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        let index_path = dir.join("model.safetensors.index.json");
        let mut shards = Vec::new();
        let mut location = HashMap::new();
        if index_path.exists() {
            let text =
                std::fs::read_to_string(&index_path).map_err(|e| Error::io(&index_path, e))?;
            let json: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| Error::Corrupt {
                    file: index_path.clone(),
                    message: e.to_string(),
                })?;
            let map = json
                .get("weight_map")
                .and_then(|m| m.as_object())
                .ok_or_else(|| Error::Corrupt {
                    file: index_path.clone(),
                    message: "no `weight_map` object".into(),
                })?;
            let mut files: Vec<&str> = map.values().filter_map(|v| v.as_str()).collect();
            files.sort_unstable();
            files.dedup();
            for f in files {
                shards.push(open_shard(&dir.join(f))?);
            }
            for (name, file) in map {
                let file = file.as_str().unwrap_or_default();
                let i = shards
                    .iter()
                    .position(|s| s.path == dir.join(file))
                    .ok_or_else(|| Error::Corrupt {
                        file: index_path.clone(),
                        message: format!("`{name}` maps to a non-string file"),
                    })?;
                if !shards[i].tensors.contains_key(name) {
                    return Err(Error::MissingTensor {
                        file: shards[i].path.clone(),
                        tensor: name.clone(),
                    });
                }
                location.insert(name.clone(), i);
            }
            for (i, s) in shards.iter().enumerate() {
                for name in s.tensors.keys() {
                    location.entry(name.clone()).or_insert(i);
                }
            }
            Ok(Self {
                allow_non_finite: non_finite_allowed_by_env(),
                dir,
                index_path,
                shards,
                location,
                used: BTreeSet::new(),
            })
        } else {
            let path = dir.join("model.safetensors");
            let shard = open_shard(&path)?;
            for name in shard.tensors.keys() {
                location.insert(name.clone(), 0);
            }
            shards.push(shard);
            Ok(Self {
                allow_non_finite: non_finite_allowed_by_env(),
                dir,
                index_path: path,
                shards,
                location,
                used: BTreeSet::new(),
            })
        }
    }

    /// Opens one safetensors file (e.g. a PEFT `adapter_model.safetensors`).
    pub fn open_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let shard = open_shard(path)?;
        let location = shard.tensors.keys().map(|k| (k.clone(), 0)).collect();
        Ok(Self {
            allow_non_finite: non_finite_allowed_by_env(),
            dir: path.parent().unwrap_or(Path::new(".")).to_path_buf(),
            index_path: path.to_path_buf(),
            shards: vec![shard],
            location,
            used: BTreeSet::new(),
        })
    }

    /// Whether tensors holding NaN or infinities may be read (default: no, unless
    /// [`ALLOW_NON_FINITE_ENV`] is set).
    pub fn allow_non_finite(mut self, allow: bool) -> Self {
        self.allow_non_finite = allow;
        self
    }

    /// Fails with [`Error::NonFiniteWeight`] on the first NaN or infinity of tensor `name`.
    fn check_finite(
        &self,
        shard: &Shard,
        name: &str,
        info: &TensorInfo,
        bytes: &[u8],
    ) -> Result<()> {
        if self.allow_non_finite {
            return Ok(());
        }
        match first_non_finite(info.dtype, bytes) {
            None => Ok(()),
            Some((index, value)) => Err(Error::NonFiniteWeight {
                file: shard.path.clone(),
                tensor: name.into(),
                index,
                value,
            }),
        }
    }

    /// The file named in "missing tensor" errors: the index, or the single safetensors file.
    pub fn index_path(&self) -> &Path {
        &self.index_path
    }

    /// The stored shape of tensor `name`.
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        let i = *self.location.get(name)?;
        self.shards[i].tensors.get(name).map(|t| t.shape.as_slice())
    }

    /// The checkpoint directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the checkpoint has tensor `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.location.contains_key(name)
    }

    /// All tensor names, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.location.keys().cloned().collect();
        v.sort();
        v
    }

    /// The burn dtype tensor `name` is stored in (`None` when absent or not a float dtype).
    pub fn stored_dtype(&self, name: &str) -> Option<DType> {
        let i = *self.location.get(name)?;
        burn_dtype(self.shards[i].tensors.get(name)?.dtype)
    }

    /// Decodes tensor `name` into `dtype` (f32, f16 or bf16), transposed when `transposed` (a
    /// matrix), and checks its stored shape.
    pub fn read_as(
        &mut self,
        name: &str,
        expected: &[usize],
        dtype: DType,
        transposed: bool,
    ) -> Result<TensorData> {
        let (shard, info) = self.locate(name, expected)?;
        let (start, end) = info.data_offsets;
        let bytes = &shard.map[shard.header_len + start..shard.header_len + end];
        self.check_finite(shard, name, info, bytes)?;
        let data = decode_as(info.dtype, bytes, expected, dtype, transposed).ok_or_else(|| {
            Error::UnsupportedDtype {
                file: shard.path.clone(),
                tensor: name.into(),
                dtype: format!("{:?}", info.dtype),
            }
        })?;
        self.used.insert(name.to_string());
        Ok(data)
    }

    fn locate(&self, name: &str, expected: &[usize]) -> Result<(&Shard, &TensorInfo)> {
        let i = *self
            .location
            .get(name)
            .ok_or_else(|| Error::MissingTensor {
                file: self.index_path.clone(),
                tensor: name.to_string(),
            })?;
        let shard = &self.shards[i];
        let info = &shard.tensors[name];
        if info.shape != expected {
            return Err(Error::ShapeMismatch {
                file: shard.path.clone(),
                tensor: name.into(),
                expected: expected.to_vec(),
                found: info.shape.clone(),
            });
        }
        Ok((shard, info))
    }

    /// Decodes tensor `name` to f32 and checks its shape.
    pub fn read_f32(&mut self, name: &str, expected: &[usize]) -> Result<TensorData> {
        let (shard, info) = self.locate(name, expected)?;
        let (start, end) = info.data_offsets;
        let bytes = &shard.map[shard.header_len + start..shard.header_len + end];
        self.check_finite(shard, name, info, bytes)?;
        let values = decode_f32(info.dtype, bytes).ok_or_else(|| Error::UnsupportedDtype {
            file: shard.path.clone(),
            tensor: name.into(),
            dtype: format!("{:?}", info.dtype),
        })?;
        self.used.insert(name.to_string());
        Ok(TensorData::new(values, expected.to_vec()))
    }

    /// Fails on the first tensor that was never read, except names matching `ignored`.
    pub fn check_all_used(&self, ignored: &[&str]) -> Result<()> {
        let mut names: Vec<&String> = self.location.keys().collect();
        names.sort();
        for name in names {
            let skip = name.ends_with("rotary_emb.inv_freq") || ignored.contains(&name.as_str());
            if !skip && !self.used.contains(name) {
                return Err(Error::UnexpectedTensor {
                    file: self.shards[self.location[name]].path.clone(),
                    tensor: name.clone(),
                });
            }
        }
        Ok(())
    }
}

/// Tensors read from a checkpoint onto `device`, in `dtype`.
pub(crate) struct DeviceSource<'a, B: Backend> {
    pub reader: &'a mut CheckpointReader,
    pub device: &'a B::Device,
    pub dtype: DType,
}

impl<B: Backend> WeightSource<B> for DeviceSource<'_, B> {
    type Error = Error;

    fn get<const D: usize>(&mut self, name: &str, shape: [usize; D]) -> Result<Tensor<B, D>> {
        let data = self.reader.read_as(name, &shape, self.dtype, false)?;
        Ok(Tensor::from_data(data, (self.device, self.dtype)))
    }

    fn get_transposed(&mut self, name: &str, d_in: usize, d_out: usize) -> Result<Tensor<B, 2>> {
        // Transpose on the host so the device tensor is contiguous in burn's `[in, out]` layout.
        let data = self
            .reader
            .read_as(name, &[d_out, d_in], self.dtype, true)?;
        Ok(Tensor::from_data(data, (self.device, self.dtype)))
    }
}

/// The dtype `options` resolve to for `reader`, checked against the backend.
fn resolve_dtype<B: Backend>(
    reader: &CheckpointReader,
    options: LoadOptions,
    device: &B::Device,
) -> Result<DType> {
    let dtype = match options.dtype {
        LoadDtype::F32 => DType::F32,
        LoadDtype::F16 => DType::F16,
        LoadDtype::BF16 => DType::BF16,
        LoadDtype::Checkpoint => {
            let name = "model.embed_tokens.weight";
            reader
                .stored_dtype(name)
                .ok_or_else(|| Error::MissingTensor {
                    file: reader.index_path.clone(),
                    tensor: name.into(),
                })?
        }
    };
    check_backend_dtype::<B>(device, dtype)?;
    Ok(dtype)
}

fn read_config(dir: &Path) -> Result<DecoderConfig> {
    DecoderConfig::from_file(dir.join("config.json"))
}

/// The Rust types that load each `model_type`: (causal LM, sequence classifier).
fn loaders(t: ModelType) -> (&'static str, &'static str) {
    match t {
        ModelType::Llama => ("LlamaForCausalLM", "LlamaForSequenceClassification"),
        ModelType::Qwen2 => ("Qwen2ForCausalLM", "Qwen2ForSequenceClassification"),
    }
}

/// `dir`'s config, which must be of `expected` type (`classifier`: the loader is a sequence
/// classifier).
pub(crate) fn read_config_of(
    dir: &Path,
    expected: ModelType,
    classifier: bool,
) -> Result<DecoderConfig> {
    let config = read_config(dir)?;
    if config.model_type != expected {
        let pick = |t| {
            let (lm, cls) = loaders(t);
            if classifier { cls } else { lm }
        };
        return Err(Error::WrongModelType {
            path: dir.join("config.json"),
            found: config.model_type,
            expected,
            loader: pick(expected),
            suggested: pick(config.model_type),
        });
    }
    Ok(config)
}

impl<B: Backend> LlamaForCausalLM<B> {
    /// Loads a Hugging Face `LlamaForCausalLM` directory with its weights in f32 (f16/bf16
    /// checkpoints are widened); see [`Self::from_pretrained_with_options`].
    ///
    /// Errors name the file and tensor: missing, unexpected, wrong shape, unsupported dtype,
    /// corrupt/truncated file, bad config. A stored `lm_head.weight` of a tied model is ignored,
    /// as HF does.
    pub fn from_pretrained(dir: impl AsRef<Path>, device: &B::Device) -> Result<Self> {
        Self::from_pretrained_with_options(dir, device, LoadOptions::default())
    }

    /// [`Self::from_pretrained`] with the weights in `options.dtype`: e.g. a bf16 checkpoint
    /// loaded as [`LoadDtype::BF16`] (or [`LoadDtype::Checkpoint`]) is never widened to f32, and
    /// the forward runs in bf16 (f32 norm statistics and attention softmax, f32 log-probs).
    ///
    /// # Errors
    /// Those of [`Self::from_pretrained`], and [`Error::UnsupportedBackendDtype`] when the
    /// backend cannot compute in that dtype.
    pub fn from_pretrained_with_options(
        dir: impl AsRef<Path>,
        device: &B::Device,
        options: LoadOptions,
    ) -> Result<Self> {
        Self::load_as(dir.as_ref(), device, options, ModelType::Llama)
    }

    /// Loads `dir`, whose `model_type` must be `expected`.
    pub(crate) fn load_as(
        dir: &Path,
        device: &B::Device,
        options: LoadOptions,
        expected: ModelType,
    ) -> Result<Self> {
        let config = read_config_of(dir, expected, false)?;
        let mut reader = CheckpointReader::open(dir)?;
        if options.allow_non_finite {
            reader = reader.allow_non_finite(true);
        }
        let dtype = resolve_dtype::<B>(&reader, options, device)?;
        let model = Self::build(
            &config,
            &mut DeviceSource {
                reader: &mut reader,
                device,
                dtype,
            },
        )?;
        let ignored: &[&str] = if config.tie_word_embeddings {
            &["lm_head.weight"]
        } else {
            &[]
        };
        reader.check_all_used(ignored)?;
        tracing::info!(dir = %dir.display(), model_type = %expected, params = config.num_parameters(), ?dtype, "loaded causal LM");
        Ok(model)
    }
}

impl<B: Backend> LlamaForSequenceClassification<B> {
    /// Loads a `LlamaForSequenceClassification` (1 label) directory in f32. `lm_head.weight` is
    /// ignored, so a causal-LM checkpoint can seed a reward model with `MissingScore::Init`.
    pub fn from_pretrained(
        dir: impl AsRef<Path>,
        device: &B::Device,
        missing_score: MissingScore,
    ) -> Result<Self> {
        Self::from_pretrained_with_options(dir, device, missing_score, LoadOptions::default())
    }

    /// [`Self::from_pretrained`] with the weights in `options.dtype` (scores are f32 whatever
    /// the weights' dtype).
    ///
    /// # Errors
    /// Those of [`Self::from_pretrained`], and [`Error::UnsupportedBackendDtype`] when the
    /// backend cannot compute in that dtype.
    pub fn from_pretrained_with_options(
        dir: impl AsRef<Path>,
        device: &B::Device,
        missing_score: MissingScore,
        options: LoadOptions,
    ) -> Result<Self> {
        Self::load_as(
            dir.as_ref(),
            device,
            missing_score,
            options,
            ModelType::Llama,
        )
    }

    /// Loads `dir`, whose `model_type` must be `expected`.
    pub(crate) fn load_as(
        dir: &Path,
        device: &B::Device,
        missing_score: MissingScore,
        options: LoadOptions,
        expected: ModelType,
    ) -> Result<Self> {
        let config = read_config_of(dir, expected, true)?;
        let mut reader = CheckpointReader::open(dir)?;
        if options.allow_non_finite {
            reader = reader.allow_non_finite(true);
        }
        let dtype = resolve_dtype::<B>(&reader, options, device)?;
        let model = if reader.contains("score.weight") {
            Self::build(
                &config,
                &mut DeviceSource {
                    reader: &mut reader,
                    device,
                    dtype,
                },
            )?
        } else {
            match missing_score {
                MissingScore::Error => {
                    return Err(Error::MissingTensor {
                        file: reader.index_path.clone(),
                        tensor: "score.weight".into(),
                    });
                }
                MissingScore::Init { std } => {
                    let lm_model = crate::weights::build_model(
                        &config,
                        &mut DeviceSource {
                            reader: &mut reader,
                            device,
                            dtype,
                        },
                    )?;
                    let Ok(mut score) = crate::weights::linear(
                        &mut RandomSource {
                            std,
                            device,
                            seed: None,
                        },
                        "score",
                        config.hidden_size,
                        1,
                    );
                    if dtype != DType::F32 {
                        let w = score
                            .weight
                            .val()
                            .cast(burn::tensor::FloatDType::from(dtype));
                        score.weight = burn::module::Param::from_tensor(w);
                    }
                    Self {
                        model: lm_model,
                        score,
                    }
                }
            }
        };
        reader.check_all_used(&["lm_head.weight"])?;
        Ok(model)
    }
}

//! Errors of kiln-model: every checkpoint error names the file and, where one applies, the tensor
//! (or, for LoRA adapters, the module).

use std::path::PathBuf;

/// Errors raised while reading configs, checkpoints and adapters or saving models.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// `config.json` is malformed, misses a required key or holds an unsupported value.
    #[error("{path}: bad config: {message}")]
    Config {
        /// The config file (or `<memory>` for a config built in code).
        path: PathBuf,
        /// What is wrong (serde_json messages include line and column).
        message: String,
    },
    /// A tensor's values could not be read back to the host.
    #[error("cannot read {what} back from the device: {message}")]
    ReadBack {
        /// What the values are (`log-probs`, `scores`, a tensor name).
        what: String,
        /// The backend's words.
        message: String,
    },
    /// A checkpoint of another architecture than the type asked to load it.
    #[error(
        "{path}: the checkpoint's model_type is `{found}`, but this loader ({loader}) reads \
         `{expected}` checkpoints; `{found}` is read by {suggested}"
    )]
    WrongModelType {
        /// The `config.json` read.
        path: PathBuf,
        /// Its `model_type`.
        found: crate::ModelType,
        /// The type the loader implements.
        expected: crate::ModelType,
        /// The loading type (`LlamaForCausalLM`, ...).
        loader: &'static str,
        /// The type that loads `found`.
        suggested: &'static str,
    },
    /// A parameter of a log-prob computation lies outside its valid range.
    #[error("{what}: parameter `{name}` = {value} is invalid: expected {expected}")]
    InvalidParameter {
        /// The computation (`chunked_logprobs`).
        what: &'static str,
        /// The parameter's name as it appears in the config.
        name: &'static str,
        /// The value that was given.
        value: f64,
        /// The range the value must lie in, in words.
        expected: &'static str,
    },
    /// A command-line value (e.g. `--reduction mean`) could not be parsed.
    #[error("invalid {what} `{input}`: expected {expected}")]
    Parse {
        /// What was being parsed (`log-prob reduction`).
        what: &'static str,
        /// The text given.
        input: String,
        /// What is accepted, in words.
        expected: &'static str,
    },
    /// A config built in code breaks an invariant of the model (see
    /// [`DecoderConfig::validate`](crate::DecoderConfig::validate)); a `config.json` that does is
    /// reported as [`Error::Config`] with its path.
    #[error("invalid model config: {0}")]
    InvalidConfig(#[from] crate::ConfigError),
    /// An attention mask whose shape is not `[batch, cached + seq]` for the ids given.
    #[error("attention_mask has shape {found:?}, expected [batch, cached + seq] = {expected:?}")]
    MaskShape {
        /// `[batch, cached + seq]` for the input ids and the cache.
        expected: [usize; 2],
        /// The mask's shape.
        found: [usize; 2],
    },
    /// The model expects a tensor that the checkpoint does not have.
    #[error("{file}: missing tensor `{tensor}`")]
    MissingTensor {
        /// The checkpoint file (or index) that was searched.
        file: PathBuf,
        /// The Hugging Face tensor name.
        tensor: String,
    },
    /// The checkpoint holds a tensor that no module of the model uses.
    #[error("{file}: unexpected tensor `{tensor}` (not used by this model)")]
    UnexpectedTensor {
        /// The checkpoint file holding the tensor.
        file: PathBuf,
        /// The Hugging Face tensor name.
        tensor: String,
    },
    /// A tensor has a different shape than the config implies.
    #[error("{file}: tensor `{tensor}` has shape {found:?}, expected {expected:?}")]
    ShapeMismatch {
        /// The checkpoint file holding the tensor.
        file: PathBuf,
        /// The Hugging Face tensor name.
        tensor: String,
        /// Shape implied by the config (Hugging Face layout).
        expected: Vec<usize>,
        /// Shape stored in the file.
        found: Vec<usize>,
    },
    /// A tensor holds a NaN or an infinity (checked while decoding; see
    /// [`crate::checkpoint::ALLOW_NON_FINITE_ENV`] to load such a file anyway).
    #[error(
        "{file}: tensor `{tensor}` holds a non-finite value ({value}) at flat index {index}; \
         set {env}=1 to load it anyway (e.g. to inspect it)",
        env = crate::checkpoint::ALLOW_NON_FINITE_ENV
    )]
    NonFiniteWeight {
        /// The checkpoint file holding the tensor.
        file: PathBuf,
        /// The Hugging Face tensor name.
        tensor: String,
        /// Row-major index of the first non-finite value (in the stored layout).
        index: usize,
        /// The value (`NaN`, `inf` or `-inf`).
        value: f32,
    },
    /// A tensor is stored in a dtype other than f32, f16 or bf16.
    #[error("{file}: tensor `{tensor}` has unsupported dtype {dtype} (supported: F32, F16, BF16)")]
    UnsupportedDtype {
        /// The checkpoint file holding the tensor.
        file: PathBuf,
        /// The Hugging Face tensor name.
        tensor: String,
        /// The dtype found, as safetensors spells it.
        dtype: String,
    },
    /// Weights were requested in a dtype the backend cannot compute in (e.g. bf16 on ndarray).
    #[error(
        "the {backend} backend does not support {dtype} tensors; load the weights as F32 \
         (LoadDtype::F32) or use a backend with {dtype} support (flex, cuda, tch)"
    )]
    UnsupportedBackendDtype {
        /// The dtype requested, as burn names it.
        dtype: String,
        /// The backend's name.
        backend: String,
    },
    /// A safetensors file or index is truncated or otherwise corrupt.
    #[error("{file}: corrupt or truncated checkpoint: {message}")]
    Corrupt {
        /// The damaged file.
        file: PathBuf,
        /// The parser's description of the problem.
        message: String,
    },
    /// A safetensors file could not be written.
    #[error("{file}: cannot write safetensors: {message}")]
    Save {
        /// The file being written.
        file: PathBuf,
        /// The serializer's description of the problem.
        message: String,
    },
    /// A LoRA target name matches none of the seven projections.
    #[error("unknown LoRA target module `{name}`; valid names: {valid}")]
    UnknownLoraTarget {
        /// The name as given.
        name: String,
        /// The accepted names.
        valid: String,
    },
    /// LoRA hyper-parameters out of range, or an adapter operation the model's state does not
    /// allow (e.g. attaching a second adapter).
    #[error("invalid LoRA setup: {0}")]
    InvalidLora(String),
    /// `adapter_config.json` declares a PEFT method other than LoRA.
    #[error("{file}: peft_type is `{found}`; only LORA adapters are supported")]
    UnsupportedPeftType {
        /// The adapter config file.
        file: PathBuf,
        /// The `peft_type` found.
        found: String,
    },
    /// `adapter_config.json` uses a LoRA option that Kiln does not implement.
    #[error("{file}: `{key}` = {value} is not supported: {reason}")]
    UnsupportedAdapterOption {
        /// The adapter config file.
        file: PathBuf,
        /// The JSON key.
        key: String,
        /// Its value, as JSON.
        value: String,
        /// What Kiln supports instead.
        reason: String,
    },
    /// The adapter was made for another kind of model (`task_type`).
    #[error("{file}: task_type is `{found}`, but this model needs `{expected}`")]
    AdapterTaskType {
        /// The adapter config file.
        file: PathBuf,
        /// The `task_type` found.
        found: String,
        /// The task type of the model being loaded.
        expected: String,
    },
    /// An adapter file holds a tensor that is no LoRA weight of this model.
    #[error("{file}: unknown adapter key `{key}`: {message}")]
    UnknownAdapterKey {
        /// The adapter weights file.
        file: PathBuf,
        /// The key found.
        key: String,
        /// What keys were expected.
        message: String,
    },
    /// An adapter tensor does not fit the base model's projection.
    #[error(
        "{file}: adapter of module `{module}` does not fit the base model: `{tensor}` has shape \
         {found:?}, the base model needs {expected:?}"
    )]
    AdapterShapeMismatch {
        /// The adapter weights file.
        file: PathBuf,
        /// The module path (HF naming, e.g. `model.layers.0.self_attn.q_proj`).
        module: String,
        /// The adapter tensor (`lora_A.weight`, `lora_B.weight` or `weight` of a saved module).
        tensor: String,
        /// Shape implied by the base model and the adapter config (PEFT layout).
        expected: Vec<usize>,
        /// Shape stored in the file.
        found: Vec<usize>,
    },
    /// `save_pretrained` on a model that has LoRA adapters (which an HF checkpoint cannot hold).
    #[error(
        "{dir}: the model has LoRA adapters; save them with `save_adapter`, or call \
         `merge_adapters()` (plain checkpoint with the update folded in) or `without_adapters()` \
         (the base model) before `save_pretrained`"
    )]
    AdaptersPresent {
        /// The directory that was to be written.
        dir: PathBuf,
    },
    /// `save_adapter` on a model without adapters.
    #[error("{dir}: the model has no LoRA adapters to save")]
    NoAdapters {
        /// The directory that was to be written.
        dir: PathBuf,
    },
}

/// Result type of kiln-model.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn config(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self::Config {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Returns [`Error::InvalidParameter`] unless `value` is finite and satisfies `ok`.
pub(crate) fn check_parameter(
    what: &'static str,
    name: &'static str,
    value: f64,
    ok: bool,
    expected: &'static str,
) -> Result<()> {
    if value.is_finite() && ok {
        Ok(())
    } else {
        Err(Error::InvalidParameter {
            what,
            name,
            value,
            expected,
        })
    }
}

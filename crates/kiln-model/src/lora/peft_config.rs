//! PEFT's `adapter_config.json`: reading it (through a raw serde struct of the keys Kiln reads or
//! refuses, as `config.json` is read) into a [`LoraConfig`] (strictly: options that would change
//! the computation and that Kiln does not implement are errors) and writing it.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::config::LoraConfig;
use super::target::{LoraTarget, parse_target_list};
use crate::error::{Error, Result};

/// File name of PEFT's adapter config.
pub const ADAPTER_CONFIG_FILE: &str = "adapter_config.json";
/// File name of PEFT's adapter weights.
pub const ADAPTER_WEIGHTS_FILE: &str = "adapter_model.safetensors";
/// Prefix of every key in `adapter_model.safetensors` (PEFT's `PeftModel.base_model.model`).
pub const PEFT_KEY_PREFIX: &str = "base_model.model.";

/// The PEFT task types Kiln's models correspond to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeftTaskType {
    /// `CAUSAL_LM`: [`LlamaForCausalLM`](crate::LlamaForCausalLM).
    CausalLm,
    /// `SEQ_CLS`: [`LlamaForSequenceClassification`](crate::LlamaForSequenceClassification).
    SeqCls,
}

impl PeftTaskType {
    /// PEFT's spelling (`CAUSAL_LM`, `SEQ_CLS`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CausalLm => "CAUSAL_LM",
            Self::SeqCls => "SEQ_CLS",
        }
    }
}

impl std::fmt::Display for PeftTaskType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What Kiln uses of an `adapter_config.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct AdapterConfig {
    /// Rank, alpha, dropout, rsLoRA, targets and `base_model_name_or_path`.
    pub lora: LoraConfig,
    /// `task_type` (`None` when the file has `null` or no entry).
    pub task_type: Option<PeftTaskType>,
    /// `modules_to_save` (fully trained and saved modules; Kiln supports `score`, and ignores
    /// `classifier`, which PEFT adds for every `SEQ_CLS` adapter and Llama does not have).
    pub modules_to_save: Vec<String>,
}

fn unsupported(file: &Path, key: &str, value: &Value, reason: &str) -> Error {
    Error::UnsupportedAdapterOption {
        file: file.to_path_buf(),
        key: key.into(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::String(s) => s.is_empty(),
        Value::Number(_) => false,
    }
}

/// The keys of an `adapter_config.json` that Kiln reads or refuses, as the file has them (every
/// other key PEFT writes is ignored). Values whose checks name the key stay raw JSON.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawAdapterConfig {
    peft_type: Value,
    task_type: Value,
    r: Value,
    lora_alpha: Value,
    lora_dropout: Value,
    use_rslora: Value,
    target_modules: Value,
    bias: Value,
    modules_to_save: Value,
    base_model_name_or_path: Value,
    use_dora: Value,
    lora_bias: Value,
    fan_in_fan_out: Value,
    rank_pattern: Value,
    alpha_pattern: Value,
    layers_to_transform: Value,
    layers_pattern: Value,
    layer_replication: Value,
    target_parameters: Value,
    trainable_token_indices: Value,
    exclude_modules: Value,
}

impl AdapterConfig {
    /// Parses the text of an `adapter_config.json` (`path` is only used in errors).
    ///
    /// Unknown keys are ignored (PEFT writes dozens of method-specific ones), but options that
    /// change the computation and that Kiln does not implement are errors naming the key: DoRA,
    /// `bias` other than `none`, LoRA biases, `fan_in_fan_out`, per-module rank/alpha patterns,
    /// `layers_to_transform`, `layer_replication`, `target_parameters`, trainable tokens, a regex
    /// `target_modules`, and `modules_to_save` other than `score`/`classifier`.
    ///
    /// # Errors
    /// [`Error::Config`] for malformed JSON or a missing/ill-typed `r`, [`Error::UnsupportedPeftType`]
    /// for a `peft_type` other than `LORA`, [`Error::UnknownLoraTarget`] for a target that matches
    /// no projection, [`Error::UnsupportedAdapterOption`], [`Error::InvalidLora`].
    pub fn from_json_str(text: &str, path: &Path) -> Result<Self> {
        let raw: RawAdapterConfig = match serde_json::from_str::<Value>(text) {
            Ok(v @ Value::Object(_)) => {
                serde_json::from_value(v).map_err(|e| Error::config(path, e.to_string()))?
            }
            Ok(_) => return Err(Error::config(path, "adapter config is not a JSON object")),
            Err(e) => return Err(Error::config(path, e.to_string())),
        };
        match &raw.peft_type {
            Value::String(t) if t == "LORA" => {}
            Value::Null => return Err(Error::config(path, "missing `peft_type`")),
            other => {
                return Err(Error::UnsupportedPeftType {
                    file: path.to_path_buf(),
                    found: other
                        .as_str()
                        .map_or_else(|| other.to_string(), str::to_string),
                });
            }
        }
        let task_type = match &raw.task_type {
            Value::Null => None,
            Value::String(t) if t == "CAUSAL_LM" => Some(PeftTaskType::CausalLm),
            Value::String(t) if t == "SEQ_CLS" => Some(PeftTaskType::SeqCls),
            other => {
                return Err(unsupported(
                    path,
                    "task_type",
                    other,
                    "Kiln has CAUSAL_LM and SEQ_CLS models",
                ));
            }
        };
        let rank = raw
            .r
            .as_u64()
            .ok_or_else(|| Error::config(path, "`r` must be a positive integer"))?
            as usize;
        let number = |k: &str, v: &Value, default: f64| -> Result<f64> {
            match v {
                Value::Null => Ok(default),
                v => v
                    .as_f64()
                    .ok_or_else(|| Error::config(path, format!("`{k}` must be a number"))),
            }
        };
        let alpha = number("lora_alpha", &raw.lora_alpha, 8.0)?;
        let dropout = number("lora_dropout", &raw.lora_dropout, 0.0)?;
        let use_rslora = raw.use_rslora.as_bool().unwrap_or(false);

        let targets: Vec<LoraTarget> = match &raw.target_modules {
            Value::Array(names) => {
                let names = names
                    .iter()
                    .map(|n| {
                        n.as_str().map(str::to_string).ok_or_else(|| {
                            Error::config(path, "`target_modules` entries must be strings")
                        })
                    })
                    .collect::<Result<Vec<String>>>()?;
                parse_target_list(&names)?
            }
            Value::String(s) if s == "all-linear" => LoraTarget::ALL.to_vec(),
            other => {
                return Err(unsupported(
                    path,
                    "target_modules",
                    other,
                    &format!(
                        "give a list of module names ({})",
                        LoraTarget::valid_names()
                    ),
                ));
            }
        };

        match &raw.bias {
            Value::Null => {}
            Value::String(b) if b == "none" => {}
            other => return Err(unsupported(path, "bias", other, "only `none`")),
        }
        for (key, v, reason) in [
            ("use_dora", &raw.use_dora, "DoRA is not implemented"),
            (
                "lora_bias",
                &raw.lora_bias,
                "LoRA biases are not implemented",
            ),
            (
                "fan_in_fan_out",
                &raw.fan_in_fan_out,
                "Llama's projections are nn.Linear",
            ),
            (
                "rank_pattern",
                &raw.rank_pattern,
                "one rank for every module",
            ),
            (
                "alpha_pattern",
                &raw.alpha_pattern,
                "one alpha for every module",
            ),
            (
                "layers_to_transform",
                &raw.layers_to_transform,
                "adapters on every layer",
            ),
            (
                "layers_pattern",
                &raw.layers_pattern,
                "adapters on every layer",
            ),
            (
                "layer_replication",
                &raw.layer_replication,
                "not implemented",
            ),
            (
                "target_parameters",
                &raw.target_parameters,
                "only target_modules",
            ),
            (
                "trainable_token_indices",
                &raw.trainable_token_indices,
                "not implemented",
            ),
            ("exclude_modules", &raw.exclude_modules, "not implemented"),
        ] {
            if !is_empty(v) {
                return Err(unsupported(path, key, v, reason));
            }
        }
        let modules_to_save = match &raw.modules_to_save {
            Value::Null => Vec::new(),
            Value::Array(names) => {
                let mut out = Vec::new();
                for n in names {
                    match n.as_str() {
                        Some(s @ ("score" | "classifier")) => out.push(s.to_string()),
                        _ => {
                            return Err(unsupported(
                                path,
                                "modules_to_save",
                                &raw.modules_to_save,
                                "only the `score` head (SEQ_CLS)",
                            ));
                        }
                    }
                }
                out
            }
            other => {
                return Err(unsupported(
                    path,
                    "modules_to_save",
                    other,
                    "a list of module names",
                ));
            }
        };
        let base_model_name_or_path = raw.base_model_name_or_path.as_str().map(str::to_string);
        let lora = LoraConfig::new(targets)
            .with_rank(rank)
            .with_alpha(alpha)
            .with_dropout(dropout)
            .with_use_rslora(use_rslora)
            .with_base_model_name_or_path(base_model_name_or_path);
        lora.validate()?;
        Ok(Self {
            lora,
            task_type,
            modules_to_save,
        })
    }

    /// Reads `path` (an `adapter_config.json`).
    ///
    /// # Errors
    /// [`Error::Io`] naming the file, and those of [`Self::from_json_str`].
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_json_str(&text, path)
    }

    /// The JSON PEFT reads (`PeftModel.from_pretrained`, `LoraConfig.from_pretrained`): keys in
    /// sorted order, so equal configs give byte-identical files.
    pub fn to_json(&self) -> String {
        let l = &self.lora;
        let alpha = if l.alpha.fract() == 0.0 && l.alpha.abs() < 1e15 {
            json!(l.alpha as i64)
        } else {
            json!(l.alpha)
        };
        let targets: Vec<String> = l.targets.iter().map(|t| t.to_string()).collect();
        let modules_to_save = if self.modules_to_save.is_empty() {
            Value::Null
        } else {
            json!(self.modules_to_save)
        };
        let mut m = Map::new();
        m.insert("alpha_pattern".into(), json!({}));
        m.insert(
            "base_model_name_or_path".into(),
            json!(l.base_model_name_or_path),
        );
        m.insert("bias".into(), json!("none"));
        m.insert("fan_in_fan_out".into(), json!(false));
        m.insert("inference_mode".into(), json!(true));
        m.insert("init_lora_weights".into(), json!(true));
        m.insert("layers_to_transform".into(), Value::Null);
        m.insert("lora_alpha".into(), alpha);
        m.insert("lora_bias".into(), json!(false));
        m.insert("lora_dropout".into(), json!(l.dropout));
        m.insert("modules_to_save".into(), modules_to_save);
        m.insert("peft_type".into(), json!("LORA"));
        m.insert("r".into(), json!(l.rank));
        m.insert("rank_pattern".into(), json!({}));
        m.insert("target_modules".into(), json!(targets));
        m.insert(
            "task_type".into(),
            json!(self.task_type.map(PeftTaskType::as_str)),
        );
        m.insert("use_dora".into(), json!(false));
        m.insert("use_rslora".into(), json!(l.use_rslora));
        let mut text = serde_json::to_string_pretty(&Value::Object(m)).unwrap_or_default();
        text.push('\n');
        text
    }

    /// Writes [`Self::to_json`] to `path`.
    ///
    /// # Errors
    /// [`Error::Io`] naming the file.
    pub fn write(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        std::fs::write(path, self.to_json()).map_err(|e| Error::io(path, e))
    }
}

impl LoraConfig {
    /// The LoRA config of an `adapter_config.json` (see [`AdapterConfig::from_json_str`]).
    ///
    /// # Errors
    /// Those of [`AdapterConfig::from_file`].
    pub fn from_adapter_config(path: impl AsRef<Path>) -> Result<Self> {
        Ok(AdapterConfig::from_file(path)?.lora)
    }

    /// This config as an `adapter_config.json` for `task_type` (`SEQ_CLS` adds
    /// `modules_to_save: ["score"]`).
    pub fn to_adapter_config_json(&self, task_type: PeftTaskType) -> String {
        AdapterConfig::for_model(self.clone(), task_type).to_json()
    }
}

impl AdapterConfig {
    /// The config Kiln writes for a model of `task_type` (`SEQ_CLS`: the score head is saved).
    pub fn for_model(lora: LoraConfig, task_type: PeftTaskType) -> Self {
        let modules_to_save = match task_type {
            PeftTaskType::CausalLm => Vec::new(),
            PeftTaskType::SeqCls => vec!["score".to_string()],
        };
        Self {
            lora,
            task_type: Some(task_type),
            modules_to_save,
        }
    }
}

/// `dir/adapter_config.json`.
pub(crate) fn config_path(dir: &Path) -> PathBuf {
    dir.join(ADAPTER_CONFIG_FILE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<AdapterConfig> {
        AdapterConfig::from_json_str(text, Path::new("adapter_config.json"))
    }

    #[test]
    fn round_trip_and_peft_defaults() {
        let lora = LoraConfig::new(vec![LoraTarget::Q, LoraTarget::Down])
            .with_rank(4)
            .with_alpha(16.0)
            .with_dropout(0.05)
            .with_use_rslora(true)
            .with_base_model_name_or_path(Some("models/tiny".into()));
        for task in [PeftTaskType::CausalLm, PeftTaskType::SeqCls] {
            let cfg = AdapterConfig::for_model(lora.clone(), task);
            let text = cfg.to_json();
            assert!(text.contains("\"lora_alpha\": 16,"), "{text}");
            assert_eq!(parse(&text).unwrap(), cfg);
        }
        let minimal =
            parse(r#"{"peft_type": "LORA", "r": 2, "target_modules": ["q_proj"]}"#).unwrap();
        assert_eq!(minimal.lora.alpha, 8.0);
        assert_eq!(minimal.task_type, None);
        let all = parse(r#"{"peft_type":"LORA","r":2,"target_modules":"all-linear","peft_version":"0.21.2","use_dora":false,"rank_pattern":{}}"#).unwrap();
        assert_eq!(all.lora.targets, LoraTarget::ALL.to_vec());
    }

    #[test]
    fn bad_configs_name_the_key() {
        let err =
            parse(r#"{"peft_type": "IA3", "r": 2, "target_modules": ["q_proj"]}"#).unwrap_err();
        assert!(
            matches!(&err, Error::UnsupportedPeftType { found, .. } if found == "IA3"),
            "{err}"
        );
        assert!(err.to_string().contains("`IA3`"));
        let err =
            parse(r#"{"peft_type": "LORA", "r": 2, "target_modules": ["q_proj", "lm_head"]}"#)
                .unwrap_err();
        assert!(
            matches!(&err, Error::UnknownLoraTarget { name, .. } if name == "lm_head"),
            "{err}"
        );
        assert!(err.to_string().contains("q_proj, k_proj"), "{err}");
        for (key, text) in [
            (
                "use_dora",
                r#"{"peft_type":"LORA","r":2,"target_modules":["q"],"use_dora":true}"#,
            ),
            (
                "bias",
                r#"{"peft_type":"LORA","r":2,"target_modules":["q"],"bias":"all"}"#,
            ),
            (
                "rank_pattern",
                r#"{"peft_type":"LORA","r":2,"target_modules":["q"],"rank_pattern":{"q_proj":4}}"#,
            ),
            (
                "target_modules",
                r#"{"peft_type":"LORA","r":2,"target_modules":".*q_proj"}"#,
            ),
            (
                "modules_to_save",
                r#"{"peft_type":"LORA","r":2,"target_modules":["q"],"modules_to_save":["lm_head"]}"#,
            ),
            (
                "task_type",
                r#"{"peft_type":"LORA","r":2,"target_modules":["q"],"task_type":"SEQ_2_SEQ_LM"}"#,
            ),
        ] {
            let err = parse(text).unwrap_err();
            assert!(
                matches!(&err, Error::UnsupportedAdapterOption { key: k, .. } if k == key),
                "{key}: {err}"
            );
            assert!(err.to_string().contains(&format!("`{key}`")), "{err}");
        }
        assert!(matches!(
            parse(r#"{"peft_type":"LORA","target_modules":["q"]}"#),
            Err(Error::Config { .. })
        ));
        assert!(matches!(
            parse(r#"{"peft_type":"LORA","r":0,"target_modules":["q"]}"#),
            Err(Error::InvalidLora(_))
        ));
        assert!(matches!(parse("{"), Err(Error::Config { .. })));
    }
}

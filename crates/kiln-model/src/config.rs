//! [`DecoderConfig`]: the Hugging Face `config.json` of a Llama-family decoder (Llama, Qwen2),
//! presets and tiny test configs.
//!
//! Both RoPE layouts are read: the older top-level `rope_theta` + `rope_scaling` keys and the
//! `rope_parameters` object that transformers 5 writes. Unknown keys are ignored; missing required
//! keys (`vocab_size`, `hidden_size`, `intermediate_size`, `num_hidden_layers`,
//! `num_attention_heads`) are an error naming the key, line and column.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config_error::ConfigError;
use crate::error::{Error, Result};
use crate::model_type::ModelType;

/// RoPE frequency scaling of Llama 3.1+ (`rope_type: "llama3"`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Llama3RopeScaling {
    /// Context extension factor (8 for Llama 3.1, 32 for Llama 3.2).
    pub factor: f64,
    /// Wavelengths longer than `original_max_position_embeddings / low_freq_factor` are divided by
    /// `factor`.
    pub low_freq_factor: f64,
    /// Wavelengths shorter than `original_max_position_embeddings / high_freq_factor` are kept.
    pub high_freq_factor: f64,
    /// Context length of the pre-trained model before extension (8192 for Llama 3.1).
    pub original_max_position_embeddings: usize,
}

/// Configuration of a Llama-family decoder (the fields of Hugging Face's `LlamaConfig` and
/// `Qwen2Config` that matter; [`ModelType`] says which).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawConfig", into = "RawConfig")]
pub struct DecoderConfig {
    /// Vocabulary size (rows of `embed_tokens`).
    pub vocab_size: usize,
    /// Model width.
    pub hidden_size: usize,
    /// Width of the SwiGLU MLP.
    pub intermediate_size: usize,
    /// Number of decoder layers.
    pub num_hidden_layers: usize,
    /// Number of query heads.
    pub num_attention_heads: usize,
    /// Number of key/value heads (grouped-query attention); divides `num_attention_heads`.
    pub num_key_value_heads: usize,
    /// Per-head width (`hidden_size / num_attention_heads` unless `head_dim` is given).
    pub head_dim: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// RoPE base frequency.
    pub rope_theta: f64,
    /// Llama-3 RoPE scaling, `None` for plain RoPE.
    pub rope_scaling: Option<Llama3RopeScaling>,
    /// Maximum context length.
    pub max_position_embeddings: usize,
    /// Whether `lm_head` shares the embedding matrix.
    pub tie_word_embeddings: bool,
    /// Beginning-of-sequence token id.
    pub bos_token_id: Option<u32>,
    /// End-of-sequence token ids (`eos_token_id` may be an int or a list in `config.json`).
    pub eos_token_id: Vec<u32>,
    /// Padding token id (used by the sequence-classification head).
    pub pad_token_id: Option<u32>,
    /// The architecture (`model_type`): Llama, or Qwen2 with biases on q/k/v.
    pub model_type: ModelType,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
enum IdOrList {
    One(u32),
    Many(Vec<u32>),
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct RawRope {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rope_type: Option<String>,
    #[serde(default, rename = "type", skip_serializing)]
    legacy_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rope_theta: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    factor: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    low_freq_factor: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    high_freq_factor: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    original_max_position_embeddings: Option<usize>,
}

fn default_eps() -> f64 {
    1e-6
}
fn default_max_pos() -> usize {
    2048
}
fn default_act() -> String {
    "silu".to_string()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct RawConfig {
    #[serde(default)]
    architectures: Option<Vec<String>>,
    #[serde(default)]
    model_type: Option<String>,
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    #[serde(default)]
    num_key_value_heads: Option<usize>,
    #[serde(default)]
    head_dim: Option<usize>,
    #[serde(default = "default_eps")]
    rms_norm_eps: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rope_theta: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rope_scaling: Option<RawRope>,
    #[serde(default, skip_serializing)]
    rope_parameters: Option<RawRope>,
    #[serde(default = "default_max_pos")]
    max_position_embeddings: usize,
    #[serde(default)]
    tie_word_embeddings: bool,
    #[serde(default)]
    bos_token_id: Option<u32>,
    #[serde(default)]
    eos_token_id: Option<IdOrList>,
    #[serde(default)]
    pad_token_id: Option<u32>,
    #[serde(default = "default_act")]
    hidden_act: String,
    #[serde(default)]
    attention_bias: bool,
    #[serde(default)]
    mlp_bias: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    use_sliding_window: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    torch_dtype: Option<String>,
}

impl TryFrom<RawConfig> for DecoderConfig {
    type Error = String;

    fn try_from(raw: RawConfig) -> std::result::Result<Self, String> {
        if raw.hidden_act != "silu" {
            return Err(format!(
                "hidden_act `{}` unsupported (Llama uses silu)",
                raw.hidden_act
            ));
        }
        // No `model_type` (hand-written configs): Llama, as Kiln always read them.
        let model_type = match raw.model_type.as_deref() {
            None => ModelType::Llama,
            Some(name) => ModelType::parse(name)?,
        };
        if model_type == ModelType::Llama && (raw.attention_bias || raw.mlp_bias) {
            return Err("attention_bias/mlp_bias = true is not supported".into());
        }
        if raw.use_sliding_window {
            return Err(format!(
                "use_sliding_window = true (sliding-window attention) is not supported for \
                 model_type `{model_type}`"
            ));
        }
        // transformers 5 `rope_parameters` wins over the legacy keys when both are present.
        let rope = raw.rope_parameters.clone().or(raw.rope_scaling.clone());
        let rope_theta = raw
            .rope_parameters
            .as_ref()
            .and_then(|r| r.rope_theta)
            .or(raw.rope_theta)
            .unwrap_or(10_000.0);
        let rope_scaling = match rope {
            None => None,
            Some(r) => {
                let kind = r.rope_type.clone().or(r.legacy_type.clone());
                match kind.as_deref() {
                    None | Some("default") => None,
                    Some("llama3") => {
                        let need = |v: Option<f64>, k: &str| {
                            v.ok_or_else(|| format!("llama3 rope scaling misses `{k}`"))
                        };
                        Some(Llama3RopeScaling {
                            factor: need(r.factor, "factor")?,
                            low_freq_factor: need(r.low_freq_factor, "low_freq_factor")?,
                            high_freq_factor: need(r.high_freq_factor, "high_freq_factor")?,
                            original_max_position_embeddings: r
                                .original_max_position_embeddings
                                .ok_or(
                                    "llama3 rope scaling misses `original_max_position_embeddings`",
                                )?,
                        })
                    }
                    Some(other) => return Err(format!("rope_type `{other}` is not supported")),
                }
            }
        };
        if raw.head_dim.is_none()
            && raw.num_attention_heads > 0
            && !raw.hidden_size.is_multiple_of(raw.num_attention_heads)
        {
            return Err(format!(
                "hidden_size ({}) is not a multiple of num_attention_heads ({}) and there is no \
                 head_dim field to say the width of a head; add \"head_dim\" (hidden_size = \
                 num_attention_heads * head_dim unless head_dim is given)",
                raw.hidden_size, raw.num_attention_heads
            ));
        }
        let eos_token_id = match raw.eos_token_id {
            None => vec![],
            Some(IdOrList::One(i)) => vec![i],
            Some(IdOrList::Many(v)) => v,
        };
        let cfg = DecoderConfig {
            vocab_size: raw.vocab_size,
            hidden_size: raw.hidden_size,
            intermediate_size: raw.intermediate_size,
            num_hidden_layers: raw.num_hidden_layers,
            num_attention_heads: raw.num_attention_heads,
            num_key_value_heads: raw.num_key_value_heads.unwrap_or(raw.num_attention_heads),
            head_dim: raw
                .head_dim
                .unwrap_or(raw.hidden_size / raw.num_attention_heads.max(1)),
            rms_norm_eps: raw.rms_norm_eps,
            rope_theta,
            rope_scaling,
            max_position_embeddings: raw.max_position_embeddings,
            tie_word_embeddings: raw.tie_word_embeddings,
            bos_token_id: raw.bos_token_id,
            eos_token_id,
            pad_token_id: raw.pad_token_id,
            model_type,
        };
        cfg.validate().map_err(|e| e.to_string())?;
        Ok(cfg)
    }
}

impl From<DecoderConfig> for RawConfig {
    fn from(c: DecoderConfig) -> Self {
        let rope_scaling = c.rope_scaling.map(|s| RawRope {
            rope_type: Some("llama3".into()),
            factor: Some(s.factor),
            low_freq_factor: Some(s.low_freq_factor),
            high_freq_factor: Some(s.high_freq_factor),
            original_max_position_embeddings: Some(s.original_max_position_embeddings),
            ..RawRope::default()
        });
        RawConfig {
            architectures: Some(vec![c.model_type.causal_lm_architecture().into()]),
            model_type: Some(c.model_type.as_str().into()),
            vocab_size: c.vocab_size,
            hidden_size: c.hidden_size,
            intermediate_size: c.intermediate_size,
            num_hidden_layers: c.num_hidden_layers,
            num_attention_heads: c.num_attention_heads,
            num_key_value_heads: Some(c.num_key_value_heads),
            head_dim: Some(c.head_dim),
            rms_norm_eps: c.rms_norm_eps,
            rope_theta: Some(c.rope_theta),
            rope_scaling,
            rope_parameters: None,
            max_position_embeddings: c.max_position_embeddings,
            tie_word_embeddings: c.tie_word_embeddings,
            bos_token_id: c.bos_token_id,
            eos_token_id: match c.eos_token_id.as_slice() {
                [] => None,
                [one] => Some(IdOrList::One(*one)),
                many => Some(IdOrList::Many(many.to_vec())),
            },
            pad_token_id: c.pad_token_id,
            hidden_act: "silu".into(),
            attention_bias: false,
            mlp_bias: false,
            use_sliding_window: false,
            torch_dtype: None,
        }
    }
}

impl DecoderConfig {
    /// Checks the invariants the modules rely on (head counts divide, sizes non-zero, end-of-sequence
    /// ids inside the vocabulary).
    ///
    /// # Errors
    /// The first broken invariant, as a typed [`ConfigError`].
    pub fn validate(&self) -> std::result::Result<(), ConfigError> {
        let nonzero = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.num_key_value_heads),
            ("head_dim", self.head_dim),
        ];
        if let Some((field, _)) = nonzero.into_iter().find(|&(_, v)| v == 0) {
            return Err(ConfigError::Zero { field });
        }
        if !self
            .num_attention_heads
            .is_multiple_of(self.num_key_value_heads)
        {
            return Err(ConfigError::HeadsNotGrouped {
                heads: self.num_attention_heads,
                kv_heads: self.num_key_value_heads,
            });
        }
        if !self.head_dim.is_multiple_of(2) {
            return Err(ConfigError::OddHeadDim {
                head_dim: self.head_dim,
            });
        }
        if let Some(&id) = self
            .eos_token_id
            .iter()
            .find(|&&id| id as usize >= self.vocab_size)
        {
            return Err(ConfigError::EosOutsideVocab {
                id,
                vocab_size: self.vocab_size,
            });
        }
        if self.checked_num_parameters().is_none() {
            return Err(ConfigError::TooManyParameters {
                vocab_size: self.vocab_size,
                hidden_size: self.hidden_size,
                intermediate_size: self.intermediate_size,
                layers: self.num_hidden_layers,
                heads: self.num_attention_heads,
                kv_heads: self.num_key_value_heads,
                head_dim: self.head_dim,
            });
        }
        Ok(())
    }

    /// Parses a `config.json` string; `path` is only used in error messages.
    pub fn from_json_str(json: &str, path: &Path) -> Result<Self> {
        serde_json::from_str(json).map_err(|e| Error::config(path, e.to_string()))
    }

    /// Reads and parses a `config.json` file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_json_str(&text, path)
    }

    /// Serialises to Hugging Face `config.json` (legacy `rope_theta`/`rope_scaling` keys, which
    /// every transformers version reads). `torch_dtype` names the dtype of the saved weights.
    pub fn to_hf_json(&self, torch_dtype: &str) -> String {
        let mut raw = RawConfig::from(self.clone());
        raw.torch_dtype = Some(torch_dtype.to_string());
        serde_json::to_string_pretty(&raw).unwrap_or_default()
    }

    /// Number of query heads sharing one key/value head.
    pub fn num_key_value_groups(&self) -> usize {
        self.num_attention_heads / self.num_key_value_heads
    }

    /// Number of parameters of the causal LM (embedding counted once when tied); `usize::MAX`
    /// for sizes whose count does not fit (which [`Self::validate`] rejects).
    pub fn num_parameters(&self) -> usize {
        self.checked_num_parameters().unwrap_or(usize::MAX)
    }

    /// [`Self::num_parameters`], `None` on overflow. Every product the modules form from the
    /// sizes (`num_attention_heads * head_dim`, ...) is a factor of it, so a config whose count
    /// fits never overflows when a model is built.
    fn checked_num_parameters(&self) -> Option<usize> {
        let (d, h) = (self.hidden_size, self.head_dim);
        let heads = self
            .num_attention_heads
            .checked_add(self.num_key_value_heads)?
            .checked_mul(2)?;
        let attn = d.checked_mul(h)?.checked_mul(heads)?;
        let mlp = d.checked_mul(self.intermediate_size)?.checked_mul(3)?;
        let bias = if self.model_type.qkv_bias() {
            h.checked_mul(
                self.num_attention_heads
                    .checked_add(self.num_key_value_heads.checked_mul(2)?)?,
            )?
        } else {
            0
        };
        let layer = attn
            .checked_add(mlp)?
            .checked_add(d.checked_mul(2)?)?
            .checked_add(bias)?;
        let embed = self.vocab_size.checked_mul(d)?;
        let head = if self.tie_word_embeddings { 0 } else { embed };
        embed
            .checked_add(self.num_hidden_layers.checked_mul(layer)?)?
            .checked_add(d)?
            .checked_add(head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<DecoderConfig> {
        DecoderConfig::from_json_str(s, Path::new("config.json"))
    }

    const BASE: &str = r#""vocab_size": 256, "hidden_size": 64, "intermediate_size": 128,
        "num_hidden_layers": 2, "num_attention_heads": 4"#;

    #[test]
    fn hidden_size_not_divisible_by_heads_without_head_dim_names_the_fields() {
        let err = parse(
            r#"{"vocab_size": 64, "hidden_size": 30, "intermediate_size": 64,
            "num_hidden_layers": 2, "num_attention_heads": 4}"#,
        )
        .unwrap_err()
        .to_string();
        for field in ["hidden_size (30)", "num_attention_heads (4)", "head_dim"] {
            assert!(err.contains(field), "{err}");
        }
        // With an explicit head_dim the same sizes are valid (q_proj is then 4 * 8 = 32 wide).
        let ok = parse(
            r#"{"vocab_size": 64, "hidden_size": 30, "intermediate_size": 64,
            "num_hidden_layers": 2, "num_attention_heads": 4, "head_dim": 8}"#,
        )
        .unwrap();
        assert_eq!(ok.head_dim, 8);
    }

    #[test]
    fn an_eos_id_outside_the_vocabulary_is_an_error_naming_it() {
        let err = parse(&format!(r#"{{{BASE}, "eos_token_id": [1, 999999]}}"#))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("999999") && err.contains("vocab_size 256") && err.contains("config.json"),
            "{err}"
        );
    }

    #[test]
    fn validation_errors_are_typed() {
        use crate::ConfigError;
        let base = DecoderConfig::tiny(64, 32);
        assert_eq!(base.validate(), Ok(()));
        let mut c = base.clone();
        c.head_dim = 0;
        assert_eq!(c.validate(), Err(ConfigError::Zero { field: "head_dim" }));
        let mut c = base.clone();
        c.num_key_value_heads = c.num_attention_heads + 1;
        assert!(matches!(
            c.validate(),
            Err(ConfigError::HeadsNotGrouped { .. })
        ));
        let mut c = base.clone();
        c.head_dim = 7;
        assert_eq!(c.validate(), Err(ConfigError::OddHeadDim { head_dim: 7 }));
        let mut c = base.clone();
        c.eos_token_id = vec![64];
        assert_eq!(
            c.validate(),
            Err(ConfigError::EosOutsideVocab {
                id: 64,
                vocab_size: 64
            })
        );
        let mut c = base;
        c.vocab_size = usize::MAX;
        assert!(matches!(
            c.validate(),
            Err(ConfigError::TooManyParameters { .. })
        ));
    }

    #[test]
    fn legacy_keys() {
        let c = parse(&format!(
            r#"{{{BASE}, "num_key_value_heads": 2, "rope_theta": 500000.0, "eos_token_id": [2, 3],
            "rope_scaling": {{"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 16}}, "foo": 1}}"#
        ))
        .unwrap();
        assert_eq!(c.rope_theta, 500000.0);
        assert_eq!(c.head_dim, 16);
        assert_eq!(c.num_key_value_groups(), 2);
        assert_eq!(c.eos_token_id, vec![2, 3]);
        assert_eq!(c.rope_scaling.unwrap().original_max_position_embeddings, 16);
    }

    #[test]
    fn rope_parameters_layout() {
        let c = parse(&format!(
            r#"{{{BASE}, "head_dim": 32, "eos_token_id": 7, "tie_word_embeddings": true,
            "rope_parameters": {{"rope_type": "llama3", "rope_theta": 1234.0, "factor": 32.0,
            "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}}}}"#
        ))
        .unwrap();
        assert_eq!(c.rope_theta, 1234.0);
        assert_eq!(c.head_dim, 32);
        assert_eq!(c.num_key_value_heads, 4);
        assert_eq!(c.eos_token_id, vec![7]);
        assert!(c.tie_word_embeddings);
        assert_eq!(c.rope_scaling.unwrap().factor, 32.0);
        let plain = parse(&format!(
            r#"{{{BASE}, "rope_parameters": {{"rope_type": "default", "rope_theta": 99.0}}}}"#
        ))
        .unwrap();
        assert_eq!(plain.rope_theta, 99.0);
        assert!(plain.rope_scaling.is_none());
    }

    #[test]
    fn missing_key_is_named() {
        let err = parse(r#"{"vocab_size": 256, "hidden_size": 64}"#).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("config.json") && msg.contains("intermediate_size"),
            "{msg}"
        );
        let bad = parse(&format!(r#"{{{BASE}, "num_key_value_heads": 3}}"#)).unwrap_err();
        assert!(bad.to_string().contains("num_key_value_heads"), "{bad}");
    }

    #[test]
    fn hf_json_round_trip() {
        for c in [
            DecoderConfig::llama3_8b(),
            DecoderConfig::llama3_1_8b(),
            DecoderConfig::llama3_2_1b(),
            DecoderConfig::llama3_2_3b(),
            DecoderConfig::smollm2_135m(),
            DecoderConfig::tiny(256, 64),
        ] {
            let back = parse(&c.to_hf_json("float32")).unwrap();
            assert_eq!(back, c);
        }
        assert_eq!(DecoderConfig::llama3_8b().num_parameters(), 8_030_261_248);
        assert_eq!(DecoderConfig::llama3_2_1b().num_parameters(), 1_235_814_400);
        // SmolLM2-135M-Instruct's state dict: 134,515,008 parameters (REAL-MODELS.md).
        assert_eq!(DecoderConfig::smollm2_135m().num_parameters(), 134_515_008);
    }
}

//! [`ModelType`]: the decoder architectures Kiln implements, as `config.json`'s `model_type`
//! names them.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// A `model_type` of Hugging Face's `config.json` that Kiln implements. Both share the Llama
/// decoder (pre-norm RMSNorm, rotate-half RoPE, grouped-query attention, SwiGLU), as
/// transformers' own `modular_qwen2.py` derives Qwen2 from Llama; they differ in what the
/// checkpoint holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelType {
    /// `llama` (Llama 2/3, SmolLM2, ...): no biases in the attention projections
    /// ([`LlamaForCausalLM`](crate::LlamaForCausalLM)).
    #[default]
    Llama,
    /// `qwen2` (Qwen2, Qwen2.5): biases on the query, key and value projections (not on the
    /// output projection); small sizes tie the embeddings
    /// ([`Qwen2ForCausalLM`](crate::Qwen2ForCausalLM)).
    Qwen2,
}

impl ModelType {
    /// Every implemented type.
    pub const ALL: [ModelType; 2] = [ModelType::Llama, ModelType::Qwen2];

    /// The `model_type` string.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelType::Llama => "llama",
            ModelType::Qwen2 => "qwen2",
        }
    }

    /// Parses a `model_type` string.
    ///
    /// # Errors
    /// A message naming the type and the implemented ones.
    pub fn parse(name: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == name)
            .ok_or_else(|| {
                format!(
                    "model_type `{name}` is not implemented by Kiln (it implements {})",
                    Self::ALL.map(Self::as_str).join(", ")
                )
            })
    }

    /// The `model_type` of the checkpoint in `dir`: its `config.json`'s, or for a PEFT adapter
    /// directory its base's (`base_model_name_or_path`). What the command-line tools and the
    /// online trainer dispatch on.
    ///
    /// # Errors
    /// A missing or malformed `config.json` (named), a `model_type` Kiln does not implement.
    pub fn of_dir(dir: &Path) -> crate::Result<Self> {
        let (base, _) = crate::traits::resolve_model_dir(dir)?;
        Ok(crate::DecoderConfig::from_file(base.join("config.json"))?.model_type)
    }

    /// Whether the query, key and value projections carry biases (`*_proj.bias`).
    pub fn qkv_bias(self) -> bool {
        matches!(self, ModelType::Qwen2)
    }

    /// The `architectures` entry of a causal LM of this type.
    pub fn causal_lm_architecture(self) -> &'static str {
        match self {
            ModelType::Llama => "LlamaForCausalLM",
            ModelType::Qwen2 => "Qwen2ForCausalLM",
        }
    }

    /// The `architectures` entry of a one-label sequence classifier of this type.
    pub fn classifier_architecture(self) -> &'static str {
        match self {
            ModelType::Llama => "LlamaForSequenceClassification",
            ModelType::Qwen2 => "Qwen2ForSequenceClassification",
        }
    }
}

impl std::fmt::Display for ModelType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::ModelType;

    #[test]
    fn names_round_trip_and_unknown_types_are_named() {
        for t in ModelType::ALL {
            assert_eq!(ModelType::parse(t.as_str()), Ok(t));
        }
        let err = ModelType::parse("mistral").unwrap_err();
        assert!(
            err.contains("`mistral`") && err.contains("llama, qwen2"),
            "{err}"
        );
        assert!(ModelType::Qwen2.qkv_bias() && !ModelType::Llama.qkv_bias());
    }
}

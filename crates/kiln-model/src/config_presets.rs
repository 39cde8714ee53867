//! Presets of [`DecoderConfig`]: Llama-3 / 3.1 / 3.2 shapes, SmolLM2-135M and tiny test sizes.

use crate::config::{DecoderConfig, Llama3RopeScaling};
use crate::model_type::ModelType;

impl DecoderConfig {
    fn llama3_base(hidden: usize, inter: usize, layers: usize, heads: usize) -> Self {
        Self {
            vocab_size: 128_256,
            hidden_size: hidden,
            intermediate_size: inter,
            num_hidden_layers: layers,
            num_attention_heads: heads,
            num_key_value_heads: 8,
            head_dim: hidden / heads,
            rms_norm_eps: 1e-5,
            rope_theta: 500_000.0,
            rope_scaling: None,
            max_position_embeddings: 8192,
            tie_word_embeddings: false,
            bos_token_id: Some(128_000),
            eos_token_id: vec![128_001],
            pad_token_id: None,
            model_type: ModelType::Llama,
        }
    }

    fn with_llama3_scaling(mut self, factor: f64) -> Self {
        self.rope_scaling = Some(Llama3RopeScaling {
            factor,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 8192,
        });
        self.max_position_embeddings = 131_072;
        self.eos_token_id = vec![128_001, 128_008, 128_009];
        self
    }

    /// Meta-Llama-3-8B shapes.
    pub fn llama3_8b() -> Self {
        Self::llama3_base(4096, 14_336, 32, 32)
    }

    /// Llama-3.1-8B shapes (llama3 RoPE scaling, factor 8, 128k context).
    pub fn llama3_1_8b() -> Self {
        Self::llama3_8b().with_llama3_scaling(8.0)
    }

    /// Llama-3.2-1B shapes (tied embeddings, factor-32 RoPE scaling).
    pub fn llama3_2_1b() -> Self {
        let mut c = Self::llama3_base(2048, 8192, 16, 32).with_llama3_scaling(32.0);
        c.tie_word_embeddings = true;
        c
    }

    /// SmolLM2-135M shapes (Llama architecture: hidden 576, 30 layers, GQA 9/3, head_dim 64,
    /// vocab 49,152, tied embeddings, rope theta 1e5, no scaling; bos 1, eos = pad = 2).
    pub fn smollm2_135m() -> Self {
        Self {
            vocab_size: 49_152,
            hidden_size: 576,
            intermediate_size: 1536,
            num_hidden_layers: 30,
            num_attention_heads: 9,
            num_key_value_heads: 3,
            head_dim: 64,
            rms_norm_eps: 1e-5,
            rope_theta: 100_000.0,
            rope_scaling: None,
            max_position_embeddings: 8192,
            tie_word_embeddings: true,
            bos_token_id: Some(1),
            eos_token_id: vec![2],
            pad_token_id: Some(2),
            model_type: ModelType::Llama,
        }
    }

    /// Llama-3.2-3B shapes (tied embeddings, factor-32 RoPE scaling).
    pub fn llama3_2_3b() -> Self {
        let mut c = Self::llama3_base(3072, 8192, 28, 24).with_llama3_scaling(32.0);
        c.tie_word_embeddings = true;
        c
    }

    /// A ~20M-parameter Llama-3-shaped config for quick benchmarks: vocab 8,192, hidden 512,
    /// intermediate 1,408, 4 layers, GQA 8/4, head_dim 64 (llama3 RoPE scaling as in
    /// [`Self::tiny`]). Small enough that per-op overhead shows; real-shape figures need
    /// [`Self::smollm2_135m`] or larger.
    pub fn small_20m() -> Self {
        let mut c = Self::tiny(8192, 512);
        c.intermediate_size = 1408;
        c.num_hidden_layers = 4;
        c.num_attention_heads = 8;
        c.num_key_value_heads = 4;
        c.head_dim = 64;
        c.max_position_embeddings = 2048;
        c
    }

    /// A tiny Llama-3-shaped config for tests: 2 layers, 4 query heads, 2 KV heads, head_dim 16,
    /// llama3 RoPE scaling with `original_max_position_embeddings = 16`.
    pub fn tiny(vocab_size: usize, hidden_size: usize) -> Self {
        Self {
            vocab_size,
            hidden_size,
            intermediate_size: hidden_size * 2,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            num_key_value_heads: 2,
            head_dim: hidden_size / 4,
            rms_norm_eps: 1e-5,
            rope_theta: 500_000.0,
            rope_scaling: Some(Llama3RopeScaling {
                factor: 8.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: 16,
            }),
            max_position_embeddings: 128,
            tie_word_embeddings: false,
            bos_token_id: Some(1),
            eos_token_id: vec![2],
            pad_token_id: Some(0),
            model_type: ModelType::Llama,
        }
    }
}

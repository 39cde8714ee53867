//! [`ConfigError`]: why a [`DecoderConfig`](crate::DecoderConfig) cannot build a model, as a typed value.

/// A broken invariant of [`DecoderConfig`](crate::DecoderConfig), returned by
/// [`DecoderConfig::validate`](crate::DecoderConfig::validate). Reading `config.json` reports it as
/// [`Error::Config`](crate::Error::Config) with the file's path and this value's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A size that must be positive is 0.
    #[error("`{field}` must be > 0")]
    Zero {
        /// The `config.json` key (`vocab_size`, `hidden_size`, `head_dim`, ...).
        field: &'static str,
    },
    /// Grouped-query attention needs a whole number of query heads per key/value head.
    #[error("num_attention_heads ({heads}) is not a multiple of num_key_value_heads ({kv_heads})")]
    HeadsNotGrouped {
        /// `num_attention_heads`.
        heads: usize,
        /// `num_key_value_heads`.
        kv_heads: usize,
    },
    /// RoPE rotates pairs of dimensions.
    #[error("head_dim ({head_dim}) must be even for RoPE")]
    OddHeadDim {
        /// `head_dim`.
        head_dim: usize,
    },
    /// An end-of-sequence id that no token can produce.
    #[error(
        "eos_token_id {id} is outside the vocabulary (vocab_size {vocab_size}): generation could \
         never stop on it"
    )]
    EosOutsideVocab {
        /// The offending id.
        id: u32,
        /// `vocab_size`.
        vocab_size: usize,
    },
    /// The sizes multiply past `usize`: no machine could hold the model.
    #[error(
        "the sizes (vocab_size {vocab_size}, hidden_size {hidden_size}, intermediate_size \
         {intermediate_size}, num_hidden_layers {layers}, heads {heads}/{kv_heads} of head_dim \
         {head_dim}) give more parameters than this machine can count"
    )]
    TooManyParameters {
        /// `vocab_size`.
        vocab_size: usize,
        /// `hidden_size`.
        hidden_size: usize,
        /// `intermediate_size`.
        intermediate_size: usize,
        /// `num_hidden_layers`.
        layers: usize,
        /// `num_attention_heads`.
        heads: usize,
        /// `num_key_value_heads`.
        kv_heads: usize,
        /// `head_dim`.
        head_dim: usize,
    },
}

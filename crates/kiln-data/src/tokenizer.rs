//! A thin wrapper over the `tokenizers` crate: loading, encoding, decoding, special tokens by name.

use std::path::Path;

use crate::error::{Error, Result};

/// The committed built-in tokenizer (see [`crate::train_tokenizer`]).
pub const TINY_TOKENIZER_JSON: &str = include_str!("../assets/tokenizer.json");

/// A `[start, end)` byte range in the encoded text.
pub type ByteSpan = (usize, usize);

/// Name of the dedicated padding token of the built-in tokenizer.
pub const PAD_TOKEN: &str = "<|finetune_right_pad_id|>";

/// Largest token id a loaded `tokenizer.json` may use (2^24: an embedding with more rows than
/// any model has). tokenizers serialises a vocabulary by walking every id up to the largest one,
/// so a stray id near `u32::MAX` would make [`Tokenizer::to_json`] overflow (a panic in debug
/// builds) or run for minutes and exhaust memory.
pub const MAX_TOKEN_ID: u32 = (1 << 24) - 1;

/// Parses `tokenizer.json` bytes, then checks the ids ([`MAX_TOKEN_ID`]). tokenizers 0.23
/// panics on some malformed files instead of failing (a `decoder` that is not an object hits an
/// `expect` in its deserializer); such a panic is caught and reported as a load error.
fn parse(bytes: &[u8], source_name: &str) -> Result<tokenizers::Tokenizer> {
    let error = |message: String| Error::TokenizerLoad {
        source_name: source_name.to_string(),
        message,
    };
    let inner = match std::panic::catch_unwind(|| tokenizers::Tokenizer::from_bytes(bytes)) {
        Ok(parsed) => parsed.map_err(|e| error(e.to_string()))?,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            return Err(error(format!(
                "malformed file (the tokenizers crate panicked: {what})"
            )));
        }
    };
    check_ids(&inner, source_name)?;
    Ok(inner)
}

/// Rejects a tokenizer with an id above [`MAX_TOKEN_ID`], naming the token.
fn check_ids(inner: &tokenizers::Tokenizer, source_name: &str) -> Result<()> {
    match inner.get_vocab(true).into_iter().max_by_key(|&(_, id)| id) {
        Some((token, id)) if id > MAX_TOKEN_ID => Err(Error::TokenizerLoad {
            source_name: source_name.to_string(),
            message: format!(
                "token `{token}` has id {id}, above the largest usable id {MAX_TOKEN_ID}"
            ),
        }),
        _ => Ok(()),
    }
}

/// A loaded tokenizer. Encoding never adds special tokens: chat formatting is the job of
/// [`ChatTemplate`](crate::ChatTemplate).
#[derive(Debug, Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
}

impl Tokenizer {
    /// Wraps an already built `tokenizers::Tokenizer`.
    pub fn from_inner(inner: tokenizers::Tokenizer) -> Self {
        Tokenizer { inner }
    }

    /// Loads a `tokenizer.json` file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let inner = parse(&bytes, &path.display().to_string())?;
        Ok(Tokenizer { inner })
    }

    /// Loads `<dir>/tokenizer.json` from a Hugging Face model directory.
    pub fn from_model_dir(dir: impl AsRef<Path>) -> Result<Self> {
        Self::from_file(dir.as_ref().join("tokenizer.json"))
    }

    /// Parses `tokenizer.json` text.
    pub fn from_json_str(json: &str) -> Result<Self> {
        let inner = parse(json.as_bytes(), "<string>")?;
        Ok(Tokenizer { inner })
    }

    /// The built-in tiny byte-level BPE tokenizer (768 tokens, Llama-3 special tokens at ids 0..5,
    /// pad `<|finetune_right_pad_id|>` = 5), compiled into the binary and parsed once.
    ///
    /// # Errors
    /// [`Error::TokenizerLoad`] only if the compiled-in asset were broken (this crate's tests
    /// check it).
    pub fn builtin_tiny() -> Result<Self> {
        static BUILTIN: std::sync::OnceLock<std::result::Result<Tokenizer, String>> =
            std::sync::OnceLock::new();
        BUILTIN
            .get_or_init(|| Self::from_json_str(TINY_TOKENIZER_JSON).map_err(|e| e.to_string()))
            .clone()
            .map_err(|message| Error::TokenizerLoad {
                source_name: "<built-in tiny tokenizer>".into(),
                message,
            })
    }

    /// The wrapped `tokenizers` tokenizer.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// Serialises back to `tokenizer.json` text.
    pub fn to_json(&self, pretty: bool) -> Result<String> {
        self.inner
            .to_string(pretty)
            .map_err(|e| Error::Tokenizer(e.to_string()))
    }

    /// Encodes text to ids without adding special tokens (special-token strings in the text are
    /// still recognised, as in HF `encode(text, add_special_tokens=False)`).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self.encode_with_offsets(text)?.0)
    }

    /// Encodes text to ids plus each token's byte range in `text` (no special tokens added).
    pub fn encode_with_offsets(&self, text: &str) -> Result<(Vec<u32>, Vec<ByteSpan>)> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| Error::Tokenizer(format!("cannot encode {text:?}: {e}")))?;
        Ok((enc.get_ids().to_vec(), enc.get_offsets().to_vec()))
    }

    /// Decodes ids to text; `skip_special_tokens` drops `<|eot_id|>` and friends.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.inner
            .decode(ids, skip_special_tokens)
            .map_err(|e| Error::Tokenizer(format!("cannot decode {} ids: {e}", ids.len())))
    }

    /// Id of a token by its exact string (e.g. `<|eot_id|>`), with a clear error when missing.
    pub fn token_id(&self, name: &str) -> Result<u32> {
        self.inner
            .token_to_id(name)
            .ok_or_else(|| Error::MissingSpecialToken {
                name: name.to_string(),
                purpose: "lookup by name".into(),
            })
    }

    /// Like [`Tokenizer::token_id`], naming what needs the token in the error.
    pub fn require_token(&self, name: &str, purpose: &str) -> Result<u32> {
        self.inner
            .token_to_id(name)
            .ok_or_else(|| Error::MissingSpecialToken {
                name: name.to_string(),
                purpose: purpose.to_string(),
            })
    }

    /// Whether `id` is an added token marked special (`<|eot_id|>`, `<|im_end|>`, ...).
    pub fn is_special(&self, id: u32) -> bool {
        self.inner
            .get_added_tokens_decoder()
            .get(&id)
            .is_some_and(|t| t.special)
    }

    /// The string of token `id`, if it exists.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Vocabulary size including added (special) tokens: the embedding size a model needs.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The padding token id: `<|finetune_right_pad_id|>`, else `<|end_of_text|>` with a warning
    /// (Llama-3 base tokenizers have no dedicated pad; reward models then need care).
    pub fn pad_id(&self) -> Result<u32> {
        if let Some(id) = self.inner.token_to_id(PAD_TOKEN) {
            return Ok(id);
        }
        // Warn only when the fallback exists: callers with another source (a checkpoint's
        // `pad_token_id`) try that on error, and must not be told about a token they do not use.
        let id = self.require_token("<|end_of_text|>", "padding")?;
        tracing::warn!("tokenizer has no {PAD_TOKEN}; padding with <|end_of_text|>");
        Ok(id)
    }
}

//! Training the built-in tiny byte-level BPE tokenizer (Llama-3 layout) from the shipped corpus.
//!
//! The committed `assets/tokenizer.json` is the output of [`train_tiny_tokenizer`] on
//! `assets/corpus.txt` with [`TINY_VOCAB_SIZE`]; a test retrains it and compares byte for byte, and
//! `cargo test -p kiln-data --test tokenizer_asset -- --ignored regenerate` rewrites it.
//!
//! Layout (as in Meta's Llama-3 `tokenizer.json`): no normaliser; pre-tokenizer = `Split` on the
//! Llama-3 regex ([`LLAMA3_PATTERN`], isolated) then `ByteLevel` (no prefix space, no regex); BPE with
//! `ignore_merges`; `ByteLevel` decoder; post-processor adds `<|begin_of_text|>` when special tokens
//! are requested. Special tokens ([`TINY_SPECIAL_TOKENS`]) take ids `0..6`.

use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence as PreSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::sequence::Sequence as PostSequence;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{
    AddedToken, DecoderWrapper, NormalizerWrapper, PostProcessorWrapper, PreTokenizerWrapper,
    SplitDelimiterBehavior, TokenizerBuilder,
};

use crate::error::{Error, Result};
use crate::tokenizer::Tokenizer;

/// The Llama-3 pre-tokenizer regex (from Meta's `tokenizer.json`).
pub const LLAMA3_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Special tokens of the tiny tokenizer, in id order (ids 0..6): the Llama-3 ones plus a dedicated
/// pad token (`<|finetune_right_pad_id|>`, Llama-3.1's name), so padding never aliases end-of-sequence.
pub const TINY_SPECIAL_TOKENS: [&str; 6] = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "<|finetune_right_pad_id|>",
];

/// Vocabulary size of the built-in tokenizer (special tokens included).
pub const TINY_VOCAB_SIZE: usize = 768;

/// The corpus the built-in tokenizer is trained on (simple English questions and answers).
pub const TINY_CORPUS: &str = include_str!("../assets/corpus.txt");

/// Trains a byte-level BPE tokenizer with the Llama-3 layout on `corpus` (one training sequence per
/// blank-line separated block, plus the chat-template header pieces `system`/`user`/`assistant` and
/// `"\n\n"`). Deterministic: the same corpus and size give the same `tokenizer.json`.
pub fn train_byte_level_bpe(corpus: &str, vocab_size: usize) -> Result<Tokenizer> {
    let err = |e: tokenizers::Error| Error::Tokenizer(e.to_string());
    let specials: Vec<AddedToken> = TINY_SPECIAL_TOKENS
        .iter()
        .map(|t| AddedToken::from(t.to_string(), true))
        .collect();
    let mut trainer = BpeTrainerBuilder::new()
        .vocab_size(vocab_size)
        .min_frequency(2)
        .show_progress(false)
        .special_tokens(specials)
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build();

    let split = Split::new(
        SplitPattern::Regex(LLAMA3_PATTERN.to_string()),
        SplitDelimiterBehavior::Isolated,
        false,
    )
    .map_err(err)?;
    let byte_level = ByteLevel::new(false, true, false);
    let pre = PreSequence::new(vec![
        PreTokenizerWrapper::Split(split),
        PreTokenizerWrapper::ByteLevel(byte_level),
    ]);
    let bpe = BPE::builder().ignore_merges(true).build().map_err(err)?;
    let mut tk = TokenizerBuilder::<
        BPE,
        NormalizerWrapper,
        PreTokenizerWrapper,
        PostProcessorWrapper,
        DecoderWrapper,
    >::new()
    .with_model(bpe)
    .with_pre_tokenizer(Some(PreTokenizerWrapper::Sequence(pre)))
    .with_decoder(Some(DecoderWrapper::ByteLevel(ByteLevel::default())))
    .build()
    .map_err(err)?;
    // One training sequence per blank-line separated block, plus, per block, the text pieces the chat
    // template puts between special tokens (a role name and "\n\n"), so headers cost few tokens.
    let roles = ["system", "user", "assistant"];
    let blocks = corpus
        .split_inclusive("\n\n")
        .filter(|b| !b.trim().is_empty())
        .enumerate()
        .flat_map(|(i, b)| [b, roles[i % roles.len()], "\n\n"]);
    tk.train(&mut trainer, blocks).map_err(err)?;

    let bos = tk
        .token_to_id(TINY_SPECIAL_TOKENS[0])
        .ok_or_else(|| Error::Tokenizer("training lost <|begin_of_text|>".into()))?;
    let template = TemplateProcessing::builder()
        .try_single("<|begin_of_text|> $A")
        .map_err(|e| Error::Tokenizer(e.to_string()))?
        .try_pair("<|begin_of_text|> $A:0 <|begin_of_text|>:1 $B:1")
        .map_err(|e| Error::Tokenizer(e.to_string()))?
        .special_tokens(vec![(TINY_SPECIAL_TOKENS[0], bos)])
        .build()
        .map_err(|e| Error::Tokenizer(e.to_string()))?;
    tk.with_post_processor(Some(PostProcessorWrapper::Sequence(PostSequence::new(
        vec![
            PostProcessorWrapper::ByteLevel(ByteLevel::new(false, false, false)),
            PostProcessorWrapper::Template(template),
        ],
    ))));
    Ok(Tokenizer::from_inner(tokenizers::Tokenizer::from(tk)))
}

/// Trains the built-in tiny tokenizer: [`train_byte_level_bpe`] on [`TINY_CORPUS`] with
/// [`TINY_VOCAB_SIZE`]. Its pretty JSON is `assets/tokenizer.json`.
pub fn train_tiny_tokenizer() -> Result<Tokenizer> {
    train_byte_level_bpe(TINY_CORPUS, TINY_VOCAB_SIZE)
}

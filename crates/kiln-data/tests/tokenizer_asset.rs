//! The committed `assets/tokenizer.json` is reproduced by retraining on the shipped corpus.
#![cfg(test)]

use kiln_data::Tokenizer;
use kiln_data::tokenizer::TINY_TOKENIZER_JSON;
use kiln_data::train_tokenizer::{TINY_SPECIAL_TOKENS, TINY_VOCAB_SIZE, train_tiny_tokenizer};

fn asset_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/tokenizer.json")
}

#[test]
fn retraining_reproduces_the_committed_asset() {
    let trained = train_tiny_tokenizer().unwrap().to_json(true).unwrap();
    assert!(
        trained == TINY_TOKENIZER_JSON,
        "assets/tokenizer.json differs from a fresh training run; regenerate with \
         `cargo test -p kiln-data --test tokenizer_asset -- --ignored regenerate`"
    );
}

#[test]
fn training_is_deterministic() {
    let a = train_tiny_tokenizer().unwrap().to_json(false).unwrap();
    let b = train_tiny_tokenizer().unwrap().to_json(false).unwrap();
    assert_eq!(a, b);
}

#[test]
fn builtin_has_specials_and_expected_size() {
    let tok = Tokenizer::builtin_tiny().unwrap();
    assert_eq!(tok.vocab_size(), TINY_VOCAB_SIZE);
    for (i, name) in TINY_SPECIAL_TOKENS.iter().enumerate() {
        assert_eq!(tok.token_id(name).unwrap(), i as u32, "{name}");
    }
    assert_eq!(tok.pad_id().unwrap(), 5);
}

/// Rewrites the asset (run on purpose after changing the corpus or the training settings).
#[test]
#[ignore]
fn regenerate() {
    let json = train_tiny_tokenizer().unwrap().to_json(true).unwrap();
    std::fs::write(asset_path(), json).unwrap();
}

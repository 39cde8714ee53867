//! Generation records: `{"prompt": ..., "responses": ["...", ...]}`, optionally with
//! `"finish_reasons": ["stop_token", "length", ...]` (why each response ended, a [`FinishReason`];
//! absent when unknown).

use serde::{Deserialize, Serialize};

use super::FinishReason;
use crate::message::Content;

/// K sampled responses for one prompt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenerationRecord {
    /// The prompt the responses answer (text or messages).
    pub prompt: Content,
    /// The sampled responses (assistant text, without the chat template).
    pub responses: Vec<String>,
    /// Why each response ended, in response order (JSON: `"stop_token"`, `"stop_string"`,
    /// `"stop"` or `"length"`: cut at the token limit). Empty when unknown; omitted from the JSON
    /// when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub finish_reasons: Vec<FinishReason>,
}

impl GenerationRecord {
    /// A record without finish reasons.
    pub fn new(prompt: Content, responses: Vec<String>) -> Self {
        GenerationRecord {
            prompt,
            responses,
            finish_reasons: Vec::new(),
        }
    }

    /// Whether response `i` was cut at the token limit (`false` when unknown).
    pub fn truncated(&self, i: usize) -> bool {
        self.finish_reasons
            .get(i)
            .is_some_and(|r| *r == FinishReason::Length)
    }
}

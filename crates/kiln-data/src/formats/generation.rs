//! Generation records: `{"prompt": ..., "responses": ["...", ...]}`.

use serde::{Deserialize, Serialize};

use crate::message::Content;

/// K sampled responses for one prompt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenerationRecord {
    /// The prompt the responses answer (text or messages).
    pub prompt: Content,
    /// The sampled responses (assistant text, without the chat template).
    pub responses: Vec<String>,
}

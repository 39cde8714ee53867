//! SFT conversations: `{"messages": [{"role", "content"}, ...]}`.

use serde::{Deserialize, Serialize};

use crate::message::Message;

/// One supervised fine-tuning conversation; the loss covers the assistant turns only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SftRecord {
    /// The conversation turns.
    pub messages: Vec<Message>,
}

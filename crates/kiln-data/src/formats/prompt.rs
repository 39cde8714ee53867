//! Prompt records: `{"prompt": "..."}`, `{"messages": [...]}` or `{"context_messages": [...]}`.

use serde::{Deserialize, Serialize};

use crate::message::{Content, Message};

/// One prompt of the prompts stage.
///
/// Reading accepts exactly one of `prompt` (a string or a message list), `messages` or
/// `context_messages` (the reference code's name). Writing uses `prompt` for text and `messages` for
/// message lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawPrompt", into = "RawPrompt")]
pub struct PromptRecord {
    /// The prompt.
    pub prompt: Content,
}

impl PromptRecord {
    /// A text prompt.
    pub fn text(text: impl Into<String>) -> Self {
        PromptRecord {
            prompt: Content::Text(text.into()),
        }
    }
    /// A message-list prompt.
    pub fn messages(messages: Vec<Message>) -> Self {
        PromptRecord {
            prompt: Content::Messages(messages),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct RawPrompt {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    prompt: Option<Content>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    messages: Option<Vec<Message>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    context_messages: Option<Vec<Message>>,
}

impl TryFrom<RawPrompt> for PromptRecord {
    type Error = String;
    fn try_from(raw: RawPrompt) -> Result<Self, String> {
        match (raw.prompt, raw.messages, raw.context_messages) {
            (Some(p), None, None) => Ok(PromptRecord { prompt: p }),
            (None, Some(m), None) | (None, None, Some(m)) => Ok(PromptRecord {
                prompt: Content::Messages(m),
            }),
            (None, None, None) => Err(
                "missing field: expected one of `prompt`, `messages`, `context_messages`".into(),
            ),
            _ => Err(
                "ambiguous prompt: give only one of `prompt`, `messages`, `context_messages`"
                    .into(),
            ),
        }
    }
}

impl From<PromptRecord> for RawPrompt {
    fn from(r: PromptRecord) -> Self {
        match r.prompt {
            Content::Text(t) => RawPrompt {
                prompt: Some(Content::Text(t)),
                messages: None,
                context_messages: None,
            },
            Content::Messages(m) => RawPrompt {
                prompt: None,
                messages: Some(m),
                context_messages: None,
            },
        }
    }
}

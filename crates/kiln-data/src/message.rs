//! Chat messages: a typed [`Role`] and a [`Message`] `{role, content}`, plus [`Content`] (text or messages).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Who wrote a chat message. Serialised in lower case (`"system"`, `"user"`, `"assistant"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// System prompt.
    System,
    /// The human / prompt side.
    User,
    /// The model; the only role trained on in SFT.
    Assistant,
}

impl Role {
    /// The role name as written in the chat template header.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One chat turn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Author of the turn.
    pub role: Role,
    /// Text of the turn (the chat template strips surrounding whitespace).
    pub content: String,
}

impl Message {
    /// Creates a message.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Message {
            role,
            content: content.into(),
        }
    }
    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::new(Role::System, content)
    }
    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new(Role::User, content)
    }
    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new(Role::Assistant, content)
    }
}

/// A prompt or a completion: plain text or a list of messages (the HF preference-dataset convention).
///
/// Serialised untagged: a JSON string or a JSON array of `{role, content}` objects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged, expecting = "a string or a list of {role, content} messages")]
pub enum Content {
    /// Plain text. As a prompt it is one user turn; as a completion, one assistant turn.
    Text(String),
    /// Explicit chat turns.
    Messages(Vec<Message>),
}

impl Content {
    /// The messages of this content when used as a prompt (text becomes one user message).
    pub fn as_prompt_messages(&self) -> Vec<Message> {
        match self {
            Content::Text(t) => vec![Message::user(t.clone())],
            Content::Messages(m) => m.clone(),
        }
    }

    /// The messages of this content when used as a completion (text becomes one assistant message).
    pub fn as_completion_messages(&self) -> Vec<Message> {
        match self {
            Content::Text(t) => vec![Message::assistant(t.clone())],
            Content::Messages(m) => m.clone(),
        }
    }

    /// Total number of characters of text (all message contents for lists).
    pub fn char_len(&self) -> usize {
        match self {
            Content::Text(t) => t.chars().count(),
            Content::Messages(m) => m.iter().map(|m| m.content.chars().count()).sum(),
        }
    }

    /// The text of a completion: the string itself, or the concatenated message contents.
    pub fn text(&self) -> String {
        match self {
            Content::Text(t) => t.clone(),
            Content::Messages(m) => m
                .iter()
                .map(|m| m.content.as_str())
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }
}

impl From<&str> for Content {
    fn from(s: &str) -> Self {
        Content::Text(s.to_string())
    }
}

impl From<String> for Content {
    fn from(s: String) -> Self {
        Content::Text(s)
    }
}

impl From<Vec<Message>> for Content {
    fn from(m: Vec<Message>) -> Self {
        Content::Messages(m)
    }
}

/// Reads a conversation file: a JSON list of `{"role", "content"}` objects (`generate
/// --messages`).
///
/// # Errors
/// [`Error::Io`] naming the file, and those of [`parse_messages`].
pub fn read_messages(path: impl AsRef<Path>) -> Result<Vec<Message>> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    parse_messages(&text, path)
}

/// Parses the text of a conversation file (see [`read_messages`]); `path` is only used in errors.
///
/// # Errors
/// [`Error::Record`] naming the file, line and field when the text is not a JSON list of
/// `{"role", "content"}` objects (roles `system`, `user`, `assistant`), [`Error::InvalidInput`]
/// for an empty list.
pub fn parse_messages(text: &str, path: &Path) -> Result<Vec<Message>> {
    let bad = |line: usize, field: Option<String>, e: &serde_json::Error| Error::Record {
        path: path.to_path_buf(),
        line,
        field,
        message: format!("expected a JSON list of {{\"role\", \"content\"}} objects: {e}"),
    };
    let mut de = serde_json::Deserializer::from_str(text);
    let list: Vec<Message> = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let field = e.path().to_string();
        bad(e.inner().line(), (field != ".").then_some(field), e.inner())
    })?;
    de.end().map_err(|e| bad(e.line(), None, &e))?;
    if list.is_empty() {
        return Err(Error::InvalidInput(format!(
            "{}: the conversation is empty",
            path.display()
        )));
    }
    Ok(list)
}

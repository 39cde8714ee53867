//! The Llama-3 chat template, rendered to text and to token ids with an assistant-token mask.
//!
//! Same output as HF `apply_chat_template` with Meta's Llama-3 Jinja template:
//! `<|begin_of_text|>` before the first turn, then per turn
//! `<|start_header_id|>{role}<|end_header_id|>\n\n{content | trim}<|eot_id|>`, then optionally the
//! generation prompt `<|start_header_id|>assistant<|end_header_id|>\n\n`. Ids are obtained as HF does:
//! the whole rendered string is encoded at once (special-token strings are split out first, so BPE
//! merges never cross them); the assistant mask is derived from token offsets.

use crate::error::{Error, Result};
use crate::message::{Message, Role};
use crate::tokenizer::Tokenizer;

/// `<|begin_of_text|>`.
pub const BEGIN_OF_TEXT: &str = "<|begin_of_text|>";
/// `<|start_header_id|>`.
pub const START_HEADER: &str = "<|start_header_id|>";
/// `<|end_header_id|>`.
pub const END_HEADER: &str = "<|end_header_id|>";
/// `<|eot_id|>`: end of turn, the stop token of chat generation.
pub const EOT: &str = "<|eot_id|>";
/// `<|end_of_text|>`.
pub const END_OF_TEXT: &str = "<|end_of_text|>";

/// Strips leading and trailing whitespace exactly like Python's `str.strip()` (which Jinja's `trim`
/// uses): Unicode `White_Space` plus the separators U+001C..U+001F.
pub fn python_strip(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
}

/// Token ids of a rendered chat and which of them are assistant tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedChat {
    /// Token ids of the rendered conversation.
    pub ids: Vec<u32>,
    /// `true` for the content tokens of assistant turns and their `<|eot_id|>` (not the headers):
    /// exactly the tokens the SFT loss counts.
    pub assistant_mask: Vec<bool>,
}

/// A prompt followed by a completion, as DPO, reward-model and RRHF batches need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptCompletion {
    /// Ids of the prompt part: the prompt turns plus the header of the first completion turn
    /// (for an assistant completion this equals the prompt rendered with the generation prompt).
    pub prompt: Vec<u32>,
    /// Ids of the completion part (for a text completion: content tokens then `<|eot_id|>`).
    pub completion: Vec<u32>,
    /// Loss mask over `completion`: `true` on assistant content and `<|eot_id|>` tokens.
    pub completion_mask: Vec<bool>,
}

/// The Llama-3 chat template bound to a tokenizer's special-token ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatTemplate {
    bos: u32,
    eot: u32,
    end_of_text: Option<u32>,
}

impl ChatTemplate {
    /// Checks that `tokenizer` has every token the template needs and records their ids.
    pub fn llama3(tokenizer: &Tokenizer) -> Result<Self> {
        let need = "the Llama-3 chat template";
        let bos = tokenizer.require_token(BEGIN_OF_TEXT, need)?;
        tokenizer.require_token(START_HEADER, need)?;
        tokenizer.require_token(END_HEADER, need)?;
        let eot = tokenizer.require_token(EOT, need)?;
        let end_of_text = tokenizer.token_id(END_OF_TEXT).ok();
        Ok(ChatTemplate {
            bos,
            eot,
            end_of_text,
        })
    }

    /// Id of `<|begin_of_text|>`.
    pub fn bos_id(&self) -> u32 {
        self.bos
    }

    /// Id of `<|eot_id|>`.
    pub fn eot_id(&self) -> u32 {
        self.eot
    }

    /// Ids that end a generated response: `<|eot_id|>` and, when present, `<|end_of_text|>`.
    pub fn stop_ids(&self) -> Vec<u32> {
        let mut v = vec![self.eot];
        v.extend(self.end_of_text);
        v
    }

    /// Renders `messages` to the exact text HF produces.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> String {
        render_with_spans(messages, add_generation_prompt).0
    }

    /// Renders and encodes `messages`, with the assistant-token mask.
    pub fn encode(
        &self,
        tokenizer: &Tokenizer,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<EncodedChat> {
        let (text, spans, _) = render_with_spans(messages, add_generation_prompt);
        let (ids, offsets) = tokenizer.encode_with_offsets(&text)?;
        let assistant_mask = offsets
            .iter()
            .map(|&(s, e)| spans.iter().any(|&(a, b)| s < b && e > a))
            .collect();
        Ok(EncodedChat {
            ids,
            assistant_mask,
        })
    }

    /// Encodes `prompt` turns followed by `completion` turns and splits the ids at the start of the
    /// first completion turn's content. The completion mask keeps only assistant tokens.
    ///
    /// Concatenating `prompt` and `completion` gives exactly the ids of
    /// `encode(prompt ++ completion, false)`.
    pub fn encode_prompt_completion(
        &self,
        tokenizer: &Tokenizer,
        prompt: &[Message],
        completion: &[Message],
    ) -> Result<PromptCompletion> {
        if completion.is_empty() {
            return Err(Error::InvalidInput("completion has no messages".into()));
        }
        let mut all = prompt.to_vec();
        all.extend_from_slice(completion);
        let (text, spans, content_starts) = render_with_spans(&all, false);
        let split_byte = content_starts[prompt.len()];
        let (ids, offsets) = tokenizer.encode_with_offsets(&text)?;
        let split = offsets.iter().take_while(|&&(s, _)| s < split_byte).count();
        if split > 0 && offsets[split - 1].1 > split_byte {
            let (s, e) = offsets[split - 1];
            return Err(Error::Tokenizer(format!(
                "a token spans the prompt/completion boundary (bytes {s}..{e}, boundary {split_byte})"
            )));
        }
        let completion_mask = offsets[split..]
            .iter()
            .map(|&(s, e)| spans.iter().any(|&(a, b)| s < b && e > a))
            .collect();
        Ok(PromptCompletion {
            prompt: ids[..split].to_vec(),
            completion: ids[split..].to_vec(),
            completion_mask,
        })
    }
}

/// Renders the template; returns the text, the byte spans of assistant content + `<|eot_id|>`, and the
/// byte offset where each message's content starts.
fn render_with_spans(
    messages: &[Message],
    add_generation_prompt: bool,
) -> (String, Vec<(usize, usize)>, Vec<usize>) {
    let mut text = String::new();
    let mut spans = Vec::new();
    let mut starts = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        if i == 0 {
            text.push_str(BEGIN_OF_TEXT);
        }
        text.push_str(START_HEADER);
        text.push_str(m.role.as_str());
        text.push_str(END_HEADER);
        text.push_str("\n\n");
        let start = text.len();
        starts.push(start);
        text.push_str(python_strip(&m.content));
        text.push_str(EOT);
        if m.role == Role::Assistant {
            spans.push((start, text.len()));
        }
    }
    if add_generation_prompt {
        text.push_str(START_HEADER);
        text.push_str(Role::Assistant.as_str());
        text.push_str(END_HEADER);
        text.push_str("\n\n");
    }
    (text, spans, starts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_strip_matches_python() {
        assert_eq!(python_strip("  a b \n\t"), "a b");
        assert_eq!(python_strip("\u{1f}x\u{1c}"), "x");
        assert_eq!(python_strip("\u{a0}x\u{3000}"), "x");
        assert_eq!(python_strip("\u{200b}x"), "\u{200b}x"); // zero-width space is not whitespace
    }

    #[test]
    fn render_matches_the_template_text() {
        let msgs = [Message::system(" Be brief. "), Message::user("Hi\n")];
        let t = render_with_spans(&msgs, true).0;
        assert_eq!(
            t,
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>\
             <|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>\
             <|start_header_id|>assistant<|end_header_id|>\n\n"
        );
        // No messages: no BOS (the template adds it with the first turn).
        assert_eq!(
            render_with_spans(&[], true).0,
            "<|start_header_id|>assistant<|end_header_id|>\n\n"
        );
    }
}

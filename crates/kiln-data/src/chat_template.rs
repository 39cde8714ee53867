//! Chat templates rendered to text and to token ids with an assistant-token mask: a checkpoint's
//! own Jinja template (rendered by minijinja like transformers renders it), or Kiln's built-in Llama-3.0 template.
//!
//! The built-in template gives the same output as HF `apply_chat_template` with Meta's Llama-3.0
//! Jinja template:
//! `<|begin_of_text|>` before the first turn, then per turn
//! `<|start_header_id|>{role}<|end_header_id|>\n\n{content | trim}<|eot_id|>`, then optionally the
//! generation prompt `<|start_header_id|>assistant<|end_header_id|>\n\n`. Ids are obtained as HF does:
//! the whole rendered string is encoded at once (special-token strings are split out first, so BPE
//! merges never cross them); the assistant mask is derived from token offsets.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::date::TemplateClock;
use crate::error::{Error, Result};
use crate::hf_files::{
    TemplateSource, find_chat_template, read_eos_token_ids, read_special_tokens,
};
use crate::jinja::{JinjaTemplate, python_strip};
use crate::message::{Message, Role};
use crate::tokenizer::{PAD_TOKEN, Tokenizer};

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

/// Meta's Llama-3.0 Instruct chat template (`tokenizer_config.json` of Meta-Llama-3-8B-Instruct),
/// verbatim: what the built-in renderer reproduces, and what [`ChatTemplate::save_files`] writes
/// for it.
pub const LLAMA3_JINJA: &str = "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";

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

/// Which chat template to use for a model directory (for command lines and configs).
///
/// Parsed from and written as a string: `checkpoint`, `llama3`, or a file path.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum TemplateChoice {
    /// The checkpoint's own template (`chat_template.jinja`, else `tokenizer_config.json`).
    #[default]
    Checkpoint,
    /// Kiln's built-in Llama-3.0 template (no system block), for the built-in tokenizer.
    Llama3,
    /// A Jinja template file.
    File(PathBuf),
}

impl std::str::FromStr for TemplateChoice {
    type Err = Error;
    /// `checkpoint` (or `auto`), `llama3`, or a path to a Jinja file.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "" => Err(Error::InvalidConfig(
                "empty chat template choice (expected `checkpoint`, `llama3` or a file path)"
                    .into(),
            )),
            "checkpoint" | "auto" => Ok(TemplateChoice::Checkpoint),
            "llama3" => Ok(TemplateChoice::Llama3),
            path => Ok(TemplateChoice::File(PathBuf::from(path))),
        }
    }
}

impl TryFrom<String> for TemplateChoice {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<TemplateChoice> for String {
    fn from(c: TemplateChoice) -> String {
        c.to_string()
    }
}

impl std::fmt::Display for TemplateChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TemplateChoice::Checkpoint => f.write_str("checkpoint"),
            TemplateChoice::Llama3 => f.write_str("llama3"),
            TemplateChoice::File(p) => write!(f, "{}", p.display()),
        }
    }
}

#[derive(Debug, Clone)]
enum Kind {
    /// The built-in Llama-3.0 renderer.
    Llama3,
    /// A Hugging Face Jinja template.
    Jinja(Arc<JinjaTemplate>),
}

/// A chat template bound to a tokenizer: Kiln's built-in Llama-3.0 template, or a checkpoint's
/// own Jinja template rendered like transformers' `apply_chat_template`.
///
/// Everything that turns conversations into ids (sampling prompts, reward-model inputs, SFT, DPO,
/// RRHF and reward-model batches) goes through this type, so a checkpoint's template is used the
/// same way at every stage.
///
/// - Text is encoded as HF does: the rendered string at once, no special tokens added on top.
/// - Assistant masks cover each assistant turn's content and its end-of-turn token; they come
///   from `{% generation %}` blocks when the template has them, else from rendering prefixes of
///   the conversation (as TRL does): the text between `render(messages[..i], generation prompt)`
///   and the end-of-turn token that closes `render(messages[..=i])`.
/// - Stop ids: the checkpoint's `eos_token_id` (`generation_config.json`, else `config.json`) plus
///   the template's end-of-turn token.
#[derive(Debug, Clone)]
pub struct ChatTemplate {
    kind: Kind,
    origin: String,
    bos: Option<u32>,
    eot: u32,
    eot_text: String,
    stop_ids: Vec<u32>,
    special_tokens: BTreeMap<String, String>,
    vars: BTreeMap<String, serde_json::Value>,
    clock: TemplateClock,
}

impl ChatTemplate {
    /// Kiln's built-in Llama-3.0 template. Checks that `tokenizer` has every token the template
    /// needs and records their ids.
    pub fn llama3(tokenizer: &Tokenizer) -> Result<Self> {
        let need = "the Llama-3 chat template";
        let bos = tokenizer.require_token(BEGIN_OF_TEXT, need)?;
        tokenizer.require_token(START_HEADER, need)?;
        tokenizer.require_token(END_HEADER, need)?;
        let eot = tokenizer.require_token(EOT, need)?;
        let mut stop_ids = vec![eot];
        stop_ids.extend(tokenizer.token_id(END_OF_TEXT).ok());
        Ok(ChatTemplate {
            kind: Kind::Llama3,
            origin: "the built-in Llama-3 template".into(),
            bos: Some(bos),
            eot,
            eot_text: EOT.into(),
            stop_ids,
            special_tokens: BTreeMap::from([
                ("bos_token".to_string(), BEGIN_OF_TEXT.to_string()),
                ("eos_token".to_string(), EOT.to_string()),
            ]),
            vars: BTreeMap::new(),
            clock: TemplateClock::default(),
        })
    }

    /// The chat template of a Hugging Face model directory (`chat_template.jinja`, else
    /// `tokenizer_config.json`'s `chat_template`), with the directory's special tokens and stop ids.
    /// A directory without a template is an error naming the files looked at.
    pub fn from_model_dir(dir: impl AsRef<Path>, tokenizer: &Tokenizer) -> Result<Self> {
        let dir = dir.as_ref();
        let source = find_chat_template(dir)?;
        Self::from_jinja(
            &source,
            tokenizer,
            read_special_tokens(dir)?,
            read_eos_token_ids(dir, tokenizer)?,
        )
    }

    /// Loads the template `choice` names. Special tokens and stop ids come from `model_dir` when
    /// given (a `File` template with no model directory gets `<|begin_of_text|>`-style specials
    /// from nowhere: pass them through [`ChatTemplate::from_jinja`] instead).
    pub fn load(
        choice: &TemplateChoice,
        model_dir: Option<&Path>,
        tokenizer: &Tokenizer,
    ) -> Result<Self> {
        match choice {
            TemplateChoice::Llama3 => Self::llama3(tokenizer),
            TemplateChoice::Checkpoint => match model_dir {
                Some(dir) => Self::from_model_dir(dir, tokenizer),
                None => Err(Error::InvalidConfig(
                    "the checkpoint's chat template was asked for, but no model directory was given"
                        .into(),
                )),
            },
            TemplateChoice::File(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
                let source = TemplateSource {
                    text,
                    origin: path.display().to_string(),
                };
                let (specials, eos) = match model_dir {
                    Some(dir) => (
                        read_special_tokens(dir)?,
                        read_eos_token_ids(dir, tokenizer)?,
                    ),
                    None => (BTreeMap::new(), Vec::new()),
                };
                Self::from_jinja(&source, tokenizer, specials, eos)
            }
        }
    }

    /// Compiles a Jinja chat template. `special_tokens` are the template variables `bos_token`,
    /// `eos_token`, ... (see [`read_special_tokens`]); `eos_ids` the model's stop ids. The
    /// end-of-turn token is found by rendering a probe conversation: the first special token after
    /// the assistant's text (else `eos_token`).
    pub fn from_jinja(
        source: &TemplateSource,
        tokenizer: &Tokenizer,
        special_tokens: BTreeMap<String, String>,
        eos_ids: Vec<u32>,
    ) -> Result<Self> {
        let jinja = JinjaTemplate::new(&source.text, &source.origin)?;
        let bos = special_tokens
            .get("bos_token")
            .and_then(|t| tokenizer.token_id(t).ok());
        let mut template = ChatTemplate {
            kind: Kind::Jinja(Arc::new(jinja)),
            origin: source.origin.clone(),
            bos,
            eot: 0,
            eot_text: String::new(),
            stop_ids: Vec::new(),
            special_tokens,
            vars: BTreeMap::new(),
            clock: TemplateClock::default(),
        };
        let (eot_text, eot) = template.find_end_of_turn(tokenizer)?;
        template.eot = eot;
        template.eot_text = eot_text;
        let mut stop_ids = eos_ids;
        if !stop_ids.contains(&eot) {
            stop_ids.push(eot);
        }
        template.stop_ids = stop_ids;
        Ok(template)
    }

    /// The end-of-turn token: the first special token rendered after an assistant's text.
    fn find_end_of_turn(&self, tokenizer: &Tokenizer) -> Result<(String, u32)> {
        const PROBE: &str = "Kiln probe answer";
        let probe = [
            Message::user("Kiln probe question"),
            Message::assistant(PROBE),
        ];
        let rendered = match self.render(&probe, false) {
            Ok(text) => Some(text),
            // The template rejects this conversation shape; fall back to `eos_token` below.
            Err(Error::TemplateRaised { .. }) => None,
            // It cannot render a plain user/assistant exchange: report why.
            Err(e) => return Err(e),
        };
        if let Some(text) = rendered
            && let Some(at) = text.rfind(PROBE)
        {
            let tail = &text[at + PROBE.len()..];
            let (ids, offsets) = tokenizer.encode_with_offsets(tail)?;
            for (id, (s, e)) in ids.iter().zip(offsets) {
                if tokenizer.is_special(*id) {
                    return Ok((tail[s..e].to_string(), *id));
                }
            }
        }
        match self.special_tokens.get("eos_token") {
            Some(eos) => Ok((
                eos.clone(),
                tokenizer.require_token(eos, "the chat template's end of turn")?,
            )),
            None => Err(Error::Template {
                origin: self.origin.clone(),
                message: "cannot find the end-of-turn token: no special token follows an \
                          assistant turn and tokenizer_config.json has no eos_token"
                    .into(),
            }),
        }
    }

    /// Pins the date and time `strftime_now` returns (reproducible prompts), or sets the clock back
    /// to the system's.
    pub fn with_clock(mut self, clock: TemplateClock) -> Self {
        self.clock = clock;
        self
    }

    /// Sets an extra template variable, like a keyword argument of `apply_chat_template` (e.g.
    /// Llama-3.1's `date_string`, or `tools`).
    pub fn with_var(mut self, name: impl Into<String>, value: serde_json::Value) -> Self {
        self.vars.insert(name.into(), value);
        self
    }

    /// The Jinja source of this template ([`LLAMA3_JINJA`] for the built-in one).
    pub fn source(&self) -> &str {
        match &self.kind {
            Kind::Llama3 => LLAMA3_JINJA,
            Kind::Jinja(j) => j.source(),
        }
    }

    /// Writes the template into a model directory the way transformers does, so the directory
    /// reloads with the same chat formatting: `chat_template.jinja`, and a `tokenizer_config.json`
    /// with the special tokens when the directory has none.
    pub fn save_files(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        let path = dir.join(crate::hf_files::CHAT_TEMPLATE_FILE);
        std::fs::write(&path, self.source()).map_err(|e| Error::io(&path, e))?;
        let config = dir.join(crate::hf_files::TOKENIZER_CONFIG_FILE);
        if !config.exists() {
            let json = serde_json::to_string_pretty(&self.special_tokens)
                .map_err(|e| Error::InvalidInput(e.to_string()))?;
            std::fs::write(&config, json).map_err(|e| Error::io(&config, e))?;
        }
        Ok(())
    }

    /// Where the template came from: a file path, or the built-in template.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Whether this is Kiln's built-in Llama-3.0 renderer.
    pub fn is_builtin_llama3(&self) -> bool {
        matches!(self.kind, Kind::Llama3)
    }

    /// The special tokens passed to the template (`bos_token`, `eos_token`, ...).
    pub fn special_tokens(&self) -> &BTreeMap<String, String> {
        &self.special_tokens
    }

    /// The padding id without a model config: [`Self::resolve_pad_id`] with no `pad_token_id`.
    pub fn pad_id(&self, tokenizer: &Tokenizer) -> Result<u32> {
        self.resolve_pad_id(tokenizer, None)
    }

    /// The padding id, one rule for every stage and model: `tokenizer_config.json`'s `pad_token`
    /// (SmolLM2: `<|im_end|>`), else `<|finetune_right_pad_id|>` (Llama-3), else the model's
    /// `pad_token_id` (`config_pad`), else `<|end_of_text|>`; an error when none applies.
    pub fn resolve_pad_id(&self, tokenizer: &Tokenizer, config_pad: Option<u32>) -> Result<u32> {
        if let Some(pad) = self.special_tokens.get("pad_token") {
            return tokenizer.require_token(pad, "padding (tokenizer_config.json pad_token)");
        }
        match (tokenizer.token_id(PAD_TOKEN), config_pad) {
            (Ok(id), _) | (Err(_), Some(id)) => Ok(id),
            (Err(_), None) => tokenizer.pad_id(),
        }
    }

    /// Id of the `bos_token` (`<|begin_of_text|>` for Llama-3), if the tokenizer config names one.
    pub fn bos_id(&self) -> Option<u32> {
        self.bos
    }

    /// Id of the end-of-turn token (`<|eot_id|>` for Llama-3, `<|im_end|>` for ChatML).
    pub fn eot_id(&self) -> u32 {
        self.eot
    }

    /// Text of the end-of-turn token.
    pub fn eot_token(&self) -> &str {
        &self.eot_text
    }

    /// Ids that end a generated response: the model's `eos_token_id`s plus the end-of-turn token
    /// (built-in template: `<|eot_id|>` and, when present, `<|end_of_text|>`).
    pub fn stop_ids(&self) -> Vec<u32> {
        self.stop_ids.clone()
    }

    /// Renders `messages` to the exact text HF produces.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        Ok(self.render_spans(messages, add_generation_prompt)?.0)
    }

    /// Renders and returns the text with the byte spans of assistant tokens (content plus the
    /// end-of-turn token).
    fn render_spans(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<(String, Vec<(usize, usize)>)> {
        let jinja = match &self.kind {
            Kind::Llama3 => {
                let (text, spans, _) = render_with_spans(messages, add_generation_prompt);
                return Ok((text, spans));
            }
            Kind::Jinja(j) => j,
        };
        let rendered = self.render_jinja(jinja, messages, add_generation_prompt)?;
        if jinja.has_generation_tags() {
            return Ok((rendered.text, rendered.generation_spans));
        }
        let mut spans = Vec::new();
        for (i, m) in messages.iter().enumerate() {
            if m.role != Role::Assistant {
                continue;
            }
            let before = self.render_jinja(jinja, &messages[..i], true)?.text;
            let through = self.render_jinja(jinja, &messages[..=i], false)?.text;
            if !through.starts_with(&before) || !rendered.text.starts_with(&through) {
                return Err(Error::Template {
                    origin: self.origin.clone(),
                    message: format!(
                        "cannot locate assistant turn {i}: the template renders a conversation's \
                         prefix differently from the start of the whole conversation (add \
                         {{% generation %}} blocks to mark assistant text)"
                    ),
                });
            }
            let end = through[before.len()..]
                .find(&self.eot_text)
                .map_or(through.len(), |j| before.len() + j + self.eot_text.len());
            spans.push((before.len(), end));
        }
        Ok((rendered.text, spans))
    }

    fn render_jinja(
        &self,
        jinja: &JinjaTemplate,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<crate::jinja::Rendered> {
        jinja.render(
            messages,
            add_generation_prompt,
            &self.special_tokens,
            &self.vars,
            self.clock,
        )
    }

    /// Renders and encodes `messages`, with the assistant-token mask.
    pub fn encode(
        &self,
        tokenizer: &Tokenizer,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<EncodedChat> {
        let (text, spans) = self.render_spans(messages, add_generation_prompt)?;
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

    /// Encodes `prompt` turns followed by `completion` turns and splits the ids where the prompt
    /// rendered on its own ends (with the generation prompt when the completion starts with an
    /// assistant turn). The completion mask keeps only assistant tokens.
    ///
    /// Concatenating `prompt` and `completion` gives exactly the ids of
    /// `encode(prompt ++ completion, false)`. The prompt part equals `encode(prompt, true)` unless
    /// a token straddles the boundary (e.g. ChatML, whose templates do not trim, with a completion
    /// that starts with whitespace): that token belongs to the completion.
    pub fn encode_prompt_completion(
        &self,
        tokenizer: &Tokenizer,
        prompt: &[Message],
        completion: &[Message],
    ) -> Result<PromptCompletion> {
        let Some(first) = completion.first() else {
            return Err(Error::InvalidInput("completion has no messages".into()));
        };
        let mut all = prompt.to_vec();
        all.extend_from_slice(completion);
        let (text, spans) = self.render_spans(&all, false)?;
        let prompt_text = self.render(prompt, first.role == Role::Assistant)?;
        if !text.starts_with(&prompt_text) {
            return Err(Error::Template {
                origin: self.origin.clone(),
                message: "the prompt rendered alone is not a prefix of prompt + completion".into(),
            });
        }
        let split_byte = prompt_text.len();
        let (ids, offsets) = tokenizer.encode_with_offsets(&text)?;
        // Tokens wholly inside the prompt text. A token that straddles the boundary (ChatML content
        // starting with whitespace merges with the header's `\n`) goes to the completion, whose
        // mask counts it: it carries completion text.
        let split = offsets
            .iter()
            .take_while(|&&(_, e)| e <= split_byte)
            .count();
        if split < offsets.len() && offsets[split].0 < split_byte {
            tracing::debug!(
                boundary = split_byte,
                token = ?offsets[split],
                "a token straddles the prompt/completion boundary; it is part of the completion"
            );
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

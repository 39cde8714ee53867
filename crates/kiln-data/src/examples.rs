//! Turning records into token sequences with loss masks ([`Example`]), ready for collation.

use crate::chat_template::ChatTemplate;
use crate::error::{Error, Result};
use crate::formats::{PairRecord, RankedRecord, SftRecord};
use crate::message::Content;
use crate::tokenizer::Tokenizer;
use crate::truncate::{TruncationConfig, keep_end, keep_start, truncate_prompt_completion};

/// One token sequence and its loss mask (aligned with `ids`: `true` on tokens the loss counts).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Example {
    /// Token ids.
    pub ids: Vec<u32>,
    /// `true` on response (assistant) tokens, `false` on prompt tokens. Same length as `ids`.
    pub loss_mask: Vec<bool>,
}

impl Example {
    /// Builds an example from a prompt and a completion: mask `false` on the prompt, the completion
    /// mask on the completion.
    pub fn from_parts(prompt: &[u32], completion: &[u32], completion_mask: &[bool]) -> Self {
        let mut ids = prompt.to_vec();
        ids.extend_from_slice(completion);
        let mut loss_mask = vec![false; prompt.len()];
        loss_mask.extend_from_slice(completion_mask);
        Example { ids, loss_mask }
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether there are no tokens.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Number of tokens the loss counts.
    pub fn num_loss_tokens(&self) -> usize {
        self.loss_mask.iter().filter(|&&m| m).count()
    }
}

/// Encodes a generation prompt (chat template with the assistant generation prompt), keeping its last
/// `max_prompt_len` tokens. Text prompts become one user turn.
pub fn encode_generation_prompt(
    tokenizer: &Tokenizer,
    template: &ChatTemplate,
    prompt: &Content,
    max_prompt_len: usize,
) -> Result<Vec<u32>> {
    let enc = template.encode(tokenizer, &prompt.as_prompt_messages(), true)?;
    Ok(keep_end(&enc.ids, max_prompt_len).to_vec())
}

/// Encodes `prompt` + `completion` (text completions become one assistant turn) and truncates it
/// (prompt keeps its end, completion its start). Used for DPO, RRHF and reward-model inputs.
pub fn encode_prompt_completion(
    tokenizer: &Tokenizer,
    template: &ChatTemplate,
    prompt: &Content,
    completion: &Content,
    truncation: &TruncationConfig,
) -> Result<Example> {
    truncation.validate()?;
    let pc = template.encode_prompt_completion(
        tokenizer,
        &prompt.as_prompt_messages(),
        &completion.as_completion_messages(),
    )?;
    let (p, c, m) =
        truncate_prompt_completion(&pc.prompt, &pc.completion, &pc.completion_mask, truncation);
    Ok(Example::from_parts(p, c, m))
}

/// Encodes both sides of a preference pair: `(chosen, rejected)`.
pub fn encode_pair(
    tokenizer: &Tokenizer,
    template: &ChatTemplate,
    pair: &PairRecord,
    truncation: &TruncationConfig,
) -> Result<(Example, Example)> {
    Ok((
        encode_prompt_completion(tokenizer, template, &pair.prompt, &pair.chosen, truncation)?,
        encode_prompt_completion(
            tokenizer,
            template,
            &pair.prompt,
            &pair.rejected,
            truncation,
        )?,
    ))
}

/// Encodes every response of a ranked record (best first) against its prompt, for RRHF: the rows
/// keep the record's order, so row 0 is the best response.
pub fn encode_ranked(
    tokenizer: &Tokenizer,
    template: &ChatTemplate,
    record: &RankedRecord,
    truncation: &TruncationConfig,
) -> Result<Vec<Example>> {
    record
        .responses
        .iter()
        .map(|r| {
            let completion = Content::Text(r.clone());
            encode_prompt_completion(tokenizer, template, &record.prompt, &completion, truncation)
        })
        .collect()
}

/// Encodes an SFT conversation with the assistant mask, keeping its first `max_total_len` tokens.
/// Errors when no assistant token survives (the example would train on nothing).
pub fn encode_sft(
    tokenizer: &Tokenizer,
    template: &ChatTemplate,
    record: &SftRecord,
    max_total_len: usize,
) -> Result<Example> {
    let enc = template.encode(tokenizer, &record.messages, false)?;
    let ex = Example {
        ids: keep_start(&enc.ids, max_total_len).to_vec(),
        loss_mask: keep_start(&enc.assistant_mask, max_total_len).to_vec(),
    };
    if ex.num_loss_tokens() == 0 {
        return Err(Error::InvalidInput(format!(
            "SFT conversation has no assistant token within {max_total_len} tokens"
        )));
    }
    Ok(ex)
}

/// Reward-model input: `chat_template(prompt + [assistant completion])`, truncated from the left
/// (keeping the final `<|eot_id|>` the score is read at) to `max_len` tokens.
pub fn encode_reward_input(
    tokenizer: &Tokenizer,
    template: &ChatTemplate,
    prompt: &Content,
    completion: &Content,
    max_len: usize,
) -> Result<Vec<u32>> {
    let mut msgs = prompt.as_prompt_messages();
    msgs.extend(completion.as_completion_messages());
    let enc = template.encode(tokenizer, &msgs, false)?;
    Ok(keep_end(&enc.ids, max_len).to_vec())
}

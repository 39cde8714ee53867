//! [`PairwisePreferenceModel`]: a causal LM asked which of two responses is better
//! (RLHFlow's pair-preference model, RECIPE.md section 1.2).
//!
//! The user turn is `[CONTEXT] {context} [RESPONSE A] {a} [RESPONSE B] {b}` under the model's chat
//! template (the checkpoint's own with [`PairwisePreferenceModel::from_pretrained`]) with the
//! assistant generation prompt; `P(A better)` is the softmax over the logits of
//! the tokens `A` and `B` at the last position. Position bias is removed by averaging both orders:
//! `p(a > b) = (P_A(a, b) + 1 - P_A(b, a)) / 2`, so `p(a > b) + p(b > a) = 1` exactly.
//!
//! As a [`RewardModel`] it scores the `K` responses of a prompt by their mean win probability
//! against the other `K - 1` (pairwise wins); scores of one prompt sum to `K / 2`.

use burn::tensor::activation::softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};
use kiln_data::collate::collate_generation;
use kiln_data::truncate::keep_end;
use kiln_data::{ChatTemplate, Message, Role, Tokenizer};
use kiln_model::{CausalLm, HfModel, LlamaForCausalLM};

use crate::error::{Error, Result};
use crate::model::{Prompt, RewardModel};

/// A pairwise preference model over a causal LM (Llama by default).
#[derive(Debug)]
pub struct PairwisePreferenceModel<B: Backend, M: CausalLm<B> = LlamaForCausalLM<B>> {
    lm: M,
    _backend: std::marker::PhantomData<B>,
    tokenizer: Tokenizer,
    template: ChatTemplate,
    a_id: u32,
    b_id: u32,
    pad_id: u32,
    max_len: usize,
}

fn single_token(tok: &Tokenizer, text: &str) -> Result<u32> {
    match tok.encode(text)?.as_slice() {
        [id] => Ok(*id),
        other => Err(Error::InvalidInput(format!(
            "{text:?} must be a single token for the pairwise preference model, got {other:?}"
        ))),
    }
}

/// The context string of a prompt: its text, or `role: content` turns joined by blank lines.
pub fn context_text(prompt: &Prompt) -> String {
    match prompt {
        Prompt::Text(t) => t.clone(),
        Prompt::Messages(m) => m
            .iter()
            .map(|m| format!("{}: {}", m.role, m.content))
            .collect::<Vec<_>>()
            .join("\n\n"),
    }
}

/// The judge's user turn, `[CONTEXT] {context} [RESPONSE A] {a} [RESPONSE B] {b}`, which the model
/// answers with `A` or `B` (train a preference model by SFT on these turns with the answer as the
/// assistant's reply).
pub fn judge_message(prompt: &Prompt, a: &str, b: &str) -> Message {
    Message::new(
        Role::User,
        format!(
            "[CONTEXT] {} [RESPONSE A] {a} [RESPONSE B] {b}",
            context_text(prompt)
        ),
    )
}

/// SFT examples that teach a causal LM to be a pairwise preference model: for every preference
/// pair, the judge turn with the chosen response as `A` answered `A`, and with it as `B` answered
/// `B` (both orders, so the model learns no position bias).
///
/// # Errors
/// Tokenisation errors.
pub fn preference_examples(
    enc: &kiln_data::ChatEncoder,
    pairs: &[kiln_data::PairRecord],
) -> Result<Vec<kiln_data::Example>> {
    let example =
        |p: &Prompt, a: &Prompt, b: &Prompt, answer: &str| -> Result<kiln_data::Example> {
            let judge = Prompt::Messages(vec![judge_message(p, &a.text(), &b.text())]);
            Ok(enc.prompt_completion(&judge, &Prompt::Text(answer.into()))?)
        };
    let mut examples = Vec::with_capacity(2 * pairs.len());
    for r in pairs {
        examples.push(example(&r.prompt, &r.chosen, &r.rejected, "A")?);
        examples.push(example(&r.prompt, &r.rejected, &r.chosen, "B")?);
    }
    Ok(examples)
}

impl<B: Backend, M: CausalLm<B>> PairwisePreferenceModel<B, M> {
    /// Wraps a causal LM and its tokenizer (`A` and `B` must be single tokens).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when `A`/`B` are not single tokens or the tokenizer lacks the
    /// chat-template tokens.
    pub fn new(lm: M, tokenizer: Tokenizer) -> Result<Self> {
        let template = ChatTemplate::llama3(&tokenizer)?;
        Self::from_parts(lm, tokenizer, template)
    }

    /// Wraps a causal LM, its tokenizer and the chat template the judge prompt is rendered with.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when `A`/`B` are not single tokens or no pad id is known.
    pub fn from_parts(lm: M, tokenizer: Tokenizer, template: ChatTemplate) -> Result<Self> {
        Ok(Self {
            a_id: single_token(&tokenizer, "A")?,
            b_id: single_token(&tokenizer, "B")?,
            pad_id: template.resolve_pad_id(&tokenizer, lm.pad_token_id())?,
            lm,
            _backend: std::marker::PhantomData,
            tokenizer,
            template,
            max_len: 4096,
        })
    }

    /// Renders the judge prompt with `template` (e.g. the checkpoint's own, see
    /// [`ChatTemplate::from_model_dir`]) instead of the built-in Llama-3.0 template.
    pub fn with_template(mut self, template: ChatTemplate) -> Self {
        self.template = template;
        self
    }

    /// Maximum prompt tokens (left truncation).
    pub fn with_max_len(mut self, max_len: usize) -> Self {
        self.max_len = max_len.max(1);
        self
    }

    /// The token ids of the question "is `a` better than `b`?".
    ///
    /// # Errors
    /// Tokenisation errors.
    pub fn encode(&self, prompt: &Prompt, a: &str, b: &str) -> Result<Vec<u32>> {
        let enc = self
            .template
            .encode(&self.tokenizer, &[judge_message(prompt, a, b)], true)?;
        Ok(keep_end(&enc.ids, self.max_len).to_vec())
    }

    /// `P_A` (one order, no debiasing) for each encoded question.
    fn prob_first(&self, rows: &[Vec<u32>]) -> Result<Vec<f32>> {
        let device = self.lm.device();
        let batch = collate_generation::<B>(rows, self.pad_id, &device)?;
        let [n, t] = batch.input_ids.dims();
        let logits = self
            .lm
            .forward(batch.input_ids, Some(batch.attention_mask))?
            .narrow(1, t - 1, 1)
            .reshape([n, self.lm.vocab_size()]);
        let ids = Tensor::<B, 1, Int>::from_ints([self.a_id as i32, self.b_id as i32], &device);
        let ab = logits.select(1, ids);
        let p = softmax(ab, 1).narrow(1, 0, 1).reshape([n]);
        Ok(kiln_model::read_f32(p, "preference probabilities")?)
    }

    /// Debiased `p(a > b)` for each `(prompt, a, b)`: both orders in one batch.
    ///
    /// # Errors
    /// Tokenisation errors.
    pub fn preference_probs(&self, items: &[(&Prompt, &str, &str)]) -> Result<Vec<f32>> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let mut rows = Vec::with_capacity(2 * items.len());
        for (p, a, b) in items {
            rows.push(self.encode(p, a, b)?);
        }
        for (p, a, b) in items {
            rows.push(self.encode(p, b, a)?);
        }
        let probs = self.prob_first(&rows)?;
        let n = items.len();
        Ok((0..n)
            .map(|i| 0.5 * (probs[i] + 1.0 - probs[n + i]))
            .collect())
    }

    /// Debiased `p(a > b)` for one pair.
    ///
    /// # Errors
    /// Tokenisation errors.
    pub fn prefers(&self, prompt: &Prompt, a: &str, b: &str) -> Result<f32> {
        Ok(self.preference_probs(&[(prompt, a, b)])?[0])
    }
}

impl<B: Backend, M: CausalLm<B> + HfModel<B>> PairwisePreferenceModel<B, M> {
    /// Loads an HF causal-LM directory (PEFT adapters over the base included) with its `tokenizer.json` and its own chat template.
    ///
    /// # Errors
    /// Missing files or tensors (named), a directory without a chat template, `A`/`B` not single
    /// tokens.
    pub fn from_pretrained(dir: impl AsRef<std::path::Path>, device: &B::Device) -> Result<Self> {
        let dir = dir.as_ref();
        let tokenizer = Tokenizer::from_model_dir(dir)?;
        let template = ChatTemplate::from_model_dir(dir, &tokenizer)?;
        let lm = M::load_hf(dir, device)?;
        Self::from_parts(lm, tokenizer, template)
    }
}

impl<B: Backend, M: CausalLm<B>> RewardModel for PairwisePreferenceModel<B, M> {
    /// Items are grouped by equal prompts; each group is scored with
    /// [`RewardModel::score_responses`] (a lone response gets 0.5).
    fn score_batch(&self, items: &[(&Prompt, &str)]) -> Result<Vec<f32>> {
        let mut out = vec![0.0f32; items.len()];
        let mut done = vec![false; items.len()];
        for i in 0..items.len() {
            if done[i] {
                continue;
            }
            let group: Vec<usize> = (i..items.len())
                .filter(|&j| !done[j] && items[j].0 == items[i].0)
                .collect();
            let responses: Vec<String> = group.iter().map(|&j| items[j].1.to_string()).collect();
            let scores = self.score_responses(items[i].0, &responses)?;
            for (&j, s) in group.iter().zip(scores) {
                out[j] = s;
                done[j] = true;
            }
        }
        Ok(out)
    }

    fn score_groups(&self, groups: &[(&Prompt, &[String])]) -> Result<Vec<Vec<f32>>> {
        groups
            .iter()
            .map(|(p, rs)| self.score_responses(p, rs))
            .collect()
    }

    fn rows_per_prompt(&self, k: usize) -> usize {
        k * k.saturating_sub(1)
    }

    fn score_responses(&self, prompt: &Prompt, responses: &[String]) -> Result<Vec<f32>> {
        let k = responses.len();
        if k < 2 {
            return Ok(vec![0.5; k]);
        }
        let mut pairs = Vec::with_capacity(k * (k - 1) / 2);
        let mut index = Vec::with_capacity(k * (k - 1) / 2);
        for i in 0..k {
            for j in i + 1..k {
                pairs.push((prompt, responses[i].as_str(), responses[j].as_str()));
                index.push((i, j));
            }
        }
        let probs = self.preference_probs(&pairs)?;
        let mut wins = vec![0.0f32; k];
        for ((i, j), p) in index.into_iter().zip(probs) {
            wins[i] += p;
            wins[j] += 1.0 - p;
        }
        Ok(wins.into_iter().map(|w| w / (k - 1) as f32).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use kiln_model::DecoderConfig;

    fn model() -> PairwisePreferenceModel<Flex> {
        let device = Default::default();
        let tok = Tokenizer::builtin_tiny().unwrap();
        let config = DecoderConfig::tiny(tok.vocab_size(), 32);
        let lm = LlamaForCausalLM::<Flex>::init_seeded(&config, 0.2, 14, &device);
        PairwisePreferenceModel::new(lm, tok).unwrap()
    }

    #[test]
    fn preferences_are_debiased_and_consistent() {
        let m = model();
        let p = Prompt::from("Which is better?");
        let ab = m.prefers(&p, "the first answer", "no").unwrap();
        let ba = m.prefers(&p, "no", "the first answer").unwrap();
        assert!(ab > 0.0 && ab < 1.0);
        assert!((ab + ba - 1.0).abs() < 1e-5, "{ab} + {ba}");
        assert!(m.encode(&p, "x", "y").unwrap().len() > 10);
        let text = m
            .tokenizer
            .decode(&m.encode(&p, "x", "y").unwrap(), false)
            .unwrap();
        assert!(text.contains("[CONTEXT] Which is better? [RESPONSE A] x [RESPONSE B] y"));
    }

    #[test]
    fn k_responses_are_scored_by_pairwise_wins() {
        let m = model();
        let p = Prompt::from("Pick one.");
        let q = Prompt::from("Another prompt.");
        let responses: Vec<String> = ["alpha", "beta gamma", "delta", "no"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let scores = m.score_responses(&p, &responses).unwrap();
        let sum: f32 = scores.iter().sum();
        assert!(
            (sum - 2.0).abs() < 1e-4,
            "scores of K=4 responses sum to K/2, got {sum}"
        );
        assert!(scores.iter().all(|s| (0.0..=1.0).contains(s)));
        // Interleaved prompts in one batch are grouped by prompt.
        let items = vec![
            (&p, "alpha"),
            (&q, "one"),
            (&p, "beta gamma"),
            (&q, "two"),
            (&p, "delta"),
            (&p, "no"),
        ];
        let batch = m.score_batch(&items).unwrap();
        for (k, idx) in [0usize, 2, 4, 5].iter().enumerate() {
            assert!((batch[*idx] - scores[k]).abs() < 1e-5);
        }
        assert!((batch[1] + batch[3] - 1.0).abs() < 1e-5);
        assert_eq!(m.score_responses(&p, &["only".into()]).unwrap(), vec![0.5]);
    }
}

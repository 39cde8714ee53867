//! [`ClassifierRewardModel`]: any [`SequenceScorer`] (HF `*ForSequenceClassification`, one
//! label) behind its checkpoint's chat template; [`LlamaRewardModel`] is the Llama one.
//!
//! The input is `chat_template(prompt + [assistant response])` (no generation prompt), truncated
//! from the left to `max_len` tokens so the final `<|eot_id|>` is kept; the score is read at the
//! last real token of each (right-padded) row, located through the attention mask. With the
//! dedicated pad token (`<|finetune_right_pad_id|>`) as the config's `pad_token_id` this is HF's
//! "rightmost non-pad id" rule, so scores equal transformers'.

use std::path::Path;

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use kiln_data::collate::pad_right;
use kiln_data::examples::encode_reward_input;
use kiln_data::{ChatTemplate, Example, Tokenizer};
use kiln_model::{HfModel, LlamaForSequenceClassification, SaveOptions, SequenceScorer};

use crate::error::{Error, Result};
use crate::model::{Prompt, RewardModel};

/// Scores token sequences with a sequence-classification model, `batch_size` rows at a time
/// (right-padded with `pad_id`, score read at each row's last token).
///
/// # Errors
/// [`Error::InvalidInput`] for an empty row or an id outside the model's vocabulary.
pub fn score_token_rows<B: Backend, M: SequenceScorer<B>>(
    model: &M,
    rows: &[Vec<u32>],
    pad_id: u32,
    batch_size: usize,
) -> Result<Vec<f32>> {
    let vocab = model.vocab_size();
    for (i, r) in rows.iter().enumerate() {
        if r.is_empty() {
            return Err(Error::InvalidInput(format!("row {i} has no tokens")));
        }
        if let Some(&bad) = r.iter().find(|&&id| id as usize >= vocab) {
            return Err(Error::InvalidInput(format!(
                "row {i}: token id {bad} is outside the model's vocabulary of {vocab}"
            )));
        }
    }
    let device = model.device();
    let mut out = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(batch_size.max(1)) {
        let examples: Vec<Example> = chunk
            .iter()
            .map(|ids| Example {
                ids: ids.clone(),
                loss_mask: vec![false; ids.len()],
            })
            .collect();
        let batch = pad_right(&examples, pad_id)?.to_tensors::<B>(&device);
        let all = model.position_scores(batch.input_ids, Some(batch.attention_mask))?;
        let n = chunk.len();
        let scores: Tensor<B, 1> = all.gather(1, batch.last_index.reshape([n, 1])).reshape([n]);
        out.extend(kiln_model::read_f32(scores, "scores")?);
    }
    Ok(out)
}

/// A Bradley-Terry reward model: a sequence classifier (backbone + `score` head) + tokenizer +
/// chat template.
#[derive(Debug)]
pub struct ClassifierRewardModel<B: Backend, M: SequenceScorer<B>> {
    model: M,
    _backend: std::marker::PhantomData<B>,
    tokenizer: Tokenizer,
    template: ChatTemplate,
    pad_id: u32,
    max_len: usize,
    batch_size: usize,
}

/// The Llama reward model (HF `LlamaForSequenceClassification`).
pub type LlamaRewardModel<B> = ClassifierRewardModel<B, LlamaForSequenceClassification<B>>;

impl<B: Backend, M: SequenceScorer<B>> ClassifierRewardModel<B, M> {
    /// Wraps a model and its tokenizer (max length 4096, batches of 8), with Kiln's built-in
    /// Llama-3.0 chat template (for the built-in tokenizer; see [`Self::with_template`]).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when the tokenizer's vocabulary is larger than the model's or the
    /// tokenizer lacks the chat-template tokens.
    pub fn new(model: M, tokenizer: Tokenizer) -> Result<Self> {
        let template = ChatTemplate::llama3(&tokenizer)?;
        Self::from_parts(model, tokenizer, template)
    }

    /// Wraps a model, its tokenizer and the chat template its inputs are rendered with (max length
    /// 4096, batches of 8).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when the tokenizer's vocabulary is larger than the model's or no pad
    /// id is known (tokenizer or `pad_token_id`).
    pub fn from_parts(model: M, tokenizer: Tokenizer, template: ChatTemplate) -> Result<Self> {
        let pad_id = template.resolve_pad_id(&tokenizer, model.pad_token_id())?;
        let vocab = model.vocab_size();
        if tokenizer.vocab_size() > vocab {
            return Err(Error::InvalidInput(format!(
                "tokenizer has {} tokens but the model's vocabulary is {vocab}",
                tokenizer.vocab_size()
            )));
        }
        if model.pad_token_id() != Some(pad_id) {
            tracing::warn!(
                config_pad = ?model.pad_token_id(),
                tokenizer_pad = pad_id,
                "reward model config pad_token_id differs from the tokenizer's pad id; scores are \
                 read at the last attended token, transformers would read at the last non-pad id"
            );
        }
        Ok(Self {
            model,
            _backend: std::marker::PhantomData,
            tokenizer,
            template,
            pad_id,
            max_len: 4096,
            batch_size: 8,
        })
    }

    /// Renders inputs with `template` instead (e.g. the checkpoint's own, see
    /// [`ChatTemplate::from_model_dir`]).
    pub fn with_template(mut self, template: ChatTemplate) -> Self {
        self.template = template;
        self
    }

    /// The chat template inputs are rendered with.
    pub fn template(&self) -> &ChatTemplate {
        &self.template
    }

    /// Maximum tokens per input (left truncation keeps the end).
    pub fn with_max_len(mut self, max_len: usize) -> Self {
        self.max_len = max_len.max(1);
        self
    }

    /// Rows per forward pass.
    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// The wrapped model.
    pub fn model(&self) -> &M {
        &self.model
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The token ids scored for `(prompt, response)`.
    ///
    /// # Errors
    /// Tokenisation errors.
    pub fn encode(&self, prompt: &Prompt, response: &str) -> Result<Vec<u32>> {
        Ok(encode_reward_input(
            &self.tokenizer,
            &self.template,
            prompt,
            &Prompt::Text(response.to_string()),
            self.max_len,
        )?)
    }

    /// Scores already-encoded sequences.
    ///
    /// # Errors
    /// As [`score_token_rows`].
    pub fn score_ids(&self, rows: &[Vec<u32>]) -> Result<Vec<f32>> {
        score_token_rows(&self.model, rows, self.pad_id, self.batch_size)
    }
}

impl<B: Backend, M: SequenceScorer<B> + HfModel<B>> ClassifierRewardModel<B, M> {
    /// Loads an HF sequence-classification directory (PEFT adapters over the base included) with its `tokenizer.json` and its
    /// own chat template (`chat_template.jinja` or `tokenizer_config.json`).
    ///
    /// # Errors
    /// Missing files or tensors (named), a tokenizer that does not fit the model, a directory
    /// without a chat template (naming the files looked at).
    pub fn from_pretrained(dir: impl AsRef<Path>, device: &B::Device) -> Result<Self> {
        let dir = dir.as_ref();
        let tokenizer = Tokenizer::from_model_dir(dir)?;
        let template = ChatTemplate::from_model_dir(dir, &tokenizer)?;
        Self::from_pretrained_with_tokenizer(dir, tokenizer, template, device)
    }

    /// Loads the weights from `dir` and uses the given tokenizer and chat template.
    ///
    /// # Errors
    /// As [`Self::from_pretrained`].
    pub fn from_pretrained_with_tokenizer(
        dir: impl AsRef<Path>,
        tokenizer: Tokenizer,
        template: ChatTemplate,
        device: &B::Device,
    ) -> Result<Self> {
        let model = M::load_hf(dir.as_ref(), device)?;
        Self::from_parts(model, tokenizer, template)
    }

    /// Saves weights (HF layout), `tokenizer.json` and the chat template into `dir`.
    ///
    /// # Errors
    /// I/O errors naming the file.
    pub fn save_pretrained(&self, dir: impl AsRef<Path>, options: SaveOptions) -> Result<()> {
        let dir = dir.as_ref();
        self.model.save_hf(dir, options)?;
        let path = dir.join("tokenizer.json");
        let json = self.tokenizer.to_json(false)?;
        std::fs::write(&path, json).map_err(|source| Error::Io { path, source })?;
        self.template.save_files(dir)?;
        Ok(())
    }
}

impl<B: Backend, M: SequenceScorer<B>> RewardModel for ClassifierRewardModel<B, M> {
    fn score_batch(&self, items: &[(&Prompt, &str)]) -> Result<Vec<f32>> {
        let rows = items
            .iter()
            .map(|(p, r)| self.encode(p, r))
            .collect::<Result<Vec<_>>>()?;
        self.score_ids(&rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use kiln_model::{DecoderConfig, MissingScore};

    const FIXTURE: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/model/reward"
    );

    fn read<T>(
        st: &safetensors::SafeTensors,
        name: &str,
        f: fn(&[u8]) -> T,
        w: usize,
    ) -> (Vec<T>, Vec<usize>) {
        let t = st.tensor(name).unwrap();
        (t.data().chunks(w).map(f).collect(), t.shape().to_vec())
    }

    /// A ChatML checkpoint whose tokenizer has no Llama-3 special tokens (like SmolLM2) loads and
    /// scores with its own template: the built-in Llama-3 template is never required.
    #[test]
    fn a_chatml_tokenizer_without_llama3_tokens_scores_with_its_own_template() {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/templates/chatml"
        );
        let mut json: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(format!("{dir}/tokenizer.json")).unwrap(),
        )
        .unwrap();
        json["added_tokens"]
            .as_array_mut()
            .unwrap()
            .retain(|t| t["content"].as_str().unwrap().starts_with("<|im_"));
        let vocab = json["model"]["vocab"].as_object_mut().unwrap();
        vocab.retain(|k, _| !k.starts_with("<|") || k.starts_with("<|im_"));
        let tmp = std::env::temp_dir().join(format!("kiln-chatml-rm-{}", std::process::id()));
        std::fs::create_dir_all(&tmp).unwrap();
        // Not generation_config.json: its eos id (769) does not exist once tokens are removed
        // (the tokenizer renumbers `<|im_end|>` to 763), which is an error; the template's
        // end-of-turn token is the stop id.
        for f in ["chat_template.jinja", "tokenizer_config.json"] {
            std::fs::copy(format!("{dir}/{f}"), tmp.join(f)).unwrap();
        }
        std::fs::write(tmp.join("tokenizer.json"), json.to_string()).unwrap();
        let tok = Tokenizer::from_model_dir(&tmp).unwrap();
        assert!(tok.token_id("<|begin_of_text|>").is_err());
        assert!(ChatTemplate::llama3(&tok).is_err());
        let template = ChatTemplate::from_model_dir(&tmp, &tok).unwrap();
        let _ = std::fs::remove_dir_all(&tmp);
        let device = Default::default();
        let mut config = DecoderConfig::tiny(tok.vocab_size().max(768), 32);
        config.pad_token_id = Some(tok.token_id("<|im_end|>").unwrap());
        let model = LlamaForSequenceClassification::<Flex>::init_seeded(&config, 0.1, 15, &device);
        let rm = LlamaRewardModel::from_parts(model, tok, template).unwrap();
        let p = Prompt::from("What colour is the sky?");
        let ids = rm.encode(&p, "Blue.").unwrap();
        let text = rm.tokenizer().decode(&ids, false).unwrap();
        assert!(
            text.contains("<|im_start|>assistant\nBlue.<|im_end|>"),
            "{text}"
        );
        let scores = rm.score_batch(&[(&p, "Blue."), (&p, "Green.")]).unwrap();
        assert!(scores.iter().all(|s| s.is_finite()) && scores[0] != scores[1]);
    }

    #[test]
    fn scores_equal_transformers_on_the_fixture() {
        let device = Default::default();
        let model = LlamaForSequenceClassification::<Flex>::from_pretrained(
            FIXTURE,
            &device,
            MissingScore::Error,
        )
        .unwrap();
        let bytes = std::fs::read(format!("{FIXTURE}/expected.safetensors")).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let i64le = |b: &[u8]| i64::from_le_bytes(b.try_into().unwrap());
        let f32le = |b: &[u8]| f32::from_le_bytes(b.try_into().unwrap());
        let mut checked = 0;
        for case in ["single", "left", "right", "long"] {
            let (ids, shape) = read(&st, &format!("{case}.input_ids"), i64le, 8);
            let (mask, _) = read(&st, &format!("{case}.attention_mask"), i64le, 8);
            let (expected, _) = read(&st, &format!("{case}.scores"), f32le, 4);
            let t = shape[1];
            // Unpadded rows: the attended tokens only (HF used position_ids = cumsum(mask) - 1).
            let rows: Vec<Vec<u32>> = (0..shape[0])
                .map(|r| {
                    (0..t)
                        .filter(|&c| mask[r * t + c] == 1)
                        .map(|c| ids[r * t + c] as u32)
                        .collect()
                })
                .collect();
            // Pad with an id the fixture never uses inside a row, batch of 2 to mix lengths.
            let got = score_token_rows(&model, &rows, 127, 2).unwrap();
            for (g, e) in got.iter().zip(&expected) {
                assert!((g - e).abs() <= 1e-4, "{case}: {g} vs HF {e}");
                checked += 1;
            }
        }
        assert!(checked >= 4);
    }

    #[test]
    fn text_pairs_score_like_transformers() {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/reward/tiny-rm"
        );
        let device = Default::default();
        let rm = LlamaRewardModel::<Flex>::from_pretrained(dir, &device)
            .unwrap()
            .with_batch_size(3);
        let pairs: Vec<kiln_data::PairRecord> =
            kiln_data::read_jsonl(format!("{dir}/pairs.jsonl")).unwrap();
        let expected = std::fs::read_to_string(format!("{dir}/expected.jsonl")).unwrap();
        let expected: Vec<serde_json::Value> = expected
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(pairs.len(), expected.len());
        let mut items = Vec::new();
        let texts: Vec<(String, String)> = pairs
            .iter()
            .map(|p| (p.chosen.text(), p.rejected.text()))
            .collect();
        for (p, (c, r)) in pairs.iter().zip(&texts) {
            items.push((&p.prompt, c.as_str()));
            items.push((&p.prompt, r.as_str()));
        }
        let scores = rm.score_batch(&items).unwrap();
        for (i, e) in expected.iter().enumerate() {
            for (k, side) in ["chosen", "rejected"].iter().enumerate() {
                let ids: Vec<u32> = e[format!("ids_{side}")]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_u64().unwrap() as u32)
                    .collect();
                let (p, r) = items[2 * i + k];
                assert_eq!(rm.encode(p, r).unwrap(), ids, "pair {i} {side}: tokens");
                let hf = e[format!("score_{side}")].as_f64().unwrap() as f32;
                let got = scores[2 * i + k];
                assert!(
                    (got - hf).abs() <= 1e-4,
                    "pair {i} {side}: {got} vs HF {hf}"
                );
            }
        }
    }

    #[test]
    fn text_scoring_save_and_reload() {
        let device = Default::default();
        let tok = Tokenizer::builtin_tiny().unwrap();
        let mut config = DecoderConfig::tiny(tok.vocab_size(), 32);
        config.pad_token_id = Some(tok.pad_id().unwrap());
        let model = LlamaForSequenceClassification::<Flex>::init_seeded(&config, 0.1, 16, &device);
        let rm = LlamaRewardModel::new(model, tok.clone())
            .unwrap()
            .with_batch_size(2);
        let p = Prompt::from("Say something nice.");
        let responses: Vec<String> = ["yes", "a much longer answer than the others", "ok"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let batched = rm.score_responses(&p, &responses).unwrap();
        for (r, s) in responses.iter().zip(&batched) {
            let alone = rm.score(&p, r).unwrap();
            assert!((alone - s).abs() < 1e-5, "padding must not change a score");
            // Equal to the model's own HF-style forward on the unpadded ids.
            let ids = rm.encode(&p, r).unwrap();
            assert_eq!(ids.last(), Some(&tok.token_id("<|eot_id|>").unwrap()));
        }
        let dir = std::env::temp_dir().join(format!("kiln-reward-save-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        rm.save_pretrained(
            &dir,
            SaveOptions {
                dtype: kiln_model::SaveDtype::F32,
                ..SaveOptions::default()
            },
        )
        .unwrap();
        let back = LlamaRewardModel::<Flex>::from_pretrained(&dir, &device).unwrap();
        assert_eq!(back.score_responses(&p, &responses).unwrap(), batched);
        let _ = std::fs::remove_dir_all(&dir);
        // A tokenizer larger than the model's vocabulary is refused up front.
        let small = LlamaForSequenceClassification::<Flex>::init_seeded(
            &DecoderConfig::tiny(64, 32),
            0.1,
            17,
            &device,
        );
        assert!(LlamaRewardModel::new(small, tok).is_err());
    }
}

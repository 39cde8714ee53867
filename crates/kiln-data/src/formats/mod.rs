//! The JSON Lines record types exchanged between the loop's stages (RECIPE.md section 4).
//!
//! | stage | record | JSON |
//! |---|---|---|
//! | prompts | [`PromptRecord`] | `{"prompt": "..."}` or `{"messages": [...]}` (or `context_messages`) |
//! | generations | [`GenerationRecord`] | `{"prompt": ..., "responses": ["...", ...]}` |
//! | annotated | [`AnnotatedRecord`] | the same plus `"rewards": [f, ...]` |
//! | pairs | [`PairRecord`] | `{"prompt": ..., "chosen": ..., "rejected": ..., "margin": f}` |
//! | SFT | [`SftRecord`] | `{"messages": [...]}` |
//!
//! Unknown fields are ignored on reading, so datasets with extra columns load.

mod annotated;
mod finish_reason;
mod generation;
mod pair;
mod prompt;
mod sft;

pub use annotated::AnnotatedRecord;
pub use finish_reason::FinishReason;
pub use generation::GenerationRecord;
pub use pair::{PairRecord, RankedRecord};
pub use prompt::PromptRecord;
pub use sft::SftRecord;

/// Serde helpers for reward lists: non-finite values are written as `null` and `null` reads back as NaN,
/// so a reward model that produced NaN leaves a readable file and the problem is reported downstream.
pub mod rewards_serde {
    use serde::{Deserialize, Deserializer, Serializer, ser::SerializeSeq};

    /// Serialises rewards, writing non-finite values as `null`.
    pub fn serialize<S: Serializer>(v: &[f64], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(v.len()))?;
        for x in v {
            if x.is_finite() {
                seq.serialize_element(x)?;
            } else {
                seq.serialize_element(&Option::<f64>::None)?;
            }
        }
        seq.end()
    }

    /// Deserialises rewards, reading `null` as NaN.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
        let v: Vec<Option<f64>> = Vec::deserialize(d)?;
        Ok(v.into_iter().map(|x| x.unwrap_or(f64::NAN)).collect())
    }
}

//! Preference pairs `{"prompt", "chosen", "rejected", "margin"}` and ranked lists for RRHF.

use serde::{Deserialize, Serialize};

use crate::message::Content;

/// One preference pair (HF preference-dataset convention).
///
/// `chosen` / `rejected` are the completions only (text, or the assistant turns as a message list);
/// the prompt is stored separately.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairRecord {
    /// The shared prompt.
    pub prompt: Content,
    /// The preferred completion.
    pub chosen: Content,
    /// The dispreferred completion.
    pub rejected: Content,
    /// `r_chosen - r_rejected` when known (always `> 0` for pairs produced by Kiln).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub margin: Option<f64>,
}

/// All responses of one prompt sorted by reward, best first (input of the RRHF loss).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RankedRecord {
    /// The shared prompt.
    pub prompt: Content,
    /// Responses, best first.
    pub responses: Vec<String>,
    /// Rewards in the same order (non-increasing).
    pub rewards: Vec<f64>,
}

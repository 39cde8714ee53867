//! Annotated generation records: a [`GenerationRecord`](super::GenerationRecord) plus `rewards`.

use serde::{Deserialize, Serialize};

use crate::message::Content;

/// K responses with one reward each (in response order).
///
/// Non-finite rewards are written as `null` and read back as NaN (see
/// [`rewards_serde`](super::rewards_serde)); pair selection reports them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnnotatedRecord {
    /// The prompt the responses answer.
    pub prompt: Content,
    /// The sampled responses.
    pub responses: Vec<String>,
    /// One scalar reward per response, same order as `responses`.
    #[serde(with = "super::rewards_serde")]
    pub rewards: Vec<f64>,
}

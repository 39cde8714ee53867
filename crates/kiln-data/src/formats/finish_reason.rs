//! [`FinishReason`]: why a generated response ended, as generation records store it.

use serde::{Deserialize, Serialize};

/// Why a response ended. In JSON it is the snake-case string (`"stop_token"`, `"stop_string"`,
/// `"length"`); `"stop"` (vLLM's and OpenAI's name for "a stop token or string") reads as
/// [`FinishReason::Stop`], so generation files from those servers load too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// A stop token id (e.g. `<|eot_id|>`) was generated.
    StopToken,
    /// The decoded text came to contain a stop string.
    StopString,
    /// A stop token or a stop string, not said which (vLLM / OpenAI `"stop"`).
    Stop,
    /// `max_new_tokens` tokens were generated without a stop: the response was cut.
    Length,
}

impl FinishReason {
    /// The snake-case name (`stop_token`, `stop_string`, `stop`, `length`).
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::StopToken => "stop_token",
            FinishReason::StopString => "stop_string",
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }

    /// Whether the response ended on its own (not cut at the token limit).
    pub fn finished(self) -> bool {
        self != FinishReason::Length
    }
}

impl std::fmt::Display for FinishReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::FinishReason;

    #[test]
    fn json_is_the_snake_case_name() {
        for r in [
            FinishReason::StopToken,
            FinishReason::StopString,
            FinishReason::Stop,
            FinishReason::Length,
        ] {
            let json = serde_json::to_string(&r).unwrap();
            assert_eq!(json, format!("\"{r}\""));
            assert_eq!(serde_json::from_str::<FinishReason>(&json).unwrap(), r);
        }
        assert!(serde_json::from_str::<FinishReason>("\"eos\"").is_err());
        assert!(!FinishReason::Length.finished() && FinishReason::Stop.finished());
    }
}

//! [`LoraTarget`]: the Llama projections a LoRA adapter can be attached to.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One of the seven linear projections of a Llama decoder layer.
///
/// Parsed from PEFT's module names (`q_proj`, ..., `down_proj`) or their short forms (`q`, ...,
/// `down`); displayed (and written to `adapter_config.json`) as PEFT's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum LoraTarget {
    /// `self_attn.q_proj`.
    Q,
    /// `self_attn.k_proj`.
    K,
    /// `self_attn.v_proj`.
    V,
    /// `self_attn.o_proj`.
    O,
    /// `mlp.gate_proj`.
    Gate,
    /// `mlp.up_proj`.
    Up,
    /// `mlp.down_proj`.
    Down,
}

impl LoraTarget {
    /// All targets in layer order (`q, k, v, o, gate, up, down`): PEFT's `all-linear` for Llama.
    pub const ALL: [LoraTarget; 7] = [
        Self::Q,
        Self::K,
        Self::V,
        Self::O,
        Self::Gate,
        Self::Up,
        Self::Down,
    ];

    /// PEFT's module name (`q_proj`, ...).
    pub fn peft_name(self) -> &'static str {
        match self {
            Self::Q => "q_proj",
            Self::K => "k_proj",
            Self::V => "v_proj",
            Self::O => "o_proj",
            Self::Gate => "gate_proj",
            Self::Up => "up_proj",
            Self::Down => "down_proj",
        }
    }

    /// Path of the projection inside a decoder layer (`self_attn.q_proj`, `mlp.gate_proj`, ...).
    pub fn layer_path(self) -> &'static str {
        match self {
            Self::Q => "self_attn.q_proj",
            Self::K => "self_attn.k_proj",
            Self::V => "self_attn.v_proj",
            Self::O => "self_attn.o_proj",
            Self::Gate => "mlp.gate_proj",
            Self::Up => "mlp.up_proj",
            Self::Down => "mlp.down_proj",
        }
    }

    /// The names [`FromStr`] accepts, for error messages.
    pub fn valid_names() -> String {
        let long: Vec<&str> = Self::ALL.iter().map(|t| t.peft_name()).collect();
        format!(
            "{} (or q, k, v, o, gate, up, down; `all-linear` for all of them)",
            long.join(", ")
        )
    }
}

impl fmt::Display for LoraTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.peft_name())
    }
}

impl FromStr for LoraTarget {
    type Err = Error;

    /// `q_proj` or `q` (and so on), case-insensitive, surrounding spaces ignored.
    fn from_str(s: &str) -> Result<Self> {
        let name = s.trim().to_ascii_lowercase();
        let short = name.strip_suffix("_proj").unwrap_or(&name);
        Ok(match short {
            "q" => Self::Q,
            "k" => Self::K,
            "v" => Self::V,
            "o" => Self::O,
            "gate" => Self::Gate,
            "up" => Self::Up,
            "down" => Self::Down,
            _ => {
                return Err(Error::UnknownLoraTarget {
                    name: s.to_string(),
                    valid: Self::valid_names(),
                });
            }
        })
    }
}

impl TryFrom<String> for LoraTarget {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<LoraTarget> for String {
    fn from(t: LoraTarget) -> Self {
        t.peft_name().to_string()
    }
}

/// Parses target names (`q_proj`, `v`, `all-linear`, ...) into a sorted, duplicate-free list.
///
/// # Errors
/// [`Error::UnknownLoraTarget`] naming the first entry that matches no projection and listing the
/// valid names; [`Error::InvalidLora`] for an empty list.
pub fn parse_target_list<S: AsRef<str>>(names: &[S]) -> Result<Vec<LoraTarget>> {
    let mut out = Vec::new();
    for name in names {
        let name = name.as_ref();
        if name.trim().eq_ignore_ascii_case("all-linear") {
            out.extend(LoraTarget::ALL);
        } else {
            out.push(name.parse()?);
        }
    }
    out.sort_unstable();
    out.dedup();
    if out.is_empty() {
        return Err(Error::InvalidLora(format!(
            "no LoRA target modules given; valid names: {}",
            LoraTarget::valid_names()
        )));
    }
    Ok(out)
}

/// Parses a comma-separated list such as `q,v` or `q_proj, k_proj, gate` (see
/// [`parse_target_list`]).
///
/// # Errors
/// As [`parse_target_list`].
pub fn parse_targets(list: &str) -> Result<Vec<LoraTarget>> {
    let names: Vec<&str> = list.split(',').filter(|s| !s.trim().is_empty()).collect();
    parse_target_list(&names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_and_short_names_parse_and_display_as_peft_names() {
        for t in LoraTarget::ALL {
            assert_eq!(t.to_string().parse::<LoraTarget>().unwrap(), t);
            let short = t.peft_name().trim_end_matches("_proj");
            assert_eq!(short.parse::<LoraTarget>().unwrap(), t);
        }
        assert_eq!(" Q_PROJ ".parse::<LoraTarget>().unwrap(), LoraTarget::Q);
        assert_eq!(
            parse_targets("v, q,q_proj,down").unwrap(),
            vec![LoraTarget::Q, LoraTarget::V, LoraTarget::Down]
        );
        assert_eq!(
            parse_targets("all-linear").unwrap(),
            LoraTarget::ALL.to_vec()
        );
        let json = serde_json::to_string(&vec![LoraTarget::Q, LoraTarget::Gate]).unwrap();
        assert_eq!(json, r#"["q_proj","gate_proj"]"#);
        let back: Vec<LoraTarget> = serde_json::from_str(r#"["q","up_proj"]"#).unwrap();
        assert_eq!(back, vec![LoraTarget::Q, LoraTarget::Up]);
    }

    #[test]
    fn unknown_names_list_the_valid_ones() {
        let err = parse_targets("q,lm_head").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("`lm_head`"), "{msg}");
        assert!(msg.contains("q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj"));
        assert!(matches!(err, Error::UnknownLoraTarget { .. }));
        assert!(matches!(parse_targets(" , "), Err(Error::InvalidLora(_))));
        assert!(serde_json::from_str::<Vec<LoraTarget>>(r#"["query"]"#).is_err());
    }
}

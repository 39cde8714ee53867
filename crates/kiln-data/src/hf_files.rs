//! What a Hugging Face model directory says about chat formatting: the chat template's source,
//! the special tokens of `tokenizer_config.json`, and the stop ids of `generation_config.json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value as Json;

use crate::error::{Error, Result};
use crate::tokenizer::Tokenizer;

/// `chat_template.jinja`: the template file transformers >= 4.43 writes (read first).
pub const CHAT_TEMPLATE_FILE: &str = "chat_template.jinja";
/// `tokenizer_config.json`: special tokens, and the chat template in older checkpoints.
pub const TOKENIZER_CONFIG_FILE: &str = "tokenizer_config.json";
/// `generation_config.json`: `eos_token_id` (an int or a list) for generation.
pub const GENERATION_CONFIG_FILE: &str = "generation_config.json";

/// A chat template's Jinja source and the file it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateSource {
    /// The Jinja source.
    pub text: String,
    /// The file it was read from (for `tokenizer_config.json`, with the template's name if the
    /// file holds a list of named templates).
    pub origin: String,
}

fn read_json(path: &Path) -> Result<Option<Json>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::Record {
                path: path.to_path_buf(),
                line: e.line(),
                field: None,
                message: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Finds the chat template of a model directory in Hugging Face's order: `chat_template.jinja`,
/// else `tokenizer_config.json`'s `chat_template` (a string, or a list of `{name, template}` of
/// which `default` is used). A directory without one is an error naming the files looked at.
pub fn find_chat_template(dir: impl AsRef<Path>) -> Result<TemplateSource> {
    let dir = dir.as_ref();
    let jinja = dir.join(CHAT_TEMPLATE_FILE);
    match std::fs::read_to_string(&jinja) {
        Ok(text) => {
            return Ok(TemplateSource {
                text,
                origin: jinja.display().to_string(),
            });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(&jinja, e)),
    }
    let config_path = dir.join(TOKENIZER_CONFIG_FILE);
    let config = read_json(&config_path)?;
    let origin = config_path.display().to_string();
    match config.as_ref().and_then(|c| c.get("chat_template")) {
        Some(Json::String(text)) => Ok(TemplateSource {
            text: text.clone(),
            origin,
        }),
        Some(Json::Array(list)) => {
            let mut names = Vec::new();
            for item in list {
                let name = item.get("name").and_then(Json::as_str).unwrap_or("");
                if name == "default"
                    && let Some(text) = item.get("template").and_then(Json::as_str)
                {
                    return Ok(TemplateSource {
                        text: text.to_string(),
                        origin: format!("{origin} (template `default`)"),
                    });
                }
                names.push(name.to_string());
            }
            Err(Error::InvalidConfig(format!(
                "{origin}: `chat_template` is a list of named templates without a `default` one \
                 (names: {names:?})"
            )))
        }
        Some(Json::Null) | None => Err(Error::NoChatTemplate {
            dir: dir.to_path_buf(),
            looked_at: vec![jinja, config_path],
        }),
        Some(other) => Err(Error::InvalidConfig(format!(
            "{origin}: `chat_template` must be a string or a list of {{name, template}}, found {other}"
        ))),
    }
}

/// The special tokens of `tokenizer_config.json` (`bos_token`, `eos_token`, `unk_token`,
/// `pad_token`, ...), as transformers passes them to chat templates. Values may be strings or
/// `{"content": ...}` objects; `null` entries are left out. A missing file gives an empty map.
pub fn read_special_tokens(dir: impl AsRef<Path>) -> Result<BTreeMap<String, String>> {
    let path = dir.as_ref().join(TOKENIZER_CONFIG_FILE);
    let Some(config) = read_json(&path)? else {
        return Ok(BTreeMap::new());
    };
    let mut out = BTreeMap::new();
    if let Some(obj) = config.as_object() {
        for (k, v) in obj {
            if !k.ends_with("_token") {
                continue;
            }
            let text = match v {
                Json::String(s) => Some(s.clone()),
                Json::Object(o) => o.get("content").and_then(Json::as_str).map(str::to_string),
                _ => None,
            };
            if let Some(t) = text {
                out.insert(k.clone(), t);
            }
        }
    }
    Ok(out)
}

/// `eos_token_id` of `generation_config.json`, else of `config.json` (an int or a list); empty
/// when neither file names one. An id that `tokenizer` does not know (beyond its vocabulary, added
/// tokens included) is an error naming the id and the file: generation could never stop on it.
pub fn read_eos_token_ids(dir: impl AsRef<Path>, tokenizer: &Tokenizer) -> Result<Vec<u32>> {
    let vocab_size = tokenizer.vocab_size();
    let dir = dir.as_ref();
    for name in [GENERATION_CONFIG_FILE, "config.json"] {
        let path = dir.join(name);
        let Some(config) = read_json(&path)? else {
            continue;
        };
        let bad = |v: &Json| {
            Error::InvalidConfig(format!(
                "{}: `eos_token_id` must be a token id or a list of ids, found {v}",
                path.display()
            ))
        };
        let to_id = |v: &Json| {
            let id = v
                .as_u64()
                .and_then(|i| u32::try_from(i).ok())
                .ok_or_else(|| bad(v))?;
            if id as usize >= vocab_size && tokenizer.id_to_token(id).is_none() {
                return Err(Error::InvalidConfig(format!(
                    "{}: `eos_token_id` {id} is outside the tokenizer's vocabulary ({vocab_size} tokens)",
                    path.display()
                )));
            }
            Ok(id)
        };
        match config.get("eos_token_id") {
            None | Some(Json::Null) => continue,
            Some(Json::Array(a)) => return a.iter().map(to_id).collect(),
            Some(v) => return Ok(vec![to_id(v)?]),
        }
    }
    Ok(Vec::new())
}

/// Paths of the files [`find_chat_template`] looks at, in order.
pub fn chat_template_files(dir: impl AsRef<Path>) -> [PathBuf; 2] {
    let dir = dir.as_ref();
    [
        dir.join(CHAT_TEMPLATE_FILE),
        dir.join(TOKENIZER_CONFIG_FILE),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("kiln-hf-files-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn template_sources_in_hf_order() {
        let d = tmp("order");
        let e = find_chat_template(&d).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains(CHAT_TEMPLATE_FILE) && msg.contains(TOKENIZER_CONFIG_FILE),
            "{msg}"
        );
        std::fs::write(
            d.join(TOKENIZER_CONFIG_FILE),
            r#"{"bos_token": {"content": "<s>", "lstrip": false}, "eos_token": "</s>", "pad_token": null,
                "chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]}"#,
        )
        .unwrap();
        assert_eq!(find_chat_template(&d).unwrap().text, "D");
        let specials = read_special_tokens(&d).unwrap();
        assert_eq!(specials["bos_token"], "<s>");
        assert_eq!(specials["eos_token"], "</s>");
        assert!(!specials.contains_key("pad_token"));
        std::fs::write(d.join(CHAT_TEMPLATE_FILE), "J").unwrap();
        assert_eq!(find_chat_template(&d).unwrap().text, "J");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn eos_ids_from_generation_config_then_config() {
        let d = tmp("eos");
        let tok = Tokenizer::builtin_tiny().unwrap();
        assert_eq!(tok.vocab_size(), 768);
        assert!(read_eos_token_ids(&d, &tok).unwrap().is_empty());
        std::fs::write(d.join("config.json"), r#"{"eos_token_id": 7}"#).unwrap();
        assert_eq!(read_eos_token_ids(&d, &tok).unwrap(), vec![7]);
        std::fs::write(
            d.join(GENERATION_CONFIG_FILE),
            r#"{"eos_token_id": [1, 4]}"#,
        )
        .unwrap();
        assert_eq!(read_eos_token_ids(&d, &tok).unwrap(), vec![1, 4]);
        std::fs::write(d.join(GENERATION_CONFIG_FILE), r#"{"eos_token_id": "x"}"#).unwrap();
        assert!(read_eos_token_ids(&d, &tok).is_err());
        std::fs::write(
            d.join(GENERATION_CONFIG_FILE),
            r#"{"eos_token_id": [1, 999999]}"#,
        )
        .unwrap();
        let err = read_eos_token_ids(&d, &tok).unwrap_err().to_string();
        assert!(
            err.contains("999999") && err.contains(GENERATION_CONFIG_FILE) && err.contains("768"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&d);
    }
}

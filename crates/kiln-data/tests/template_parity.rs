//! Checkpoint chat templates (Llama-3.0, 3.1, 3.2, ChatML, `{% generation %}` blocks, a template
//! that raises) rendered by kiln-data equal HF `apply_chat_template`: text, ids and assistant masks.
//! Fixture: `tests/fixtures/templates/` made by `scripts/make_template_fixtures.py`.
#![cfg(test)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kiln_data::{ChatTemplate, DateTime, Error, Message, TemplateClock, Tokenizer};
use serde::Deserialize;

#[derive(Deserialize)]
struct Case {
    name: String,
    dir: String,
    messages: Vec<Message>,
    add_generation_prompt: bool,
    #[serde(default)]
    vars: BTreeMap<String, serde_json::Value>,
    now: Option<String>,
    eot: String,
    text: String,
    ids: Vec<u32>,
    assistant_mask: Vec<u8>,
    hf_generation_mask: Option<Vec<u8>>,
    error: Option<String>,
    /// A token straddles the start of the last assistant turn (ChatML content that starts with
    /// whitespace merges with the header's `\n`).
    #[serde(default)]
    straddles_turn_start: bool,
}

#[derive(Deserialize)]
struct Fixture {
    cases: Vec<Case>,
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture() -> Fixture {
    let path = root().join("tests/fixtures/templates/expected.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn load(case: &Case) -> (Tokenizer, ChatTemplate) {
    let dir = root().join(&case.dir);
    let tok = Tokenizer::from_model_dir(&dir).unwrap();
    let mut tpl =
        ChatTemplate::from_model_dir(&dir, &tok).unwrap_or_else(|e| panic!("{}: {e}", case.name));
    if let Some(now) = &case.now {
        tpl = tpl.with_clock(TemplateClock::Pinned(DateTime::parse_date(now).unwrap()));
    }
    for (k, v) in &case.vars {
        tpl = tpl.with_var(k.clone(), v.clone());
    }
    (tok, tpl)
}

#[test]
fn text_ids_and_masks_equal_hf() {
    let fx = fixture();
    assert!(fx.cases.len() >= 15, "{} cases", fx.cases.len());
    let mut kinds = std::collections::BTreeSet::new();
    for case in fx.cases.iter().filter(|c| c.error.is_none()) {
        kinds.insert(case.dir.clone());
        let (tok, tpl) = load(case);
        assert_eq!(tpl.eot_token(), case.eot, "{}", case.name);
        let text = tpl
            .render(&case.messages, case.add_generation_prompt)
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        assert_eq!(text, case.text, "text of {}", case.name);
        let enc = tpl
            .encode(&tok, &case.messages, case.add_generation_prompt)
            .unwrap();
        assert_eq!(enc.ids, case.ids, "ids of {}", case.name);
        let mask: Vec<u8> = enc.assistant_mask.iter().map(|&m| u8::from(m)).collect();
        assert_eq!(mask, case.assistant_mask, "assistant mask of {}", case.name);
        if let Some(hf) = &case.hf_generation_mask {
            assert_eq!(&mask, hf, "HF generation-block mask of {}", case.name);
        }
        // The stop ids hold the template's end of turn.
        assert!(tpl.stop_ids().contains(&tpl.eot_id()), "{}", case.name);
    }
    assert!(kinds.len() >= 5, "template kinds covered: {kinds:?}");
}

#[test]
fn prompt_completion_split_agrees_with_the_whole_conversation() {
    for case in fixture().cases.iter().filter(|c| c.error.is_none()) {
        let (tok, tpl) = load(case);
        let Some(last) = case
            .messages
            .iter()
            .rposition(|m| m.role.as_str() == "assistant")
        else {
            continue;
        };
        let (prompt, completion) = case.messages.split_at(last);
        let pc = tpl
            .encode_prompt_completion(&tok, prompt, completion)
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let alone = tpl.encode(&tok, prompt, true).unwrap().ids;
        if case.straddles_turn_start {
            // The straddling token (prompt's last `\n` + the content's leading whitespace) is
            // part of the completion.
            assert_eq!(pc.prompt[..], alone[..alone.len() - 1], "{}", case.name);
            assert!(pc.completion_mask[0], "{}", case.name);
        } else {
            assert_eq!(pc.prompt, alone, "{}", case.name);
        }
        let full = tpl.encode(&tok, &case.messages, false).unwrap();
        let joined: Vec<u32> = pc.prompt.iter().chain(&pc.completion).copied().collect();
        assert_eq!(joined, full.ids, "{}", case.name);
        assert_eq!(
            pc.completion_mask,
            full.assistant_mask[pc.prompt.len()..],
            "{}",
            case.name
        );
        // The completion's masked tokens end with the end-of-turn token.
        let last_masked = pc
            .completion
            .iter()
            .zip(&pc.completion_mask)
            .rfind(|(_, m)| **m)
            .map(|(id, _)| *id);
        assert_eq!(last_masked, Some(tpl.eot_id()), "{}", case.name);
    }
}

#[test]
fn raise_exception_is_a_typed_error_with_the_template_message() {
    let fx = fixture();
    let raising: Vec<&Case> = fx.cases.iter().filter(|c| c.error.is_some()).collect();
    assert!(!raising.is_empty());
    for case in raising {
        let (tok, tpl) = load(case);
        let err = tpl
            .encode(&tok, &case.messages, case.add_generation_prompt)
            .unwrap_err();
        match &err {
            Error::TemplateRaised { origin, message } => {
                assert_eq!(Some(message), case.error.as_ref(), "{}", case.name);
                assert!(origin.contains(&case.dir), "{origin}");
            }
            other => panic!("{}: expected TemplateRaised, got {other}", case.name),
        }
    }
}

#[test]
fn bad_templates_are_errors_naming_the_file() {
    let dir = std::env::temp_dir().join(format!("kiln-bad-template-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(
        root().join("crates/kiln-data/assets/tokenizer.json"),
        dir.join("tokenizer.json"),
    )
    .unwrap();
    let tok = Tokenizer::from_model_dir(&dir).unwrap();
    // No template at all: both files named.
    let e = ChatTemplate::from_model_dir(&dir, &tok).unwrap_err();
    assert!(matches!(e, Error::NoChatTemplate { .. }), "{e}");
    assert!(e.to_string().contains("chat_template.jinja"), "{e}");
    assert!(e.to_string().contains("tokenizer_config.json"), "{e}");
    // A template that does not parse.
    std::fs::write(
        dir.join("chat_template.jinja"),
        "{% for m in messages %}{{ m.content }}",
    )
    .unwrap();
    let e = ChatTemplate::from_model_dir(&dir, &tok).unwrap_err();
    assert!(matches!(e, Error::Template { .. }), "{e}");
    assert!(e.to_string().contains("chat_template.jinja"), "{e}");
    // A template that uses a special token tokenizer_config.json does not define.
    std::fs::write(
        dir.join("chat_template.jinja"),
        "{{ bos_token }}{% for m in messages %}{{ m.content }}<|eot_id|>{% endfor %}",
    )
    .unwrap();
    let tpl = ChatTemplate::from_model_dir(&dir, &tok);
    let e = match tpl {
        Ok(t) => t.render(&[Message::user("hi")], false).unwrap_err(),
        Err(e) => e,
    };
    assert!(e.to_string().contains("chat_template.jinja"), "{e}");
    assert!(e.to_string().contains("undefined"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

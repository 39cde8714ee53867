//! kiln-data's Llama-3 chat template equals HF `apply_chat_template` + encode (fixture made by
//! `scripts/make_data_fixtures.py`), and the assistant mask covers exactly assistant content + eot.
#![cfg(test)]

use kiln_data::{ChatTemplate, Error, Message, Role, Tokenizer};
use serde::Deserialize;

#[derive(Deserialize)]
struct Case {
    name: String,
    messages: Vec<Message>,
    add_generation_prompt: bool,
    text: String,
    ids: Vec<u32>,
}

#[derive(Deserialize)]
struct Encoding {
    text: String,
    ids: Vec<u32>,
}

#[derive(Deserialize)]
struct Fixture {
    cases: Vec<Case>,
    encodings: Vec<Encoding>,
}

fn fixture() -> Fixture {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/data/chat_template.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn ids_and_text_equal_hf() {
    let tok = Tokenizer::builtin_tiny().unwrap();
    let tpl = ChatTemplate::llama3(&tok).unwrap();
    let fx = fixture();
    assert!(fx.cases.len() >= 10);
    for case in &fx.cases {
        let text = tpl
            .render(&case.messages, case.add_generation_prompt)
            .unwrap();
        assert_eq!(text, case.text, "text of case {}", case.name);
        let enc = tpl
            .encode(&tok, &case.messages, case.add_generation_prompt)
            .unwrap();
        assert_eq!(
            enc.ids, case.ids,
            "ids of case {} (gen={})",
            case.name, case.add_generation_prompt
        );
        assert_eq!(enc.assistant_mask.len(), enc.ids.len());
    }
    for e in &fx.encodings {
        assert_eq!(tok.encode(&e.text).unwrap(), e.ids, "{:?}", e.text);
        assert_eq!(tok.decode(&e.ids, false).unwrap(), e.text);
    }
}

/// Meta's Jinja text of the fixture, rendered by minijinja, equals HF too, masks included, and
/// equals the built-in renderer (whose source is `LLAMA3_JINJA`).
#[test]
fn jinja_llama3_equals_hf_and_the_builtin_renderer() {
    let tok = Tokenizer::builtin_tiny().unwrap();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/data/chat_template.json");
    let raw: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let source = raw["chat_template"].as_str().unwrap();
    assert_eq!(source, kiln_data::chat_template::LLAMA3_JINJA);
    let specials = std::collections::BTreeMap::from([(
        "bos_token".to_string(),
        "<|begin_of_text|>".to_string(),
    )]);
    let jinja = ChatTemplate::from_jinja(
        &kiln_data::TemplateSource {
            text: source.to_string(),
            origin: "fixture".into(),
        },
        &tok,
        specials,
        vec![1],
    )
    .unwrap();
    assert_eq!(jinja.eot_token(), "<|eot_id|>");
    assert_eq!(jinja.stop_ids(), vec![1, 4]);
    let builtin = ChatTemplate::llama3(&tok).unwrap();
    for case in &fixture().cases {
        let text = jinja
            .render(&case.messages, case.add_generation_prompt)
            .unwrap();
        assert_eq!(text, case.text, "text of case {}", case.name);
        let a = jinja
            .encode(&tok, &case.messages, case.add_generation_prompt)
            .unwrap();
        let b = builtin
            .encode(&tok, &case.messages, case.add_generation_prompt)
            .unwrap();
        assert_eq!(a, b, "case {}", case.name);
        if let Some(n) = case.messages.len().checked_sub(1) {
            let (p, c) = case.messages.split_at(n);
            if c[0].role == Role::Assistant {
                assert_eq!(
                    jinja.encode_prompt_completion(&tok, p, c).unwrap(),
                    builtin.encode_prompt_completion(&tok, p, c).unwrap(),
                    "prompt/completion of case {}",
                    case.name
                );
            }
        }
    }
}

#[test]
fn assistant_mask_covers_content_and_eot_only() {
    let tok = Tokenizer::builtin_tiny().unwrap();
    let tpl = ChatTemplate::llama3(&tok).unwrap();
    let msgs = vec![
        Message::system("Be brief."),
        Message::user("What is 2 plus 3?"),
        Message::assistant("  2 plus 3 is 5. "),
        Message::user("Thanks!"),
        Message::assistant("You are welcome."),
    ];
    let enc = tpl.encode(&tok, &msgs, false).unwrap();
    let masked: Vec<u32> = enc
        .ids
        .iter()
        .zip(&enc.assistant_mask)
        .filter(|(_, m)| **m)
        .map(|(i, _)| *i)
        .collect();
    let eot = tok.token_id("<|eot_id|>").unwrap();
    let mut expected = tok.encode("2 plus 3 is 5.").unwrap();
    expected.push(eot);
    expected.extend(tok.encode("You are welcome.").unwrap());
    expected.push(eot);
    assert_eq!(masked, expected);
    assert_eq!(
        tok.decode(&masked, false).unwrap(),
        "2 plus 3 is 5.<|eot_id|>You are welcome.<|eot_id|>"
    );
    // The last token is the final eot and is masked; headers are not.
    assert_eq!(*enc.ids.last().unwrap(), eot);
    assert!(*enc.assistant_mask.last().unwrap());
    let sh = tok.token_id("<|start_header_id|>").unwrap();
    for (id, m) in enc.ids.iter().zip(&enc.assistant_mask) {
        if *id == sh {
            assert!(!m);
        }
    }
}

#[test]
fn assistant_mask_handles_multibyte_text() {
    let tok = Tokenizer::builtin_tiny().unwrap();
    let tpl = ChatTemplate::llama3(&tok).unwrap();
    let msgs = [
        Message::user("Ünïcødé? 🙂"),
        Message::assistant(" naïve café 🙂 — ok "),
    ];
    let enc = tpl.encode(&tok, &msgs, false).unwrap();
    let masked: Vec<u32> = enc
        .ids
        .iter()
        .zip(&enc.assistant_mask)
        .filter(|(_, m)| **m)
        .map(|(i, _)| *i)
        .collect();
    assert_eq!(
        tok.decode(&masked, false).unwrap(),
        "naïve café 🙂 — ok<|eot_id|>"
    );
}

#[test]
fn prompt_completion_split_is_consistent() {
    let tok = Tokenizer::builtin_tiny().unwrap();
    let tpl = ChatTemplate::llama3(&tok).unwrap();
    let prompt = vec![Message::user("What colour is the sky?")];
    let pc = tpl
        .encode_prompt_completion(&tok, &prompt, &[Message::assistant(" The sky is blue. ")])
        .unwrap();
    // Prompt part = prompt with the generation prompt.
    assert_eq!(pc.prompt, tpl.encode(&tok, &prompt, true).unwrap().ids);
    // Completion = stripped content + eot, all masked.
    let mut expected = tok.encode("The sky is blue.").unwrap();
    expected.push(tpl.eot_id());
    assert_eq!(pc.completion, expected);
    assert!(pc.completion_mask.iter().all(|&m| m));
    // Concatenation equals the full conversation.
    let mut full = pc.prompt.clone();
    full.extend(&pc.completion);
    let conv = [prompt[0].clone(), Message::assistant("The sky is blue.")];
    assert_eq!(full, tpl.encode(&tok, &conv, false).unwrap().ids);
    // Multi-turn completion: the user turn inside it is not masked.
    let pc2 = tpl
        .encode_prompt_completion(
            &tok,
            &prompt,
            &[
                Message::assistant("Blue."),
                Message::user("Sure?"),
                Message::assistant("Yes."),
            ],
        )
        .unwrap();
    let n_masked = pc2.completion_mask.iter().filter(|&&m| m).count();
    assert_eq!(
        n_masked,
        tok.encode("Blue.").unwrap().len() + tok.encode("Yes.").unwrap().len() + 2
    );
    assert!(n_masked < pc2.completion.len());
}

#[test]
fn missing_special_token_is_a_clear_error() {
    // A tokenizer without the chat tokens: the built-in one with the added tokens stripped.
    let mut json: serde_json::Value =
        serde_json::from_str(kiln_data::tokenizer::TINY_TOKENIZER_JSON).unwrap();
    json["added_tokens"] = serde_json::json!([]);
    let vocab = json["model"]["vocab"].as_object_mut().unwrap();
    vocab.retain(|k, _| !k.starts_with("<|"));
    let tok = Tokenizer::from_json_str(&json.to_string()).unwrap();
    let err = ChatTemplate::llama3(&tok).unwrap_err();
    assert!(matches!(err, Error::MissingSpecialToken { .. }));
    let msg = err.to_string();
    assert!(
        msg.contains("<|begin_of_text|>") && msg.contains("chat template"),
        "{msg}"
    );
    assert!(
        tok.token_id("<|eot_id|>")
            .unwrap_err()
            .to_string()
            .contains("<|eot_id|>")
    );
}

#[test]
fn loads_from_model_dir_and_reports_bad_files() {
    let dir = std::env::temp_dir().join(format!("kiln-data-tok-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("tokenizer.json"),
        kiln_data::tokenizer::TINY_TOKENIZER_JSON,
    )
    .unwrap();
    let tok = Tokenizer::from_model_dir(&dir).unwrap();
    assert_eq!(
        tok.vocab_size(),
        Tokenizer::builtin_tiny().unwrap().vocab_size()
    );
    std::fs::write(dir.join("tokenizer.json"), "{not json").unwrap();
    let err = Tokenizer::from_model_dir(&dir).unwrap_err().to_string();
    assert!(err.contains("tokenizer.json"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
    let err = Tokenizer::from_model_dir(&dir).unwrap_err().to_string();
    assert!(err.contains("tokenizer.json"), "{err}");
    assert_eq!(Role::Assistant.as_str(), "assistant");
}

mod props {
    use super::*;
    use proptest::prelude::*;

    fn text() -> impl Strategy<Value = String> {
        // Words, digits, punctuation, spaces, newlines and some non-ASCII, to stress the boundaries.
        prop::collection::vec(
            prop::sample::select(vec![
                "the", "sky", " is", "blue", "12", "345", ".", "?!", " ", "  ", "\n", "\n\n", "\t",
                "é", "🙂", "'s", "A", "cat", "-", "\"",
            ]),
            0..12,
        )
        .prop_map(|v| v.concat())
    }

    fn role() -> impl Strategy<Value = Role> {
        prop::sample::select(vec![Role::System, Role::User, Role::Assistant])
    }

    proptest! {
        #[test]
        fn mask_is_exactly_assistant_content_and_eot(
            turns in prop::collection::vec((role(), text()), 1..6),
            add_gen in any::<bool>(),
        ) {
            let tok = Tokenizer::builtin_tiny().unwrap();
            let tpl = ChatTemplate::llama3(&tok).unwrap();
            let msgs: Vec<Message> = turns.iter().map(|(r, t)| Message::new(*r, t.clone())).collect();
            let enc = tpl.encode(&tok, &msgs, add_gen).unwrap();
            // Ids equal encoding the rendered string at once.
            prop_assert_eq!(&enc.ids, &tok.encode(&tpl.render(&msgs, add_gen).unwrap()).unwrap());
            let masked: Vec<u32> =
                enc.ids.iter().zip(&enc.assistant_mask).filter(|(_, m)| **m).map(|(i, _)| *i).collect();
            let expected: String = msgs
                .iter()
                .filter(|m| m.role == Role::Assistant)
                .map(|m| format!("{}<|eot_id|>", kiln_data::python_strip(&m.content)))
                .collect();
            prop_assert_eq!(tok.decode(&masked, false).unwrap(), expected);
        }

        #[test]
        fn prompt_and_completion_concatenate_to_the_conversation(
            prompt in prop::collection::vec((role(), text()), 1..4),
            answer in text(),
        ) {
            let tok = Tokenizer::builtin_tiny().unwrap();
            let tpl = ChatTemplate::llama3(&tok).unwrap();
            let p: Vec<Message> = prompt.iter().map(|(r, t)| Message::new(*r, t.clone())).collect();
            let c = [Message::assistant(answer.clone())];
            let pc = tpl.encode_prompt_completion(&tok, &p, &c).unwrap();
            prop_assert_eq!(&pc.prompt, &tpl.encode(&tok, &p, true).unwrap().ids);
            let mut all = p.clone();
            all.extend(c);
            let mut joined = pc.prompt.clone();
            joined.extend(&pc.completion);
            prop_assert_eq!(joined, tpl.encode(&tok, &all, false).unwrap().ids);
            prop_assert!(pc.completion_mask.iter().all(|&m| m));
            prop_assert_eq!(*pc.completion.last().unwrap(), tpl.eot_id());
        }
    }
}

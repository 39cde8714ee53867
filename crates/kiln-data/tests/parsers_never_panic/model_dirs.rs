//! Model directories: `tokenizer_config.json` (+ its template), `chat_template.jinja`, `generation_config.json`, `config.json`.

use super::*;

/// Valid `tokenizer_config.json` texts: the fixtures, plus a list of named templates.
fn tokenizer_configs() -> &'static [String] {
    static CONFIGS: OnceLock<Vec<String>> = OnceLock::new();
    CONFIGS.get_or_init(|| {
        let mut v: Vec<String> = [
            "templates/llama3.0",
            "templates/llama3.2",
            "templates/chatml",
            "templates/raises",
            "sampling/tiny-chat",
        ]
        .iter()
        .map(|d| fixture_text(&format!("{d}/tokenizer_config.json")))
        .collect();
        let llama = kiln_data::chat_template::LLAMA3_JINJA;
        v.push(
            serde_json::json!({
                "bos_token": {"content": "<|begin_of_text|>", "lstrip": false},
                "eos_token": "<|eot_id|>",
                "pad_token": null,
                "chat_template": [
                    {"name": "tool_use", "template": "{{ raise_exception('tools') }}"},
                    {"name": "default", "template": llama}
                ]
            })
            .to_string(),
        );
        v
    })
}

/// Valid `chat_template.jinja` texts (the fixtures and the built-in Llama-3 one).
pub(super) fn jinja_templates() -> &'static [String] {
    static TEMPLATES: OnceLock<Vec<String>> = OnceLock::new();
    TEMPLATES.get_or_init(|| {
        let mut v: Vec<String> = [
            "templates/llama3.1",
            "templates/chatml",
            "templates/raises",
            "templates/generation_tags",
            "sampling/tiny-chat",
        ]
        .iter()
        .map(|d| fixture_text(&format!("{d}/chat_template.jinja")))
        .collect();
        v.push(kiln_data::chat_template::LLAMA3_JINJA.to_string());
        v
    })
}

fn generation_configs() -> Vec<String> {
    vec![
        fixture_text("templates/llama3.1/generation_config.json"),
        fixture_text("templates/chatml/generation_config.json"),
    ]
}

fn model_configs() -> Vec<String> {
    vec![
        fixture_text("model/tied/config.json"),
        fixture_text("sampling/tiny-chat/config.json"),
    ]
}

/// Reads a model directory the way every Kiln tool does; only panics matter.
fn read_model_dir(dir: &Path, tok: &Tokenizer, msgs: &[Message]) {
    let _ = find_chat_template(dir);
    let _ = read_special_tokens(dir);
    let _ = read_eos_token_ids(dir, tok);
    if let Ok(t) = ChatTemplate::from_model_dir(dir, tok) {
        exercise(&t, tok, msgs);
    }
    if let Ok(t) = ChatTemplate::load(&TemplateChoice::Checkpoint, Some(dir), tok) {
        exercise(&t, tok, msgs);
    }
}

/// Which file of a model directory a case mutates.
#[derive(Debug, Clone, Copy)]
enum HfFile {
    TokenizerConfig,
    ChatTemplate,
    GenerationConfig,
    Config,
}

proptest! {
    #![proptest_config(config(96))]

    #[test]
    fn model_dir_readers_survive_mutated_files(
        which in select(vec![HfFile::TokenizerConfig, HfFile::ChatTemplate, HfFile::GenerationConfig, HfFile::Config]),
        tok_dir in select(TOKENIZER_DIRS),
        base in (any::<Index>(), any::<Index>(), any::<Index>(), any::<Index>(), any::<bool>()),
        json in json_edits(),
        bytes in byte_edits(),
        msgs in conversation(),
    ) {
        let tok = tokenizer(tok_dir);
        within(move || {
            let dir = Scratch::new();
            let (tc, jt, gc, mc, with_jinja) = base;
            let mut files = vec![
                ("tokenizer_config.json", tc.get(tokenizer_configs()).as_bytes().to_vec()),
                ("generation_config.json", gc.get(&generation_configs()).as_bytes().to_vec()),
                ("config.json", mc.get(&model_configs()).as_bytes().to_vec()),
            ];
            if with_jinja {
                files.push(("chat_template.jinja", jt.get(jinja_templates()).as_bytes().to_vec()));
            }
            let target = match which {
                HfFile::TokenizerConfig => "tokenizer_config.json",
                HfFile::ChatTemplate => "chat_template.jinja",
                HfFile::GenerationConfig => "generation_config.json",
                HfFile::Config => "config.json",
            };
            for (name, text) in &files {
                let text = if *name != target {
                    text.clone()
                } else if *name == "chat_template.jinja" {
                    apply_bytes(text.clone(), &bytes)
                } else {
                    mutated(&String::from_utf8_lossy(text), &json, &bytes)
                };
                dir.write(name, text);
            }
            read_model_dir(&dir.0, &tok, &msgs);
        });
    }

    #[test]
    fn model_dir_readers_survive_arbitrary_bytes(
        which in select(vec![HfFile::TokenizerConfig, HfFile::ChatTemplate, HfFile::GenerationConfig, HfFile::Config]),
        garbage in prop::collection::vec(any::<u8>(), 0..256),
        msgs in conversation(),
    ) {
        let tok = tokenizer("templates/llama3.0");
        within(move || {
            let dir = Scratch::new();
            dir.write("tokenizer_config.json", &tokenizer_configs()[0]);
            dir.write("generation_config.json", fixture_text("templates/llama3.0/generation_config.json"));
            let name = match which {
                HfFile::TokenizerConfig => "tokenizer_config.json",
                HfFile::ChatTemplate => "chat_template.jinja",
                HfFile::GenerationConfig => "generation_config.json",
                HfFile::Config => "config.json",
            };
            dir.write(name, &garbage);
            read_model_dir(&dir.0, &tok, &msgs);
        });
    }
}

//! Every kiln-data reader of outside files returns a value or an error, never panics or hangs, on
//! arbitrary bytes and on mutated valid files: JSON Lines stage files (all six record kinds),
//! JSON files (`atomic::read_json`), `--messages` conversation files, a model directory's
//! `tokenizer_config.json` / `chat_template.jinja` / `generation_config.json` / `config.json`
//! (template source, special tokens, stop ids, the compiled template rendered with real
//! conversations), chat templates built from Jinja fragments, and `tokenizer.json`.
//!
//! Each property runs a bounded number of cases on its own thread under a time limit, so a hang
//! fails the test instead of stalling CI.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use kiln_data::hf_files::{find_chat_template, read_eos_token_ids, read_special_tokens};
use kiln_data::message::{parse_messages, read_messages};
use kiln_data::{
    AnnotatedRecord, ChatEncoder, ChatTemplate, Content, GenerationRecord, JsonlReader, Message,
    PairRecord, PromptRecord, RankedRecord, SftRecord, TemplateChoice, TemplateSource, Tokenizer,
    TruncationConfig, read_jsonl, write_jsonl,
};
use proptest::prelude::*;
use proptest::sample::{Index, select};
use serde_json::Value;

// ------------------------------------------------------------------------------------------------
// Harness: fixtures, scratch directories, the time limit.
// ------------------------------------------------------------------------------------------------

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(rel)
}

fn fixture_text(rel: &str) -> String {
    std::fs::read_to_string(fixture(rel)).unwrap()
}

#[path = "../../../tests/support/never_panic.rs"]
mod never_panic;
use never_panic::*;

/// Byte edits splicing in this file's [`SPLICES`].
fn byte_edits() -> impl Strategy<Value = Vec<ByteEdit>> {
    never_panic::byte_edits(SPLICES)
}

/// JSON edits putting this file's [`WEIRD_JSON`] in place of values.
fn json_edits() -> impl Strategy<Value = Vec<JsonEdit>> {
    never_panic::json_edits(WEIRD_JSON)
}

/// The tokenizer of a fixture directory, loaded once.
fn tokenizer(dir: &str) -> Tokenizer {
    static CACHE: OnceLock<std::sync::Mutex<BTreeMap<String, Tokenizer>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
    cache
        .entry(dir.to_string())
        .or_insert_with(|| Tokenizer::from_model_dir(fixture(dir)).unwrap())
        .clone()
}

/// Fixture directories with a tokenizer: Llama-3 special tokens, and ChatML ones.
const TOKENIZER_DIRS: &[&str] = &["templates/llama3.0", "templates/chatml"];

// ------------------------------------------------------------------------------------------------
// Mutations: bytes, and JSON values.
// ------------------------------------------------------------------------------------------------

/// Byte strings worth inserting: JSON and Jinja syntax, odd numbers, broken UTF-8.
const SPLICES: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b"\\",
    b",",
    b":",
    b"\n",
    b"\r\n",
    b" ",
    b"null",
    b"-",
    b"1e999",
    b"-0",
    b"\x00",
    b"\xff",
    b"\xc3",
    b"\xe2\x82",
    b"\xf0\x9f\x98",
    b"{%",
    b"%}",
    b"{{",
    b"}}",
    b"{#",
    b"-%}",
    b"{%-",
    b"{%-%}",
    b"\\u",
    b"\\ud800",
    b"\xee\x80\x80",
];

/// JSON texts that replace a value, or follow a duplicated key: other types, numbers out of
/// every integer range, non-finite floats, broken strings, shapes the readers look for.
const WEIRD_JSON: &[&str] = &[
    "null",
    "true",
    "false",
    "0",
    "-1",
    "1",
    "7",
    "-0",
    "0.5",
    "-2.5",
    "1e308",
    "-1e308",
    "1e999",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "-9223372036854775809",
    "123456789012345678901234567890",
    "\"\"",
    "\"x\"",
    "\"\\u0000\"",
    "\"\\ud800\"",
    "\"\\ue000\"",
    "\"<|eot_id|>\"",
    "\"<|im_end|>\"",
    "\"{{ raise_exception('no') }}\"",
    "\"{%-%}\"",
    "\"{% for m in messages %}{{ m.content }}{% endfor %}\"",
    "\"user\"",
    "\"assistant\"",
    "\"all-linear\"",
    "[]",
    "{}",
    "[1,2,3]",
    "[-1]",
    "[null]",
    "[\"a\"]",
    "[[]]",
    "{\"a\":null}",
    "{\"content\":\"<|im_end|>\"}",
    "{\"content\":7}",
    "[{\"role\":\"user\",\"content\":\"hi\"}]",
    "[{\"role\":\"tool\",\"content\":\"hi\"}]",
    "[{\"name\":\"default\",\"template\":\"{{ messages[0].content }}\"}]",
    "[{\"name\":\"x\"}]",
    "[{\"name\":\"default\",\"template\":3}]",
];

// ------------------------------------------------------------------------------------------------
// Conversations to render.
// ------------------------------------------------------------------------------------------------

fn content() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("What colour is the sky?".to_string()),
        Just("  Blue.\n".to_string()),
        Just(String::new()),
        Just("<|eot_id|>".to_string()),
        Just("<|im_end|>".to_string()),
        Just("{{ bos_token }}{% if %}".to_string()),
        Just("é😀\u{1f}\u{a0}".to_string()),
        Just("\u{E000}".to_string()),
        "\\PC{0,24}",
    ]
}

fn message() -> impl Strategy<Value = Message> {
    (0usize..3, content()).prop_map(|(r, c)| match r {
        0 => Message::system(c),
        1 => Message::user(c),
        _ => Message::assistant(c),
    })
}

fn conversation() -> impl Strategy<Value = Vec<Message>> {
    prop::collection::vec(message(), 0..5)
}

/// Everything a loaded template does with a conversation; errors are fine, panics are not.
fn exercise(template: &ChatTemplate, tok: &Tokenizer, msgs: &[Message]) {
    for add in [false, true] {
        let _ = template.render(msgs, add);
        let _ = template.encode(tok, msgs, add);
    }
    let split = msgs.len() / 2;
    let _ = template.encode_prompt_completion(tok, &msgs[..split], &msgs[split..]);
    let _ = template.stop_ids();
    let _ = template.pad_id(tok);
    let truncation = TruncationConfig {
        max_prompt_len: 8,
        max_total_len: 24,
    };
    if let Ok(enc) = ChatEncoder::new(tok.clone(), template.clone(), truncation) {
        let prompt = Content::Messages(msgs[..split].to_vec());
        let completion = Content::Messages(msgs[split..].to_vec());
        let _ = enc.generation_prompt(&prompt);
        let _ = enc.prompt_completion(&prompt, &completion);
        let _ = enc.prompt_completion(&prompt, &Content::from("Blue."));
        let _ = enc.reward_example(&prompt, &completion);
        let _ = enc.sft(&SftRecord {
            messages: msgs.to_vec(),
        });
        let _ = enc.ranked(&RankedRecord {
            prompt: prompt.clone(),
            responses: vec!["a".into(), String::new()],
            rewards: vec![1.0, 0.0],
        });
    }
}

// ------------------------------------------------------------------------------------------------
// JSON Lines stage files.
// ------------------------------------------------------------------------------------------------

/// Reads `path` as every stage format, whole and streamed; only panics matter.
fn read_every_format(path: &Path) {
    let _ = read_jsonl::<PromptRecord>(path);
    let _ = read_jsonl::<GenerationRecord>(path);
    let _ = read_jsonl::<AnnotatedRecord>(path);
    let _ = read_jsonl::<PairRecord>(path);
    let _ = read_jsonl::<RankedRecord>(path);
    let _ = read_jsonl::<SftRecord>(path);
    if let Ok(reader) = JsonlReader::<Value>::open(path) {
        for record in reader.allow_empty(true) {
            let _ = record;
        }
    }
}

/// Valid stage files of every kind: written by Kiln's writer, plus the committed fixtures.
fn valid_stage_files() -> &'static [String] {
    static FILES: OnceLock<Vec<String>> = OnceLock::new();
    FILES.get_or_init(|| {
        let dir = Scratch::new();
        let conv = vec![Message::system("Be brief."), Message::user("Hi?")];
        let mut files = Vec::new();
        let mut add = |text: String| files.push(text);
        let p = dir.0.join("f.jsonl");
        let read = |p: &Path| std::fs::read_to_string(p).unwrap();
        write_jsonl(
            &p,
            &[
                PromptRecord::text("What is 2 plus 2?"),
                PromptRecord::messages(conv.clone()),
            ],
        )
        .unwrap();
        add(read(&p));
        add("{\"context_messages\": [{\"role\": \"user\", \"content\": \"x\"}]}\n".into());
        let mut g = GenerationRecord::new(Content::from("Q"), vec!["a".into(), "b".into()]);
        g.finish_reasons = vec!["stop_token".into(), "length".into()];
        write_jsonl(&p, &[g]).unwrap();
        add(read(&p));
        write_jsonl(
            &p,
            &[AnnotatedRecord {
                prompt: Content::Messages(conv.clone()),
                responses: vec!["a".into(), "b".into()],
                rewards: vec![0.5, f64::NAN],
            }],
        )
        .unwrap();
        add(read(&p));
        write_jsonl(
            &p,
            &[PairRecord {
                prompt: Content::from("Q"),
                chosen: Content::from("good"),
                rejected: Content::Messages(vec![Message::assistant("bad")]),
                margin: Some(1.5),
            }],
        )
        .unwrap();
        add(read(&p));
        write_jsonl(
            &p,
            &[RankedRecord {
                prompt: Content::from("Q"),
                responses: vec!["a".into(), "b".into(), "c".into()],
                rewards: vec![3.0, 2.0, -1.0],
            }],
        )
        .unwrap();
        add(read(&p));
        write_jsonl(
            &p,
            &[SftRecord {
                messages: vec![Message::user("Hi"), Message::assistant("Hello!")],
            }],
        )
        .unwrap();
        add(read(&p));
        add(fixture_text("reward/tiny-rm/pairs.jsonl"));
        files
    })
}

/// One line of a JSON Lines text mutated at the JSON level.
fn mutate_line(text: &str, line: &Index, json: &[JsonEdit]) -> String {
    let lines: Vec<&str> = text.lines().collect();
    if lines.is_empty() {
        return text.to_string();
    }
    let k = line.index(lines.len());
    let mut out = String::new();
    for (i, l) in lines.iter().enumerate() {
        if i == k {
            out.push_str(&mutate_json(l, json));
        } else {
            out.push_str(l);
        }
        out.push('\n');
    }
    out
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn jsonl_readers_survive_arbitrary_bytes(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
        text in "(\\PC|\n){0,200}",
    ) {
        within(move || {
            let dir = Scratch::new();
            read_every_format(&dir.write("bytes.jsonl", &bytes));
            read_every_format(&dir.write("text.jsonl", &text));
        });
    }

    #[test]
    fn jsonl_readers_survive_mutated_stage_files(
        file in any::<Index>(),
        line in any::<Index>(),
        json in json_edits(),
        bytes in byte_edits(),
    ) {
        let text = file.get(valid_stage_files()).clone();
        within(move || {
            let dir = Scratch::new();
            let text = mutate_line(&text, &line, &json);
            read_every_format(&dir.write("stage.jsonl", apply_bytes(text.into_bytes(), &bytes)));
        });
    }
}

// ------------------------------------------------------------------------------------------------
// JSON files and `--messages` conversation files.
// ------------------------------------------------------------------------------------------------

fn read_json_files(path: &Path) {
    let _ = read_messages(path);
    let text = String::from_utf8_lossy(&std::fs::read(path).unwrap()).into_owned();
    let _ = parse_messages(&text, path);
    let _ = kiln_data::atomic::read_json::<Value>(path);
    let _ = kiln_data::atomic::read_json::<Vec<Message>>(path);
    let _ = kiln_data::atomic::read_json::<SftRecord>(path);
    let _ = kiln_data::atomic::read_json::<BTreeMap<String, f64>>(path);
}

const VALID_MESSAGES: &str = r#"[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What colour is the sky?"}, {"role": "assistant", "content": "Blue."}, {"role": "user", "content": "And at night?"}]"#;

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn json_and_message_files_survive_arbitrary_bytes(
        bytes in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        within(move || {
            let dir = Scratch::new();
            read_json_files(&dir.write("messages.json", &bytes));
        });
    }

    #[test]
    fn json_and_message_files_survive_mutations(
        seed in select(vec![VALID_MESSAGES, r#"{"messages": [{"role": "user", "content": "Hi"}]}"#, r#"{"sft": 1.5, "rm": 2.0}"#]),
        json in json_edits(),
        bytes in byte_edits(),
    ) {
        within(move || {
            let dir = Scratch::new();
            read_json_files(&dir.write("messages.json", mutated(seed, &json, &bytes)));
        });
    }
}

// ------------------------------------------------------------------------------------------------
// Model directories: tokenizer_config.json (+ its template), chat_template.jinja,
// generation_config.json, config.json.
// ------------------------------------------------------------------------------------------------

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
fn jinja_templates() -> &'static [String] {
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

// ------------------------------------------------------------------------------------------------
// Chat templates: random ones built from Jinja fragments, and mutated fixture templates.
// ------------------------------------------------------------------------------------------------

/// Pieces of Jinja: delimiters, statements, the variables transformers passes, loop helpers,
/// filters, Python methods, the helpers (`raise_exception`, `strftime_now`), literals and text.
/// `range(99999)` nested twice runs into the template fuel (an error after ~0.3 s). No bare `ns`:
/// `{% set ns.a = ns %}` makes a namespace that holds itself, and printing it overflows the
/// stack inside minijinja 3.1 (see the `tojson` regression test below).
const FRAGMENTS: &[&str] = &[
    "{%",
    "{%-",
    "%}",
    "-%}",
    "+%}",
    "{%+",
    "{{",
    "{{-",
    "}}",
    "-}}",
    "{#",
    "#}",
    " ",
    "\n",
    "for",
    "in",
    "endfor",
    "if",
    "elif",
    "else",
    "endif",
    "set",
    "=",
    "macro",
    "endmacro",
    "call",
    "endcall",
    "filter",
    "endfilter",
    "with",
    "endwith",
    "raw",
    "endraw",
    "block",
    "endblock",
    "extends",
    "include",
    "import",
    "from",
    "recursive",
    "break",
    "continue",
    "generation",
    "endgeneration",
    "{% generation %}",
    "{% endgeneration %}",
    "{%- generation -%}",
    "{%-%}",
    "{%%}",
    "{%- -%}",
    "{%+%}",
    "messages",
    "message",
    "m",
    "x",
    "loop",
    "loop.index0",
    "loop.first",
    "loop.last",
    "loop.previtem",
    "loop.nextitem",
    "loop.length",
    "loop.cycle('a', 'b')",
    "loop(messages)",
    "loop(m)",
    "bos_token",
    "eos_token",
    "pad_token",
    "unk_token",
    "add_generation_prompt",
    "tools",
    "documents",
    "date_string",
    "messages[0]",
    "messages[1:]",
    "messages[-1]",
    "messages[0]['role']",
    "message['content']",
    "m.content",
    "m.role",
    "m['role']",
    "namespace(found=false)",
    "ns.found",
    "range(3)",
    "range(99999)",
    "range(-2)",
    "range(0, 10, 0)",
    "raise_exception('bad conversation')",
    "raise_exception(m)",
    "raise_exception()",
    "strftime_now('%d %b %Y')",
    "strftime_now('%')",
    "strftime_now(3)",
    "strftime_now()",
    "|",
    "trim",
    "tojson",
    "tojson(indent=2)",
    "tojson(sort_keys=true)",
    "tojson(indent=-1)",
    "tojson(foo=1)",
    "upper",
    "lower",
    "title",
    "capitalize",
    "length",
    "first",
    "last",
    "join(', ')",
    "replace('a', 'b')",
    "default('x')",
    "safe",
    "string",
    "int",
    "float",
    "list",
    "items",
    "dictsort",
    "reverse",
    "selectattr('role', 'equalto', 'user')",
    "rejectattr('role')",
    "map(attribute='content')",
    "indent(2)",
    "abs",
    "round",
    "batch(2)",
    "slice(2)",
    "unique",
    "sum",
    "min",
    "max",
    "sort",
    "count",
    "wordcount",
    "format(1)",
    ".strip()",
    ".lstrip('<')",
    ".rstrip()",
    ".split()",
    ".split('')",
    ".split(',', -5)",
    ".startswith('x')",
    ".endswith(1)",
    ".upper()",
    ".items()",
    ".keys()",
    ".values()",
    ".get('role')",
    ".get()",
    ".replace('a', 'b', -1)",
    ".count('')",
    ".find('a')",
    ".title()",
    ".splitlines()",
    ".join(messages)",
    ".isdigit()",
    ".format(1, 2)",
    ".center(3)",
    ".zfill(3)",
    ".partition('a')",
    ".index('zz')",
    ".pop()",
    ".append(1)",
    "(",
    ")",
    "[",
    "]",
    ",",
    ":",
    "+",
    "-",
    "*",
    "/",
    "//",
    "%",
    "**",
    "~",
    "==",
    "!=",
    "<",
    ">=",
    "not",
    "and",
    "or",
    "is",
    "is defined",
    "is none",
    "is string",
    "is mapping",
    "is iterable",
    "is divisibleby(0)",
    "0",
    "1",
    "-1",
    "2",
    "3",
    "0.5",
    "1e308",
    "none",
    "None",
    "true",
    "False",
    "'x'",
    "\"y\"",
    "'\\n'",
    "'<|eot_id|>'",
    "'<|start_header_id|>'",
    "'<|im_start|>'",
    "'<|im_end|>'",
    "'\u{E000}'",
    "'\u{E001}'",
    "{}",
    "{'a': 1}",
    "[]",
    "[1, 2]",
    "'a' * 3",
    "'ab'[5]",
    "'ab'[::-1]",
    "1 / 0",
    "1 // 0",
    "1 % 0",
    "2 ** 64",
    "Hello ",
    "é😀",
    "\u{E000}",
    "<|eot_id|>",
    "{% for message in messages %}",
    "{% endfor %}",
    "{% if add_generation_prompt %}",
    "{% endif %}",
    "{{ message['content'] }}",
    "{{ message['role'] }}",
    "{{ '<|eot_id|>' }}",
    "{{ bos_token }}",
    "{{ eos_token }}",
    "{% set ns = namespace(found=false) %}",
    "{% for m in messages recursive %}{{ loop(messages) }}{% endfor %}",
    "{% macro f(a) %}{{ f(a) }}{% endmacro %}{{ f(1) }}",
    "{% for i in range(3) %}{% for j in range(3) %}{{ i * j }}{% endfor %}{% endfor %}",
    "{{ messages | tojson }}",
    "{{ raise_exception('no system role') }}",
];

fn random_template() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(select(FRAGMENTS), 0..32),
        any::<bool>(),
    )
        .prop_map(|(parts, spaced)| parts.join(if spaced { " " } else { "" }))
}

/// Special tokens as a template sees them (a random subset of the usual ones, odd values too).
fn specials() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map(
        select(vec!["bos_token", "eos_token", "pad_token", "unk_token"]),
        select(vec![
            "<|begin_of_text|>",
            "<|eot_id|>",
            "<|im_start|>",
            "<|im_end|>",
            "<|end_of_text|>",
            "",
            "not a token",
            "\u{E000}",
        ]),
        0..4,
    )
    .prop_map(|m| m.into_iter().map(|(k, v)| (k.into(), v.into())).collect())
}

/// Compiles `text` through every entry point that takes a template and renders `msgs` with it.
fn compile_and_render(
    text: String,
    tok: &Tokenizer,
    tok_dir: &str,
    specials: BTreeMap<String, String>,
    eos: Vec<u32>,
    msgs: &[Message],
) {
    let source = TemplateSource {
        text: text.clone(),
        origin: "fragments.jinja".into(),
    };
    if let Ok(t) = ChatTemplate::from_jinja(&source, tok, specials, eos) {
        exercise(&t, tok, msgs);
        let dir = Scratch::new();
        let _ = t.save_files(&dir.0);
    }
    let dir = Scratch::new();
    let file = dir.write("template.jinja", &text);
    if let Ok(t) = ChatTemplate::load(&TemplateChoice::File(file), Some(&fixture(tok_dir)), tok) {
        exercise(&t, tok, msgs);
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn random_templates_compile_and_render_or_fail_cleanly(
        text in random_template(),
        tok_dir in select(TOKENIZER_DIRS),
        specials in specials(),
        eos in prop::collection::vec(0u32..2000, 0..3),
        msgs in conversation(),
    ) {
        let tok = tokenizer(tok_dir);
        within(move || compile_and_render(text, &tok, tok_dir, specials, eos, &msgs));
    }
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn mutated_fixture_templates_compile_and_render_or_fail_cleanly(
        base in any::<Index>(),
        inserts in prop::collection::vec((any::<Index>(), select(FRAGMENTS)), 0..4),
        bytes in byte_edits(),
        tok_dir in select(TOKENIZER_DIRS),
        specials in specials(),
        msgs in conversation(),
    ) {
        let mut text = base.get(jinja_templates()).clone();
        for (at, piece) in &inserts {
            let mut p = at.index(text.len() + 1);
            while !text.is_char_boundary(p) {
                p -= 1;
            }
            text.insert_str(p, piece);
        }
        let text = String::from_utf8_lossy(&apply_bytes(text.into_bytes(), &bytes)).into_owned();
        let tok = tokenizer(tok_dir);
        within(move || compile_and_render(text, &tok, tok_dir, specials, vec![], &msgs));
    }
}

// ------------------------------------------------------------------------------------------------
// tokenizer.json
// ------------------------------------------------------------------------------------------------

fn read_tokenizer(path: &Path) {
    if let Ok(tok) = Tokenizer::from_file(path) {
        let _ = tok.vocab_size();
        if let Ok(ids) = tok.encode("Hello <|im_end|> wörld") {
            let _ = tok.decode(&ids, false);
            let _ = tok.decode(&ids, true);
        }
        let _ = tok.decode(&[0, 1, 5, 700, 100_000, u32::MAX], false);
        let _ = tok.pad_id();
        let _ = tok.to_json(false);
    }
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn tokenizer_json_survives_arbitrary_bytes(
        bytes in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        within(move || {
            let dir = Scratch::new();
            read_tokenizer(&dir.write("tokenizer.json", &bytes));
        });
    }

    #[test]
    fn tokenizer_json_survives_mutations(
        json in json_edits(),
        bytes in byte_edits(),
    ) {
        static TEXT: OnceLock<String> = OnceLock::new();
        let text = TEXT.get_or_init(|| fixture_text("templates/chatml/tokenizer.json"));
        let data = mutated(text, &json, &bytes);
        within(move || {
            let dir = Scratch::new();
            read_tokenizer(&dir.write("tokenizer.json", &data));
        });
    }
}

// ------------------------------------------------------------------------------------------------
// Regressions: inputs the properties found.
// ------------------------------------------------------------------------------------------------

/// `{%-%}` (found by `random_templates_compile_and_render_or_fail_cleanly`) and `{%}` made the
/// `{% generation %}` rewriting slice a tag backwards (`jinja::rewrite_generation_tags`): a
/// panic while compiling the template. Both are template syntax errors.
#[test]
fn lone_whitespace_control_and_overlapping_block_tags_are_template_errors() {
    let tok = tokenizer("templates/llama3.0");
    for text in [
        "{%-%}",
        "{%+%}",
        "{%}",
        "{%-}",
        "a{%}b",
        "{% if true %}x{%-%}{% endif %}",
    ] {
        let source = TemplateSource {
            text: text.into(),
            origin: "regression.jinja".into(),
        };
        let result = ChatTemplate::from_jinja(&source, &tok, BTreeMap::new(), vec![]);
        assert!(
            matches!(result, Err(kiln_data::Error::Template { .. })),
            "{text:?}: {result:?}"
        );
    }
    // The whitespace controls of generation tags still parse on both sides.
    let source = TemplateSource {
        text: "{% for m in messages %}{{ m.content }}{%- generation -%} {{ '<|eot_id|>' }} {%- endgeneration -%}{% endfor %}".into(),
        origin: "regression.jinja".into(),
    };
    let mut specials = BTreeMap::new();
    specials.insert("eos_token".to_string(), "<|eot_id|>".to_string());
    let t = ChatTemplate::from_jinja(&source, &tok, specials, vec![]).unwrap();
    assert_eq!(
        t.render(&[Message::assistant("x")], false).unwrap(),
        "x<|eot_id|>"
    );
}

/// A namespace that holds itself made the `tojson` filter recurse until the stack overflowed
/// (`jinja::write_py_json`; found while adding cycle-making fragments to the properties): the
/// process aborted. It is now a template error, like Python's "Circular reference detected".
#[test]
fn tojson_of_a_value_that_contains_itself_is_a_template_error() {
    let tok = tokenizer("templates/llama3.0");
    let mut specials = BTreeMap::new();
    specials.insert("eos_token".to_string(), "<|eot_id|>".to_string());
    for text in [
        "{% set ns = namespace(a=1) %}{% set ns.me = ns %}{{ ns | tojson }}",
        "{% set ns = namespace(a=1) %}{% set ns.me = [ns] %}{{ ns | tojson(indent=2) }}",
    ] {
        let source = TemplateSource {
            text: text.into(),
            origin: "regression.jinja".into(),
        };
        let (tok, specials) = (tok.clone(), specials.clone());
        let result = within(move || {
            ChatTemplate::from_jinja(&source, &tok, specials, vec![])
                .map(|_| ())
                .map_err(|e| e.to_string())
        });
        let err = result.unwrap_err();
        assert!(err.contains("circular reference"), "{text:?}: {err}");
    }
}

/// Templates that ran for minutes (a loop over 10^10 steps, `slice` into 10^12 lists) or aborted
/// the process on a failed allocation (`indent` / `tojson(indent=...)` of 10^12 spaces, a
/// string `replace` into 10^12 bytes) before renderings were given fuel (`jinja::TEMPLATE_FUEL`,
/// `jinja::MAX_TOJSON_INDENT`): each is now a template error within the time limit.
#[test]
fn runaway_templates_are_template_errors() {
    let tok = tokenizer("templates/llama3.0");
    let mut specials = BTreeMap::new();
    specials.insert("eos_token".to_string(), "<|eot_id|>".to_string());
    for text in [
        "{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}",
        "{{ [1, 2] | slice(1000000000000) | list }}",
        "{{ 'x\ny' | indent(1000000000000) }}",
        "{{ [1] | tojson(indent=1000000000000) }}",
        "{% set s = 'a' * 1000000 %}{{ s.replace('', s) }}",
        "{% macro f(n) %}{{ f(n) }}{{ f(n) }}{% endmacro %}{{ f(1) }}",
    ] {
        let source = TemplateSource {
            text: text.into(),
            origin: "regression.jinja".into(),
        };
        let (tok, specials) = (tok.clone(), specials.clone());
        let result =
            within(move || ChatTemplate::from_jinja(&source, &tok, specials, vec![]).map(|_| ()));
        assert!(
            matches!(result, Err(kiln_data::Error::Template { .. })),
            "{text:?}: {result:?}"
        );
    }
}

/// A `tokenizer.json` whose vocabulary has an id near `u32::MAX` loaded, and then
/// `Tokenizer::to_json` (tokenizers walks every id up to the largest) overflowed `u32::MAX + 1`
/// (a panic in debug builds), or for an id like 4e9 ran for minutes filling memory. Found by
/// `tokenizer_json_survives_mutations` (`PROPTEST_CASES=3000`): loading now rejects ids above
/// `kiln_data::tokenizer::MAX_TOKEN_ID`, naming the token.
#[test]
fn token_ids_near_u32_max_are_load_errors() {
    let text = fixture_text("templates/chatml/tokenizer.json");
    let v: Value = serde_json::from_str(&text).unwrap();
    let first = v["model"]["vocab"]
        .as_object()
        .unwrap()
        .keys()
        .next()
        .unwrap()
        .clone();
    for id in [u64::from(u32::MAX), 4_000_000_000, 1 << 24] {
        let mut v = v.clone();
        v["model"]["vocab"][first.as_str()] = serde_json::json!(id);
        let json = v.to_string();
        let err = within(move || {
            let dir = Scratch::new();
            let from_file = Tokenizer::from_file(dir.write("tokenizer.json", &json)).map(|_| ());
            (from_file, Tokenizer::from_json_str(&json).map(|_| ()))
        });
        for result in [err.0, err.1] {
            let msg = result.unwrap_err().to_string();
            assert!(msg.contains(&id.to_string()), "{msg}");
        }
    }
    let mut v = v;
    v["model"]["vocab"][first.as_str()] = serde_json::json!((1 << 24) - 1);
    let tok = Tokenizer::from_json_str(&v.to_string()).unwrap();
    assert!(tok.to_json(false).is_ok());
}

/// tokenizers 0.23 panics on some malformed `tokenizer.json` files instead of failing: a
/// `decoder` value with a JSON error inside (`1e999`, a lone surrogate, nesting beyond serde's
/// limit) hits `expect("Helper")` in its decoder deserializer, and a
/// `model.continuing_subword_prefix` longer than a merge's token underflows
/// (`bpe/model.rs`). Found by `tokenizer_json_survives_mutations`; `Tokenizer::from_file` /
/// `from_json_str` now catch the panic and return a load error naming the file.
#[test]
fn tokenizers_crate_panics_are_load_errors() {
    let text = fixture_text("templates/chatml/tokenizer.json");
    let mut v: Value = serde_json::from_str(&text).unwrap();
    v["decoder"] = Value::String(MARK.into());
    let marked = v.to_string();
    let nested = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let mut inputs: Vec<String> = ["1e999", "\"\\ud800\"", nested.as_str(), "{\"type\": 1e999}"]
        .iter()
        .map(|raw| marked.replacen(&format!("\"{MARK}\""), raw, 1))
        .collect();
    let mut v: Value = serde_json::from_str(&text).unwrap();
    v["model"]["continuing_subword_prefix"] = serde_json::json!("<|im_end|>");
    inputs.push(v.to_string());
    for json in inputs {
        let (from_file, from_str) = within(move || {
            let dir = Scratch::new();
            let path = dir.write("tokenizer.json", &json);
            (
                Tokenizer::from_file(&path).map(|_| ()),
                Tokenizer::from_json_str(&json).map(|_| ()),
            )
        });
        for result in [from_file, from_str] {
            assert!(
                matches!(&result, Err(kiln_data::Error::TokenizerLoad { message, .. }) if message.contains("panicked")),
                "{result:?}"
            );
        }
    }
}

//! JSON Lines stage files of every record kind, JSON files (`atomic::read_json`) and `--messages` files.

use super::*;

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
        g.finish_reasons = vec![
            kiln_data::FinishReason::StopToken,
            kiln_data::FinishReason::Length,
        ];
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

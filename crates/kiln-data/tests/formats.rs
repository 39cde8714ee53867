//! Round trips of every stage format through the atomic writer and the streaming reader, and
//! malformed input errors naming file, line and field.
#![cfg(test)]

use std::path::PathBuf;

use kiln_data::{
    AnnotatedRecord, Content, Error, FinishReason, GenerationRecord, JsonlReader, JsonlWriter,
    Message, PairRecord, PromptRecord, RankedRecord, SftRecord, read_jsonl, write_jsonl,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let p = std::env::temp_dir().join(format!("kiln-data-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(
    name: &str,
    records: Vec<T>,
) {
    let dir = TempDir::new(name);
    let path = dir.file("stage.jsonl");
    assert_eq!(write_jsonl(&path, &records).unwrap(), records.len());
    let back: Vec<T> = read_jsonl(&path).unwrap();
    assert_eq!(back, records);
    // One record per line, no temporary file left behind.
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), records.len());
    assert_eq!(std::fs::read_dir(&dir.0).unwrap().count(), 1);
}

fn conv() -> Vec<Message> {
    vec![
        Message::system("Be brief."),
        Message::user("What colour is the sky?"),
    ]
}

#[test]
fn prompts_round_trip() {
    round_trip(
        "prompts",
        vec![
            PromptRecord::text("What is 2 plus 2?"),
            PromptRecord::messages(conv()),
        ],
    );
}

#[test]
fn prompt_keys_are_accepted_and_exclusive() {
    let dir = TempDir::new("prompt-keys");
    let path = dir.file("p.jsonl");
    std::fs::write(
        &path,
        "{\"prompt\": \"hi\"}\n\n{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}]}\n\
         {\"context_messages\": [{\"role\": \"user\", \"content\": \"b\"}], \"extra\": 1}\n",
    )
    .unwrap();
    let recs: Vec<PromptRecord> = read_jsonl(&path).unwrap();
    assert_eq!(recs[0].prompt, Content::Text("hi".into()));
    assert_eq!(recs[1].prompt, Content::Messages(vec![Message::user("a")]));
    assert_eq!(recs[2].prompt, Content::Messages(vec![Message::user("b")]));
    // Text prompts write `prompt`, message lists write `messages`.
    let line = serde_json::to_string(&recs[2]).unwrap();
    assert_eq!(line, r#"{"messages":[{"role":"user","content":"b"}]}"#);

    std::fs::write(&path, "{\"prompt\": \"x\", \"messages\": []}\n").unwrap();
    let err = read_jsonl::<PromptRecord>(&path).unwrap_err().to_string();
    assert!(
        err.contains("p.jsonl:1:") && err.contains("only one of"),
        "{err}"
    );
    std::fs::write(&path, "{\"prompt\": \"x\"}\n{\"other\": 1}\n").unwrap();
    let err = read_jsonl::<PromptRecord>(&path).unwrap_err().to_string();
    assert!(
        err.contains("p.jsonl:2:") && err.contains("`prompt`"),
        "{err}"
    );
}

#[test]
fn generations_round_trip() {
    round_trip(
        "gens",
        vec![
            GenerationRecord::new("q".into(), vec!["a".into(), "b \n".into()]),
            GenerationRecord {
                prompt: Content::Messages(conv()),
                responses: vec!["x".into(), "y".into()],
                finish_reasons: vec![FinishReason::Stop, FinishReason::Length],
            },
        ],
    );
}

#[test]
fn annotated_round_trip_and_non_finite_rewards() {
    round_trip(
        "annotated",
        vec![AnnotatedRecord {
            prompt: "q".into(),
            responses: vec!["a".into(), "b".into()],
            rewards: vec![0.25, -1.5e-3],
        }],
    );
    // NaN / inf are written as null and come back as NaN.
    let dir = TempDir::new("annotated-nan");
    let path = dir.file("a.jsonl");
    let rec = AnnotatedRecord {
        prompt: "q".into(),
        responses: vec!["a".into(), "b".into(), "c".into()],
        rewards: vec![1.0, f64::NAN, f64::INFINITY],
    };
    write_jsonl(&path, [&rec]).unwrap();
    assert!(
        std::fs::read_to_string(&path)
            .unwrap()
            .contains("[1.0,null,null]")
    );
    let back: Vec<AnnotatedRecord> = read_jsonl(&path).unwrap();
    assert_eq!(back[0].rewards[0], 1.0);
    assert!(back[0].rewards[1].is_nan() && back[0].rewards[2].is_nan());
}

/// Rewards and margins survive a write/read bit for bit (serde_json's `float_roundtrip`): a value
/// one ulp off could change a tie decision in pair selection after a resume.
#[test]
fn floats_round_trip_exactly() {
    let awkward = [
        1.0906249887193553,
        0.1 + 0.2,
        -2.2250738585072014e-308,
        1e300 / 3.0,
        std::f64::consts::PI,
        -0.355_087_087_518_768_4,
    ];
    round_trip(
        "floats",
        vec![AnnotatedRecord {
            prompt: Content::Text("p".into()),
            responses: vec!["r".into(); awkward.len()],
            rewards: awkward.to_vec(),
        }],
    );
    let dir = TempDir::new("floats-bits");
    let path = dir.file("a.jsonl");
    write_jsonl(
        &path,
        &[AnnotatedRecord {
            prompt: Content::Text("p".into()),
            responses: vec!["r".into(); awkward.len()],
            rewards: awkward.to_vec(),
        }],
    )
    .unwrap();
    let back: Vec<AnnotatedRecord> = read_jsonl(&path).unwrap();
    for (a, b) in awkward.iter().zip(&back[0].rewards) {
        assert_eq!(a.to_bits(), b.to_bits(), "{a} came back as {b}");
    }
}

#[test]
fn pairs_round_trip_strings_and_messages() {
    round_trip(
        "pairs",
        vec![
            PairRecord {
                prompt: "q".into(),
                chosen: "good".into(),
                rejected: "bad".into(),
                margin: Some(0.5),
            },
            PairRecord {
                prompt: Content::Messages(conv()),
                chosen: Content::Messages(vec![Message::assistant("Blue.")]),
                rejected: Content::Messages(vec![Message::assistant("Green.")]),
                margin: None,
            },
        ],
    );
    round_trip(
        "ranked",
        vec![RankedRecord {
            prompt: "q".into(),
            responses: vec!["a".into(), "b".into()],
            rewards: vec![2.0, 1.0],
        }],
    );
}

#[test]
fn sft_round_trip() {
    let mut m = conv();
    m.push(Message::assistant("Blue."));
    round_trip("sft", vec![SftRecord { messages: m }]);
}

fn write(dir: &TempDir, text: &str) -> PathBuf {
    let p = dir.file("bad.jsonl");
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn malformed_inputs_name_file_line_and_field() {
    let dir = TempDir::new("malformed");
    let good = r#"{"prompt": "q", "responses": ["a"], "rewards": [1.0]}"#;

    // Bad JSON on line 3 (line 2 blank).
    let p = write(&dir, &format!("{good}\n\n{{\"prompt\": \"q\", \n"));
    let err = read_jsonl::<AnnotatedRecord>(&p).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Record {
                line: 3,
                field: None,
                ..
            }
        ),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("bad.jsonl:3:") && msg.contains("invalid JSON"),
        "{msg}"
    );

    // Missing field.
    let p = write(
        &dir,
        &format!("{good}\n{{\"prompt\": \"q\", \"responses\": [\"a\"]}}\n"),
    );
    let msg = read_jsonl::<AnnotatedRecord>(&p).unwrap_err().to_string();
    assert!(
        msg.contains("bad.jsonl:2:") && msg.contains("missing field `rewards`"),
        "{msg}"
    );

    // Wrong type of a nested element: the field path names it.
    let p = write(
        &dir,
        r#"{"prompt": "q", "responses": ["a", 3], "rewards": [1.0, 2.0]}"#,
    );
    let err = read_jsonl::<AnnotatedRecord>(&p).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("bad.jsonl:1:") && msg.contains("field `responses[1]`"),
        "{msg}"
    );
    assert!(msg.contains("invalid type"), "{msg}");

    // Wrong type of a top-level field.
    let p = write(
        &dir,
        r#"{"prompt": "q", "responses": "a", "rewards": [1.0]}"#,
    );
    let msg = read_jsonl::<AnnotatedRecord>(&p).unwrap_err().to_string();
    assert!(msg.contains("field `responses`"), "{msg}");

    // Unknown role inside a message list.
    let p = write(&dir, r#"{"messages": [{"role": "robot", "content": "x"}]}"#);
    let msg = read_jsonl::<SftRecord>(&p).unwrap_err().to_string();
    assert!(
        msg.contains("bad.jsonl:1:") && msg.contains("messages[0].role") && msg.contains("robot"),
        "{msg}"
    );

    // Prompt neither string nor message list.
    let p = write(&dir, r#"{"prompt": 5, "chosen": "a", "rejected": "b"}"#);
    let msg = read_jsonl::<PairRecord>(&p).unwrap_err().to_string();
    assert!(
        msg.contains("field `prompt`") && msg.contains("string or a list"),
        "{msg}"
    );

    // Trailing garbage after the object.
    let p = write(&dir, &format!("{good} x\n"));
    let msg = read_jsonl::<AnnotatedRecord>(&p).unwrap_err().to_string();
    assert!(
        msg.contains("bad.jsonl:1:") && msg.contains("invalid JSON"),
        "{msg}"
    );

    // Empty file and blank-only file.
    let p = write(&dir, "");
    let err = read_jsonl::<SftRecord>(&p).unwrap_err();
    assert!(matches!(err, Error::EmptyFile { line: 1, .. }));
    assert!(err.to_string().contains("bad.jsonl:1: empty file"), "{err}");
    let p = write(&dir, "\n\n  \n");
    let msg = read_jsonl::<SftRecord>(&p).unwrap_err().to_string();
    assert!(msg.contains("bad.jsonl:3: empty file"), "{msg}");
    let none: Vec<SftRecord> = JsonlReader::open(&p)
        .unwrap()
        .allow_empty(true)
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(none.is_empty());

    // Missing file.
    let msg = read_jsonl::<SftRecord>(dir.file("nope.jsonl"))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("nope.jsonl"), "{msg}");
}

#[test]
fn reader_streams_and_keeps_going_after_an_error() {
    let text = "{\"messages\": []}\nnot json\n{\"messages\": []}\n";
    let reader = JsonlReader::<SftRecord, _>::from_reader("mem.jsonl", text.as_bytes());
    let results: Vec<_> = reader.collect();
    assert_eq!(results.len(), 3);
    assert!(results[0].is_ok() && results[2].is_ok());
    assert!(
        results[1]
            .as_ref()
            .unwrap_err()
            .to_string()
            .starts_with("mem.jsonl:2:")
    );
}

#[test]
fn unfinished_writer_leaves_no_file() {
    let dir = TempDir::new("writer");
    let path = dir.file("out.jsonl");
    std::fs::write(&path, "{\"messages\": []}\n").unwrap();
    {
        let mut w = JsonlWriter::<SftRecord>::create(&path).unwrap();
        w.write(&SftRecord { messages: conv() }).unwrap();
        assert_eq!(w.records(), 1);
        // dropped without finish(): simulates a crash mid-stage
    }
    // The old complete file is untouched and no temporary file remains.
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "{\"messages\": []}\n"
    );
    assert_eq!(std::fs::read_dir(&dir.0).unwrap().count(), 1);
    let mut w = JsonlWriter::<SftRecord>::create(&path).unwrap();
    w.write(&SftRecord { messages: conv() }).unwrap();
    assert_eq!(w.finish().unwrap(), 1);
    assert_eq!(read_jsonl::<SftRecord>(&path).unwrap()[0].messages, conv());
}

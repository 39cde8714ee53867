//! `tokenizer.json`, arbitrary and mutated.

use super::*;

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

//! `config.json` (`DecoderConfig`) and PEFT's `adapter_config.json` (`AdapterConfig`), arbitrary and mutated.

use super::checkpoints::load_causal_lm;
use super::*;

fn model_configs() -> &'static [String] {
    static CONFIGS: OnceLock<Vec<String>> = OnceLock::new();
    CONFIGS.get_or_init(|| {
        let mut v: Vec<String> = ["tied", "untied-gqa", "reward", "bf16-sharded"]
            .iter()
            .map(|d| fixture_text(&format!("model/{d}/config.json")))
            .collect();
        v.push(fixture_text("sampling/tiny-chat/config.json"));
        v.push(DecoderConfig::llama3_2_1b().to_hf_json("bfloat16"));
        // transformers 5 layout: `rope_parameters`.
        v.push(
            r#"{"vocab_size": 256, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                "num_attention_heads": 4, "num_key_value_heads": 2, "eos_token_id": 2,
                "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0,
                "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}}"#
                .into(),
        );
        v
    })
}

/// Everything one does with a parsed config; only panics matter.
fn use_config(path: &Path) {
    let text = String::from_utf8_lossy(&std::fs::read(path).unwrap()).into_owned();
    let _ = DecoderConfig::from_json_str(&text, path);
    if let Ok(c) = DecoderConfig::from_file(path) {
        let _ = c.validate();
        let _ = c.num_parameters();
        let _ = c.num_key_value_groups();
        let json = c.to_hf_json("float32");
        assert_eq!(DecoderConfig::from_json_str(&json, path).unwrap(), c);
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn config_json_survives_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        within(move || {
            let dir = Scratch::new();
            use_config(&dir.write("config.json", &bytes));
        });
    }

    #[test]
    fn config_json_survives_mutations(base in any::<Index>(), json in json_edits(), bytes in byte_edits()) {
        let text = base.get(model_configs()).clone();
        within(move || {
            let dir = Scratch::new();
            use_config(&dir.write("config.json", mutated(&text, &json, &bytes)));
        });
    }
}

/// The size fields of `config.json`.
const SIZE_KEYS: &[&str] = &[
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "max_position_embeddings",
];

/// A size: small, a power of two, near a power of two, or anything.
fn size_value() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..300,
        (0u32..64).prop_map(|k| 1u64 << k),
        (0u32..64, -2i64..3).prop_map(|(k, d)| (1u64 << k).wrapping_add_signed(d)),
        any::<u64>(),
    ]
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn config_sizes_survive_any_value(
        model in select(vec!["tied", "untied-gqa"]),
        sizes in prop::collection::vec((select(SIZE_KEYS), size_value()), 1..4),
    ) {
        within(move || {
            let mut v: Value =
                serde_json::from_str(&fixture_text(&format!("model/{model}/config.json"))).unwrap();
            for (key, value) in &sizes {
                v[*key] = serde_json::json!(value);
            }
            let dir = Scratch::new();
            use_config(&dir.write("config.json", v.to_string()));
            dir.link("model.safetensors", fixture(&format!("model/{model}/model.safetensors")));
            load_causal_lm(&dir.0);
        });
    }
}

// ------------------------------------------------------------------------------------------------
// adapter_config.json
// ------------------------------------------------------------------------------------------------

fn use_adapter_config(path: &Path) {
    let text = String::from_utf8_lossy(&std::fs::read(path).unwrap()).into_owned();
    let _ = AdapterConfig::from_json_str(&text, path);
    let _ = kiln_model::LoraConfig::from_adapter_config(path);
    if let Ok(c) = AdapterConfig::from_file(path) {
        let back = AdapterConfig::from_json_str(&c.to_json(), path).unwrap();
        assert_eq!(back, c);
    }
}

fn adapter_configs() -> &'static [String] {
    static CONFIGS: OnceLock<Vec<String>> = OnceLock::new();
    CONFIGS.get_or_init(|| {
        ["kiln-clm", "kiln-cls", "peft-clm", "peft-cls"]
            .iter()
            .map(|d| fixture_text(&format!("lora/{d}/adapter_config.json")))
            .collect()
    })
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn adapter_config_survives_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        within(move || {
            let dir = Scratch::new();
            use_adapter_config(&dir.write("adapter_config.json", &bytes));
        });
    }

    #[test]
    fn adapter_config_survives_mutations(base in any::<Index>(), json in json_edits(), bytes in byte_edits()) {
        let text = base.get(adapter_configs()).clone();
        within(move || {
            let dir = Scratch::new();
            use_adapter_config(&dir.write("adapter_config.json", mutated(&text, &json, &bytes)));
        });
    }
}

//! Regressions: inputs the properties found, kept as plain tests.

use super::*;

/// Sizes in `config.json` that pass the per-field checks but whose products overflow: in a debug
/// build `DecoderConfig::num_parameters` and `from_pretrained`'s layer shapes
/// (`num_attention_heads * head_dim`) panicked on the overflow, and a huge `num_hidden_layers`
/// reserved memory for that many layers before reading any (a "capacity overflow" panic, or an
/// aborting allocation failure). Found by `config_sizes_survive_any_value`.
#[test]
fn oversized_configs_are_errors() {
    for (key, value) in [
        ("num_hidden_layers", 1_000_000_000_000_000u64),
        ("num_hidden_layers", u64::MAX),
        ("num_attention_heads", 1 << 32),
        ("hidden_size", 1 << 62),
        ("intermediate_size", u64::MAX),
        ("vocab_size", u64::MAX),
    ] {
        let mut v: Value = serde_json::from_str(&fixture_text("model/tied/config.json")).unwrap();
        v[key] = serde_json::json!(value);
        if key == "num_attention_heads" {
            v["num_key_value_heads"] = serde_json::json!(value);
            v["head_dim"] = serde_json::json!(value);
        }
        let dir = Scratch::new();
        let path = dir.write("config.json", v.to_string());
        let err = DecoderConfig::from_file(&path).unwrap_err().to_string();
        assert!(err.contains("more parameters"), "{key} = {value}: {err}");
        dir.link("model.safetensors", fixture("model/tied/model.safetensors"));
        let device = Default::default();
        assert!(LlamaForCausalLM::<B>::from_pretrained(&dir.0, &device).is_err());
    }
    // Large but countable: a config error is not expected, the checkpoint decides.
    let mut v: Value = serde_json::from_str(&fixture_text("model/tied/config.json")).unwrap();
    v["num_hidden_layers"] = serde_json::json!(10_000_000_000u64);
    let dir = Scratch::new();
    dir.write("config.json", v.to_string());
    dir.link("model.safetensors", fixture("model/tied/model.safetensors"));
    let err = LlamaForCausalLM::<B>::from_pretrained(&dir.0, &Default::default())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("model.layers.2."), "{err}");
    let c = DecoderConfig {
        vocab_size: usize::MAX,
        ..DecoderConfig::llama3_8b()
    };
    assert_eq!(c.num_parameters(), usize::MAX);
}

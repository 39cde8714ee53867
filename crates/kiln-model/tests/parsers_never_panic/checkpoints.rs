//! Safetensors files, sharded checkpoints, and whole loads of a fixture directory with one file mutated.

use super::*;

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn safetensors_survive_arbitrary_bytes(
        bytes in prop::collection::vec(any::<u8>(), 0..256),
        len in header_len(),
    ) {
        within(move || {
            let dir = Scratch::new();
            // Raw bytes, and the same bytes behind a chosen header length.
            read_every_tensor(CheckpointReader::open_file(dir.write("raw.safetensors", &bytes)));
            let n = match len {
                HeaderLen::Exact => bytes.len() as u64,
                HeaderLen::Off(d) => (bytes.len() as i64 + d).max(0) as u64,
                HeaderLen::Value(v) => v,
            };
            let mut framed = n.to_le_bytes().to_vec();
            framed.extend_from_slice(&bytes);
            dir.write("model.safetensors", &framed);
            read_every_tensor(CheckpointReader::open(&dir.0));
        });
    }

    #[test]
    fn safetensors_survive_mutations(base in any::<Index>(), m in st_mutation()) {
        let file = mutate_safetensors(safetensors_fixture(&base), &m);
        within(move || {
            let dir = Scratch::new();
            dir.write("model.safetensors", &file);
            read_every_tensor(CheckpointReader::open_file(dir.0.join("model.safetensors")));
            read_every_tensor(CheckpointReader::open(&dir.0));
        });
    }
}

const SHARDS: &[&str] = &[
    "model-00001-of-00004.safetensors",
    "model-00002-of-00004.safetensors",
    "model-00003-of-00004.safetensors",
    "model-00004-of-00004.safetensors",
];

proptest! {
    #![proptest_config(config(96))]

    #[test]
    fn sharded_checkpoints_survive_mutations(
        index_edit in prop::option::of((json_edits(), byte_edits())),
        shard in any::<Index>(),
        m in st_mutation(),
    ) {
        within(move || {
            let dir = Scratch::new();
            let index = fixture_text("model/bf16-sharded/model.safetensors.index.json");
            let index = match &index_edit {
                Some((json, bytes)) => mutated(&index, json, bytes),
                None => index.into_bytes(),
            };
            dir.write("model.safetensors.index.json", index);
            let broken = shard.index(SHARDS.len());
            for (i, name) in SHARDS.iter().enumerate() {
                let rel = format!("model/bf16-sharded/{name}");
                if i == broken && index_edit.is_none() {
                    dir.write(name, mutate_safetensors(&fixture_bytes(&rel), &m));
                } else {
                    dir.link(name, fixture(&rel));
                }
            }
            read_every_tensor(CheckpointReader::open(&dir.0));
        });
    }
}

// ------------------------------------------------------------------------------------------------
// Whole loads: a fixture directory with one file mutated.
// ------------------------------------------------------------------------------------------------

pub(super) fn load_causal_lm(dir: &Path) {
    let device = Default::default();
    let _ = LlamaForCausalLM::<B>::from_pretrained(dir, &device);
}

fn load_reward_model(dir: &Path) {
    let device = Default::default();
    let _ = LlamaForSequenceClassification::<B>::from_pretrained(
        dir,
        &device,
        MissingScore::Init { std: 0.02 },
    );
    let _ = LlamaForSequenceClassification::<B>::from_pretrained(dir, &device, MissingScore::Error);
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn from_pretrained_survives_a_mutated_config(
        model in select(vec!["tied", "untied-gqa", "reward"]),
        json in json_edits(),
        bytes in byte_edits(),
    ) {
        within(move || {
            let dir = Scratch::new();
            let config = fixture_text(&format!("model/{model}/config.json"));
            dir.write("config.json", mutated(&config, &json, &bytes));
            dir.link("model.safetensors", fixture(&format!("model/{model}/model.safetensors")));
            if model == "reward" {
                load_reward_model(&dir.0);
            } else {
                load_causal_lm(&dir.0);
            }
        });
    }

    #[test]
    fn from_pretrained_survives_mutated_weights(
        model in select(vec!["tied", "reward"]),
        m in st_mutation(),
    ) {
        within(move || {
            let dir = Scratch::new();
            dir.link("config.json", fixture(&format!("model/{model}/config.json")));
            let weights = fixture_bytes(&format!("model/{model}/model.safetensors"));
            dir.write("model.safetensors", mutate_safetensors(&weights, &m));
            if model == "reward" {
                load_reward_model(&dir.0);
            } else {
                load_causal_lm(&dir.0);
            }
        });
    }
}

/// The base models the adapter fixtures were trained on, loaded once.
fn base_causal_lm() -> LlamaForCausalLM<B> {
    static MODEL: OnceLock<std::sync::Mutex<LlamaForCausalLM<B>>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let m =
                LlamaForCausalLM::from_pretrained(fixture("model/untied-gqa"), &Default::default());
            std::sync::Mutex::new(m.unwrap())
        })
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
}

fn base_reward_model() -> LlamaForSequenceClassification<B> {
    static MODEL: OnceLock<std::sync::Mutex<LlamaForSequenceClassification<B>>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let m = LlamaForSequenceClassification::from_pretrained(
                fixture("model/reward"),
                &Default::default(),
                MissingScore::Error,
            );
            std::sync::Mutex::new(m.unwrap())
        })
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn load_adapter_survives_mutated_adapters(
        adapter in select(vec!["kiln-clm", "peft-clm", "kiln-cls", "peft-cls"]),
        config_edit in prop::option::of((json_edits(), byte_edits())),
        m in st_mutation(),
    ) {
        let causal = adapter.ends_with("clm");
        let (lm, rm) = if causal {
            (Some(base_causal_lm()), None)
        } else {
            (None, Some(base_reward_model()))
        };
        within(move || {
            let dir = Scratch::new();
            let rel = format!("lora/{adapter}");
            match &config_edit {
                Some((json, bytes)) => {
                    let text = fixture_text(&format!("{rel}/adapter_config.json"));
                    dir.write("adapter_config.json", mutated(&text, json, bytes));
                    dir.link("adapter_model.safetensors", fixture(&format!("{rel}/adapter_model.safetensors")));
                }
                None => {
                    dir.link("adapter_config.json", fixture(&format!("{rel}/adapter_config.json")));
                    let weights = fixture_bytes(&format!("{rel}/adapter_model.safetensors"));
                    dir.write("adapter_model.safetensors", mutate_safetensors(&weights, &m));
                }
            }
            let device = Default::default();
            if let Some(lm) = lm {
                let _ = lm.load_adapter(&dir.0, &device);
            }
            if let Some(rm) = rm {
                let _ = rm.load_adapter(&dir.0, &device);
            }
        });
    }
}

//! Round trips, merging and save rules on random tiny models; bad adapters get clear errors.

use super::*;
use kiln_model::prelude::*;

#[test]
fn random_adapter_round_trip_merge_and_save_rules() {
    let device = Default::default();
    let cfg = DecoderConfig::tiny(64, 32);
    let lcfg = LoraConfig::new(LoraTarget::ALL.to_vec())
        .with_rank(3)
        .with_alpha(7.0);
    let base = LlamaForCausalLM::<B>::init_seeded(&cfg, 0.1, 5, &device);
    let ids: Tensor<B, 2, Int> =
        Tensor::from_data([[1, 5, 9, 13, 17, 21], [0, 0, 4, 8, 12, 16]], &device);
    let mask: Tensor<B, 2, Int> =
        Tensor::from_data([[1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1]], &device);
    let mut lm = base.clone().with_lora(&lcfg, &device).unwrap();
    perturb_b(&mut lm.model, 3);
    let out = to_vec(lm.forward(ids.clone(), Some(mask.clone())).unwrap());
    let base_out = to_vec(base.forward(ids.clone(), Some(mask.clone())).unwrap());
    assert!(out != base_out);

    let dir = tmp_dir("lora-roundtrip");
    lm.save_adapter(&dir).unwrap();
    let back = base.clone().load_adapter(&dir, &device).unwrap();
    for (a, b) in adapters(&lm.model).iter().zip(adapters(&back.model)) {
        assert_eq!(to_vec(a.lora_a.val()), to_vec(b.lora_a.val()));
        assert_eq!(to_vec(a.lora_b.val()), to_vec(b.lora_b.val()));
    }
    assert!(to_vec(back.forward(ids.clone(), Some(mask.clone())).unwrap()) == out);

    // An adapter model cannot be saved as a plain checkpoint by accident.
    let err = lm
        .save_pretrained(tmp_dir("lora-plain"), SaveOptions::default())
        .unwrap_err();
    assert!(matches!(err, Error::AdaptersPresent { .. }), "{err}");
    assert!(err.to_string().contains("merge_adapters"), "{err}");
    let err = base.save_adapter(tmp_dir("lora-none")).unwrap_err();
    assert!(matches!(err, Error::NoAdapters { .. }), "{err}");
    let err = lm.clone().with_lora(&lcfg, &device).unwrap_err();
    assert!(matches!(err, Error::InvalidLora(_)), "{err}");
    let err = base
        .clone()
        .with_lora(&lcfg.clone().with_rank(0), &device)
        .unwrap_err();
    assert!(matches!(err, Error::InvalidLora(_)), "{err}");

    let merged = lm.merge_adapters();
    let e = max_err_where(
        &to_vec(merged.forward(ids, Some(mask)).unwrap()),
        &out,
        64,
        |_| true,
    );
    assert!(e <= TOL, "merged vs unmerged {e}");
    let dir = tmp_dir("lora-merged-plain");
    merged
        .save_pretrained(
            &dir,
            SaveOptions {
                dtype: SaveDtype::F32,
                ..Default::default()
            },
        )
        .unwrap();
    let reloaded = LlamaForCausalLM::<B>::from_pretrained(&dir, &device).unwrap();
    assert_eq!(param_ids(&reloaded).len(), param_ids(&base).len());
}

// ---------------------------------------------------------------------------------------------
// Bad adapters
// ---------------------------------------------------------------------------------------------

fn copy_adapter(name: &str, to: &str) -> PathBuf {
    let d = tmp_dir(to);
    for f in ["adapter_config.json", "adapter_model.safetensors"] {
        std::fs::copy(lora_fixture(name).join(f), d.join(f)).unwrap();
    }
    d
}

fn edit_config(dir: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let p = dir.join("adapter_config.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(&p, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

/// Rewrites the weights file with `edit` applied to its `(name, shape, f32 values)` list.
fn edit_weights(dir: &Path, edit: impl FnOnce(&mut Vec<(String, Vec<usize>, Vec<f32>)>)) {
    let p = dir.join("adapter_model.safetensors");
    let t = read_tensors(&p);
    let mut list: Vec<(String, Vec<usize>, Vec<f32>)> = t
        .into_iter()
        .map(|(k, (s, v))| (k, s, v.into_iter().map(|x| x as f32).collect()))
        .collect();
    edit(&mut list);
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = list
        .into_iter()
        .map(|(k, s, v)| (k, s, v.iter().flat_map(|x| x.to_le_bytes()).collect()))
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = bytes
        .iter()
        .map(|(k, s, b)| {
            (
                k.clone(),
                safetensors::tensor::TensorView::new(Dtype::F32, s.clone(), b).unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, &p).unwrap();
}

#[test]
fn adapter_for_another_base_names_the_module_and_both_shapes() {
    // `tied` has 4 KV heads: its k_proj is 64 -> 64, the adapter's lora_B is [32, 4].
    let tied =
        LlamaForCausalLM::<B>::from_pretrained(fixture("tied"), &Default::default()).unwrap();
    let err = tied
        .load_adapter(lora_fixture("peft-clm"), &Default::default())
        .unwrap_err();
    match &err {
        Error::AdapterShapeMismatch {
            module,
            tensor,
            expected,
            found,
            ..
        } => {
            assert_eq!(module, "model.layers.0.self_attn.k_proj");
            assert_eq!(tensor, "lora_B.weight");
            assert_eq!(
                (expected.as_slice(), found.as_slice()),
                ([64, 4].as_slice(), [32, 4].as_slice())
            );
        }
        other => panic!("unexpected error {other}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("model.layers.0.self_attn.k_proj")
            && msg.contains("[32, 4]")
            && msg.contains("[64, 4]"),
        "{msg}"
    );

    // A rank that differs from the config's `r`.
    let d = copy_adapter("peft-clm", "lora-bad-rank");
    edit_config(&d, |v| v["r"] = 8.into());
    let err = base_lm().load_adapter(&d, &Default::default()).unwrap_err();
    assert!(
        matches!(&err, Error::AdapterShapeMismatch { module, .. } if module == "model.layers.0.self_attn.q_proj"),
        "{err}"
    );
}

#[test]
fn unknown_or_missing_adapter_keys_are_named() {
    let device = Default::default();
    let d = copy_adapter("peft-clm", "lora-extra-key");
    let extra = "base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector";
    edit_weights(&d, |l| l.push((extra.into(), vec![64], vec![1.0; 64])));
    let err = base_lm().load_adapter(&d, &device).unwrap_err();
    assert!(
        matches!(&err, Error::UnknownAdapterKey { key, .. } if key == extra),
        "{err}"
    );
    assert!(err.to_string().contains(extra), "{err}");

    // A layer the base model does not have.
    let d = copy_adapter("peft-clm", "lora-extra-layer");
    let deep = lora_key(5, LoraTarget::Q, false);
    edit_weights(&d, |l| l.push((deep.clone(), vec![4, 64], vec![0.0; 256])));
    let err = base_lm().load_adapter(&d, &device).unwrap_err();
    assert!(
        matches!(&err, Error::UnknownAdapterKey { key, .. } if *key == deep),
        "{err}"
    );

    // A module that is not in target_modules.
    let d = copy_adapter("peft-clm", "lora-untargeted");
    edit_config(&d, |v| {
        v["target_modules"] = serde_json::json!(["q_proj", "v_proj"])
    });
    let err = base_lm().load_adapter(&d, &device).unwrap_err();
    assert!(
        matches!(&err, Error::UnknownAdapterKey { key, .. } if !key.contains("q_proj") && !key.contains("v_proj")),
        "{err}"
    );

    // A missing lora_B.
    let d = copy_adapter("peft-clm", "lora-missing-b");
    let gone = lora_key(1, LoraTarget::Down, true);
    edit_weights(&d, |l| l.retain(|(k, _, _)| *k != gone));
    let err = base_lm().load_adapter(&d, &device).unwrap_err();
    assert!(
        matches!(&err, Error::MissingTensor { tensor, .. } if *tensor == gone),
        "{err}"
    );
}

#[test]
fn bad_adapter_configs_and_missing_files_are_named() {
    let device = Default::default();
    let d = copy_adapter("peft-clm", "lora-ia3");
    edit_config(&d, |v| v["peft_type"] = "IA3".into());
    let err = base_lm().load_adapter(&d, &device).unwrap_err();
    assert!(
        matches!(&err, Error::UnsupportedPeftType { found, .. } if found == "IA3"),
        "{err}"
    );
    assert!(err.to_string().contains("adapter_config.json"), "{err}");

    let d = copy_adapter("peft-clm", "lora-bad-target");
    edit_config(&d, |v| {
        v["target_modules"] = serde_json::json!(["q_proj", "qkv_proj"])
    });
    let err = base_lm().load_adapter(&d, &device).unwrap_err();
    assert!(
        matches!(&err, Error::UnknownLoraTarget { name, .. } if name == "qkv_proj"),
        "{err}"
    );
    assert!(
        err.to_string().contains("gate_proj, up_proj, down_proj"),
        "{err}"
    );

    let d = copy_adapter("peft-clm", "lora-dora");
    edit_config(&d, |v| v["use_dora"] = true.into());
    let err = base_lm().load_adapter(&d, &device).unwrap_err();
    assert!(
        matches!(&err, Error::UnsupportedAdapterOption { key, .. } if key == "use_dora"),
        "{err}"
    );

    // A reward-model adapter on a causal LM, and the other way round.
    let err = base_lm()
        .load_adapter(lora_fixture("peft-cls"), &device)
        .unwrap_err();
    assert!(
        matches!(&err, Error::AdapterTaskType { found, expected, .. } if found == "SEQ_CLS" && expected == "CAUSAL_LM"),
        "{err}"
    );
    let err = base_rm()
        .load_adapter(lora_fixture("peft-clm"), &device)
        .unwrap_err();
    assert!(matches!(&err, Error::AdapterTaskType { .. }), "{err}");

    let d = tmp_dir("lora-empty");
    let err = base_lm().load_adapter(&d, &device).unwrap_err();
    assert!(
        matches!(&err, Error::Io { path, .. } if path.ends_with("adapter_config.json")),
        "{err}"
    );
    std::fs::copy(
        lora_fixture("peft-clm/adapter_config.json"),
        d.join("adapter_config.json"),
    )
    .unwrap();
    let err = base_lm().load_adapter(&d, &device).unwrap_err();
    assert!(
        matches!(&err, Error::Io { path, .. } if path.ends_with("adapter_model.safetensors")),
        "{err}"
    );
}

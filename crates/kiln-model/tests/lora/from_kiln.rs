//! Kiln -> PEFT: the committed Kiln-made adapters must be exactly what Kiln writes today.

use super::*;
use kiln_model::prelude::*;

/// Sets every adapter (and, with `score`, the score head) to deterministic values.
fn deterministic_adapters<Bk: Backend>(m: &mut kiln_model::LlamaModel<Bk>, cfg: &LoraConfig) {
    let mut s = 2024u64;
    for layer in &mut m.layers {
        for &t in &cfg.targets {
            let proj = layer.projection_mut(t);
            let [d_in, d_out] = proj.dims();
            let device = proj.base.weight.device();
            let r = cfg.rank;
            let a = det_values(&mut s, d_in * r, 1.0 / (d_in as f32).sqrt());
            let b = det_values(&mut s, r * d_out, 0.1);
            proj.lora = Some(cfg.adapter_from(
                Tensor::from_data(TensorData::new(a, [d_in, r]), &device),
                Tensor::from_data(TensorData::new(b, [r, d_out]), &device),
            ));
        }
    }
}

fn update_fixtures() -> bool {
    std::env::var_os("KILN_UPDATE_LORA_FIXTURES").is_some()
}

fn write_expected(path: &Path, key: &str, shape: Vec<usize>, values: &[f32]) {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let view = safetensors::tensor::TensorView::new(Dtype::F32, shape, &bytes).unwrap();
    safetensors::serialize_to_file([(key, view)], None, path).unwrap();
}

/// Saves the adapter to a temp dir and checks the committed fixture holds the same bytes (or
/// rewrites the fixture with `KILN_UPDATE_LORA_FIXTURES=1`); checks / writes Kiln's outputs.
fn check_kiln_fixture(
    name: &str,
    save: impl Fn(&Path),
    key: &str,
    shape: Vec<usize>,
    got: &[f32],
    valid: impl Fn(usize) -> bool,
    inner: usize,
) {
    let fixture_dir = lora_fixture(name);
    let tmp = tmp_dir(&format!("lora-{name}"));
    save(&tmp);
    if update_fixtures() {
        std::fs::create_dir_all(&fixture_dir).unwrap();
        for f in ["adapter_config.json", "adapter_model.safetensors"] {
            std::fs::copy(tmp.join(f), fixture_dir.join(f)).unwrap();
        }
        write_expected(
            &fixture_dir.join("kiln_expected.safetensors"),
            key,
            shape,
            got,
        );
        eprintln!("rewrote {}", fixture_dir.display());
    }
    for f in ["adapter_config.json", "adapter_model.safetensors"] {
        let (a, b) = (
            std::fs::read(tmp.join(f)).unwrap(),
            std::fs::read(fixture_dir.join(f)).unwrap(),
        );
        assert!(
            a == b,
            "{name}/{f}: Kiln no longer writes the committed adapter (rerun with KILN_UPDATE_LORA_FIXTURES=1 and scripts/make_lora_fixtures.py check)"
        );
    }
    let want = expected(&fixture_dir.join("kiln_expected.safetensors"), key);
    let e = max_err_where(got, &want, inner, valid);
    assert!(
        e <= TOL,
        "{name}: Kiln's outputs moved by {e} since the fixture was written"
    );
}

#[test]
fn kiln_made_causal_lm_adapter_matches_the_committed_fixture() {
    let device = Default::default();
    let inp = inputs();
    let cfg = LoraConfig::new(vec![
        LoraTarget::Q,
        LoraTarget::V,
        LoraTarget::O,
        LoraTarget::Gate,
        LoraTarget::Down,
    ])
    .with_rank(2)
    .with_alpha(5.0)
    .with_dropout(0.1)
    .with_base_model_name_or_path(Some("tests/fixtures/model/untied-gqa".into()));
    let mut lm = base_lm().with_lora(&cfg, &device).unwrap();
    deterministic_adapters(&mut lm.model, &cfg);
    let logits = lm.forward(inp.ids.clone(), Some(inp.mask.clone())).unwrap();
    let shape = logits.dims().to_vec();
    let got = to_vec(logits);
    let m = inp.mask_vec.clone();
    check_kiln_fixture(
        "kiln-clm",
        |d| lm.save_adapter(d).unwrap(),
        "logits",
        shape,
        &got,
        |p| m[p] == 1,
        256,
    );

    // The committed adapter loads back exactly.
    let back = base_lm()
        .load_adapter(lora_fixture("kiln-clm"), &device)
        .unwrap();
    assert_eq!(back.lora_config(), Some(&cfg));
    let again = to_vec(
        back.forward(inp.ids.clone(), Some(inp.mask.clone()))
            .unwrap(),
    );
    assert!(again == got, "save -> load round trip is exact");

    let merged = lm.merge_adapters();
    let e = logits_err(
        &to_vec(
            merged
                .forward(inp.ids.clone(), Some(inp.mask.clone()))
                .unwrap(),
        ),
        &got,
        &inp,
        256,
    );
    eprintln!("Kiln merge vs unmerged forward (CAUSAL_LM): max |logits err| = {e:.3e}");
    assert!(e <= TOL);
    merged
        .save_pretrained(
            merged_dir("kiln-clm"),
            SaveOptions {
                dtype: SaveDtype::F32,
                ..Default::default()
            },
        )
        .unwrap();
}

#[test]
fn kiln_made_reward_adapter_matches_the_committed_fixture() {
    let device = Default::default();
    let inp = inputs();
    let cfg = LoraConfig::new(vec![LoraTarget::K, LoraTarget::Up])
        .with_rank(4)
        .with_alpha(6.0)
        .with_use_rslora(true);
    let mut rm = base_rm().with_lora(&cfg, &device).unwrap();
    deterministic_adapters(&mut rm.model, &cfg);
    let mut s = 99u64;
    let w = det_values(&mut s, 64, 0.2);
    let w = rm.score.weight.val() + Tensor::from_data(TensorData::new(w, [64, 1]), &device);
    rm.score.weight = Param::initialized(rm.score.weight.id, w);
    let scores = rm.forward(inp.ids.clone(), Some(inp.mask.clone())).unwrap();
    let shape = scores.dims().to_vec();
    let got = to_vec(scores);
    check_kiln_fixture(
        "kiln-cls",
        |d| rm.save_adapter(d).unwrap(),
        "scores",
        shape,
        &got,
        |_| true,
        1,
    );

    let back = base_rm()
        .load_adapter(lora_fixture("kiln-cls"), &device)
        .unwrap();
    assert_eq!(
        to_vec(back.score.weight.val()),
        to_vec(rm.score.weight.val())
    );
    assert!(
        to_vec(
            back.forward(inp.ids.clone(), Some(inp.mask.clone()))
                .unwrap()
        ) == got
    );

    let merged = rm.merge_adapters();
    let e = max_err_where(
        &to_vec(merged.forward(inp.ids, Some(inp.mask)).unwrap()),
        &got,
        1,
        |_| true,
    );
    eprintln!("Kiln merge vs unmerged forward (SEQ_CLS): max |score err| = {e:.3e}");
    assert!(e <= TOL);
    merged
        .save_pretrained(
            merged_dir("kiln-cls"),
            SaveOptions {
                dtype: SaveDtype::F32,
                ..Default::default()
            },
        )
        .unwrap();
}

//! LoRA: step 0 equals the base, gradients only for adapters, PEFT-format round trips, parity with
//! `peft` on committed fixtures (made by `scripts/make_lora_fixtures.py`), merging, and errors.
#![allow(clippy::print_stderr)]

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::backend::{Autodiff, Flex};
use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use common::{B, fixture, max_err_where, tmp_dir, to_vec};
use kiln_model::lora::{LoraAdapter, lora_key};
use kiln_model::{
    Error, LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification, LoraConfig, LoraTarget,
    MissingScore, SaveDtype, SaveOptions,
};
use safetensors::{Dtype, SafeTensors};

type A = Autodiff<Flex>;

const TOL: f32 = 1e-5;

fn lora_fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/lora")
        .join(name)
}

/// Where merged checkpoints go; `scripts/make_lora_fixtures.py check` reloads them in
/// transformers.
fn merged_dir(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("kiln-model/lora-merged")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn read_tensors(path: &Path) -> HashMap<String, (Vec<usize>, Vec<f64>)> {
    let bytes = std::fs::read(path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(k, v)| {
            let vals = match v.dtype() {
                Dtype::F32 => v
                    .data()
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64)
                    .collect(),
                Dtype::I64 => v
                    .data()
                    .chunks_exact(8)
                    .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f64)
                    .collect(),
                d => panic!("unexpected dtype {d:?}"),
            };
            (k, (v.shape().to_vec(), vals))
        })
        .collect()
}

struct Inputs {
    ids: Tensor<B, 2, Int>,
    mask: Tensor<B, 2, Int>,
    mask_vec: Vec<i64>,
}

fn inputs() -> Inputs {
    let t = read_tensors(&lora_fixture("inputs.safetensors"));
    let int = |k: &str| {
        let (shape, v) = &t[k];
        let v: Vec<i64> = v.iter().map(|&x| x as i64).collect();
        (shape.clone(), v)
    };
    let (shape, ids) = int("input_ids");
    let (_, mask) = int("attention_mask");
    let device = Default::default();
    Inputs {
        ids: Tensor::from_data(TensorData::new(ids, shape.clone()), &device),
        mask: Tensor::from_data(TensorData::new(mask.clone(), shape), &device),
        mask_vec: mask,
    }
}

fn expected(path: &Path, key: &str) -> Vec<f32> {
    read_tensors(path)[key]
        .1
        .iter()
        .map(|&x| x as f32)
        .collect()
}

fn logits_err(got: &[f32], want: &[f32], inp: &Inputs, vocab: usize) -> f32 {
    max_err_where(got, want, vocab, |p| inp.mask_vec[p] == 1)
}

fn base_lm() -> LlamaForCausalLM<B> {
    LlamaForCausalLM::from_pretrained(fixture("untied-gqa"), &Default::default()).unwrap()
}

fn base_rm() -> LlamaForSequenceClassification<B> {
    LlamaForSequenceClassification::from_pretrained(
        fixture("reward"),
        &Default::default(),
        MissingScore::Error,
    )
    .unwrap()
}

// ---------------------------------------------------------------------------------------------
// Step 0, gradients, freezing
// ---------------------------------------------------------------------------------------------

#[test]
fn step_zero_equals_the_base_bit_for_bit() {
    let device = Default::default();
    let inp = inputs();
    let cfg = LoraConfig::new(LoraTarget::ALL.to_vec())
        .with_rank(4)
        .with_alpha(16.0);

    let base = base_lm();
    let want = to_vec(base.forward(inp.ids.clone(), Some(inp.mask.clone())));
    let lora = base.with_lora(&cfg, &device).unwrap();
    assert!(lora.has_adapters());
    assert_eq!(lora.lora_config(), Some(&cfg));
    // 2 layers x (q 64x64, k 64x32, v 64x32, o 64x64, gate/up 64x128, down 128x64), r = 4.
    assert_eq!(
        lora.num_adapter_params(),
        2 * 4 * (2 * 128 + 2 * 96 + 3 * 192)
    );
    let got = to_vec(lora.forward(inp.ids.clone(), Some(inp.mask.clone())));
    assert!(got == want, "B = 0 must leave the logits bit-identical");

    // The adapters really are attached: A follows PEFT's Kaiming bound, B is zero.
    let l0 = &lora.model.layers[0];
    let q = l0.self_attn.q_proj.lora.as_ref().unwrap();
    let a = to_vec(q.lora_a.val());
    let bound = 1.0 / 64f32.sqrt();
    assert!(a.iter().all(|x| x.abs() <= bound) && a.iter().any(|&x| x != 0.0));
    assert!(to_vec(q.lora_b.val()).iter().all(|&x| x == 0.0));
    assert_eq!(q.scaling, 4.0);

    let rm = base_rm();
    let want = to_vec(rm.forward(inp.ids.clone(), Some(inp.mask.clone())));
    let rm = rm
        .with_lora(&cfg.clone().with_use_rslora(true), &device)
        .unwrap();
    assert_eq!(
        rm.model.layers[1]
            .mlp
            .down_proj
            .lora
            .as_ref()
            .unwrap()
            .scaling,
        8.0
    );
    let got = to_vec(rm.forward(inp.ids, Some(inp.mask)));
    assert!(got == want);
}

struct Ids(Vec<(ParamId, usize)>);

impl<Bk: Backend> ModuleVisitor<Bk> for Ids {
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<Bk, D>>) {
        self.0.push((p.id, p.shape().num_elements()));
    }
}

fn param_ids<Bk: Backend, M: Module<Bk>>(m: &M) -> Vec<(ParamId, usize)> {
    let mut v = Ids(Vec::new());
    m.visit(&mut v);
    v.0
}

fn adapters<Bk: Backend>(m: &kiln_model::LlamaModel<Bk>) -> Vec<&LoraAdapter<Bk>> {
    m.layers
        .iter()
        .flat_map(|l| LoraTarget::ALL.map(|t| l.projection(t)))
        .filter_map(|p| p.lora.as_ref())
        .collect()
}

/// Replaces every adapter's `B` (zero after init) by non-zero values so gradients reach `A` too.
fn perturb_b<Bk: Backend>(m: &mut kiln_model::LlamaModel<Bk>, seed: u64) {
    let mut s = seed;
    for layer in &mut m.layers {
        for t in LoraTarget::ALL {
            if let Some(lora) = layer.projection_mut(t).lora.as_mut() {
                let [r, out] = lora.lora_b.dims();
                let device = lora.lora_b.device();
                let b = Tensor::from_data(
                    TensorData::new(det_values(&mut s, r * out, 0.1), [r, out]),
                    &device,
                );
                lora.lora_b = Param::initialized(lora.lora_b.id, b.require_grad());
            }
        }
    }
}

/// Deterministic pseudo-random values in `[-amp, amp]` from an integer hash (no libm, so they
/// are the same on every platform).
fn det_values(state: &mut u64, n: usize, amp: f32) -> Vec<f32> {
    (0..n)
        .map(|_| {
            *state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let u = ((*state >> 33) % 2001) as f32; // 0..=2000
            (u - 1000.0) / 1000.0 * amp
        })
        .collect()
}

#[test]
fn gradients_reach_only_the_adapters_and_the_score_head() {
    let device = Default::default();
    let cfg = LlamaConfig::tiny(64, 32);
    let lcfg = LoraConfig::new(vec![LoraTarget::Q, LoraTarget::V, LoraTarget::Down]).with_rank(2);
    let ids: Tensor<A, 2, Int> =
        Tensor::from_data([[1, 5, 9, 13, 17, 21], [0, 0, 4, 8, 12, 16]], &device);
    let mask: Tensor<A, 2, Int> =
        Tensor::from_data([[1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1]], &device);

    let base = LlamaForCausalLM::<A>::init(&cfg, 0.1, &device);
    let all = param_ids(&base);
    let mut lm = base.with_lora(&lcfg, &device).unwrap();
    perturb_b(&mut lm.model, 7);
    let adapter_ids: Vec<ParamId> = adapters(&lm.model)
        .iter()
        .flat_map(|a| [a.lora_a.id, a.lora_b.id])
        .collect();
    assert_eq!(adapter_ids.len(), 2 * cfg.num_hidden_layers * 3);
    let loss = lm
        .sequence_logprobs(
            ids.clone(),
            Some(mask.clone()),
            mask.clone().float(),
            kiln_model::LogProbReduction::Sum,
        )
        .sum()
        .neg();
    let grads = GradientsParams::from_grads(loss.backward(), &lm);
    assert_eq!(
        grads.len(),
        adapter_ids.len(),
        "gradients only for adapter tensors"
    );
    for id in &adapter_ids {
        let g = grads.get::<Flex, 2>(*id).expect("adapter gradient");
        assert!(to_vec_flex(g).iter().any(|&x| x != 0.0));
    }
    for (id, _) in &all {
        assert!(grads.get::<Flex, 2>(*id).is_none() && grads.get::<Flex, 1>(*id).is_none());
    }

    // The reference (adapters off) tracks nothing: no gradient at all flows through it.
    let reference = lm.without_adapters();
    assert!(!reference.has_adapters());
    let ref_lp = reference.sequence_logprobs(
        ids.clone(),
        Some(mask.clone()),
        mask.clone().float(),
        kiln_model::LogProbReduction::Sum,
    );
    let grads = ref_lp.clone().sum().backward();
    assert_eq!(GradientsParams::from_grads(grads, &reference).len(), 0);

    // The inference copy keeps the adapters; merging makes every parameter trainable again.
    let valid = burn::module::AutodiffModule::valid(&lm);
    assert!(valid.has_adapters());
    assert_eq!(valid.num_adapter_params(), lm.num_adapter_params());
    let merged = lm.clone().merge_adapters();
    let loss = merged
        .sequence_logprobs(
            ids.clone(),
            Some(mask.clone()),
            mask.clone().float(),
            kiln_model::LogProbReduction::Sum,
        )
        .sum();
    let grads = GradientsParams::from_grads(loss.backward(), &merged);
    assert_eq!(
        grads.len(),
        all.len(),
        "a merged model trains like a plain one"
    );

    // Classifier: adapters + score head.
    let rm = LlamaForSequenceClassification::from_causal_lm(
        LlamaForCausalLM::<A>::init(&cfg, 0.1, &device),
        0.1,
    );
    let rm = rm.with_lora(&lcfg, &device).unwrap();
    let scores = rm.forward(ids, Some(mask));
    let grads = GradientsParams::from_grads(scores.sum().backward(), &rm);
    assert_eq!(grads.len(), 2 * cfg.num_hidden_layers * 3 + 1);
    assert!(
        grads.get::<Flex, 2>(rm.score.weight.id).is_some(),
        "score head trains"
    );
}

fn to_vec_flex<const D: usize>(t: Tensor<Flex, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec::<f32>().unwrap()
}

// ---------------------------------------------------------------------------------------------
// PEFT -> Kiln
// ---------------------------------------------------------------------------------------------

#[test]
fn peft_made_causal_lm_adapter_gives_peft_logits() {
    let device = Default::default();
    let inp = inputs();
    let dir = lora_fixture("peft-clm");
    let lm = base_lm().load_adapter(&dir, &device).unwrap();
    let cfg = lm.lora_config().unwrap();
    assert_eq!(cfg.targets, LoraTarget::ALL.to_vec());
    assert_eq!(
        (cfg.rank, cfg.alpha, cfg.dropout, cfg.use_rslora),
        (4, 8.0, 0.05, false)
    );
    let exp = dir.join("expected.safetensors");
    let got = to_vec(lm.forward(inp.ids.clone(), Some(inp.mask.clone())));
    let e = logits_err(&got, &expected(&exp, "logits"), &inp, 256);
    eprintln!("peft -> Kiln (CAUSAL_LM, 7 targets, r 4): max |logits err| = {e:.3e}");
    assert!(e <= TOL, "{e}");

    let base = to_vec(
        lm.without_adapters()
            .forward(inp.ids.clone(), Some(inp.mask.clone())),
    );
    let want_base = to_vec(base_lm().forward(inp.ids.clone(), Some(inp.mask.clone())));
    assert!(
        base == want_base,
        "without_adapters computes the base exactly"
    );

    let merged = lm.merge_adapters();
    assert!(!merged.has_adapters());
    let got = to_vec(merged.forward(inp.ids.clone(), Some(inp.mask.clone())));
    let e = logits_err(&got, &expected(&exp, "merged_logits"), &inp, 256);
    eprintln!("peft -> Kiln, merged in Kiln vs PEFT merge_and_unload: max |logits err| = {e:.3e}");
    assert!(e <= TOL, "{e}");
    merged
        .save_pretrained(
            merged_dir("peft-clm"),
            SaveOptions {
                dtype: SaveDtype::F32,
                ..Default::default()
            },
        )
        .unwrap();
}

#[test]
fn peft_made_reward_adapter_gives_peft_scores() {
    let device = Default::default();
    let inp = inputs();
    let dir = lora_fixture("peft-cls");
    let before = to_vec(base_rm().score.weight.val());
    let rm = base_rm().load_adapter(&dir, &device).unwrap();
    let cfg = rm.lora_config().unwrap();
    assert!(cfg.use_rslora);
    assert_ne!(
        to_vec(rm.score.weight.val()),
        before,
        "the saved score head is loaded"
    );
    let exp = dir.join("expected.safetensors");
    let got = to_vec(rm.forward(inp.ids.clone(), Some(inp.mask.clone())));
    let e = max_err_where(&got, &expected(&exp, "scores"), 1, |_| true);
    eprintln!("peft -> Kiln (SEQ_CLS, rsLoRA, score head): max |score err| = {e:.3e}");
    assert!(e <= TOL, "{e}");
    let merged = rm.merge_adapters();
    let got = to_vec(merged.forward(inp.ids, Some(inp.mask)));
    let e = max_err_where(&got, &expected(&exp, "merged_scores"), 1, |_| true);
    eprintln!("peft -> Kiln (SEQ_CLS), merged: max |score err| = {e:.3e}");
    assert!(e <= TOL, "{e}");
    merged
        .save_pretrained(
            merged_dir("peft-cls"),
            SaveOptions {
                dtype: SaveDtype::F32,
                ..Default::default()
            },
        )
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// Kiln -> PEFT: the committed Kiln-made adapters must be exactly what Kiln writes today
// ---------------------------------------------------------------------------------------------

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
    let logits = lm.forward(inp.ids.clone(), Some(inp.mask.clone()));
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
    let again = to_vec(back.forward(inp.ids.clone(), Some(inp.mask.clone())));
    assert!(again == got, "save -> load round trip is exact");

    let merged = lm.merge_adapters();
    let e = logits_err(
        &to_vec(merged.forward(inp.ids.clone(), Some(inp.mask.clone()))),
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
    let scores = rm.forward(inp.ids.clone(), Some(inp.mask.clone()));
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
    assert!(to_vec(back.forward(inp.ids.clone(), Some(inp.mask.clone()))) == got);

    let merged = rm.merge_adapters();
    let e = max_err_where(
        &to_vec(merged.forward(inp.ids, Some(inp.mask))),
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

// ---------------------------------------------------------------------------------------------
// Round trips, merging and state on random tiny models
// ---------------------------------------------------------------------------------------------

#[test]
fn random_adapter_round_trip_merge_and_save_rules() {
    let device = Default::default();
    let cfg = LlamaConfig::tiny(64, 32);
    let lcfg = LoraConfig::new(LoraTarget::ALL.to_vec())
        .with_rank(3)
        .with_alpha(7.0);
    let base = LlamaForCausalLM::<B>::init(&cfg, 0.1, &device);
    let ids: Tensor<B, 2, Int> =
        Tensor::from_data([[1, 5, 9, 13, 17, 21], [0, 0, 4, 8, 12, 16]], &device);
    let mask: Tensor<B, 2, Int> =
        Tensor::from_data([[1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1]], &device);
    let mut lm = base.clone().with_lora(&lcfg, &device).unwrap();
    perturb_b(&mut lm.model, 3);
    let out = to_vec(lm.forward(ids.clone(), Some(mask.clone())));
    let base_out = to_vec(base.forward(ids.clone(), Some(mask.clone())));
    assert!(out != base_out);

    let dir = tmp_dir("lora-roundtrip");
    lm.save_adapter(&dir).unwrap();
    let back = base.clone().load_adapter(&dir, &device).unwrap();
    for (a, b) in adapters(&lm.model).iter().zip(adapters(&back.model)) {
        assert_eq!(to_vec(a.lora_a.val()), to_vec(b.lora_a.val()));
        assert_eq!(to_vec(a.lora_b.val()), to_vec(b.lora_b.val()));
    }
    assert!(to_vec(back.forward(ids.clone(), Some(mask.clone()))) == out);

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
    let e = max_err_where(&to_vec(merged.forward(ids, Some(mask))), &out, 64, |_| true);
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

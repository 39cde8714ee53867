//! PEFT -> Kiln: adapters made by `peft` give PEFT's logits and scores.

use super::*;
use kiln_model::prelude::*;

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
    let got = to_vec(lm.forward(inp.ids.clone(), Some(inp.mask.clone())).unwrap());
    let e = logits_err(&got, &expected(&exp, "logits"), &inp, 256);
    eprintln!("peft -> Kiln (CAUSAL_LM, 7 targets, r 4): max |logits err| = {e:.3e}");
    assert!(e <= TOL, "{e}");

    let base = to_vec(
        lm.without_adapters()
            .forward(inp.ids.clone(), Some(inp.mask.clone()))
            .unwrap(),
    );
    let want_base = to_vec(
        base_lm()
            .forward(inp.ids.clone(), Some(inp.mask.clone()))
            .unwrap(),
    );
    assert!(
        base == want_base,
        "without_adapters computes the base exactly"
    );

    let merged = lm.merge_adapters();
    assert!(!merged.has_adapters());
    let got = to_vec(
        merged
            .forward(inp.ids.clone(), Some(inp.mask.clone()))
            .unwrap(),
    );
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
    let got = to_vec(rm.forward(inp.ids.clone(), Some(inp.mask.clone())).unwrap());
    let e = max_err_where(&got, &expected(&exp, "scores"), 1, |_| true);
    eprintln!("peft -> Kiln (SEQ_CLS, rsLoRA, score head): max |score err| = {e:.3e}");
    assert!(e <= TOL, "{e}");
    let merged = rm.merge_adapters();
    let got = to_vec(merged.forward(inp.ids, Some(inp.mask)).unwrap());
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

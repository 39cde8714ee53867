//! Step 0 equals the base, gradients reach only the adapters (and the score head), freezing.

use super::*;
use kiln_model::prelude::*;

#[test]
fn step_zero_equals_the_base_bit_for_bit() {
    let device = Default::default();
    let inp = inputs();
    let cfg = LoraConfig::new(LoraTarget::ALL.to_vec())
        .with_rank(4)
        .with_alpha(16.0);

    let base = base_lm();
    let want = to_vec(
        base.forward(inp.ids.clone(), Some(inp.mask.clone()))
            .unwrap(),
    );
    let lora = base.with_lora(&cfg, &device).unwrap();
    assert!(lora.has_adapters());
    assert_eq!(lora.lora_config(), Some(&cfg));
    // 2 layers x (q 64x64, k 64x32, v 64x32, o 64x64, gate/up 64x128, down 128x64), r = 4.
    assert_eq!(
        lora.num_adapter_params(),
        2 * 4 * (2 * 128 + 2 * 96 + 3 * 192)
    );
    let got = to_vec(
        lora.forward(inp.ids.clone(), Some(inp.mask.clone()))
            .unwrap(),
    );
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
    let want = to_vec(rm.forward(inp.ids.clone(), Some(inp.mask.clone())).unwrap());
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
    let got = to_vec(rm.forward(inp.ids, Some(inp.mask)).unwrap());
    assert!(got == want);
}

#[test]
fn gradients_reach_only_the_adapters_and_the_score_head() {
    let device = Default::default();
    let cfg = DecoderConfig::tiny(64, 32);
    let lcfg = LoraConfig::new(vec![LoraTarget::Q, LoraTarget::V, LoraTarget::Down]).with_rank(2);
    let ids: Tensor<A, 2, Int> =
        Tensor::from_data([[1, 5, 9, 13, 17, 21], [0, 0, 4, 8, 12, 16]], &device);
    let mask: Tensor<A, 2, Int> =
        Tensor::from_data([[1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1]], &device);

    let base = LlamaForCausalLM::<A>::init_seeded(&cfg, 0.1, 3, &device);
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
        .unwrap()
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
    let ref_lp = reference
        .sequence_logprobs(
            ids.clone(),
            Some(mask.clone()),
            mask.clone().float(),
            kiln_model::LogProbReduction::Sum,
        )
        .unwrap();
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
        .unwrap()
        .sum();
    let grads = GradientsParams::from_grads(loss.backward(), &merged);
    assert_eq!(
        grads.len(),
        all.len(),
        "a merged model trains like a plain one"
    );

    // Classifier: adapters + score head.
    let rm = LlamaForSequenceClassification::from_causal_lm(
        LlamaForCausalLM::<A>::init_seeded(&cfg, 0.1, 4, &device),
        0.1,
    );
    let rm = rm.with_lora(&lcfg, &device).unwrap();
    let scores = rm.forward(ids, Some(mask)).unwrap();
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

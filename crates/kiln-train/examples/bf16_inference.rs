//! bf16 inference on a real checkpoint: logits / log-prob drift of Kiln bf16 against Kiln f32
//! and transformers (f32, bf16 eager, bf16 sdpa) on the same tokens, and the speed and peak heap
//! memory of scoring and greedy decoding in f32 and bf16.
//!
//! ```text
//! python scripts/make_bf16_fixtures.py --real F32_DIR BF16_DIR HF_LOGITS   # once, transformers
//! cargo run --release -p kiln-train --example bf16_inference -- F32_DIR BF16_DIR HF_LOGITS
//! ```
//! (SmolLM2-135M-Instruct: `models/SmolLM2-135M-Instruct`, its bf16 copy and the logits file
//! the script writes.) Scoring: sequence log-probs of 4 x 128 tokens (64 counted); decoding: a
//! 32-token prompt, then 32 greedy steps with the KV cache, batch 1 and 4.
// A measurement binary: it fails loudly on a broken setup.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::print_stdout)]

#[path = "common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::time::Instant;

use burn::backend::Flex;
use burn::tensor::{Int, Tensor, TensorData};
use kiln_model::prelude::*;
use kiln_model::{LlamaForCausalLM, LoadDtype, LoadOptions, LogProbReduction};
use peak_alloc::PeakAlloc;
use safetensors::SafeTensors;

#[global_allocator]
static ALLOC: PeakAlloc = PeakAlloc;

type B = Flex;

fn vals<const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .expect("f32 data")
}

/// (max, mean) |a - b| over the entries whose row position is a real token.
fn err(a: &[f32], b: &[f32], inner: usize, valid: &dyn Fn(usize) -> bool) -> (f32, f64) {
    let (mut max, mut sum, mut n) = (0f32, 0f64, 0usize);
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        if valid(i / inner) {
            let e = (x - y).abs();
            max = max.max(e);
            sum += e as f64;
            n += 1;
        }
    }
    (max, sum / n.max(1) as f64)
}

fn argmax_agreement(a: &[f32], b: &[f32], vocab: usize, valid: &dyn Fn(usize) -> bool) -> f64 {
    let am = |r: &[f32]| {
        r.iter()
            .enumerate()
            .max_by(|x, y| x.1.total_cmp(y.1))
            .map_or(0, |(i, _)| i)
    };
    let (mut same, mut n) = (0, 0);
    for (p, (x, y)) in a.chunks(vocab).zip(b.chunks(vocab)).enumerate() {
        if valid(p) {
            n += 1;
            same += usize::from(am(x) == am(y));
        }
    }
    same as f64 / n.max(1) as f64
}

/// The transformers outputs by name, the ids, the mask and their `[batch, seq]` shape.
struct HfOutputs {
    floats: HashMap<String, (Vec<usize>, Vec<f32>)>,
    ids: Vec<i64>,
    mask: Vec<i64>,
    shape: [usize; 2],
}

fn read_f32s(path: &str) -> HfOutputs {
    let bytes = std::fs::read(path).expect("HF logits file");
    let st = SafeTensors::deserialize(&bytes).expect("safetensors");
    let mut f = HashMap::new();
    let (mut ids, mut mask, mut shape) = (Vec::new(), Vec::new(), [0, 0]);
    for (k, v) in st.tensors() {
        let d = v.data();
        match k.as_str() {
            "input_ids" | "attention_mask" => {
                let x: Vec<i64> = d
                    .chunks_exact(8)
                    .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                    .collect();
                shape = [v.shape()[0], v.shape()[1]];
                if k == "input_ids" { ids = x } else { mask = x }
            }
            _ => {
                let x = d
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                    .collect();
                f.insert(k, (v.shape().to_vec(), x));
            }
        }
    }
    HfOutputs {
        floats: f,
        ids,
        mask,
        shape,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let f32_dir = args
        .first()
        .map_or("/work/main/models/SmolLM2-135M-Instruct", String::as_str);
    let bf16_dir = args
        .get(1)
        .map_or("/work/models-bf16/SmolLM2-135M-Instruct", String::as_str);
    let hf_file = args.get(2).map_or(
        "/work/models-bf16/smollm2_hf_logits.safetensors",
        String::as_str,
    );
    let device = Default::default();

    let m0 = ALLOC.current_usage();
    let f32_model = LlamaForCausalLM::<B>::from_pretrained(f32_dir, &device).expect("f32 model");
    let f32_bytes = ALLOC.current_usage() - m0;
    let m1 = ALLOC.current_usage();
    ALLOC.reset_peak_usage();
    let bf16_model = LlamaForCausalLM::<B>::from_pretrained_with_options(
        bf16_dir,
        &device,
        LoadOptions::dtype(LoadDtype::BF16),
    )
    .expect("bf16 model");
    let bf16_bytes = ALLOC.current_usage() - m1;
    let bf16_load_peak = ALLOC.peak_usage() - m1;
    println!(
        "weights in memory: f32 {:.0} MiB, bf16 {:.0} MiB (bf16 load peak {:.0} MiB: no f32 copy)",
        common::mib(f32_bytes),
        common::mib(bf16_bytes),
        common::mib(bf16_load_peak)
    );

    // Drift on the tokens the script used.
    let HfOutputs {
        floats: hf,
        ids,
        mask,
        shape: [b, t],
    } = read_f32s(hf_file);
    let ids_t = Tensor::<B, 2, Int>::from_data(TensorData::new(ids.clone(), [b, t]), &device);
    let mask_t = Tensor::<B, 2, Int>::from_data(TensorData::new(mask.clone(), [b, t]), &device);
    let run = |m: &LlamaForCausalLM<B>| {
        (
            vals(m.forward(ids_t.clone(), Some(mask_t.clone())).unwrap()),
            vals(
                m.next_token_logprobs(ids_t.clone(), Some(mask_t.clone()))
                    .unwrap(),
            ),
        )
    };
    let (k32, k32_lp) = run(&f32_model);
    let (k16, k16_lp) = run(&bf16_model);
    let vocab = f32_model.config().vocab_size;
    let real = |p: usize| mask[p] == 1;
    let real_lp = |i: usize| {
        let (r, s) = (i / (t - 1), i % (t - 1));
        mask[r * t + s] == 1 && mask[r * t + s + 1] == 1
    };
    let get = |k: &str| &hf[k].1;
    println!(
        "\n| comparison (SmolLM2-135M, {b} x {t} tokens) | logits max / mean abs | log-prob max / mean abs | same argmax |"
    );
    println!("|---|---|---|---|");
    type Row<'a> = (&'a str, &'a [f32], &'a [f32], &'a [f32], &'a [f32]);
    let rows: Vec<Row> = vec![
        (
            "Kiln f32 vs HF f32",
            &k32,
            get("hf_f32.logits"),
            &k32_lp,
            get("hf_f32.logprobs"),
        ),
        ("Kiln bf16 vs Kiln f32", &k16, &k32, &k16_lp, &k32_lp),
        (
            "Kiln bf16 vs HF bf16 (eager)",
            &k16,
            get("hf_bf16_eager.logits"),
            &k16_lp,
            get("hf_bf16_eager.logprobs"),
        ),
        (
            "Kiln bf16 vs HF bf16 (sdpa)",
            &k16,
            get("hf_bf16_sdpa.logits"),
            &k16_lp,
            get("hf_bf16_sdpa.logprobs"),
        ),
        (
            "HF bf16 (eager) vs HF f32",
            get("hf_bf16_eager.logits"),
            get("hf_f32.logits"),
            get("hf_bf16_eager.logprobs"),
            get("hf_f32.logprobs"),
        ),
        (
            "HF bf16 (sdpa) vs HF bf16 (eager)",
            get("hf_bf16_sdpa.logits"),
            get("hf_bf16_eager.logits"),
            get("hf_bf16_sdpa.logprobs"),
            get("hf_bf16_eager.logprobs"),
        ),
    ];
    for (name, a, b_, lp, lp_b) in rows {
        let (lm, la) = err(a, b_, vocab, &real);
        let (pm, pa) = err(lp, lp_b, 1, &real_lp);
        let agree = argmax_agreement(a, b_, vocab, &real);
        println!(
            "| {name} | {lm:.3} / {la:.4} | {pm:.3} / {pa:.4} | {:.1} % |",
            100.0 * agree
        );
    }

    // Speed and memory.
    println!(
        "\n| workload | dtype | time (s), median (range) of 3 | peak heap above weights (MiB) |"
    );
    println!("|---|---|---|---|");
    for (name, model) in [("f32", &f32_model), ("bf16", &bf16_model)] {
        let pairs = common::random_pairs(2, 128, 64, vocab);
        let rows: Vec<&kiln_data::Example> = pairs.iter().flat_map(|(a, b)| [a, b]).collect();
        let flat: Vec<i64> = rows
            .iter()
            .flat_map(|e| e.ids.iter().map(|&x| x as i64))
            .collect();
        let tm: Vec<f32> = rows
            .iter()
            .flat_map(|e| e.loss_mask.iter().map(|&x| f32::from(u8::from(x))))
            .collect();
        let n = rows.len();
        let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(flat, [n, 128]), &device);
        let target = Tensor::<B, 2>::from_data(TensorData::new(tm, [n, 128]), &device);
        let measure = |label: &str, f: &mut dyn FnMut()| {
            let mut times = Vec::new();
            let before = ALLOC.current_usage();
            ALLOC.reset_peak_usage();
            f(); // warm-up
            for _ in 0..3 {
                let t0 = Instant::now();
                f();
                times.push(t0.elapsed().as_secs_f64());
            }
            let peak = ALLOC.peak_usage() - before;
            println!(
                "| {label} | {name} | {} | {:.0} |",
                common::spread(&times),
                common::mib(peak)
            );
        };
        measure("score 4 x 128 tokens (sequence_logprobs)", &mut || {
            let lp = model
                .sequence_logprobs(ids.clone(), None, target.clone(), LogProbReduction::Sum)
                .unwrap();
            let _ = vals(lp);
        });
        for batch in [1usize, 4] {
            let prompt = ids.clone().narrow(0, 0, batch).narrow(1, 0, 32);
            measure(
                &format!("greedy decode, batch {batch}: 32-token prompt + 32 steps"),
                &mut || {
                    // As kiln-sampling's generator: the head only on each row's last position.
                    let head = model.lm_head_weight();
                    let mut cache = model.new_cache();
                    let mut mask = Tensor::<B, 2, Int>::ones([batch, 32], &device);
                    let last = |h: Tensor<B, 3>| {
                        let [rows, new, d] = h.dims();
                        head.logits(h.narrow(1, new - 1, 1).reshape([rows, d]))
                            .argmax(1)
                            .reshape([rows, 1])
                    };
                    let mut next = last(
                        model
                            .model
                            .forward(prompt.clone(), Some(mask.clone()), Some(&mut cache))
                            .unwrap(),
                    );
                    for _ in 0..32 {
                        mask = Tensor::cat(vec![mask, Tensor::ones([batch, 1], &device)], 1);
                        next = last(
                            model
                                .model
                                .forward(next, Some(mask.clone()), Some(&mut cache))
                                .unwrap(),
                        );
                    }
                    let _ = next.into_data();
                },
            );
        }
    }
}

//! `MetricsLog`: one JSON line per optimiser step with exact values and a fixed key order (TRL's
//! names for DPO), resumes without duplicate steps, restarts truncate, torn lines are dropped,
//! and a step that cannot be logged stops training with the error kept for `finish`.
#![cfg(test)]

use std::path::{Path, PathBuf};

use burn::backend::{Autodiff, Flex};
use burn::module::{AutodiffModule, Param};
use burn::nn::Linear;
use burn::tensor::{ElementConversion, Tensor, TensorData};
use kiln_data::examples::{encode_pair, encode_sft};
use kiln_data::{
    ChatTemplate, Content, Message, PairRecord, SftRecord, Tokenizer, TruncationConfig,
};
use kiln_losses::DpoConfig;
use kiln_model::{DecoderConfig, LlamaForCausalLM};
use kiln_train::dpo::{DpoTrainConfig, precompute_reference_logps, train_dpo};
use kiln_train::sft::{SftTrainConfig, train_sft};
use kiln_train::{Error, MetricsLog, Result, StepLoss, StepStats, TrainConfig, TrainLoop};

type TB = Autodiff<Flex>;

fn scratch(name: &str) -> PathBuf {
    kiln_test_support::scratch(&format!("metrics-log/{name}"))
}

/// A 4 -> 3 Linear with constant weights (no random initialisation).
fn linear() -> Linear<TB> {
    let device = Default::default();
    let w: Vec<f32> = (0..12).map(|i| (i as f32 - 5.5) * 0.1).collect();
    Linear {
        weight: Param::from_tensor(Tensor::from_data(TensorData::new(w, [4, 3]), &device)),
        bias: Some(Param::from_tensor(Tensor::from_data(
            TensorData::new(vec![0.1f32, -0.2, 0.3], [3]),
            &device,
        ))),
    }
}

type Row = ([f32; 4], [f32; 3]);

fn data() -> Vec<Row> {
    (0..8)
        .map(|i| {
            let x = [
                i as f32 * 0.3 - 1.0,
                (i * i) as f32 * 0.05,
                1.0,
                (i % 3) as f32,
            ];
            (x, [x[0] * 2.0 - x[1], x[3] + 0.5, -x[0]])
        })
        .collect()
}

fn mse(model: &Linear<TB>, batch: &[Row]) -> Result<StepLoss<TB>> {
    let device = Default::default();
    let n = batch.len();
    let xs: Vec<f32> = batch.iter().flat_map(|b| b.0).collect();
    let ys: Vec<f32> = batch.iter().flat_map(|b| b.1).collect();
    let x = Tensor::<TB, 2>::from_data(TensorData::new(xs, [n, 4]), &device);
    let y = Tensor::<TB, 2>::from_data(TensorData::new(ys, [n, 3]), &device);
    let err = model.forward(x) - y;
    let abs = err.clone().abs().mean().into_scalar().elem::<f64>();
    Ok(StepLoss::new(err.square().mean())
        .with_metric("mae", abs)
        .with_metric("rows", n as f64))
}

fn train_loop(steps: usize) -> TrainLoop<TB, Linear<TB>> {
    let config = TrainConfig::new(steps)
        .with_lr(0.05)
        .with_warmup_steps(2)
        .with_micro_batch_size(4)
        .with_grad_accum_steps(2)
        .with_log_every(0);
    TrainLoop::new(linear(), config).unwrap()
}

/// Runs `train` until `until` on the fixed data set.
fn fit(train: &mut TrainLoop<TB, Linear<TB>>, until: usize) -> Vec<StepStats> {
    let d = data();
    train
        .fit(
            d.len(),
            until,
            |idx| Ok(idx.iter().map(|&i| d[i]).collect::<Vec<_>>()),
            |m, b| mse(m, b),
        )
        .unwrap()
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn steps(path: &Path) -> Vec<u64> {
    MetricsLog::read(path)
        .unwrap()
        .iter()
        .map(|r| r["step"].as_u64().unwrap())
        .collect()
}

/// Asserts that `line` is a JSON object with exactly `keys`, in this order.
fn assert_keys_in_order(line: &str, keys: &[&str]) {
    let object: serde_json::Map<String, serde_json::Value> = serde_json::from_str(line).unwrap();
    assert_eq!(object.len(), keys.len(), "{line}");
    let positions: Vec<usize> = keys
        .iter()
        .map(|k| {
            line.find(&format!("\"{k}\":"))
                .unwrap_or_else(|| panic!("no key {k} in {line}"))
        })
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "keys not in the order {keys:?}: {line}"
    );
}

#[test]
fn every_step_becomes_one_line_with_exact_values_in_a_fixed_key_order() {
    let path = scratch("lines").join("run/metrics.jsonl");
    let mut train = train_loop(5);
    let log = MetricsLog::open(&path, train.step()).unwrap();
    assert!(
        log.is_empty() && path.exists(),
        "created with its directory"
    );
    train.on_step(log.callback());
    let stats = fit(&mut train, 5);
    log.finish().unwrap();
    assert_eq!((stats.len(), log.len(), log.last_step()), (5, 5, 5));

    let text = lines(&path);
    assert_eq!(text.len(), 5);
    for line in &text {
        assert_keys_in_order(
            line,
            &["step", "loss", "grad_norm", "learning_rate", "mae", "rows"],
        );
    }
    let records = MetricsLog::read(&path).unwrap();
    for (r, s) in records.iter().zip(&stats) {
        assert_eq!(r["step"].as_u64(), Some(s.step as u64));
        // f64 values come back bit for bit.
        assert_eq!(r["loss"].as_f64(), Some(s.loss));
        assert_eq!(r["grad_norm"].as_f64(), Some(s.grad_norm));
        assert_eq!(r["learning_rate"].as_f64(), Some(s.lr));
        assert_eq!(r["mae"].as_f64(), s.metric("mae"));
        assert_eq!(r["rows"].as_f64(), Some(4.0));
    }
    assert_eq!(records[0]["learning_rate"].as_f64(), Some(0.0), "warmup");

    // A hand-made step: a non-finite metric is `null`, an awkward f64 round-trips exactly.
    let odd = StepStats {
        step: 6,
        lr: 0.1 + 0.2,
        loss: 1.0 / 3.0,
        grad_norm: 1e-300,
        metrics: vec![("nan".into(), f64::NAN), ("quote\"d".into(), -0.0)],
    };
    log.log(&odd).unwrap();
    let last = MetricsLog::read(&path).unwrap().pop().unwrap();
    assert_eq!(last["learning_rate"].as_f64(), Some(0.1 + 0.2));
    assert_eq!(last["loss"].as_f64(), Some(1.0 / 3.0));
    assert_eq!(last["grad_norm"].as_f64(), Some(1e-300));
    assert!(last["nan"].is_null());
    assert!(last.contains_key("quote\"d"));
}

#[test]
fn a_resumed_loop_keeps_the_steps_up_to_its_checkpoint_and_appends_without_duplicates() {
    let dir = scratch("resume");
    // The uninterrupted run.
    let clean = dir.join("clean.jsonl");
    let mut train = train_loop(6);
    let log = MetricsLog::open(&clean, 0).unwrap();
    train.on_step(log.callback());
    fit(&mut train, 6);
    log.finish().unwrap();

    // A run that logged steps 1..=5 and was killed; its last checkpoint was at step 3.
    let path = dir.join("metrics.jsonl");
    let mut killed = train_loop(6);
    let log = MetricsLog::open(&path, 0).unwrap();
    killed.on_step(log.callback());
    fit(&mut killed, 5);
    drop((killed, log));
    assert_eq!(steps(&path), [1, 2, 3, 4, 5]);

    // The resumed loop is in the checkpoint's state (step 3): the log keeps 1..=3 and appends.
    let mut resumed = train_loop(6);
    fit(&mut resumed, 3);
    let log = MetricsLog::open(&path, resumed.step()).unwrap();
    assert_eq!((log.len(), log.last_step()), (3, 3));
    assert_eq!(steps(&path), [1, 2, 3]);
    resumed.on_step(log.callback());
    fit(&mut resumed, 6);
    log.finish().unwrap();
    assert_eq!(steps(&path), [1, 2, 3, 4, 5, 6], "no duplicate step");
    assert_eq!(
        lines(&path),
        lines(&clean),
        "the resumed file equals the uninterrupted run's"
    );

    // Logging a step the file already has is refused (nothing written).
    let again = StepStats {
        step: 6,
        lr: 0.0,
        loss: 0.0,
        grad_norm: 0.0,
        metrics: vec![],
    };
    assert!(matches!(log.log(&again), Err(Error::Metrics { .. })));
    assert_eq!(steps(&path), [1, 2, 3, 4, 5, 6]);

    // Resuming past the end keeps everything.
    let log = MetricsLog::open(&path, 100).unwrap();
    assert_eq!((log.len(), log.last_step()), (6, 6));
}

#[test]
fn a_restart_from_step_zero_truncates_the_file() {
    let path = scratch("restart").join("metrics.jsonl");
    for _ in 0..2 {
        let mut train = train_loop(4);
        let log = MetricsLog::open(&path, 0).unwrap();
        assert!(log.is_empty());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
        train.on_step(log.callback());
        fit(&mut train, 4);
        log.finish().unwrap();
        assert_eq!(steps(&path), [1, 2, 3, 4]);
    }
}

#[test]
fn a_torn_last_line_is_dropped_and_a_malformed_line_is_an_error_naming_it() {
    let path = scratch("torn").join("metrics.jsonl");
    let mut train = train_loop(3);
    let log = MetricsLog::open(&path, 0).unwrap();
    train.on_step(log.callback());
    fit(&mut train, 3);
    log.finish().unwrap();
    drop(train);
    let complete = std::fs::read_to_string(&path).unwrap();

    // Killed in the middle of writing step 4's line.
    std::fs::write(&path, format!("{complete}{{\"step\":4,\"lo")).unwrap();
    assert_eq!(steps(&path), [1, 2, 3]);
    let log = MetricsLog::open(&path, 10).unwrap();
    assert_eq!(log.last_step(), 3);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), complete);

    // A broken line that is not the last one is an error naming the file and the line.
    std::fs::write(&path, format!("{{\"step\":1,\"loss\":\n{complete}")).unwrap();
    let err = MetricsLog::open(&path, 10).unwrap_err();
    assert!(matches!(err, Error::Metrics { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("metrics.jsonl") && text.contains("line 1"),
        "{text}"
    );
    let err = MetricsLog::read(&path).unwrap_err().to_string();
    assert!(err.contains("line 1"), "{err}");
    std::fs::write(&path, "{\"loss\":1.0}\n").unwrap();
    let err = MetricsLog::open(&path, 10).unwrap_err().to_string();
    assert!(err.contains("step"), "{err}");
}

#[test]
fn a_step_that_cannot_be_logged_stops_training_and_finish_returns_the_error() {
    let path = scratch("failure").join("metrics.jsonl");
    let mut first = train_loop(6);
    let log = MetricsLog::open(&path, 0).unwrap();
    first.on_step(log.callback());
    fit(&mut first, 4);
    log.finish().unwrap();

    // Wrong use: the log resumes after step 4 but training restarts at step 1.
    let log = MetricsLog::open(&path, 4).unwrap();
    let mut train = train_loop(6);
    let seen = std::rc::Rc::new(std::cell::Cell::new(0));
    let counter = seen.clone();
    train.on_step(log.callback_then(move |_| {
        counter.set(counter.get() + 1);
        std::ops::ControlFlow::Continue(())
    }));
    let stats = fit(&mut train, 6);
    assert_eq!(stats.len(), 1, "training stops after the step that failed");
    assert!(train.stopped_early());
    assert_eq!(
        seen.get(),
        0,
        "the next callback does not see an unlogged step"
    );
    assert!(log.failed());
    let err = log.finish().unwrap_err();
    assert!(
        matches!(err, Error::Metrics { .. }) && err.to_string().contains("step 1"),
        "{err}"
    );
    assert!(
        !log.failed() && log.finish().is_ok(),
        "the error is returned once"
    );
    assert_eq!(steps(&path), [1, 2, 3, 4], "the file is untouched");

    // A metric that reuses a fixed key is refused too.
    let clash = StepStats {
        step: 5,
        lr: 0.0,
        loss: 0.0,
        grad_norm: 0.0,
        metrics: vec![("loss".into(), 1.0)],
    };
    let err = log.log(&clash).unwrap_err().to_string();
    assert!(err.contains("`loss`"), "{err}");
}

/// The built-in tiny tokenizer and template, and a tiny seeded Llama.
fn tiny() -> (Tokenizer, ChatTemplate, u32, LlamaForCausalLM<TB>) {
    let tok = Tokenizer::builtin_tiny().unwrap();
    let template = ChatTemplate::llama3(&tok).unwrap();
    let pad = tok.pad_id().unwrap();
    let mut config = DecoderConfig::tiny(tok.vocab_size(), 32);
    config.pad_token_id = Some(pad);
    let model = LlamaForCausalLM::<TB>::init_seeded(&config, 0.02, 7, &Default::default());
    (tok, template, pad, model)
}

const WORDS: [&str; 4] = ["apple", "river", "stone", "cloud"];

const FIXED: [&str; 4] = ["step", "loss", "grad_norm", "learning_rate"];

#[test]
fn dpo_steps_carry_trl_metric_names_and_sft_steps_their_own() {
    let dir = scratch("trainers");
    let (tok, template, pad, policy) = tiny();
    let trunc = TruncationConfig {
        max_prompt_len: 64,
        max_total_len: 128,
    };
    let pairs: Vec<_> = (0..8)
        .map(|i| {
            let record = PairRecord {
                prompt: Content::Text(format!("Tell me about {}.", WORDS[i % 4])),
                chosen: Content::Text(format!("yes, {} is fine.", WORDS[i % 4])),
                rejected: Content::Text(format!("no, {} is bad.", WORDS[(i + 1) % 4])),
                margin: None,
            };
            encode_pair(&tok, &template, &record, &trunc).unwrap()
        })
        .collect();
    let cfg = DpoTrainConfig::new()
        .with_loss(DpoConfig::new().with_beta(0.1))
        .with_pad_id(Some(pad));
    let reference =
        precompute_reference_logps(&policy.valid(), &pairs, pad, 8, cfg.reduction()).unwrap();
    let tc = TrainConfig::new(3)
        .with_lr(1e-3)
        .with_micro_batch_size(4)
        .with_log_every(0);
    let mut train = TrainLoop::new(policy.clone(), tc.clone()).unwrap();
    let path = dir.join("dpo_metrics.jsonl");
    let log = MetricsLog::open(&path, 0).unwrap();
    train.on_step(log.callback());
    let stats = train_dpo(&mut train, (&pairs, &reference), &cfg).unwrap();
    log.finish().unwrap();
    let trl = [
        "rewards/chosen",
        "rewards/rejected",
        "rewards/accuracies",
        "rewards/margins",
        "logps/chosen",
        "logps/rejected",
    ];
    let text = lines(&path);
    assert_eq!(text.len(), 3);
    for line in &text {
        assert_keys_in_order(line, &[FIXED.as_slice(), &trl].concat());
    }
    let records = MetricsLog::read(&path).unwrap();
    for (r, s) in records.iter().zip(&stats) {
        for name in trl {
            assert_eq!(r[name].as_f64(), s.metric(name), "{name}");
        }
    }
    // At the first step the policy is the reference: every DPO reward is 0 up to rounding.
    assert!(records[0]["rewards/chosen"].as_f64().unwrap().abs() < 1e-4);

    let examples: Vec<_> = (0..8)
        .map(|i| {
            let record = SftRecord {
                messages: vec![
                    Message::user(format!("Tell me about {}.", WORDS[i % 4])),
                    Message::assistant(format!("The {} is good.", WORDS[i % 4])),
                ],
            };
            encode_sft(&tok, &template, &record, 128).unwrap()
        })
        .collect();
    let mut train = TrainLoop::new(policy, tc).unwrap();
    let path = dir.join("sft_metrics.jsonl");
    let log = MetricsLog::open(&path, 0).unwrap();
    train.on_step(log.callback());
    train_sft(
        &mut train,
        &examples,
        &SftTrainConfig::new()
            .with_pad_id(Some(pad))
            .with_until_step(Some(2)),
    )
    .unwrap();
    log.finish().unwrap();
    let text = lines(&path);
    assert_eq!(text.len(), 2);
    for line in &text {
        assert_keys_in_order(line, &[FIXED.as_slice(), &["nll", "tokens"]].concat());
    }
}

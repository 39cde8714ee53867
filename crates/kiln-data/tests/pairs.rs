//! Pair selection: orientation, ties, margins, reporting of skipped prompts, determinism.
#![cfg(test)]

use kiln_data::pairs::{SkipReason, all_pairs, choose_pair, rank_records, select_pairs};
use kiln_data::{
    AnnotatedRecord, Content, LengthUnit, Rng, SelectionConfig, SelectionStrategy, Tokenizer,
};
use proptest::prelude::*;

fn rec(rewards: &[f64]) -> AnnotatedRecord {
    AnnotatedRecord {
        prompt: "q".into(),
        responses: (0..rewards.len()).map(|i| format!("r{i}")).collect(),
        rewards: rewards.to_vec(),
    }
}

fn idx(c: &Content) -> usize {
    match c {
        Content::Text(t) => t[1..].parse().unwrap(),
        Content::Messages(_) => panic!("text expected"),
    }
}

fn strategies() -> Vec<SelectionStrategy> {
    vec![
        SelectionStrategy::MaxMin,
        SelectionStrategy::MaxRandom,
        SelectionStrategy::MaxMax,
        SelectionStrategy::Random,
        SelectionStrategy::MaxMinP {
            lambda: 0.1,
            unit: LengthUnit::Chars,
        },
    ]
}

#[test]
fn each_strategy_picks_the_documented_pair() {
    let r = [0.5, 2.0, -1.0, 1.5];
    let lengths = [1, 100, 1, 1];
    let mut rng = Rng::new(0);
    assert_eq!(
        choose_pair(&SelectionStrategy::MaxMin, &r, &[], &mut rng),
        Ok((1, 2))
    );
    assert_eq!(
        choose_pair(&SelectionStrategy::MaxMax, &r, &[], &mut rng),
        Ok((1, 3))
    );
    // Length penalty: response 1 scores 2 - 10 = -8, so best-penalised is 3, worst-penalised is 1;
    // the pair is oriented by raw reward, so chosen = 1 (raw 2.0), rejected = 3 (raw 1.5).
    let p = SelectionStrategy::MaxMinP {
        lambda: 0.1,
        unit: LengthUnit::Chars,
    };
    assert_eq!(choose_pair(&p, &r, &lengths, &mut rng), Ok((1, 3)));
    for seed in 0..50 {
        let (c, j) =
            choose_pair(&SelectionStrategy::MaxRandom, &r, &[], &mut Rng::new(seed)).unwrap();
        assert_eq!(c, 1);
        assert_ne!(j, 1);
    }
    // Random picks vary with the seed.
    let picks: std::collections::HashSet<_> = (0..50)
        .map(|s| choose_pair(&SelectionStrategy::Random, &r, &[], &mut Rng::new(s)).unwrap())
        .collect();
    assert!(picks.len() > 3);
    assert_eq!(
        choose_pair(&SelectionStrategy::MaxMin, &[1.0, 1.0], &[], &mut rng),
        Err(1.0)
    );
}

#[test]
fn skipped_prompts_are_reported() {
    let mut bad_len = rec(&[1.0, 2.0]);
    bad_len.rewards.pop();
    let records = vec![
        rec(&[1.0, 0.0, 3.0]),      // ok
        rec(&[1.0]),                // too few
        rec(&[1.0, f64::NAN, 2.0]), // non-finite
        bad_len,                    // mismatch
        rec(&[2.0, 2.0, 2.0]),      // tie
        rec(&[0.0, 1.0, 0.5]),      // ok
    ];
    let cfg = SelectionConfig {
        strategy: SelectionStrategy::MaxMin,
        min_responses: 3,
        seed: 1,
    };
    let (pairs, stats) = select_pairs(&records, cfg, None).unwrap();
    assert_eq!(pairs.len(), 2);
    assert_eq!(stats.prompts, 6);
    assert_eq!(stats.emitted, 2);
    assert_eq!(
        (
            stats.too_few_responses,
            stats.non_finite_rewards,
            stats.length_mismatch,
            stats.ties_dropped
        ),
        (1, 1, 1, 1)
    );
    let reasons: Vec<_> = stats
        .skipped
        .iter()
        .map(|s| (s.index, s.reason.clone()))
        .collect();
    assert_eq!(
        reasons[0],
        (
            1,
            SkipReason::TooFewResponses {
                found: 1,
                required: 3
            }
        )
    );
    assert_eq!(reasons[1], (2, SkipReason::NonFiniteReward { index: 1 }));
    assert_eq!(
        reasons[2],
        (
            3,
            SkipReason::LengthMismatch {
                responses: 2,
                rewards: 1
            }
        )
    );
    assert_eq!(reasons[3], (4, SkipReason::Tie { reward: 2.0 }));
    assert_eq!(pairs[0].margin, Some(3.0));
    assert_eq!((idx(&pairs[0].chosen), idx(&pairs[0].rejected)), (2, 1));
    // Mean reward / best-of-K over the valid prompts (0, 4, 5).
    assert!((stats.mean_reward - (4.0 + 6.0 + 1.5) / 9.0).abs() < 1e-12);
    assert!((stats.mean_best_reward - (3.0 + 2.0 + 1.0) / 3.0).abs() < 1e-12);
}

#[test]
fn token_length_penalty_needs_a_tokenizer() {
    let cfg = SelectionConfig {
        strategy: SelectionStrategy::MaxMinP {
            lambda: 0.5,
            unit: LengthUnit::Tokens,
        },
        ..Default::default()
    };
    assert!(select_pairs(&[rec(&[1.0, 0.0])], cfg, None).is_err());
    let tok = Tokenizer::builtin_tiny().unwrap();
    let mut r = rec(&[1.0, 0.9, 0.0]);
    r.responses = vec![
        "A cat meows. A dog barks. A cow moos. A duck quacks.".into(),
        "Blue.".into(),
        "Red.".into(),
    ];
    let (pairs, _) = select_pairs(&[r], cfg, Some(&tok)).unwrap();
    // The long best response is penalised below the others: best-penalised is "Blue.", worst is the
    // long one; oriented by raw reward the long one (1.0) is chosen over "Blue." (0.9).
    assert_eq!(pairs[0].rejected, Content::Text("Blue.".into()));
    assert!((pairs[0].margin.unwrap() - 0.1).abs() < 1e-12);
}

#[test]
fn ranked_and_all_pairs() {
    let records = vec![rec(&[0.5, 2.0, 0.5]), rec(&[1.0])];
    let (ranked, stats) = rank_records(&records, 2);
    assert_eq!(ranked.len(), 1);
    assert_eq!(ranked[0].rewards, vec![2.0, 0.5, 0.5]);
    assert_eq!(ranked[0].responses, vec!["r1", "r0", "r2"]);
    assert_eq!(stats.too_few_responses, 1);
    let (pairs, stats) = all_pairs(&records, 2);
    assert_eq!(pairs.len(), 2);
    assert_eq!(stats.ties_dropped, 1);
    assert!(
        pairs
            .iter()
            .all(|p| idx(&p.chosen) == 1 && p.margin == Some(1.5))
    );
}

fn rewards_strategy() -> impl Strategy<Value = Vec<Vec<f64>>> {
    // Small integer-valued rewards make ties frequent.
    prop::collection::vec(
        prop::collection::vec((-3i32..4).prop_map(f64::from), 0..7),
        1..12,
    )
}

proptest! {
    #[test]
    fn chosen_beats_rejected_and_ties_never_emitted(rewards in rewards_strategy(), seed in any::<u64>()) {
        let records: Vec<AnnotatedRecord> = rewards.iter().map(|r| rec(r)).collect();
        for strategy in strategies() {
            let cfg = SelectionConfig { strategy, min_responses: 2, seed };
            let (pairs, stats) = select_pairs(&records, cfg, None).unwrap();
            prop_assert_eq!(pairs.len() + stats.skipped.len(), records.len());
            prop_assert_eq!(stats.emitted, pairs.len());
            let mut p = pairs.iter();
            for (i, r) in records.iter().enumerate() {
                if stats.skipped.iter().any(|s| s.index == i) {
                    continue;
                }
                let pair = p.next().unwrap();
                let (c, j) = (idx(&pair.chosen), idx(&pair.rejected));
                prop_assert!(r.rewards[c] > r.rewards[j]);
                prop_assert_eq!(pair.margin, Some(r.rewards[c] - r.rewards[j]));
            }
            // Deterministic given the seed.
            let (again, _) = select_pairs(&records, cfg, None).unwrap();
            prop_assert_eq!(again, pairs);
        }
        let (pairs, _) = all_pairs(&records, 2);
        for p in &pairs {
            prop_assert!(p.margin.unwrap() > 0.0);
        }
    }
}

#[test]
fn select_pairs_file_streams_and_reports() {
    let dir = std::env::temp_dir().join(format!("kiln-data-pairs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("annotated.jsonl");
    let output = dir.join("pairs.jsonl");
    let records = vec![rec(&[1.0, 3.0]), rec(&[2.0, 2.0]), rec(&[0.0, -1.0, 5.0])];
    kiln_data::write_jsonl(&input, &records).unwrap();
    let stats =
        kiln_data::pairs::select_pairs_file(&input, &output, SelectionConfig::default(), None)
            .unwrap();
    assert_eq!(
        (stats.prompts, stats.emitted, stats.ties_dropped),
        (3, 2, 1)
    );
    let pairs: Vec<kiln_data::PairRecord> = kiln_data::read_jsonl(&output).unwrap();
    assert_eq!(pairs.len(), 2);
    assert_eq!(pairs[1].margin, Some(6.0));
    // A malformed record aborts with file and line, leaving no partial output.
    std::fs::write(
        &input,
        "{\"prompt\": \"q\", \"responses\": [], \"rewards\": []}\n{bad\n",
    )
    .unwrap();
    let out2 = dir.join("pairs2.jsonl");
    let err = kiln_data::pairs::select_pairs_file(&input, &out2, SelectionConfig::default(), None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("annotated.jsonl:2:"), "{err}");
    assert!(!out2.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn strategies_parse_and_print_their_command_line_form() {
    use kiln_data::{LengthUnit, SelectionStrategy};
    for (text, s) in [
        ("max_min", SelectionStrategy::MaxMin),
        ("max_random", SelectionStrategy::MaxRandom),
        ("max_max", SelectionStrategy::MaxMax),
        ("random", SelectionStrategy::Random),
        (
            "max_min_p:0.05",
            SelectionStrategy::MaxMinP {
                lambda: 0.05,
                unit: LengthUnit::Tokens,
            },
        ),
        (
            "max_min_p:0.5:chars",
            SelectionStrategy::MaxMinP {
                lambda: 0.5,
                unit: LengthUnit::Chars,
            },
        ),
    ] {
        assert_eq!(text.parse::<SelectionStrategy>().unwrap(), s);
        assert_eq!(s.to_string(), text);
    }
    for bad in [
        "best",
        "max_min_p",
        "max_min_p:x",
        "max_min_p:-1",
        "max_min:3",
        "max_min_p:1:bytes",
    ] {
        assert!(bad.parse::<SelectionStrategy>().is_err(), "{bad}");
    }
}

#[test]
fn ranking_drops_prompts_whose_rewards_all_tie() {
    use kiln_data::AnnotatedRecord;
    use kiln_data::pairs::rank_records;
    let rec = |rewards: Vec<f64>| AnnotatedRecord {
        prompt: "q".into(),
        responses: (0..rewards.len()).map(|i| format!("r{i}")).collect(),
        rewards,
    };
    let (ranked, stats) = rank_records(&[rec(vec![1.0, 1.0, 1.0]), rec(vec![0.0, 2.0, 1.0])], 3);
    assert_eq!(ranked.len(), 1);
    assert_eq!(ranked[0].responses, ["r1", "r2", "r0"]);
    assert_eq!((stats.emitted, stats.ties_dropped), (1, 1));
}

//! The example's own stages around the library's iteration: cached evaluation, the real-model
//! setup, prompt drawing and the gold judge's report on an iteration's data.

use super::config::{AnnotatorKind, LoopConfig};
use super::models::{Annotation, Res, Store};
use super::pipeline::{Ctx, Setup, stage_seed};
use super::progress::Console;
use super::task::{self, GoldJudge};
use kiln::data::atomic::{read_json, write_json};
use kiln::data::{
    AnnotatedRecord, Content, GenerationRecord, PairRecord, PromptRecord, Rng, read_jsonl,
    write_jsonl,
};
use kiln::online::{EvalRecord, EvalSetup};
use kiln::train::StageRunner;
use std::path::Path;

/// The `<name>.json` evaluation stage of policy `dir` (its KL against the SFT policy).
#[allow(clippy::too_many_arguments)]
pub fn cached_eval(
    ctx: &Ctx,
    stages: &mut StageRunner,
    setup: &Setup,
    annotation: &Annotation,
    store: &Store,
    sft: Option<&EvalRecord>,
    name: &str,
    dir: &Path,
) -> Res<EvalRecord> {
    let file = format!("{name}.json");
    stages.run_lead(name, &[&file], |out| -> Res<()> {
        let policy = store.load(dir)?;
        // KL against SFT (pi_0) whatever DPO's reference: the drift from the starting point.
        let reference = store.load(&setup.sft)?;
        let judge = ctx
            .judge
            .as_ref()
            .map(|j| move |q: &str, r: &str, finished: bool| j.score(q, r, finished));
        let setup = EvalSetup {
            prompts: &setup.eval_prompts,
            enc: &ctx.enc,
            annotator: annotation,
            judge: judge.as_ref().map(|j| j as kiln::online::GoldJudge<'_>),
            baseline: sft,
            sampling: ctx.cfg.sampling(ctx.cfg.eval_samples, 1.0, 32),
            seed: stage_seed(ctx.cfg.seed, 7),
            observer: &Console,
        };
        let label = if name == "eval" {
            dir_label(dir)
        } else {
            name.into()
        };
        Ok(write_json(
            out.path(&file)?,
            &setup.evaluate(&label, &policy, &reference)?,
        )?)
    })?;
    Ok(read_json(stages.path(&file))?)
}

fn dir_label(policy: &Path) -> String {
    policy
        .parent()
        .and_then(|p| p.file_name())
        .map_or("policy".into(), |n| n.to_string_lossy().into_owned())
}

/// Real models: the given directories, the prompt file's last `eval_prompts` prompts held out.
pub fn real_setup(cfg: &LoopConfig) -> Res<Setup> {
    let file = cfg.prompts.clone().expect("validated");
    let mut pool: Vec<Content> = read_jsonl::<PromptRecord>(&file)?
        .into_iter()
        .map(|p| p.prompt)
        .collect();
    if pool.len() <= cfg.eval_prompts {
        return Err(format!(
            "{}: {} prompts, but {} are held out for evaluation; provide more",
            file.display(),
            pool.len(),
            cfg.eval_prompts
        )
        .into());
    }
    let eval_prompts = pool.split_off(pool.len() - cfg.eval_prompts);
    let annotator = match cfg.annotator {
        AnnotatorKind::Bt => cfg.reward_model.clone(),
        AnnotatorKind::Pairwise => cfg.annotator_model.clone(),
    };
    Ok(Setup {
        sft: cfg.policy.clone().expect("validated"),
        annotator: annotator.expect("validated"),
        eval_prompts,
        pool,
    })
}

/// `prompts.jsonl`: `n` prompts for iteration `t` (0 = the offline baseline): drawn at random
/// from the built-in pool, or consecutive slices of a real prompt file (wrapping around).
pub fn prompts_stage(
    ctx: &Ctx,
    stages: &mut StageRunner,
    pool: &[Content],
    n: usize,
    t: usize,
) -> Res<Vec<Content>> {
    stages.run_lead("prompts", &["prompts.jsonl"], |out| -> Res<()> {
        let picked: Vec<PromptRecord> = if ctx.judge.is_some() {
            let id = if t == 0 { 300 } else { 100 + t as u64 };
            let mut rng = Rng::new(stage_seed(ctx.cfg.seed, id));
            (0..n)
                .map(|_| PromptRecord {
                    prompt: task::pick(&mut rng, pool).clone(),
                })
                .collect()
        } else {
            (0..n)
                .map(|i| PromptRecord {
                    prompt: pool[((t.max(1) - 1) * n + i) % pool.len()].clone(),
                })
                .collect()
        };
        write_jsonl(out.path("prompts.jsonl")?, &picked)?;
        Ok(())
    })?;
    Ok(read_jsonl::<PromptRecord>(stages.path("prompts.jsonl"))?
        .into_iter()
        .map(|p| p.prompt)
        .collect())
}

/// What the gold judge says about an iteration's data (the signal DPO really gets): the mean
/// response, the oracle best-of-K, the proxy's pick and how often the chosen side of a pair is
/// really better (pairs are scored as finished: pair files keep no finish reasons).
pub fn report_gold_agreement(
    judge: &GoldJudge,
    generations: &Path,
    annotated: &Path,
    pairs_file: &Path,
) -> Res<()> {
    let records: Vec<AnnotatedRecord> = read_jsonl(annotated)?;
    let gens: Vec<GenerationRecord> = read_jsonl(generations)?;
    let (mut mean, mut best, mut picked, mut n) = (0.0, 0.0, 0.0, 0usize);
    // Over every two responses of a prompt that the gold judge tells apart: how often the proxy
    // orders them the same way (what RRHF's ranking, which has no pair file, learns from).
    let (mut ordered, mut distinct) = (0usize, 0usize);
    for (r, g) in records.iter().zip(&gens) {
        let q = r.prompt.text();
        let gold: Vec<f64> = (r.responses.iter().enumerate())
            .map(|(i, x)| f64::from(judge.score(&q, x, !g.truncated(i))))
            .collect();
        for i in 0..gold.len() {
            for j in i + 1..gold.len() {
                if gold[i] != gold[j] {
                    distinct += 1;
                    ordered += usize::from((gold[i] > gold[j]) == (r.rewards[i] > r.rewards[j]));
                }
            }
        }
        let argmax = (0..gold.len()).max_by(|&a, &b| r.rewards[a].total_cmp(&r.rewards[b]));
        if let Some(i) = argmax {
            mean += gold.iter().sum::<f64>() / gold.len() as f64;
            best += gold.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            picked += gold[i];
            n += 1;
        }
    }
    let pairs: Vec<PairRecord> = read_jsonl::<PairRecord>(pairs_file).unwrap_or_default();
    let agree = pairs
        .iter()
        .filter(|p| {
            let q = p.prompt.text();
            judge.score(&q, &p.chosen.text(), true) > judge.score(&q, &p.rejected.text(), true)
        })
        .count();
    let n = n.max(1) as f64;
    let picks = if pairs.is_empty() {
        String::new()
    } else {
        format!(
            "; the gold judge agrees with {agree}/{} chosen-vs-rejected picks",
            pairs.len()
        )
    };
    eprintln!(
        "   gold: mean {:.3}, oracle best-of-K {:.3}, proxy's best {:.3}; the proxy orders {:.0} % of {distinct} gold-distinct response pairs as gold does{picks}",
        mean / n,
        best / n,
        picked / n,
        100.0 * ordered as f64 / distinct.max(1) as f64,
    );
    Ok(())
}

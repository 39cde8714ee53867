//! [`Judge`]: a programmatic gold reward of `(prompt, response, finished)`, the hidden judge of a
//! synthetic task (or any scorer you trust more than the proxy reward model). With one, evaluation
//! reports the gold reward, the win rate against SFT and their bootstrap intervals.

/// A programmatic judge. `finished` says whether the response ended on a stop token (not cut at
/// the length limit). Closures `Fn(&str, &str, bool) -> f32` are judges.
pub trait Judge: Send + Sync {
    /// The gold reward of `response` to the prompt whose text is `prompt`.
    fn score(&self, prompt: &str, response: &str, finished: bool) -> f32;
}

impl<F: Fn(&str, &str, bool) -> f32 + Send + Sync> Judge for F {
    fn score(&self, prompt: &str, response: &str, finished: bool) -> f32 {
        self(prompt, response, finished)
    }
}

/// What `judge` says about an iteration's data (the signal training really gets): the mean
/// response, the oracle best-of-K, the proxy's pick, how often the proxy orders two responses
/// the judge tells apart as the judge does, and how often the chosen side of a pair is really
/// better (pairs are scored as finished: pair files keep no finish reasons).
///
/// # Errors
/// The files cannot be read (named).
pub fn agreement_note(
    judge: &dyn Judge,
    generations: &std::path::Path,
    annotated: &std::path::Path,
    pairs_file: &std::path::Path,
) -> crate::Result<String> {
    use kiln_data::{AnnotatedRecord, GenerationRecord, PairRecord, read_jsonl};
    let records: Vec<AnnotatedRecord> = read_jsonl(annotated)?;
    let gens: Vec<GenerationRecord> = read_jsonl(generations)?;
    let (mut mean, mut best, mut picked, mut n) = (0.0, 0.0, 0.0, 0usize);
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
    let pairs: Vec<PairRecord> = if pairs_file.exists() {
        read_jsonl(pairs_file).unwrap_or_default()
    } else {
        Vec::new()
    };
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
    Ok(format!(
        "   gold: mean {:.3}, oracle best-of-K {:.3}, proxy's best {:.3}; the proxy orders {:.0} % \
         of {distinct} gold-distinct response pairs as gold does{picks}",
        mean / n,
        best / n,
        picked / n,
        100.0 * ordered as f64 / distinct.max(1) as f64,
    ))
}

#[cfg(test)]
mod tests {
    use super::Judge;

    #[test]
    fn closures_are_judges() {
        let words = |_: &str, r: &str, finished: bool| {
            r.split_whitespace().count() as f32 + f32::from(u8::from(finished))
        };
        let judge: &dyn Judge = &words;
        assert_eq!(judge.score("q", "a b c", true), 4.0);
    }
}

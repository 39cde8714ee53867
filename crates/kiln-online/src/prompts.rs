//! Each iteration's prompts: the `prompts.jsonl` stage that takes `n` of the training prompts in
//! order or at random ([`PromptOrder`]), and reading prompt files.

use std::path::Path;

use kiln_data::rng::stage_seed;
use kiln_data::{Content, PromptRecord, Rng, read_jsonl, write_jsonl};

use crate::config::PromptOrder;
use crate::error::{Error, Result};
use crate::stage::StageRunner;

/// The prompts of a JSON Lines file (`{"prompt": ...}` or `{"messages": [...]}` per line).
///
/// # Errors
/// The file and line of a malformed record; an empty file.
pub fn read_prompts(path: impl AsRef<Path>) -> Result<Vec<Content>> {
    let path = path.as_ref();
    let prompts: Vec<Content> = read_jsonl::<PromptRecord>(path)?
        .into_iter()
        .map(|p| p.prompt)
        .collect();
    if prompts.is_empty() {
        return Err(Error::InvalidInput(format!(
            "{}: no prompts",
            path.display()
        )));
    }
    Ok(prompts)
}

/// The `prompts.jsonl` stage of iteration `t` (0 = the offline baseline, which takes the
/// prompts of every iteration at once): `n` prompts of `pool`, consecutive slices
/// ([`PromptOrder::InOrder`], wrapping around) or drawn with replacement from the run `seed`
/// ([`PromptOrder::Random`]). Rank 0 draws; every rank reads the file.
///
/// # Errors
/// An empty pool; I/O errors naming the file.
pub fn prompts_stage(
    stages: &mut StageRunner,
    pool: &[Content],
    n: usize,
    t: usize,
    order: PromptOrder,
    seed: u64,
) -> Result<Vec<Content>> {
    if pool.is_empty() {
        return Err(Error::InvalidInput("no training prompts".into()));
    }
    stages.run_lead("prompts", &["prompts.jsonl"], |out| -> Result<()> {
        let picked: Vec<PromptRecord> = match order {
            PromptOrder::Random => {
                let id = if t == 0 { 300 } else { 100 + t as u64 };
                let mut rng = Rng::new(stage_seed(seed, id));
                (0..n)
                    .map(|_| PromptRecord {
                        prompt: pool[rng.index(pool.len())].clone(),
                    })
                    .collect()
            }
            PromptOrder::InOrder => (0..n)
                .map(|i| PromptRecord {
                    prompt: pool[((t.max(1) - 1) * n + i) % pool.len()].clone(),
                })
                .collect(),
        };
        write_jsonl(out.path("prompts.jsonl")?, &picked)?;
        Ok(())
    })?;
    Ok(read_jsonl::<PromptRecord>(stages.path("prompts.jsonl"))?
        .into_iter()
        .map(|p| p.prompt)
        .collect())
}

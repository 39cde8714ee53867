//! DPO's reference log-probs on an iteration's pairs, computed without a second model where the
//! reference is the policy itself (or, for LoRA, its base), on every peer of the run.

use std::path::Path;

use burn::tensor::backend::AutodiffBackend;
use kiln_data::Example;
use kiln_model::Adapters;
use kiln_model::LogProbReduction;
use kiln_train::dpo::{ReferenceLogps, precompute_reference_logps};

use crate::error::Result;
use crate::policy::Policy;
use crate::store::PolicyStore;

/// The reference log-probs of `pairs` for DPO of `policy` (loaded from `policy_dir`) against the
/// policy in `reference_dir`. No second model is loaded when the reference is the policy's own
/// start (reference = previous policy) or, for a LoRA policy, its base (pi_0 = the adapters
/// switched off, as TRL does with PEFT); otherwise the reference is loaded once for this. The pairs
/// are scored by this process's peers (threads, whole batches each) and, in a multi-process run,
/// sharded across the processes; every process gets all, the same bits as one peer.
///
/// # Errors
/// Loading and collation errors.
pub fn reference_logps<B: AutodiffBackend, P: Policy<B>>(
    store: &PolicyStore<B, P>,
    policy: &P,
    policy_dir: &Path,
    reference_dir: &Path,
    pairs: &[(Example, Example)],
    pad_id: u32,
    reduction: LogProbReduction,
) -> Result<ReferenceLogps> {
    let same = PolicyStore::<B, P>::same;
    let reference = if same(reference_dir, policy_dir) {
        policy.inference()
    } else if policy.has_adapters() && same(reference_dir, &store.base) {
        policy.inference().without_adapters()
    } else {
        store.load(reference_dir)?
    };
    let score = |r: std::ops::Range<usize>| -> Result<Vec<(f32, f32)>> {
        let part = precompute_reference_logps(&reference, &pairs[r], pad_id, BATCH, reduction)?;
        Ok(part.chosen.into_iter().zip(part.rejected).collect())
    };
    let all = store
        .placement
        .map_blocks("reference_logps", pairs.len(), BATCH, score)?;
    Ok(ReferenceLogps {
        chosen: all.iter().map(|p| p.0).collect(),
        rejected: all.iter().map(|p| p.1).collect(),
        reduction,
    })
}

/// Pairs per reference forward pass (and per shard block across processes, so the log-probs are
/// the same bits whatever the number of processes).
const BATCH: usize = 64;

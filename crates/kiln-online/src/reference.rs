//! DPO's reference model: which policy it is ([`ReferenceChoice`]) and its log-probs on an
//! iteration's pairs, computed without a second model where the reference is the policy itself.

use std::path::Path;

use burn::tensor::backend::AutodiffBackend;
use kiln_data::Example;
use kiln_losses::LogProbReduction;
use kiln_model::Adapters;
use kiln_reward::parallel::{block_shards, on_peers};
use kiln_train::dpo::{ReferenceLogps, precompute_reference_logps};
use kiln_train::parallel::gather;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::policy::Policy;
use crate::store::PolicyStore;

/// Which model DPO measures the policy against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReferenceChoice {
    /// The SFT policy pi_0 for every iteration (the paper).
    #[default]
    Sft,
    /// The previous iteration's policy (later RLHFlow scripts).
    Previous,
}

impl ReferenceChoice {
    /// The reference's directory for an iteration that starts from `previous`.
    pub fn dir<'a>(self, sft: &'a Path, previous: &'a Path) -> &'a Path {
        match self {
            ReferenceChoice::Sft => sft,
            ReferenceChoice::Previous => previous,
        }
    }
}

impl std::str::FromStr for ReferenceChoice {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "sft" => Ok(ReferenceChoice::Sft),
            "previous" => Ok(ReferenceChoice::Previous),
            other => Err(format!("unknown reference `{other}` (sft | previous)")),
        }
    }
}

impl std::fmt::Display for ReferenceChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ReferenceChoice::Sft => "sft",
            ReferenceChoice::Previous => "previous",
        })
    }
}

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
    let team = store.placement.team();
    let range = crate::iteration::aligned_shard(pairs.len(), BATCH, team.as_deref());
    // This process's pairs, on its peers (threads sharing the model), in whole batches.
    let peers = store.placement.local_devices().len();
    let shards = block_shards(range.len(), BATCH, peers);
    let mine = &pairs[range];
    let score = |r: std::ops::Range<usize>| {
        let part = precompute_reference_logps(&reference, &mine[r], pad_id, BATCH, reduction)?;
        Ok(part
            .chosen
            .into_iter()
            .zip(part.rejected)
            .collect::<Vec<(f32, f32)>>())
    };
    let panicked = || kiln_train::Error::Collective("a reference peer panicked".into());
    let mine: Vec<(f32, f32)> = on_peers(&shards, score, panicked)?;
    let all = match team {
        Some(team) => gather(team.as_ref(), "reference_logps", &mine)?,
        None => mine,
    };
    Ok(ReferenceLogps {
        chosen: all.iter().map(|p| p.0).collect(),
        rejected: all.iter().map(|p| p.1).collect(),
        reduction,
    })
}

/// Pairs per reference forward pass (and per shard block across processes, so the log-probs are
/// the same bits whatever the number of processes).
const BATCH: usize = 64;

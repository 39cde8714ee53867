//! Resumable training checkpoints: the model in Hugging Face layout, AdamW state and the step.
//!
//! A checkpoint directory holds
//! - `config.json` + `model.safetensors`: the model, via kiln-model's HF saver, in f32 so a
//!   resumed run continues from bit-identical weights (any HF tool can load it too);
//! - `optimizer.mpk`: burn's AdamW record (moments and per-parameter time), keyed by parameter
//!   *position* in the module (burn's parameter ids are random per process, so they are remapped
//!   on save and load);
//! - `trainer_state.json` ([`TrainerState`]): the step, the [`TrainConfig`] (hence the schedule and
//!   the data-order seed) and the parameter count.
//!
//! The data order and the schedule are pure functions of the config and the step, so nothing else
//! is needed to resume exactly. Writes are atomic: everything goes to a temporary sibling
//! directory that is renamed into place at the end (an existing checkpoint of the same name is
//! replaced only once the new one is complete).

use std::path::Path;

use burn::module::{AutodiffModule, ModuleVisitor, Param, ParamId};
use burn::optim::Optimizer;
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder, Recorder};
use burn::tensor::Tensor;
use burn::tensor::backend::{AutodiffBackend, Backend};
use kiln_model::{HfModel, SaveDtype, SaveOptions};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::optim::TrainConfig;
use crate::train_loop::TrainLoop;

/// File name of the trainer state inside a checkpoint directory.
pub const TRAINER_STATE_FILE: &str = "trainer_state.json";
/// Base name of the optimiser record (the recorder adds `.mpk`).
pub const OPTIMIZER_FILE: &str = "optimizer";

fn f32_options() -> SaveOptions {
    SaveOptions {
        dtype: SaveDtype::F32,
        ..SaveOptions::default()
    }
}

/// `trainer_state.json`: what, besides weights and optimiser moments, a resume needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainerState {
    /// Format version (1).
    pub version: u32,
    /// Optimiser steps completed.
    pub step: usize,
    /// Number of parameter tensors of the model (checked on resume).
    pub num_param_tensors: usize,
    /// The training configuration (schedule, AdamW, data-order seed).
    pub config: TrainConfig,
}

impl TrainerState {
    /// Reads `<dir>/trainer_state.json`.
    pub fn read(dir: impl AsRef<Path>) -> Result<Self> {
        let path = dir.as_ref().join(TRAINER_STATE_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        serde_json::from_str(&text).map_err(|e| Error::Checkpoint {
            path,
            message: format!("bad trainer state: {e}"),
        })
    }
}

struct ParamIds(Vec<ParamId>);

impl<B: Backend> ModuleVisitor<B> for ParamIds {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.0.push(param.id);
    }
}

/// The ids of a module's float parameters in visiting order (stable for a given architecture).
pub fn param_ids<B: Backend, M: burn::module::Module<B>>(model: &M) -> Vec<ParamId> {
    let mut v = ParamIds(Vec::new());
    model.visit(&mut v);
    v.0
}

impl<B, M> TrainLoop<B, M>
where
    B: AutodiffBackend,
    M: AutodiffModule<B> + HfModel<B>,
{
    /// Saves model, optimiser state and step to `dir` atomically (see the module docs).
    ///
    /// # Errors
    /// I/O and serialisation errors naming the file.
    pub fn save_checkpoint(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        let step = self.step();
        kiln_data::atomic::replace_dir(dir, |tmp| self.write_checkpoint_files(tmp))?;
        tracing::info!(dir = %dir.display(), step, "saved training checkpoint");
        Ok(())
    }

    /// Writes model, optimiser state and trainer state into the (fresh) directory `tmp`.
    fn write_checkpoint_files(&self, tmp: &Path) -> Result<()> {
        let model = self.model()?;
        model.save_hf(tmp, f32_options())?;

        let ids = param_ids::<B, M>(model);
        let position: std::collections::HashMap<ParamId, u64> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (*id, i as u64))
            .collect();
        let record = self
            .optim
            .to_record()
            .into_iter()
            .filter_map(|(id, r)| position.get(&id).map(|&i| (ParamId::from(i), r)))
            .collect();
        let opt_path = tmp.join(OPTIMIZER_FILE);
        NamedMpkFileRecorder::<FullPrecisionSettings>::new()
            .record::<<burn::optim::adaptor::OptimizerAdaptor<burn::optim::AdamW, M, B> as Optimizer<M, B>>::Record>(record, opt_path.clone())
            .map_err(|e| Error::Checkpoint {
                path: opt_path,
                message: format!("cannot write optimiser state: {e}"),
            })?;

        let state = TrainerState {
            version: 1,
            step: self.step(),
            num_param_tensors: ids.len(),
            config: self.config().clone(),
        };
        kiln_data::atomic::write_json(tmp.join(TRAINER_STATE_FILE), &state)?;
        Ok(())
    }

    /// Loads a checkpoint written by [`Self::save_checkpoint`] and continues from its step with
    /// its config. Calling [`Self::fit`] then reproduces the uninterrupted run.
    ///
    /// # Errors
    /// Missing or inconsistent files (named), or a model whose parameter count differs.
    pub fn resume(dir: impl AsRef<Path>, device: &B::Device) -> Result<Self> {
        let dir = dir.as_ref();
        let state = TrainerState::read(dir)?;
        let model = M::load_hf(dir, device)?;
        let ids = param_ids::<B, M>(&model);
        if ids.len() != state.num_param_tensors {
            return Err(Error::Checkpoint {
                path: dir.to_path_buf(),
                message: format!(
                    "model has {} parameter tensors but the checkpoint recorded {}",
                    ids.len(),
                    state.num_param_tensors
                ),
            });
        }
        let opt_path = dir.join(OPTIMIZER_FILE);
        let record: <burn::optim::adaptor::OptimizerAdaptor<burn::optim::AdamW, M, B> as Optimizer<M, B>>::Record =
            NamedMpkFileRecorder::<FullPrecisionSettings>::new()
                .load(opt_path.clone(), device)
                .map_err(|e| Error::Checkpoint {
                    path: opt_path.with_extension("mpk"),
                    message: format!("cannot read optimiser state: {e}"),
                })?;
        let mut remapped = Vec::new();
        for (pos, r) in record {
            let id = ids
                .get(pos.val() as usize)
                .ok_or_else(|| Error::Checkpoint {
                    path: dir.join(OPTIMIZER_FILE),
                    message: format!(
                        "optimiser state for parameter #{} of {}",
                        pos.val(),
                        ids.len()
                    ),
                })?;
            remapped.push((*id, r));
        }
        let mut train = TrainLoop::new(model, state.config)?;
        train.optim = train.optim.load_record(remapped.into_iter().collect());
        train.set_step(state.step);
        tracing::info!(dir = %dir.display(), step = state.step, "resumed training checkpoint");
        Ok(train)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sft::{SftTrainConfig, train_sft};
    use crate::testutil::{TB, flat_params, tiny};
    use kiln_model::LlamaForCausalLM;

    fn scratch(name: &str) -> std::path::PathBuf {
        kiln_test_support::scratch(&format!("checkpoint/{name}"))
    }

    #[test]
    fn resumed_run_reaches_the_same_weights_as_an_uninterrupted_one() {
        let t = tiny();
        let device = Default::default();
        let data = t.sft(0..10);
        let model = LlamaForCausalLM::<TB>::init_seeded(&t.config, 0.05, 24, &device);
        let config = TrainConfig::new(6)
            .with_lr(5e-3)
            .with_warmup_steps(2)
            .with_micro_batch_size(3)
            .with_grad_accum_steps(2)
            .with_max_grad_norm(Some(0.5))
            .with_weight_decay(0.01)
            .with_log_every(0);

        let mut full = TrainLoop::new(model.clone(), config.clone()).unwrap();
        train_sft(
            &mut full,
            &data,
            &SftTrainConfig::new().with_pad_id(Some(t.pad)),
        )
        .unwrap();

        let dir = scratch("resume");
        let ckpt = dir.join("checkpoint");
        let mut first = TrainLoop::new(model, config).unwrap();
        let half = SftTrainConfig::new()
            .with_pad_id(Some(t.pad))
            .with_until_step(Some(3));
        train_sft(&mut first, &data, &half).unwrap();
        first.save_checkpoint(&ckpt).unwrap();
        // Saving again over an existing checkpoint replaces it atomically.
        first.save_checkpoint(&ckpt).unwrap();
        drop(first);
        let leftovers: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary directory is left behind");
        assert_eq!(TrainerState::read(&ckpt).unwrap().step, 3);

        let mut resumed = TrainLoop::<TB, LlamaForCausalLM<TB>>::resume(&ckpt, &device).unwrap();
        assert_eq!(resumed.step(), 3);
        train_sft(
            &mut resumed,
            &data,
            &SftTrainConfig::new().with_pad_id(Some(t.pad)),
        )
        .unwrap();

        let (a, b) = (
            flat_params(full.model().unwrap()),
            flat_params(resumed.model().unwrap()),
        );
        assert_eq!(a.len(), b.len());
        let max_diff = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        assert!(max_diff <= 1e-6, "resumed weights differ by {max_diff}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn resume_reports_missing_files() {
        let dir = scratch("missing");
        let device = Default::default();
        let err = TrainLoop::<TB, LlamaForCausalLM<TB>>::resume(&dir, &device).unwrap_err();
        assert!(err.to_string().contains(TRAINER_STATE_FILE), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

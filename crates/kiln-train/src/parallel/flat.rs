//! Every gradient of a model as one flat tensor and back, in the model's visiting order.
//!
//! Peers in different processes load the same checkpoint but draw different [`ParamId`]s (burn's
//! ids come from an unseeded generator), so gradients cannot be matched by id across processes
//! (burn's `GradientsParams::all_reduce` sorts by id). The module tree's order is the same
//! everywhere, and one flat tensor is also one collective call per step instead of one per
//! parameter.

use burn::module::{AutodiffModule, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;
use burn::tensor::backend::AutodiffBackend;

use super::sync::GradSync;
use crate::error::Result;

/// Where each gradient sits in the flat tensor: its parameter and shape, in visiting order.
#[derive(Debug, Default)]
pub struct FlatLayout {
    parts: Vec<(ParamId, Vec<usize>)>,
}

struct Take<'a, B: AutodiffBackend> {
    grads: &'a mut GradientsParams,
    tensors: Vec<Tensor<B::InnerBackend, 1>>,
    layout: FlatLayout,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Take<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.remove::<B::InnerBackend, D>(param.id) {
            let dims = g.dims().to_vec();
            let n = dims.iter().product::<usize>();
            self.tensors.push(g.reshape([n]));
            self.layout.parts.push((param.id, dims));
        }
    }
}

/// Moves every gradient of `model`'s parameters out of `grads` into one flat tensor, in the
/// model's visiting order (parameters without a gradient, e.g. frozen ones, are left out).
/// `None` when no parameter has a gradient.
pub fn flatten<B: AutodiffBackend, M: AutodiffModule<B>>(
    model: &M,
    grads: &mut GradientsParams,
) -> Option<(Tensor<B::InnerBackend, 1>, FlatLayout)> {
    let mut take = Take::<B> {
        grads,
        tensors: Vec::new(),
        layout: FlatLayout::default(),
    };
    model.visit(&mut take);
    if take.tensors.is_empty() {
        return None;
    }
    Some((Tensor::cat(take.tensors, 0), take.layout))
}

struct Put<'a, B: AutodiffBackend> {
    grads: &'a mut GradientsParams,
    flat: Tensor<B::InnerBackend, 1>,
    layout: &'a FlatLayout,
    next: usize,
    offset: usize,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Put<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let Some((id, dims)) = self.layout.parts.get(self.next) else {
            return;
        };
        if *id != param.id || dims.len() != D {
            return;
        }
        let n = dims.iter().product::<usize>();
        let mut shape = [0; D];
        shape.copy_from_slice(dims);
        let g = self
            .flat
            .clone()
            .slice(self.offset..self.offset + n)
            .reshape(shape);
        self.grads.register::<B::InnerBackend, D>(param.id, g);
        self.next += 1;
        self.offset += n;
    }
}

/// Puts the gradients of a flat tensor laid out by [`flatten`] back into `grads`.
pub fn unflatten<B: AutodiffBackend, M: AutodiffModule<B>>(
    model: &M,
    grads: &mut GradientsParams,
    flat: Tensor<B::InnerBackend, 1>,
    layout: &FlatLayout,
) {
    let mut put = Put::<B> {
        grads,
        flat,
        layout,
        next: 0,
        offset: 0,
    };
    model.visit(&mut put);
}

/// The mean over the peers of `sync` of every gradient in `grads` (one flat tensor, one
/// collective call).
///
/// # Errors
/// The collective's.
pub fn mean_grads<B: AutodiffBackend, M: AutodiffModule<B>>(
    sync: &dyn GradSync<B>,
    model: &M,
    mut grads: GradientsParams,
) -> Result<GradientsParams> {
    if let Some((flat, layout)) = flatten(model, &mut grads) {
        unflatten(model, &mut grads, sync.mean(flat)?, &layout);
    }
    Ok(grads)
}

//! Gradient clipping by the **global** L2 norm over all parameters (PyTorch `clip_grad_norm_`).
//!
//! burn's `GradientClippingConfig::Norm` clips every parameter tensor separately, which is a
//! different (and for transformers much weaker) operation; this module computes
//! `total = sqrt(sum_p ||g_p||^2)` and scales every gradient by `max_norm / (total + 1e-6)` when
//! `total > max_norm`, like PyTorch.

use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{ElementConversion, Tensor};

struct SquaredNorm<'a, B: AutodiffBackend> {
    grads: &'a GradientsParams,
    total: Option<Tensor<B::InnerBackend, 1>>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for SquaredNorm<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.get::<B::InnerBackend, D>(param.id) {
            let sq = g.square().sum();
            self.total = Some(match self.total.take() {
                Some(t) => t + sq,
                None => sq,
            });
        }
    }
}

struct Scale<'a> {
    grads: &'a mut GradientsParams,
    factor: f64,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Scale<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.remove::<B::InnerBackend, D>(param.id) {
            self.grads
                .register::<B::InnerBackend, D>(param.id, g.mul_scalar(self.factor));
        }
    }
}

/// The global L2 norm of the gradients of `model`'s parameters (0 when there are none).
pub fn global_grad_norm<B: AutodiffBackend, M: AutodiffModule<B>>(
    model: &M,
    grads: &GradientsParams,
) -> f64 {
    let mut v = SquaredNorm::<B> { grads, total: None };
    model.visit(&mut v);
    v.total
        .map_or(0.0, |t| t.into_scalar().elem::<f64>().sqrt())
}

/// Multiplies every gradient of `model`'s parameters by `factor`.
pub fn scale_grads<B: AutodiffBackend, M: AutodiffModule<B>>(
    model: &M,
    grads: &mut GradientsParams,
    factor: f64,
) {
    let mut v = Scale { grads, factor };
    model.visit(&mut v);
}

/// Clips the gradients to a global L2 norm of at most `max_norm` and returns the norm **before**
/// clipping (what HF logs as `grad_norm`). A non-finite norm is returned unchanged and the
/// gradients are left as they are, so the caller can report it.
pub fn clip_grad_norm<B: AutodiffBackend, M: AutodiffModule<B>>(
    model: &M,
    grads: &mut GradientsParams,
    max_norm: f64,
) -> f64 {
    let norm = global_grad_norm::<B, M>(model, grads);
    if norm.is_finite() && norm > max_norm {
        scale_grads::<B, M>(model, grads, max_norm / (norm + 1e-6));
    }
    norm
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::module::Module;
    // Constant weights: what the tests assert must not depend on a random draw.
    use burn::nn::{Initializer, Linear, LinearConfig};

    type AB = Autodiff<Flex>;

    #[derive(Module, Debug)]
    struct Two<B: burn::tensor::backend::Backend> {
        a: Linear<B>,
        b: Linear<B>,
    }

    fn grads_of(model: &Two<AB>) -> GradientsParams {
        let device = Default::default();
        let x = Tensor::<AB, 2>::from_floats([[1.0, -2.0, 3.0]], &device);
        let loss = (model.a.forward(x.clone()).sum() * 3.0) + model.b.forward(x).square().sum();
        GradientsParams::from_grads::<AB, _>(loss.backward(), model)
    }

    fn all_grads(model: &Two<AB>, g: &GradientsParams) -> Vec<f32> {
        let mut out = Vec::new();
        for p in [&model.a.weight, &model.b.weight] {
            let t = g.get::<Flex, 2>(p.id).unwrap();
            out.extend(t.into_data().to_vec::<f32>().unwrap());
        }
        for p in [&model.a.bias, &model.b.bias] {
            let t = g.get::<Flex, 1>(p.as_ref().unwrap().id).unwrap();
            out.extend(t.into_data().to_vec::<f32>().unwrap());
        }
        out
    }

    #[test]
    fn global_norm_matches_flattened_norm_and_clips_jointly() {
        let device = Default::default();
        let model = Two::<AB> {
            a: LinearConfig::new(3, 2)
                .with_initializer(Initializer::Constant { value: 0.1 })
                .init(&device),
            b: LinearConfig::new(3, 4)
                .with_initializer(Initializer::Constant { value: 0.1 })
                .init(&device),
        };
        let mut g = grads_of(&model);
        let flat = all_grads(&model, &g);
        let expected = flat.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
        let norm = clip_grad_norm::<AB, _>(&model, &mut g, expected / 4.0);
        assert!((norm - expected).abs() < 1e-4 * expected);
        let clipped = all_grads(&model, &g);
        let after = clipped
            .iter()
            .map(|x| (*x as f64).powi(2))
            .sum::<f64>()
            .sqrt();
        assert!((after - expected / 4.0).abs() < 1e-4 * expected);
        // Direction is preserved: one common factor for every tensor (not per-tensor clipping).
        for (a, b) in flat.iter().zip(&clipped) {
            assert!((*a as f64 / 4.0 - *b as f64).abs() < 1e-4 * expected);
        }
        // Below the threshold nothing changes.
        let mut g2 = grads_of(&model);
        clip_grad_norm::<AB, _>(&model, &mut g2, expected * 2.0);
        assert_eq!(all_grads(&model, &g2), flat);
    }
}

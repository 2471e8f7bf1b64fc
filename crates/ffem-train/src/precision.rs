//! Mixed precision: the forward and backward passes run on a copy of the network cast to f16 or
//! bf16, while the optimiser keeps and updates f32 master weights (the cast is part of the graph,
//! so gradients arrive at the masters in f32). The loss and the classifier stay in f32. For f16,
//! dynamic loss scaling keeps small gradients from flushing to zero: the loss is multiplied by
//! `scale` before backward and the gradients divided by it after; an overflow skips the step and
//! halves the scale, and every `growth_interval` clean steps double it.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{DType, Tensor};

/// Which precision the passes run in (`precision = "f32" | "f16" | "bf16"` in configs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Everything in f32.
    F32,
    /// f16 compute, f32 masters, dynamic loss scaling.
    F16,
    /// bf16 compute, f32 masters (same exponent range as f32: no scaling).
    Bf16,
}

impl Precision {
    /// The compute dtype.
    pub fn dtype(self) -> DType {
        match self {
            Precision::F32 => DType::F32,
            Precision::F16 => DType::F16,
            Precision::Bf16 => DType::BF16,
        }
    }
}

/// Casts the float parameters of a module, except BatchNorm's.
struct Cast {
    dtype: DType,
    path: Vec<String>,
}

impl ModuleMapper for Cast {
    fn enter_module(&mut self, name: &str, _container: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.path.pop();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        // BatchNorm (scale, shift and running statistics) stays f32: see `batch_norm`.
        if self.path.iter().any(|n| n.starts_with("bn")) {
            return param;
        }
        let dtype = self.dtype;
        param.map(move |t| if t.dtype() == dtype { t } else { t.cast(dtype) })
    }
}

/// A low-precision copy of `module` whose parameters are casts of the f32 masters. BatchNorm
/// layers are not cast: they run in f32 and update the running statistics the masters share.
pub fn compute_copy<M: Module>(module: &M, p: Precision) -> M {
    module.clone().map(&mut Cast {
        dtype: p.dtype(),
        path: vec![],
    })
}

/// The model's embeddings of `images` computed in `p` (on a cast copy unless f32), returned in f32.
pub fn forward_embeddings(
    model: &ffem_model::model::EmbeddingModel,
    images: Tensor<4>,
    p: Precision,
) -> Tensor<2> {
    if p == Precision::F32 {
        model.forward(images)
    } else {
        compute_copy(model, p)
            .forward(images.cast(p.dtype()))
            .cast(DType::F32)
    }
}

/// Dynamic loss scale state.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LossScale {
    /// Current multiplier.
    pub scale: f32,
    /// Clean steps since the last change.
    pub good_steps: u32,
    /// Clean steps before doubling.
    pub growth_interval: u32,
}

impl Default for LossScale {
    fn default() -> Self {
        // 2^12 rather than PyTorch's 2^16: fewer skipped steps while the scale settles; growth
        // restores a larger scale within a few thousand steps if the gradients allow it.
        LossScale {
            scale: 4096.0,
            good_steps: 0,
            growth_interval: 1000,
        }
    }
}

impl LossScale {
    /// Records an overflow: halve.
    pub fn overflow(&mut self) {
        self.scale = (self.scale / 2.0).max(1.0);
        self.good_steps = 0;
    }
    /// Records a clean step: maybe double.
    pub fn clean(&mut self) {
        self.good_steps += 1;
        if self.good_steps >= self.growth_interval {
            self.scale = (self.scale * 2.0).min(2f32.powi(24));
            self.good_steps = 0;
        }
    }
}

/// Divides every gradient of `module`'s parameters by `factor`; returns false if any is non-finite.
pub fn unscale_and_check<M: Module>(
    module: &M,
    grads: GradientsParams,
    factor: f32,
) -> (GradientsParams, bool) {
    struct V {
        grads: GradientsParams,
        factor: f32,
        bad: Option<Tensor<1>>,
    }
    impl ModuleVisitor for V {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.remove::<D>(param.id) {
                let g = if self.factor != 1.0 {
                    g * (1.0 / self.factor)
                } else {
                    g
                };
                let nonfinite = g.clone().is_finite().bool_not().int().sum().float();
                self.bad = Some(match self.bad.take() {
                    Some(b) => b + nonfinite,
                    None => nonfinite,
                });
                self.grads.register::<D>(param.id, g);
            }
        }
    }
    let mut v = V {
        grads,
        factor,
        bad: None,
    };
    module.visit(&mut v);
    let ok = v.bad.is_none_or(|b| b.into_scalar::<f32>() == 0.0);
    (v.grads, ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_scale_halves_on_overflow_and_doubles_after_clean_steps() {
        let mut s = LossScale {
            scale: 1024.0,
            good_steps: 0,
            growth_interval: 3,
        };
        s.clean();
        s.clean();
        assert_eq!((s.scale, s.good_steps), (1024.0, 2));
        // An overflow halves the scale and restarts the count of clean steps.
        s.overflow();
        assert_eq!((s.scale, s.good_steps), (512.0, 0));
        for _ in 0..3 {
            s.clean();
        }
        assert_eq!((s.scale, s.good_steps), (1024.0, 0));
        // Bounded below by 1 and above by 2^24.
        let mut low = LossScale {
            scale: 1.0,
            ..s.clone()
        };
        low.overflow();
        assert_eq!(low.scale, 1.0);
        let mut high = LossScale {
            scale: 2f32.powi(24),
            good_steps: 2,
            growth_interval: 3,
        };
        high.clean();
        assert_eq!(high.scale, 2f32.powi(24));
    }

    #[test]
    fn unscaling_divides_gradients_and_flags_non_finite_ones() {
        use burn::module::{Module, Param};
        use burn::tensor::{Device, TensorData};
        #[derive(Module, Debug)]
        struct W {
            w: Param<Tensor<1>>,
        }
        let device = Device::flex().autodiff();
        let m = W {
            w: Param::from_tensor(Tensor::from_data(
                TensorData::new(vec![1.0f32, 2.0], [2]),
                &device,
            )),
        };
        // loss = 64 * sum(w * (3, -5)): gradient (192, -320), unscaled by 64 -> (3, -5).
        let coeff = Tensor::<1>::from_data(TensorData::new(vec![3.0f32, -5.0], [2]), &device);
        let loss = (m.w.val() * coeff).sum() * 64.0;
        let grads = GradientsParams::from_grads(loss.backward(), &m);
        let (mut grads, finite) = unscale_and_check(&m, grads, 64.0);
        assert!(finite);
        let g: Vec<f32> = grads
            .remove::<1>(m.w.id)
            .unwrap()
            .into_data()
            .try_into_vec()
            .unwrap();
        assert_eq!(g, vec![3.0, -5.0]);
        let loss = (m.w.val() * f32::INFINITY).sum();
        let grads = GradientsParams::from_grads(loss.backward(), &m);
        assert!(!unscale_and_check(&m, grads, 64.0).1);
    }
}

//! One optimisation step, shared by the trainer and the throughput benchmark so that what is
//! benchmarked is what trains: forward (in the configured precision), loss, backward, the
//! non-finite guard, loss scaling, the optimiser update. The loss and the batch accuracy come
//! back to the host in one read after backward, the step's only synchronisation.

use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Int, Tensor};
use ffem_model::losses::ClassifierLoss;
use ffem_model::model::EmbeddingModel;

use crate::precision::{LossScale, Precision, forward_embeddings, unscale_and_check};

/// Model and classifier, optimised together.
#[derive(Module, Debug)]
pub struct TrainModule {
    /// The embedding network.
    pub model: EmbeddingModel,
    /// The identity classifier carrying the loss.
    pub classifier: ClassifierLoss,
}

/// What became of a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepOutcome {
    /// The optimiser updated the weights.
    Applied,
    /// f16 only: the scaled gradients overflowed; the step was skipped and the scale halved (a
    /// normal event of dynamic loss scaling, not divergence).
    GradientOverflow,
    /// The loss itself was NaN or infinite; the step was skipped.
    NonFiniteLoss,
}

/// The result of [`train_step`].
pub struct StepResult {
    /// The module after the step (unchanged unless [`StepOutcome::Applied`]).
    pub module: TrainModule,
    /// The batch's loss.
    pub loss: f64,
    /// Fraction of the batch whose largest logit is its label.
    pub accuracy: f64,
    /// Whether the update happened.
    pub outcome: StepOutcome,
}

/// Runs one step on `images` [N, 3, S, S] with identity `labels` [N] at learning rate `lr`.
/// `loss_scale` is used and updated only for f16. `poison` multiplies the loss by NaN (fault
/// injection for the non-finite guard's tests; free when false).
#[allow(clippy::too_many_arguments)]
pub fn train_step(
    module: TrainModule,
    optim: &mut ModuleOptimizer,
    images: Tensor<4>,
    labels: Tensor<1, Int>,
    lr: f64,
    precision: Precision,
    loss_scale: &mut LossScale,
    poison: bool,
) -> StepResult {
    let n = labels.dims()[0];
    let embeddings = forward_embeddings(&module.model, images, precision);
    let out = module
        .classifier
        .forward(embeddings.clone(), labels.clone());
    let loss = if poison {
        out.loss * f32::NAN
    } else {
        out.loss
    };
    let scale = if precision == Precision::F16 {
        loss_scale.scale
    } else {
        1.0
    };
    let grads = GradientsParams::from_grads((loss.clone() * scale).backward(), &module);
    // The logits' own labels: with Partial FC they number the sampled identities.
    let correct = out
        .logits
        .argmax(1)
        .reshape([n])
        .equal(out.labels)
        .int()
        .sum()
        .float();
    let host = Tensor::cat(vec![loss.reshape([1]), correct.reshape([1])], 0)
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("two f32 values");
    let (loss, accuracy) = (host[0] as f64, host[1] as f64 / n as f64);
    if !loss.is_finite() {
        return StepResult {
            module,
            loss,
            accuracy,
            outcome: StepOutcome::NonFiniteLoss,
        };
    }
    let (grads, finite) = if precision == Precision::F32 {
        (grads, true)
    } else {
        unscale_and_check(&module, grads, scale)
    };
    if !finite {
        loss_scale.overflow();
        return StepResult {
            module,
            loss,
            accuracy,
            outcome: StepOutcome::GradientOverflow,
        };
    }
    loss_scale.clean();
    let mut module = optim.step(lr, module, grads);
    // Center loss moves its centres by its own rule, after the gradient step.
    module.classifier = module.classifier.update_centres(embeddings, labels);
    StepResult {
        module,
        loss,
        accuracy,
        outcome: StepOutcome::Applied,
    }
}

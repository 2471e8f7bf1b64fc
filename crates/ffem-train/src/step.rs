//! One optimisation step, shared by the trainer and the throughput benchmark so that what is
//! benchmarked is what trains: forward (in the configured precision), loss, backward, the
//! non-finite guard, loss scaling, the optimiser update. The loss and the batch accuracy come
//! back to the host in one read after backward, the step's only synchronisation.

use crate::distill::Distiller;
use crate::losses::ClassifierLoss;
use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Int, Tensor, TensorData};
use ffem_model::model::EmbeddingModel;

use crate::precision::{LossScale, Precision, forward_embeddings, unscale_and_check};

/// Model and classifier, optimised together.
#[derive(Module, Debug)]
pub struct TrainModule {
    /// The embedding network.
    pub model: EmbeddingModel,
    /// The identity classifier carrying the loss.
    pub classifier: ClassifierLoss,
    /// Co-Mining's second network, trained beside the first on the same batches; the run's model
    /// is the first.
    pub peer: Option<Peer>,
    /// Knowledge distillation: the projection onto the teacher's space and the term's weight.
    pub distill: Option<DistillTerm>,
}

/// The distillation term of a step (see `crate::distill`).
#[derive(Module, Debug)]
pub struct DistillTerm {
    /// Projection and metric.
    pub head: Distiller,
    /// Multiplies the term when it is added to the classification loss.
    #[module(skip)]
    pub weight: f64,
    /// Distillation alone: the classifier is not run and labels are not used; the accuracy
    /// reported is the mean cosine to the teacher.
    #[module(skip)]
    pub only: bool,
}

/// The peer network of Co-Mining (Wang et al., ICCV 2019).
#[derive(Module, Debug)]
pub struct Peer {
    /// Its embedding network (initialised apart from the first's).
    pub model: EmbeddingModel,
    /// Its classifier.
    pub classifier: ClassifierLoss,
    /// Weight of the images both networks find clean, relative to 1 for the images only the
    /// other network vouches for.
    #[module(skip)]
    pub clean_weight: f64,
}

/// Co-Mining's split of a batch, from both networks' per-image losses: each network calls its
/// `drop` highest-loss images noisy. An image the *other* network calls noisy gets weight 0 (so
/// each network learns from the images its peer vouches for: the exchange that keeps one
/// network's selection errors from feeding back into itself); an image neither calls noisy
/// gets `clean_weight` (the re-weighting that lets confident clean faces dominate); an image
/// only the network itself calls noisy keeps weight 1. Returns the weights of the first network
/// and of the second.
pub fn co_mining_weights(
    loss_a: &[f32],
    loss_b: &[f32],
    drop: usize,
    clean_weight: f64,
) -> (Vec<f32>, Vec<f32>) {
    let noisy = |loss: &[f32]| {
        let mut order: Vec<usize> = (0..loss.len()).collect();
        order.sort_by(|&i, &j| loss[j].total_cmp(&loss[i]).then(i.cmp(&j)));
        let mut flag = vec![false; loss.len()];
        for &i in order.iter().take(drop) {
            flag[i] = true;
        }
        flag
    };
    let (na, nb) = (noisy(loss_a), noisy(loss_b));
    let weight = |own: bool, other: bool| match (own, other) {
        (_, true) => 0.0,
        (false, false) => clean_weight as f32,
        (true, false) => 1.0,
    };
    let wa = (0..loss_a.len()).map(|i| weight(na[i], nb[i])).collect();
    let wb = (0..loss_b.len()).map(|i| weight(nb[i], na[i])).collect();
    (wa, wb)
}

/// The weighted mean `sum(w l) / sum(w)` of per-image losses (N, 1).
fn weighted_mean(per_sample: Tensor<2>, weights: Vec<f32>) -> Tensor<1> {
    let n = weights.len();
    let total: f32 = weights.iter().sum::<f32>().max(1e-6);
    let w = Tensor::<2>::from_data(TensorData::new(weights, [n, 1]), &per_sample.device());
    ((per_sample * w).sum() / total as f64).reshape([1])
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
/// injection for the non-finite guard's tests; free when false). With a Co-Mining peer,
/// `drop_rate` is the share of each batch each network calls noisy (see [`co_mining_weights`]);
/// the loss reported is the mean of the two networks' weighted losses. With a distillation term,
/// `teacher` holds the batch's teacher embeddings (N, teacher width).
#[allow(clippy::too_many_arguments)]
pub fn train_step(
    module: TrainModule,
    optim: &mut ModuleOptimizer,
    images: Tensor<4>,
    labels: Tensor<1, Int>,
    teacher: Option<Tensor<2>>,
    lr: f64,
    precision: Precision,
    loss_scale: &mut LossScale,
    poison: bool,
    drop_rate: f64,
) -> StepResult {
    let n = labels.dims()[0];
    let peer_out = module.peer.as_ref().map(|peer| {
        let emb = forward_embeddings(&peer.model, images.clone(), precision);
        let out = peer.classifier.forward(emb.clone(), labels.clone());
        (out, emb, peer.clean_weight)
    });
    let embeddings = forward_embeddings(&module.model, images, precision);
    let distilled = module.distill.as_ref().map(|d| {
        let teacher = teacher.expect("a distillation step needs the batch's teacher embeddings");
        (
            d.head.forward(embeddings.clone(), teacher),
            d.weight,
            d.only,
        )
    });
    if let Some((d, _, true)) = distilled {
        return finish_step(
            module,
            optim,
            d.loss,
            d.mean_cosine,
            lr,
            precision,
            loss_scale,
            poison,
            None,
        );
    }
    let out = module
        .classifier
        .forward(embeddings.clone(), labels.clone());
    let (objective, peer_embeddings) = match peer_out {
        Some((peer_out, peer_emb, clean_weight)) => {
            let (Some(own), Some(other)) = (out.per_sample.clone(), peer_out.per_sample) else {
                panic!("Co-Mining needs a per-image loss; the configuration check refuses others")
            };
            // One extra read: the split needs both networks' per-image losses on the host.
            let host = Tensor::cat(
                vec![own.clone().reshape([n]), other.clone().reshape([n])],
                0,
            )
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .expect("f32 losses");
            let drop = (drop_rate * n as f64).round() as usize;
            let (wa, wb) = co_mining_weights(&host[..n], &host[n..], drop, clean_weight);
            let both = weighted_mean(own, wa) + weighted_mean(other, wb);
            (both / 2.0, Some(peer_emb))
        }
        None => (out.loss, None),
    };
    let objective = match distilled {
        Some((d, weight, _)) => objective + d.loss * weight,
        None => objective,
    };
    // The logits' own labels: with Partial FC they number the sampled identities.
    let correct = out
        .logits
        .argmax(1)
        .reshape([n])
        .equal(out.labels)
        .int()
        .sum()
        .float()
        / n as f64;
    finish_step(
        module,
        optim,
        objective,
        correct,
        lr,
        precision,
        loss_scale,
        poison,
        Some((embeddings, labels, peer_embeddings)),
    )
}

/// The second half of a step: backward, the guards, the update, and center loss's centre moves
/// (`centre_inputs`: the embeddings, labels and the peer's embeddings the classifiers saw).
#[allow(clippy::too_many_arguments)]
fn finish_step(
    module: TrainModule,
    optim: &mut ModuleOptimizer,
    objective: Tensor<1>,
    accuracy: Tensor<1>,
    lr: f64,
    precision: Precision,
    loss_scale: &mut LossScale,
    poison: bool,
    centre_inputs: Option<(Tensor<2>, Tensor<1, Int>, Option<Tensor<2>>)>,
) -> StepResult {
    let loss = if poison {
        objective * f32::NAN
    } else {
        objective
    };
    let scale = if precision == Precision::F16 {
        loss_scale.scale
    } else {
        1.0
    };
    let grads = GradientsParams::from_grads((loss.clone() * scale).backward(), &module);
    let host = Tensor::cat(vec![loss.reshape([1]), accuracy.reshape([1])], 0)
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("two f32 values");
    let (loss, accuracy) = (host[0] as f64, host[1] as f64);
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
    if let Some((embeddings, labels, peer_embeddings)) = centre_inputs {
        module.classifier = module.classifier.update_centres(embeddings, labels.clone());
        if let (Some(mut peer), Some(emb)) = (module.peer.take(), peer_embeddings) {
            peer.classifier = peer.classifier.update_centres(emb, labels);
            module.peer = Some(peer);
        }
    }
    StepResult {
        module,
        loss,
        accuracy,
        outcome: StepOutcome::Applied,
    }
}

#[cfg(test)]
mod tests {
    use super::co_mining_weights;

    #[test]
    fn co_mining_drops_what_the_peer_calls_noisy_and_upweights_agreed_clean() {
        // Network A's two highest losses: images 0 and 3; network B's: images 3 and 4.
        let a = [5.0, 1.0, 2.0, 9.0, 0.5, 0.1];
        let b = [0.2, 1.0, 2.0, 8.0, 7.0, 0.1];
        let (wa, wb) = co_mining_weights(&a, &b, 2, 2.0);
        // Image 3 (both noisy): dropped by both. Image 0 (A noisy, B clean): A keeps it at 1 on
        // B's word, B drops it on A's. Image 4 the other way round. The rest: clean for both.
        assert_eq!(wa, vec![1.0, 2.0, 2.0, 0.0, 0.0, 2.0]);
        assert_eq!(wb, vec![0.0, 2.0, 2.0, 0.0, 1.0, 2.0]);
        // Dropping nothing weights every image alike.
        let (wa, wb) = co_mining_weights(&a, &b, 0, 2.0);
        assert!(wa.iter().chain(&wb).all(|&w| w == 2.0));
    }
}

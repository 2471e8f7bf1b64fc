//! Partial FC (An et al., CVPR 2022): each step's loss over the batch's identities plus a
//! random share of the others, so that only the sampled rows of a large classifier take part.

use burn::tensor::{Distribution, Int, Tensor, TensorData};

use super::ClassifierLoss;
use super::common::LossOutput;

impl ClassifierLoss {
    /// Partial FC: the loss over the batch's identities plus a random share of the others,
    /// `ceil(rate x classes)` in all, drawn from the backend's RNG (seeded per step by the
    /// trainer, so runs repeat). Only the sampled rows receive gradient. Public so that tests can
    /// run the sampled path at `rate = 1`, where it must equal the plain loss.
    pub fn forward_sampled(&self, emb: Tensor<2>, labels: Tensor<1, Int>, rate: f64) -> LossOutput {
        let device = emb.device();
        let classes = self.classes();
        let k = self.config.centres_per_class();
        let host_labels: Vec<i64> = labels
            .to_data()
            .convert::<i64>()
            .try_into_vec::<i64>()
            .expect("integer labels");
        let scores: Vec<f32> =
            Tensor::<1>::random([classes], Distribution::Uniform(0.0, 1.0), &device)
                .into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .expect("f32 scores");
        let mut keep = vec![false; classes];
        for &l in &host_labels {
            keep[l as usize] = true;
        }
        let positives = keep.iter().filter(|k| **k).count();
        let wanted = ((rate * classes as f64).ceil() as usize).clamp(positives, classes);
        let mut others: Vec<usize> = (0..classes).filter(|c| !keep[*c]).collect();
        others.sort_by(|a, b| scores[*b].total_cmp(&scores[*a]).then(a.cmp(b)));
        for &c in others.iter().take(wanted - positives) {
            keep[c] = true;
        }
        // Sampled identities in class order, each label's position among them, their rows.
        let sampled: Vec<usize> = (0..classes).filter(|c| keep[*c]).collect();
        let mut position = vec![0i64; classes];
        for (p, &c) in sampled.iter().enumerate() {
            position[c] = p as i64;
        }
        let rows: Vec<i64> = sampled
            .iter()
            .flat_map(|&c| (c * k..c * k + k).map(|r| r as i64))
            .collect();
        let n_rows = rows.len();
        let index = |v: Vec<i64>, len: usize| {
            Tensor::<1, Int>::from_data(TensorData::new(v, [len]), &device)
        };
        let weight = self.weight.val().select(0, index(rows, n_rows));
        let bias = self.bias.as_ref().map(|b| {
            b.val().select(
                0,
                index(sampled.iter().map(|&c| c as i64).collect(), sampled.len()),
            )
        });
        let n = host_labels.len();
        let remapped = index(
            host_labels.iter().map(|&l| position[l as usize]).collect(),
            n,
        );
        self.loss_with(weight, bias, emb, remapped)
    }
}

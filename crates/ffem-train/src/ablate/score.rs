//! Scoring a variant's model: the configured pair sets (LFW, CFP, `.bin`, pairs drawn from
//! held-out lists) under the 10-fold protocol, the pooled ROC thinned for the report, and
//! leave-one-out Recall@1; and what a finished variant records (`result.json`).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use ffem_data::image_list::ImageList;
use ffem_infer::embed::Embedder;
use ffem_infer::evalset::{PairSet, embed_set, set_distances, verify_set};
use ffem_model::model::load_model;

use super::data::expand;
use super::study::StudyEval;
use crate::error::TrainError;

/// One pair set's scores for a variant.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SetScore {
    /// The set's name.
    pub set: String,
    /// 10-fold accuracy.
    pub accuracy: f64,
    /// Its standard deviation over folds.
    pub std: f64,
    /// Pooled TAR at FAR = 1e-3 (None when the set has too few different pairs).
    pub tar_at_far_1e3: Option<f64>,
    /// Area under the pooled ROC.
    pub auc: f64,
    /// Equal error rate.
    pub eer: f64,
    /// The pooled ROC, thinned to at most ~300 points (FAR, TAR).
    pub roc: Vec<(f64, f64)>,
}

/// What a finished variant measured (`variants/NAME/result.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VariantResult {
    /// The variant's name.
    pub name: String,
    /// Its loss, as configured.
    pub loss: String,
    /// Keys it sets over the base, as TOML text.
    pub settings: String,
    /// Scores per pair set, in the configured order.
    pub sets: Vec<SetScore>,
    /// Leave-one-out Recall@1 over the first set's images.
    pub recall_at_1: Option<f64>,
    /// Training wall time in seconds (of the call that finished it).
    pub train_seconds: f64,
    /// Training throughput.
    pub images_per_sec: f64,
    /// Steps trained.
    pub steps: u64,
    /// Last batch loss.
    pub last_loss: f64,
}

/// A pair set and, for sets drawn from a list, its images' labels (other sets take identities
/// from their images' first path component).
pub(super) type ScoredSet = (PairSet, Option<Vec<i64>>);

/// Loads the configured pair sets.
pub(super) fn load_sets(
    eval: &StudyEval,
    data_root: Option<&Path>,
) -> Result<Vec<ScoredSet>, TrainError> {
    let mut specs = Vec::new();
    for (kind, dir) in [
        ("lfw", &eval.lfw),
        ("cfp_fp", &eval.cfp_fp),
        ("cfp_ff", &eval.cfp_ff),
    ] {
        if let Some(d) = dir {
            specs.push(format!("{kind}:{}", expand(d, data_root)?.display()));
        }
    }
    for b in &eval.bins {
        specs.push(format!("bin:{}", expand(b, data_root)?.display()));
    }
    let mut sets = specs
        .into_iter()
        .map(|spec| {
            PairSet::from_spec(&spec)
                .map(|set| (set, None))
                .map_err(|source| TrainError::ValSet { spec, source })
        })
        .collect::<Result<Vec<_>, _>>()?;
    for l in &eval.lists {
        let json = expand(&l.json, data_root)?;
        let list = ImageList::load(&json)?;
        let set = PairSet::from_list(&l.name, &expand(&l.root, data_root)?, &list, l.pairs, 0)?;
        let labels = list.entries.iter().map(|e| e.label as i64).collect();
        sets.push((set, Some(labels)));
    }
    Ok(sets)
}

/// Keeps about `max` points of a ROC, evenly spaced in log FAR, plus its ends.
fn thin_roc(roc: &[(f64, f64)], max: usize) -> Vec<(f64, f64)> {
    if roc.len() <= max {
        return roc.to_vec();
    }
    let mut out = vec![roc[0]];
    let mut next = -6.0f64;
    let step = 6.0 / max as f64;
    for &(far, tar) in roc {
        if far > 0.0 && far.log10() >= next {
            out.push((far, tar));
            next = far.log10() + step;
        }
    }
    out.push(*roc.last().expect("non-empty"));
    out
}

/// Scores a trained model on the sets (and Recall@1 over the first).
pub(super) fn score(
    device: &burn::tensor::Device,
    model_dir: &Path,
    sets: &[ScoredSet],
    identification: bool,
    progress: bool,
) -> Result<(Vec<SetScore>, Option<f64>), TrainError> {
    let (model_cfg, model) = load_model(model_dir, device)?;
    let align = model_cfg.align;
    let embedder = Embedder::new(&model, model_cfg, device);
    let mut scores = Vec::new();
    let mut recall = None;
    for (i, (set, list_labels)) in sets.iter().enumerate() {
        let emb = embed_set(&embedder, &set.faces, align, true, progress)?;
        let v = verify_set(set, &emb);
        let issame: Vec<bool> = set.pairs.iter().map(|p| p.2).collect();
        let roc = ffem_eval::verification::pooled_roc(&set_distances(set, &emb), &issame);
        scores.push(SetScore {
            set: set.name.clone(),
            accuracy: v.accuracy,
            std: v.std,
            tar_at_far_1e3: v
                .tar_at_far
                .iter()
                .find(|(far, _)| (*far - 1e-3).abs() < 1e-12)
                .map(|p| p.1),
            auc: v.auc,
            eer: v.eer,
            roc: thin_roc(&roc, 300),
        });
        if i == 0 && identification {
            let mut ids: BTreeMap<&str, i64> = BTreeMap::new();
            let labels: Vec<i64> = match list_labels {
                Some(l) => l.clone(),
                None => set
                    .faces
                    .iter()
                    .map(|f| {
                        let person = f.name.split('/').next().unwrap_or(&f.name);
                        let next = ids.len() as i64;
                        *ids.entry(person).or_insert(next)
                    })
                    .collect(),
            };
            recall = Some(ffem_eval::identify(&emb.embeddings, &labels, emb.dim, 1).recall_at_1);
        }
    }
    Ok((scores, recall))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thin_roc_keeps_the_ends_and_thins_in_log_far() {
        let roc: Vec<(f64, f64)> = (0..=10_000)
            .map(|i| (i as f64 / 10_000.0, (i as f64 / 10_000.0).sqrt()))
            .collect();
        let thin = thin_roc(&roc, 300);
        assert!(thin.len() < 400 && thin.len() > 100, "{}", thin.len());
        assert_eq!((thin[0], *thin.last().unwrap()), (roc[0], roc[10_000]));
        assert!(thin.windows(2).all(|w| w[0].0 <= w[1].0));
    }
}

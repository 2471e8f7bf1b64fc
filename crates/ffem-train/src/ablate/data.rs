//! The study's training data: the configured lists merged into one identity space, a fraction
//! of labels flipped (deterministically) for the noisy-label studies, packed once and reused by
//! every variant and every resumed run of the same data.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use ffem_data::PackOptions;
use ffem_data::image_list::{ImageList, flip_labels, merge_lists, write_image_list};

use super::study::{AblationConfig, ListSpec};
use crate::error::TrainError;

/// Expands `{data}` in a configured path.
pub(super) fn expand(path: &str, data_root: Option<&Path>) -> Result<PathBuf, TrainError> {
    match data_root {
        Some(root) => Ok(PathBuf::from(
            path.replace("{data}", &root.display().to_string()),
        )),
        None if path.contains("{data}") => Err(TrainError::Setup(format!(
            "the study's path {path:?} uses {{data}}: give the data folder (ffem ablate --data DIR, or FFEM_DATA)"
        ))),
        None => Ok(PathBuf::from(path)),
    }
}

/// What the study's data folder was built from; a resumed study must match it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct DataStamp {
    lists: Vec<ListSpec>,
    align: bool,
    label_noise: f64,
    noise_seed: u64,
}

/// Merges the lists (labels offset per list), flips `label_noise` of the labels, packs into
/// `out/data/records`; reuses a finished pack of the same data. Returns the records folder.
pub(super) fn prepare_data(
    cfg: &AblationConfig,
    noise: f64,
    out: &Path,
    data_root: Option<&Path>,
    progress: bool,
) -> Result<PathBuf, TrainError> {
    let dir = out.join("data");
    let records = dir.join("records");
    let stamp = DataStamp {
        lists: cfg.data.lists.clone(),
        align: cfg.data.align,
        label_noise: noise,
        noise_seed: cfg.noise_seed,
    };
    let stamp_path = dir.join("source.json");
    if records.join("manifest.json").is_file() {
        let text =
            std::fs::read_to_string(&stamp_path).map_err(|e| TrainError::io(&stamp_path, e))?;
        let old: DataStamp = serde_json::from_str(&text)
            .map_err(|e| TrainError::Setup(format!("{}: {e}", stamp_path.display())))?;
        if old != stamp {
            return Err(TrainError::Setup(format!(
                "{} holds a study of other data or noise ({}); choose another --out",
                out.display(),
                stamp_path.display()
            )));
        }
        return Ok(records);
    }
    std::fs::create_dir_all(&dir).map_err(|e| TrainError::io(&dir, e))?;
    let mut lists = Vec::new();
    for spec in &cfg.data.lists {
        let json = expand(&spec.json, data_root)?;
        let root = expand(&spec.root, data_root)?;
        let root = std::fs::canonicalize(&root).map_err(|e| TrainError::io(&root, e))?;
        let list = ImageList::load(&json)?;
        if !list.rejected.is_empty() {
            tracing::warn!(
                "{}: {} entries rejected (first: {} — {})",
                json.display(),
                list.rejected.len(),
                list.rejected[0].key,
                list.rejected[0].reason
            );
        }
        lists.push((root, list.entries));
    }
    let mut entries = merge_lists(lists);
    let mut labels: Vec<u64> = entries.iter().map(|e| e.label).collect();
    let clean_list = dir.join("image_list.clean.json");
    write_image_list(&clean_list, &entries)?;
    let flipped = flip_labels(&mut labels, noise, cfg.noise_seed);
    let flipped_paths: Vec<String> = flipped.iter().map(|&i| entries[i].path.clone()).collect();
    for (e, l) in entries.iter_mut().zip(&labels) {
        e.label = *l;
    }
    let noise_json = serde_json::json!({
        "fraction": noise, "seed": cfg.noise_seed, "flipped": flipped_paths,
    });
    ffem_data::atomic::write_json(&dir.join("noise.json"), &noise_json)?;
    let list_path = dir.join("image_list.json");
    write_image_list(&list_path, &entries)?;
    let mut opts = PackOptions::new(PathBuf::from("/"), list_path, &records);
    opts.align = cfg.data.align;
    opts.progress = progress;
    opts.overwrite = true;
    let report = ffem_data::pack(&opts)?;
    tracing::info!(
        "study data: {} images of {} identities ({} flipped, {} skipped) in {}",
        report.manifest.records,
        report.manifest.identities,
        flipped.len(),
        report.manifest.skipped.len(),
        records.display()
    );
    ffem_data::atomic::write_json(&stamp_path, &stamp)?;
    Ok(records)
}

//! Packs real LFW images and reads them back byte for byte; runs them through the pipeline.

use std::collections::HashMap;

use ffem_data::image_list::ImageList;
use ffem_data::{AugmentConfig, PackOptions, Pipeline, PipelineConfig, RecordSource, pack};

#[test]
fn lfw_subset_round_trips_through_records_and_pipeline() {
    let Some(data) = ffem_data::shared_data_dir() else { return };
    let lfw = data.join("lfw");
    let list = ImageList::load(&lfw.join("image_list.json")).unwrap();
    assert_eq!(list.entries.len(), 13_233);
    assert!(list.rejected.is_empty());
    // A subset keeps the test quick: the first 600 entries in file order.
    let dir = tempfile::tempdir().unwrap();
    let subset: Vec<_> = list.entries[..600].to_vec();
    let json = dir.path().join("subset.json");
    ffem_data::image_list::write_image_list(&json, &subset).unwrap();
    let out = dir.path().join("lfw");
    let mut opts = PackOptions::new(lfw.join("lfw-deepfunneled"), &json, &out);
    opts.shard_bytes = 2 << 20;
    let report = pack(&opts).unwrap();
    assert_eq!(report.manifest.records, 600);
    assert!(report.manifest.skipped.is_empty());
    assert!(report.manifest.shards.len() >= 3, "several shards of 2 MiB");

    let by_path: HashMap<_, _> = subset.iter().map(|e| (e.path.clone(), e)).collect();
    let label_map: HashMap<u64, u64> = report.manifest.label_map.iter().copied().collect();
    let src = RecordSource::open(&out).unwrap();
    let mut n = 0;
    for r in src.records(false) {
        let r = r.unwrap();
        let path = r.path.clone().unwrap();
        let e = by_path[&path];
        assert_eq!(r.jpeg, std::fs::read(lfw.join("lfw-deepfunneled").join(&path)).unwrap(), "{path}");
        assert_eq!(r.label as u64, label_map[&e.label]);
        let b = e.face_box.unwrap();
        assert_eq!(r.face_box, [b.x1, b.y1, b.x2, b.y2].map(|v| v.clamp(0.0, 250.0).round() as i64));
        assert_eq!(r.landmarks, e.landmarks);
        n += 1;
    }
    assert_eq!(n, 600);

    let cfg = PipelineConfig {
        batch_size: 50,
        align: true,
        augment: AugmentConfig::seed_default(),
        num_classes: Some(report.manifest.identities),
        ..Default::default()
    };
    let batches: Vec<_> = Pipeline::new(src, cfg).unwrap().epoch(0, 0).map(Result::unwrap).collect();
    assert_eq!(batches.len(), 12);
    assert!(batches.iter().all(|b| b.images.len() == 50 * 3 * 112 * 112));
    // Real faces are not flat: each aligned crop has real contrast.
    for img in batches[0].images.chunks_exact(3 * 112 * 112) {
        let mean = img.iter().sum::<f32>() / img.len() as f32;
        let var = img.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / img.len() as f32;
        assert!(var > 0.01, "variance {var}");
    }
}

//! The pipeline over several shards: every record exactly once per epoch, shard order and record
//! order shuffled per epoch (not shard after shard); damaged records and undecodable images stop
//! the epoch with the file named, or with `skip_corrupt` are left out and the rest still arrive.

use std::collections::BTreeSet;
use std::path::Path;

use ffem_data::example::FaceRecord;
use ffem_data::imageops::encode_jpeg;
use ffem_data::tfrecord::RecordWriter;
use ffem_data::{Pipeline, PipelineConfig, RecordSource};
use image::RgbImage;

const SHARDS: i64 = 4;
const PER_SHARD: i64 = 10;

/// Shard s holds labels 10 s .. 10 s + 9; `bad_jpeg` replaces that label's image by junk.
fn write_shards(dir: &Path, bad_jpeg: Option<i64>) {
    let jpeg = encode_jpeg(
        &RgbImage::from_pixel(24, 24, image::Rgb([90, 120, 150])),
        90,
    )
    .unwrap();
    for s in 0..SHARDS {
        let mut w = RecordWriter::create(&dir.join(format!("shard-{s}.tfrecord"))).unwrap();
        for i in 0..PER_SHARD {
            let label = s * PER_SHARD + i;
            let rec = FaceRecord {
                jpeg: if bad_jpeg == Some(label) {
                    b"not a jpeg".to_vec()
                } else {
                    jpeg.clone()
                },
                label,
                face_box: [0, 0, 24, 24],
                landmarks: None,
                path: Some(format!("img{label}")),
            };
            w.write(&rec.to_example()).unwrap();
        }
        w.finish().unwrap();
    }
}

fn config(skip_corrupt: bool) -> PipelineConfig {
    PipelineConfig {
        image_size: 8,
        batch_size: 5,
        shuffle_buffer: 8,
        seed: 12,
        workers: 2,
        skip_corrupt,
        // Keep the short last batch: the tests count every record.
        drop_last: false,
        ..Default::default()
    }
}

/// The labels of one epoch in order, or the first error's text.
fn epoch_labels(dir: &Path, cfg: PipelineConfig, epoch: u64) -> Result<Vec<i64>, String> {
    let pipeline = Pipeline::new(RecordSource::open(dir).unwrap(), cfg).unwrap();
    let mut labels = Vec::new();
    for batch in pipeline.epoch(epoch, 0) {
        labels.extend(batch.map_err(|e| e.to_string())?.labels);
    }
    Ok(labels)
}

#[test]
fn every_record_once_per_epoch_in_a_new_order_across_shards() {
    let dir = tempfile::tempdir().unwrap();
    write_shards(dir.path(), None);
    let all: BTreeSet<i64> = (0..SHARDS * PER_SHARD).collect();
    let mut first_shards = BTreeSet::new();
    let mut orders = Vec::new();
    for epoch in 0..6 {
        let labels = epoch_labels(dir.path(), config(false), epoch).unwrap();
        assert_eq!(labels.len(), all.len(), "epoch {epoch}: {labels:?}");
        assert_eq!(labels.iter().copied().collect::<BTreeSet<_>>(), all);
        // Records of different shards mix within the first two batches.
        let shards_early: BTreeSet<i64> = labels[..10].iter().map(|l| l / PER_SHARD).collect();
        assert!(shards_early.len() >= 2, "epoch {epoch}: {labels:?}");
        first_shards.insert(labels[0] / PER_SHARD);
        orders.push(labels);
    }
    assert!(
        first_shards.len() >= 2,
        "the shard order never changes: {first_shards:?}"
    );
    assert!(orders.windows(2).all(|w| w[0] != w[1]));
}

#[test]
fn a_damaged_record_names_its_file_or_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    write_shards(dir.path(), None);
    // Flip one byte inside the third record of shard 2 (records here are equal-sized): its data
    // CRC no longer matches.
    let shard = dir.path().join("shard-2.tfrecord");
    let mut bytes = std::fs::read(&shard).unwrap();
    let record_len = bytes.len() / PER_SHARD as usize;
    bytes[2 * record_len + 20] ^= 0xff;
    std::fs::write(&shard, &bytes).unwrap();

    let err = epoch_labels(dir.path(), config(false), 0).unwrap_err();
    assert!(
        err.contains("shard-2.tfrecord") && err.contains("--skip-corrupt"),
        "{err}"
    );
    let labels = epoch_labels(dir.path(), config(true), 0).unwrap();
    let missing: Vec<i64> = (0..SHARDS * PER_SHARD)
        .filter(|l| !labels.contains(l))
        .collect();
    assert_eq!(missing, vec![22], "only the damaged record is left out");
}

#[test]
fn an_undecodable_image_names_its_record_or_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    write_shards(dir.path(), Some(13));
    let err = epoch_labels(dir.path(), config(false), 0).unwrap_err();
    assert!(err.contains("record img13"), "{err}");
    let labels = epoch_labels(dir.path(), config(true), 0).unwrap();
    assert_eq!(labels.len(), 39);
    assert!(!labels.contains(&13));
}

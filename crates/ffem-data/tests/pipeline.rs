//! The input pipeline on small generated records: order, determinism, per-image augmentation.

use ffem_data::example::FaceRecord;
use ffem_data::imageops::encode_jpeg;
use ffem_data::tfrecord::RecordWriter;
use ffem_data::{AugmentConfig, Pipeline, PipelineConfig, RecordSource};
use image::RgbImage;

fn write_dataset(dir: &std::path::Path, n: usize) -> RecordSource {
    write_labelled(dir, n, |i| i as i64)
}

fn write_labelled(dir: &std::path::Path, n: usize, label: impl Fn(usize) -> i64) -> RecordSource {
    let path = dir.join("d.tfrecord");
    let mut w = RecordWriter::create(&path).unwrap();
    for i in 0..n {
        // Left half dark, right half bright: a flip is visible in the output.
        let img = RgbImage::from_fn(40, 40, |x, _| {
            if x < 20 {
                image::Rgb([20, 20, 20])
            } else {
                image::Rgb([230, 230, 230])
            }
        });
        let rec = FaceRecord {
            jpeg: encode_jpeg(&img, 95).unwrap(),
            label: label(i),
            face_box: [0, 0, 40, 40],
            landmarks: None,
            path: Some(format!("img{i}")),
        };
        w.write(&rec.to_example()).unwrap();
    }
    w.finish().unwrap();
    RecordSource::open(&path).unwrap()
}

fn config(seed: u64, workers: usize) -> PipelineConfig {
    PipelineConfig {
        image_size: 16,
        batch_size: 8,
        shuffle_buffer: 10,
        seed,
        workers,
        ..Default::default()
    }
}

#[test]
fn same_seed_same_batches_whatever_the_worker_count() {
    let dir = tempfile::tempdir().unwrap();
    let src = write_dataset(dir.path(), 30);
    let run = |seed, workers| -> Vec<(Vec<i64>, Vec<f32>)> {
        let p = Pipeline::new(src.clone(), config(seed, workers)).unwrap();
        p.epoch(0, 0)
            .map(|b| b.unwrap())
            .map(|b| (b.labels, b.images))
            .collect()
    };
    let a = run(7, 1);
    assert_eq!(a.len(), 3, "30 images, batch 8, drop_last: 3 batches");
    assert_eq!(a, run(7, 3));
    assert_ne!(a, run(8, 2));
    let mut labels: Vec<i64> = a.iter().flat_map(|(l, _)| l.clone()).collect();
    assert_ne!(labels, (0..24).collect::<Vec<_>>(), "shuffled");
    labels.sort();
    labels.dedup();
    assert_eq!(labels.len(), 24, "no duplicates");
    // Every value is normalised into [-1, 1].
    assert!(
        a.iter()
            .flat_map(|(_, i)| i)
            .all(|v| (-1.0..=1.0).contains(v))
    );
}

#[test]
fn epochs_end_cleanly_and_resume_skips_batches() {
    let dir = tempfile::tempdir().unwrap();
    let src = write_dataset(dir.path(), 30);
    let mut cfg = config(1, 2);
    cfg.drop_last = false;
    let p = Pipeline::new(src, cfg).unwrap();
    let all: Vec<_> = p.epoch(3, 0).map(Result::unwrap).collect();
    assert_eq!(
        all.iter().map(|b| b.len()).collect::<Vec<_>>(),
        [8, 8, 8, 6]
    );
    let resumed: Vec<_> = p.epoch(3, 2).map(Result::unwrap).collect();
    assert_eq!(resumed.len(), 2);
    assert_eq!(resumed[0].labels, all[2].labels);
    assert_eq!(resumed[1].images, all[3].images);
    // A different epoch has a different order.
    let other: Vec<i64> = p.epoch(4, 0).flat_map(|b| b.unwrap().labels).collect();
    assert_ne!(
        other,
        all.iter()
            .flat_map(|b| b.labels.clone())
            .collect::<Vec<_>>()
    );
}

#[test]
fn flips_are_drawn_per_image_not_once_per_run() {
    let dir = tempfile::tempdir().unwrap();
    let src = write_dataset(dir.path(), 64);
    let mut cfg = config(5, 2);
    cfg.batch_size = 64;
    cfg.augment = AugmentConfig {
        flip: true,
        ..AugmentConfig::none()
    };
    cfg.augment.probability = 0.5;
    let batch = Pipeline::new(src, cfg)
        .unwrap()
        .epoch(0, 0)
        .next()
        .unwrap()
        .unwrap();
    let plane = 16 * 16;
    // Pixel (row 8, col 0) of the red channel: dark when not flipped, bright when flipped.
    let flipped = (0..64)
        .filter(|i| batch.images[i * 3 * plane + 8 * 16] > 0.0)
        .count();
    assert!(
        (16..=48).contains(&flipped),
        "{flipped} of 64 flipped: coin flips must be per image"
    );
}

#[test]
fn label_outside_num_classes_is_an_error_naming_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let src = write_dataset(dir.path(), 10);
    let mut cfg = config(0, 1);
    cfg.shuffle_buffer = 0;
    cfg.num_classes = Some(5);
    let results: Vec<_> = Pipeline::new(src, cfg).unwrap().epoch(0, 0).collect();
    let err = results
        .iter()
        .find_map(|r| r.as_ref().err())
        .expect("an error")
        .to_string();
    assert!(
        err.contains("record img5 has label 5, outside 0..5"),
        "{err}"
    );
}

/// Without augmentation a batch holds each record's box resized bilinearly (half-pixel centres)
/// and scaled to [-1, 1], channel-planar: every value of every channel of every image against
/// the resize written out here in f64 on the images' known pixels (PNG records, so no codec
/// loss), in record order.
#[test]
fn without_augmentation_the_crop_is_the_plain_resize() {
    let dir = tempfile::tempdir().unwrap();
    let (side, size, n) = (40usize, 16usize, 8usize);
    let pixel = |i: usize, x: usize, y: usize| -> [f64; 3] {
        [
            ((3 * x + 2 * y) % 256) as f64,
            ((5 * y + 7 * i) % 256) as f64,
            ((x * y + i) % 256) as f64,
        ]
    };
    let path = dir.path().join("d.tfrecord");
    let mut w = RecordWriter::create(&path).unwrap();
    for i in 0..n {
        let img = RgbImage::from_fn(side as u32, side as u32, |x, y| {
            let p = pixel(i, x as usize, y as usize);
            image::Rgb([p[0] as u8, p[1] as u8, p[2] as u8])
        });
        let mut png = std::io::Cursor::new(Vec::new());
        img.write_to(&mut png, image::ImageFormat::Png).unwrap();
        let rec = FaceRecord {
            jpeg: png.into_inner(),
            label: i as i64,
            face_box: [0, 0, side as i64, side as i64],
            landmarks: None,
            path: Some(format!("img{i}")),
        };
        w.write(&rec.to_example()).unwrap();
    }
    w.finish().unwrap();
    let mut cfg = config(0, 1);
    cfg.augment = AugmentConfig::none();
    cfg.shuffle_buffer = 0;
    let b = Pipeline::new(RecordSource::open(&path).unwrap(), cfg)
        .unwrap()
        .epoch(0, 0)
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(b.labels, (0..n as i64).collect::<Vec<_>>());
    assert_eq!(b.images.len(), n * 3 * size * size);
    // Output pixel o samples the source at (o + 0.5) * side / size - 0.5, inside the image here.
    let tap = |o: usize| {
        let v = (o as f64 + 0.5) * side as f64 / size as f64 - 0.5;
        (v.floor() as usize, v - v.floor())
    };
    for i in 0..n {
        for c in 0..3 {
            for oy in 0..size {
                for ox in 0..size {
                    let ((x0, fx), (y0, fy)) = (tap(ox), tap(oy));
                    let at = |x, y| pixel(i, x, y)[c];
                    let top = at(x0, y0) * (1.0 - fx) + at(x0 + 1, y0) * fx;
                    let bottom = at(x0, y0 + 1) * (1.0 - fx) + at(x0 + 1, y0 + 1) * fx;
                    let want = (top * (1.0 - fy) + bottom * fy) / 127.5 - 1.0;
                    let got = b.images[((i * 3 + c) * size + oy) * size + ox] as f64;
                    assert!(
                        (got - want).abs() < 1e-4,
                        "image {i} channel {c} at ({ox}, {oy}): {got} vs {want}"
                    );
                }
            }
        }
    }
}

#[test]
fn pk_sampler_batches_p_identities_of_k_images_deterministically() {
    let dir = tempfile::tempdir().unwrap();
    // 6 identities of 10 images: groups of 2 -> 30 groups, 3 identities per batch of 6.
    let src = write_labelled(dir.path(), 60, |i| (i % 6) as i64);
    let mut cfg = config(5, 2);
    cfg.batch_size = 6;
    cfg.sampler = ffem_data::Sampler::Pk { per_identity: 2 };
    let p = Pipeline::new(src.clone(), cfg.clone()).unwrap();
    let labels: Vec<Vec<i64>> = p.epoch(0, 0).map(|b| b.unwrap().labels).collect();
    // 30 groups of 2, 3 per batch: 10 batches unless the random draw leaves the last groups with
    // fewer than 3 identities.
    assert!((8..=10).contains(&labels.len()), "{} batches", labels.len());
    for b in &labels {
        assert_eq!(
            (b[0] == b[1], b[2] == b[3], b[4] == b[5]),
            (true, true, true),
            "{b:?}"
        );
        assert!(b[0] != b[2] && b[2] != b[4] && b[0] != b[4], "{b:?}");
    }
    let again: Vec<Vec<i64>> = p.epoch(0, 0).map(|b| b.unwrap().labels).collect();
    assert_eq!(labels, again);
    let next_epoch: Vec<Vec<i64>> = p.epoch(1, 0).map(|b| b.unwrap().labels).collect();
    assert_ne!(labels, next_epoch);
    cfg.batch_size = 7;
    let err = Pipeline::new(src, cfg).err().unwrap().to_string();
    assert!(err.contains("multiple of"), "{err}");
}

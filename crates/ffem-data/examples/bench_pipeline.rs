//! Pipeline throughput: `bench_pipeline RECORDS [BATCHES] [BATCH] [WORKERS]` decodes, crops,
//! augments (the seed's augmentations) and batches 112x112 images, printing images/s.
use std::time::Instant;

use ffem_data::{AugmentConfig, Pipeline, PipelineConfig, RecordSource};

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let src = RecordSource::open(std::path::Path::new(&a[1])).expect("records");
    let batches: usize = a.get(2).map_or(100, |s| s.parse().unwrap());
    let batch: usize = a.get(3).map_or(64, |s| s.parse().unwrap());
    let workers: usize = a.get(4).map_or(2, |s| s.parse().unwrap());
    let cfg = PipelineConfig {
        batch_size: batch,
        workers,
        shuffle_buffer: 1024,
        augment: AugmentConfig::seed_default(),
        ..Default::default()
    };
    let p = Pipeline::new(src, cfg).unwrap();
    let (mut n, mut epoch) = (0usize, 0u64);
    // Warm the page cache and threads with one batch, then time.
    let _ = p.epoch(999, 0).next();
    let t = Instant::now();
    'outer: loop {
        for b in p.epoch(epoch, 0) {
            n += b.unwrap().len();
            if n >= batches * batch {
                break 'outer;
            }
        }
        epoch += 1;
    }
    let s = t.elapsed().as_secs_f64();
    println!(
        "ffem pipeline: {n} images in {s:.2} s = {:.1} images/s ({workers} workers, batch {batch})",
        n as f64 / s
    );
}

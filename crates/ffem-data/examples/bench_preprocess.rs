//! Where one image's preprocessing time goes, single thread: `bench_preprocess RECORDS [N]`.
//! Prints microseconds per image for decoding, cropping, and each augmentation.
use std::time::Instant;

use ffem_data::RecordSource;
use ffem_data::imageops::{crop_resize, decode_rgb};
use ffem_data::pipeline::color_jitter;

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let n: usize = a.get(2).map_or(1000, |s| s.parse().unwrap());
    let recs: Vec<_> = RecordSource::open(std::path::Path::new(&a[1]))
        .unwrap()
        .records(false)
        .take(n)
        .map(Result::unwrap)
        .collect();
    let t = Instant::now();
    let imgs: Vec<_> = recs.iter().map(|r| decode_rgb(&r.jpeg).unwrap()).collect();
    let decode = t.elapsed().as_secs_f64() / n as f64 * 1e6;
    let mut buf = vec![0f32; 112 * 112 * 3];
    let t = Instant::now();
    for (img, r) in imgs.iter().zip(&recs) {
        crop_resize(img, r.face_box.map(|v| v as f32), 112, &mut buf);
    }
    let crop = t.elapsed().as_secs_f64() / n as f64 * 1e6;
    let t = Instant::now();
    for _ in 0..n {
        color_jitter(&mut buf, 0.05, 10.0, 1.05);
    }
    let color = t.elapsed().as_secs_f64() / n as f64 * 1e6;
    let mut out = vec![0f32; 112 * 112 * 3];
    let t = Instant::now();
    for _ in 0..n {
        ffem_data::pipeline::to_network_input(&buf, &mut out);
    }
    let norm = t.elapsed().as_secs_f64() / n as f64 * 1e6;
    println!(
        "per image, one thread: decode {decode:.0} us, crop+resize {crop:.0} us, colour jitter {color:.0} us (runs on half the images), normalise {norm:.0} us"
    );
}
